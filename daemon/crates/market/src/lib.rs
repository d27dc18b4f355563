//! Mehr capability marketplace logic (layer 4), pure: no sockets, clocks, threads or global
//! state. Time comes in as `now_ms` (the caller's monotonic milliseconds), randomness from a
//! caller-supplied RNG; the daemon moves the bytes (encrypted Reticulum packets and links to
//! `mehr.node` destinations) and persists what this crate decides.
//!
//! - [`capabilities`]: the signed, sequenced `NodeCapabilities` advert.
//! - [`summary`], [`beacon`]: the 8-byte `CapabilitySummary` and 20-byte `PresenceBeacon`.
//! - [`discovery`]: concentric-ring discovery, ranking, pulls.
//! - [`gossip`]: the tier-T3 bandwidth budget and what to send each round.
//! - [`agreement`]: request → offer → countersignature, the agreement state machine, chains.
//! - [`verification`]: delivery receipts, heartbeats, compute verification tiers.
//! - [`reputation`]: local peer scores.
//! - [`message`]: the type-byte envelope of every market message.
//! - [`cost`], [`identity`], [`signing`], [`record`], [`params`]: prices, keys, tags, signed
//!   records and numbers.
//!
//! From an advert to an active agreement:
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use mehr_market::agreement::{
//!     Agreement, AgreementState, Capability, ComputeTarget, OfferTerms, Privacy, ProofMethod,
//!     Request,
//! };
//! use mehr_market::capabilities::{
//!     Availability, Compute, CpuClass, NodeCapabilities, OfferedFunction, Services,
//! };
//! use mehr_market::discovery::{Filter, NextStep, NoReputation, Origin, Query};
//! use mehr_market::{ChannelId, CostStructure, DiscoveryTable, FunctionId, NodeKey};
//!
//! let provider = NodeKey::new(SigningKey::from_bytes(&[1; 32]), [2; 32]);
//! let consumer = NodeKey::new(SigningKey::from_bytes(&[3; 32]), [4; 32]);
//!
//! // The provider signs its advert; gossip carries it to its neighbour, the consumer.
//! let caps = NodeCapabilities {
//!     interfaces: vec![],
//!     compute: Some(Compute {
//!         cpu_class: CpuClass::High,
//!         memory_mb: 8_192,
//!         mhr_byte: false,
//!         wasm: true,
//!         cost_per_million_cycles: 30,
//!         functions: vec![OfferedFunction {
//!             name: "embed".into(),
//!             description: "sentence embeddings".into(),
//!             cost: CostStructure::PerInvocation { per_call: 50, max_input: 65_536 },
//!             max_concurrent: 4,
//!         }],
//!     }),
//!     storage: None,
//!     services: Services::default(),
//!     availability: Availability::AlwaysOn,
//! };
//! let advert = caps.sign(&provider, 1, 5_400)?;
//! let mut table = DiscoveryTable::new(consumer.node_id());
//! let origin = Origin::neighbour(provider.node_id(), 1);
//! table.insert_advert(advert, &provider.peer_key(), origin, 0, 0)?;
//!
//! // The consumer looks for the function under 100 μ per call: found in ring 0.
//! let found = table.query(&Query::new(Filter::function("embed", Some(100))), &NoReputation, 0);
//! assert_eq!(found.next, NextStep::Satisfied);
//! let best = &found.offers[0];
//! let price = best.cost.expect("functions state their cost structure");
//!
//! // Request → offer → countersignature.
//! let request = Request {
//!     consumer: consumer.node_id(),
//!     provider: best.node_id,
//!     capability: Capability::Compute(ComputeTarget::Function(FunctionId::of("embed"))),
//!     cost_cap: price,
//!     duration_seconds: 600,
//!     channel: ChannelId([9; 16]),
//!     proof: ProofMethod::ResultHash,
//!     privacy: Privacy::None,
//!     nonce: 7,
//! };
//! let (mut mine, signed_request) = Agreement::propose(&consumer, request, 1_000)?;
//! let mut theirs =
//!     Agreement::receive_request(signed_request, &consumer.peer_key(), provider.node_id(), 1_050)?;
//! let terms = OfferTerms::new(theirs.request().body(), price);
//! let offer = theirs.make_offer(&provider, terms, 1_100)?;
//! mine.receive_offer(offer, &provider.peer_key(), 1_150)?;
//! let acceptance = mine.accept(&consumer, 1_200)?;
//! theirs.receive_acceptance(acceptance, &consumer.peer_key(), 1_250)?;
//! assert_eq!(mine.state(), AgreementState::Active);
//! assert_eq!(mine.id(), theirs.id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod agreement;
pub mod beacon;
pub mod capabilities;
pub mod control;
pub mod cost;
pub mod discovery;
pub mod gossip;
pub mod identity;
pub mod message;
pub mod params;
pub mod record;
pub mod reputation;
pub mod signing;
pub mod summary;
pub mod verification;
mod wire;

pub use capabilities::{CapabilityAdvert, CapabilityKind, FunctionId, NodeCapabilities};
pub use cost::CostStructure;
pub use discovery::{DiscoveryTable, Query, RankedOffer};
pub use identity::{NodeKey, PeerKey};
pub use mehr_ledger::{ChannelId, NodeId};
pub use wire::DecodeError;
