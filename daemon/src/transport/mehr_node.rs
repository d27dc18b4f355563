//! The node's own `mehr.node` destination: the Mehr extension in its announces, Mehr
//! neighbours, and path costs that accumulate hop by hop without touching the announce.
//!
//! Reticulum signs an announce's app data and every node checks the signature, so the origin's
//! `CompactPathCost` in the extension can never be edited in flight. Instead, when this node
//! hears a Mehr node's announce it works out its own cost to that node and tells its other Mehr
//! neighbours in a signed, link-local [`PathCostAnnotation`] (control message
//! [`CONTROL_PATH_COST`]) keyed by the announce's random hash. A neighbour that later hears the
//! same announce through us takes our annotation as its cost; a path through plain Reticulum
//! nodes (L0) simply adds nothing for those hops. See docs/PROTOCOL.md §Path costs.

use std::collections::{HashMap, VecDeque};

use mehr_transport::{
    announce::{Announce, RANDOM_HASH_LEN},
    clock::Timestamp,
    cost_annotation::PathCostAnnotation,
    destination::DestinationName,
    extension::MehrExtension,
    hashes::{DestinationHash, IdentityHash},
    identity::{Identity, PrivateIdentity},
    packet::{Context, DestinationType, Packet, PacketType},
    path_cost::{CompactPathCost, HopCost},
    router::{InterfaceId, Router},
};
use rand::rngs::OsRng;

/// Control message type: a path-cost annotation.
pub(super) const CONTROL_PATH_COST: u8 = super::control_kinds::PATH_COST;
/// Annotations remembered (they may arrive before the announce they describe).
const MAX_ANNOTATIONS: usize = 4096;
/// Mehr paths remembered.
const MAX_MEHR_PATHS: usize = 16_384;

/// What this node knows about a Mehr node's path cost.
#[derive(Debug, Clone, Copy)]
struct MehrPath {
    cost: CompactPathCost,
    random_hash: [u8; RANDOM_HASH_LEN],
    next_hop: IdentityHash,
}

/// A Mehr node one hop away.
#[derive(Debug, Clone)]
pub(super) struct NeighbourEntry {
    pub(super) identity: Identity,
    pub(super) interface: InterfaceId,
    pub(super) heard: Timestamp,
    pub(super) cost: CompactPathCost,
}

/// A `mehr.node` announce as the router delivered it.
#[derive(Clone, Copy)]
pub(super) struct HeardAnnounce<'a> {
    /// The validated announce.
    pub(super) announce: &'a Announce,
    /// Hops it travelled.
    pub(super) hops: u8,
    /// Interface it arrived on.
    pub(super) interface: InterfaceId,
    /// Transport id of the node that handed it to us.
    pub(super) next_hop: IdentityHash,
    /// Bitrate of that interface.
    pub(super) bitrate: u64,
}

/// State of the `mehr.node` destination.
pub(super) struct MehrNode {
    destination: DestinationHash,
    identity: PrivateIdentity,
    cost_per_byte: f64,
    relays: bool,
    paths: HashMap<DestinationHash, MehrPath>,
    annotations: HashMap<(DestinationHash, [u8; RANDOM_HASH_LEN], IdentityHash), CompactPathCost>,
    annotation_order: VecDeque<(DestinationHash, [u8; RANDOM_HASH_LEN], IdentityHash)>,
    neighbours: HashMap<DestinationHash, NeighbourEntry>,
    /// Control messages refused (malformed, unknown sender, bad signature).
    pub(super) rejected: u64,
}

impl MehrNode {
    /// The `mehr.node` destination of `identity`; `relays` when this node forwards for others.
    pub(super) fn new(identity: PrivateIdentity, cost_per_byte: f64, relays: bool) -> Self {
        MehrNode {
            destination: super::mehr_node_destination(&identity.hash()),
            identity,
            cost_per_byte,
            relays,
            paths: HashMap::new(),
            annotations: HashMap::new(),
            annotation_order: VecDeque::new(),
            neighbours: HashMap::new(),
            rejected: 0,
        }
    }

    /// The destination hash.
    pub(super) fn destination(&self) -> DestinationHash {
        self.destination
    }

    /// Sets the relay fee the next announce carries; returns the one before.
    pub(super) fn set_cost_per_byte(&mut self, cost_per_byte: f64) -> f64 {
        std::mem::replace(&mut self.cost_per_byte, cost_per_byte)
    }

    /// The hop this node adds to a path through an interface of `bitrate`.
    fn own_hop(&self, bitrate: u64) -> HopCost {
        HopCost {
            cost_per_byte: self.cost_per_byte,
            latency_ms: 0,
            bandwidth_bps: bitrate.max(1),
            mtu: mehr_transport::packet::MTU as u32,
        }
    }

    /// The app data of this node's announces: the Mehr extension with its origin cost.
    pub(super) fn app_data(&self, bitrate: u64) -> Vec<u8> {
        MehrExtension::new(CompactPathCost::origin(&self.own_hop(bitrate)))
            .encode()
            .expect("an extension without TLVs always encodes")
    }

    /// True for announces of `mehr.node` destinations.
    /// Whether `destination` is a Mehr neighbour heard directly.
    pub(super) fn is_neighbour(&self, destination: &DestinationHash) -> bool {
        self.neighbours.contains_key(destination)
    }

    pub(super) fn is_mehr_announce(announce: &Announce) -> bool {
        announce.name_hash == DestinationName::mehr_node().name_hash()
    }

