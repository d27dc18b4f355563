//! `mehr-transport`: the Reticulum-compatible layer 0 of Mehr, written sans-IO.
//!
//! Everything here is pure: bytes and time come in as parameters, bytes and decisions go out.
//! The daemon wraps it with sockets and tasks.
//!
//! - [`packet`], [`identity`], [`token`], [`destination`], [`announce`], [`proof`],
//!   [`path_request`]: Reticulum's wire formats and cryptography.
//! - [`link`]: the link handshake and link packet state machine.
//! - [`path_cost`], [`extension`], [`cost_annotation`]: Mehr's additions carried in announce
//!   app_data and in link-local records.
//! - [`framing`]: HDLC (TCP) and KISS (serial) framing.
//! - [`router`]: a transport node: duplicate suppression, path table, announce rebroadcast,
//!   forwarding, local delivery and local links.

pub mod announce;
pub mod clock;
pub mod cost_annotation;
pub mod destination;
pub mod extension;
pub mod framing;
pub mod hashes;
pub mod identity;
pub mod link;
pub mod packet;
pub mod path_cost;
pub mod path_request;
pub mod proof;
pub mod router;
pub mod token;

pub use announce::Announce;
pub use clock::Timestamp;
pub use cost_annotation::PathCostAnnotation;
pub use destination::DestinationName;
pub use extension::MehrExtension;
pub use hashes::{DestinationHash, IdentityHash, LinkId, NameHash, PacketHash};
pub use identity::{Identity, PrivateIdentity};
pub use link::Link;
pub use packet::{Context, DestinationType, Packet, PacketType, TransportType};
pub use path_cost::CompactPathCost;
pub use router::{Action, InterfaceConfig, InterfaceId, Router, RouterConfig, RouterEvent};
pub use token::Token;
