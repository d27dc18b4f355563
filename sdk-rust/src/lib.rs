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
//! The marketplace: [`Client::discover`] finds providers, [`Client::propose_agreement`] and
//! [`Client::agreements`] handle agreements, [`Client::invoke_verified`] runs a function on
//! providers per verification tier (see [`market`]).
//!
//! Functions: [`Client::deploy_module`], [`Client::list_functions`], [`Client::invoke`] and
//! [`Client::invoke_stream`] call them; [`Client::serve`] (see [`serve`]) provides them from
//! this process.
//!
//! Economics: [`Client::balance`], [`Client::channels`], [`Client::open_channel`],
//! [`Client::pay`], [`Client::settle_channel`], [`Client::trust`], [`Client::ledger_summary`]
//! and [`Client::verify_ticket`].
//!
//! [`ConnectOptions`] reaches a daemon elsewhere (TCP with a bearer token, TLS with a CA).
//! Every call returns [`Error`], whose [`Error::code`] is the gRPC status code the daemon sent.
//! The generated gRPC types are re-exported as [`proto`]; the raw clients are available for
//! calls this crate does not wrap yet.

mod client;
mod compute;
mod connect;
mod error;
pub mod layout;
mod ledger;
pub mod market;
pub mod serve;
pub mod storage;
pub mod trace;
mod transport;

pub use client::{AuthedChannel, BearerToken, Client, EventStream};
pub use compute::{InvokeOptions, Placement};
pub use connect::{ConnectOptions, Target};
pub use error::{ApiStatus, Error};
pub use ledger::{SettleResult, Settlement, new_request_id};
/// The generated `mehr.v1` messages and clients.
pub use mehr_proto::v1 as proto;
pub use transport::Listening;
