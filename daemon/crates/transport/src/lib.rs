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
//!
//! The I/O layer around the router:
//!
//! ```
//! use mehr_transport::framing::hdlc;
//! use mehr_transport::router::{LocalDestination, WallClock};
//! use mehr_transport::{
//!     Action, DestinationName, InterfaceConfig, InterfaceId, PrivateIdentity, Router, RouterConfig,
//!     Timestamp,
//! };
//! use rand::rngs::OsRng;
//!
//! let clock = WallClock { at: Timestamp::ZERO, unix_secs: 1_750_000_000 };
//! let mut router =
//!     Router::new(PrivateIdentity::generate(&mut OsRng), RouterConfig::default(), clock, Box::new(OsRng));
//! let tcp = InterfaceId(1);
//! router.add_interface(tcp, InterfaceConfig::new(10_000_000));
//! let node = LocalDestination::new(PrivateIdentity::generate(&mut OsRng), DestinationName::mehr_node());
//! let me = router.register_destination(node);
//! router.announce(&me, Timestamp::from_millis(5)).unwrap();
//!
//! // Bytes from a socket go through the interface's decoder into the router…
//! let mut decoder = hdlc::Decoder::new(1064);
//! for frame in decoder.decode(&[/* bytes read from the TCP stream */]) {
//!     router.handle_inbound(tcp, &frame, Timestamp::from_millis(6));
//! }
//! router.tick(Timestamp::from_millis(250));
//! // …and actions come out.
//! while let Some(action) = router.poll_action() {
//!     match action {
//!         Action::Transmit { interface, frame, .. } => {
//!             let _bytes_for_socket = hdlc::encode(&frame);
//!             assert_eq!(interface, tcp);
//!         }
//!         Action::Deliver { .. } | Action::Event(_) => {}
//!     }
//! }
//! ```

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
pub mod route_policy;
pub mod router;
pub mod segments;
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
pub use router::{
    Action, InterfaceConfig, InterfaceId, LocalDestination, Router, RouterConfig, RouterEvent,
    WallClock,
};
pub use token::Token;
