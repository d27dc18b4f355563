//! Async Rust client for the Mehr daemon (`mehrd`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mehr_sdk::Error> {
//! // Finds the local daemon: the Unix socket in the default data dir, or MEHR_ENDPOINT.
//! let client = mehr_sdk::Client::connect().await?;
//! let info = client.info().await?;
//! println!("node {}", hex::encode(&info.identity_hash));
//! # Ok(()) }
//! ```
//!
//! [`ConnectOptions`] reaches a daemon elsewhere (TCP with a bearer token, TLS with a CA).
//! Every call returns [`Error`], whose [`Error::code`] is the gRPC status code the daemon sent.
//! The generated gRPC types are re-exported as [`proto`]; the raw clients are available for
//! calls this crate does not wrap yet.

mod client;
mod connect;
mod error;
pub mod layout;
pub mod storage;

pub use client::{AuthedChannel, BearerToken, Client, EventStream};
pub use connect::{ConnectOptions, Target};
pub use error::Error;
/// The generated `mehr.v1` messages and clients.
pub use mehr_proto::v1 as proto;
