//! `mehrd`: a node of the Mehr network — a capability marketplace over a Reticulum-compatible,
//! encrypted mesh.
//!
//! The daemon is a set of parts started in order by [`node::Node`]: the locked data dir, the
//! identity, the RocksDB store, the gRPC API. Each part owns its state; the API's services are
//! thin and map domain errors to gRPC status codes in one place. See `docs/ARCHITECTURE.md`.

pub mod api;
pub mod cli;
pub mod compute;
pub mod config;
pub mod data_dir;
pub mod devnet;
pub mod events;
pub mod identity;
pub mod ledger;
pub mod market;
pub mod node;
pub mod seams;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod transport;