    /// Takes a valid `mehr.node` announce and returns the annotations to send to the other
    /// Mehr neighbours (encrypted packets).
    pub(super) fn on_announce(
        &mut self,
        router: &Router,
        heard: &HeardAnnounce<'_>,
        now: Timestamp,
    ) -> Vec<Packet> {
        let HeardAnnounce {
            announce,
            hops,
            interface,
            next_hop,
            bitrate,
        } = *heard;
        let Some(Ok(extension)) = announce.mehr_extension() else {
            return Vec::new();
        };
        if announce.destination == self.destination {
            return Vec::new();
        }
        if hops == 1 {
            self.neighbours.insert(
                announce.destination,
                NeighbourEntry {
                    identity: announce.identity.clone(),
                    interface,
                    heard: now,
                    cost: extension.origin_cost,
                },
            );
        }
        // Our cost to reach it: what the next hop told us, else the origin's own cost (the
        // hops between were plain Reticulum nodes, which add nothing).
        let told = self
            .annotations
            .get(&(announce.destination, announce.random_hash, next_hop))
            .copied();
        let cost = told.unwrap_or(extension.origin_cost);
        if self.paths.len() >= MAX_MEHR_PATHS && !self.paths.contains_key(&announce.destination) {
            return Vec::new();
        }
        self.paths.insert(
            announce.destination,
            MehrPath {
                cost,
                random_hash: announce.random_hash,
                next_hop,
            },
        );

        if !self.relays {
            return Vec::new();
        }
        let ours = cost.add_hop(&self.own_hop(bitrate));
        let annotation = PathCostAnnotation::sign(
            &self.identity,
            announce.destination,
            announce.random_hash,
            ours,
        );
        let mut body = vec![CONTROL_PATH_COST];
        body.extend_from_slice(&annotation.encode());
        let origin_node = announce.identity.hash();
        self.neighbours
            .iter()
            .filter(|(dest, n)| {
                **dest != announce.destination
                    && n.identity.hash() != next_hop
                    && n.identity.hash() != origin_node
            })
            .filter_map(|(dest, neighbour)| encrypt_to(router, dest, &neighbour.identity, &body))
            .collect()
    }

    /// Takes a path-cost annotation from a neighbour.
    pub(super) fn on_path_cost(&mut self, body: &[u8]) {
        let Ok(annotation) = PathCostAnnotation::parse(body) else {
            self.rejected += 1;
            return;
        };
        let Some(relay) = self
            .neighbours
            .values()
            .find(|n| n.identity.hash() == annotation.relay)
        else {
            self.rejected += 1;
            return;
        };
        if annotation.verify(&relay.identity).is_err() {
            self.rejected += 1;
            return;
        }
        let key = (
            annotation.destination,
            annotation.announce_random_hash,
            annotation.relay,
        );
        if self.annotations.insert(key, annotation.cost).is_none() {
            self.annotation_order.push_back(key);
            if self.annotation_order.len() > MAX_ANNOTATIONS
                && let Some(old) = self.annotation_order.pop_front()
            {
                self.annotations.remove(&old);
            }
        }
        // The announce may have arrived first.
        if let Some(path) = self.paths.get_mut(&annotation.destination)
            && path.next_hop == annotation.relay
            && path.random_hash == annotation.announce_random_hash
        {
            path.cost = annotation.cost;
        }
    }

    /// This node's known cost to the Mehr node at `destination`.
    pub(super) fn path_cost(&self, destination: &DestinationHash) -> Option<CompactPathCost> {
        self.paths.get(destination).map(|p| p.cost)
    }

    /// Mehr neighbours.
    pub(super) fn neighbours(&self) -> impl Iterator<Item = (&DestinationHash, &NeighbourEntry)> {
        self.neighbours.iter()
    }

    /// Forgets neighbours reached over a removed interface.
    pub(super) fn interface_removed(&mut self, interface: InterfaceId) {
        self.neighbours.retain(|_, n| n.interface != interface);
    }
}

/// Whether a change of this node's relay fee from `before` to `after` must be announced now
/// rather than with the next periodic announce. PROTOCOL.md's trigger is a change of more
/// than 25 %; a rise is announced whatever its size, because a neighbour pays a relay at most
/// the fee it last heard (one cost-code step, 4.4 %, above it) and would refuse the dearer
/// tickets until the next periodic announce.
pub(super) fn price_change_needs_announce(before: f64, after: f64) -> bool {
    if after > before {
        return true;
    }
    before > 0.0 && (before - after) / before > 0.25
}

/// An encrypted DATA packet to `destination`, sent without a delivery receipt (control
/// traffic that is re-sent with every announce does not need one).
pub(super) fn encrypt_to(
    router: &Router,
    destination: &DestinationHash,
    identity: &Identity,
    body: &[u8],
) -> Option<Packet> {
    let ratchet = router
        .known_destination(destination)
        .and_then(|k| k.ratchet);
    let ciphertext = identity.encrypt(body, ratchet.as_ref(), &mut OsRng).ok()?;
    Some(Packet::new(
        PacketType::Data,
        DestinationType::Single,
        *destination,
        Context::NONE,
        ciphertext,
    ))
}

#[cfg(test)]
mod tests {
    use super::price_change_needs_announce;

    #[test]
    fn rises_are_announced_at_once_and_falls_past_a_quarter() {
        assert!(price_change_needs_announce(10.0, 10.1));
        assert!(price_change_needs_announce(0.0, 1.0));
        assert!(!price_change_needs_announce(10.0, 10.0));
        assert!(
            !price_change_needs_announce(10.0, 7.5),
            "exactly 25 % is not more"
        );
        assert!(price_change_needs_announce(10.0, 7.4));
        assert!(price_change_needs_announce(10.0, 0.0));
        assert!(!price_change_needs_announce(0.0, 0.0));
    }
}
