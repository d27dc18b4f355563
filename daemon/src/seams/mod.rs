//! The narrow contracts between the daemon's parts.
//!
//! The parts — transport, ledger, market, storage, compute — never import each other's
//! modules. Where one needs another (the market runs functions and pays for agreements,
//! storage pays providers, the ledger spares relays the market already pays), it names what it
//! needs here as a trait or a plain type, and the assembly (`node.rs`) hands it the other part
//! behind that contract. A part can then be read, changed and tested against the contract
//! alone: the market's tests run functions without a compute part, storage's pay nobody.
//!
//! This module is a leaf like `config`, `events` and `store`: it imports no part. The rule is
//! written in docs/ARCHITECTURE.md ("Layers") and checked by `daemon/tests/layers.rs`.

pub mod drain;
pub mod drops;
pub mod functions;
pub mod payments;
pub mod storage;
