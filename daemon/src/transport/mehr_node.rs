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
    route_policy::{self, RouteOption, RoutePolicy},
    router::{InterfaceId, PathCandidate, Router},
};

use super::Route;
use rand::rngs::OsRng;

/// Control message type: a path-cost annotation.
pub(super) const CONTROL_PATH_COST: u8 = super::control_kinds::PATH_COST;
/// Annotations remembered (they may arrive before the announce they describe).
const MAX_ANNOTATIONS: usize = 4096;
/// Mehr paths remembered.
const MAX_MEHR_PATHS: usize = 16_384;
/// Mehr neighbours (nodes heard one hop away) remembered.
const MAX_NEIGHBOURS: usize = 512;

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

/// What crossing one of this node's links adds to a path, fee aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkFigures {
    /// The interface's bitrate, bits per second.
    pub(super) bitrate: u64,
    /// Its configured one-way latency, milliseconds (simulated links have one).
    pub(super) latency_ms: u32,
}

impl LinkFigures {
    /// The hop over this link at `cost_per_byte`. Its latency is the configured one plus the
    /// time one full packet takes on the wire: on a 1200 bit/s radio that is 3.3 s and
    /// dominates, on IP links it is under a millisecond and rounds up to one.
    pub(super) fn hop(&self, cost_per_byte: f64) -> HopCost {
        let bitrate = self.bitrate.max(1);
        let airtime_ms = (mehr_transport::packet::MTU as u64 * 8 * 1000).div_ceil(bitrate);
        HopCost {
            cost_per_byte,
            latency_ms: self
                .latency_ms
                .saturating_add(u32::try_from(airtime_ms).unwrap_or(u32::MAX)),
            bandwidth_bps: bitrate,
            mtu: mehr_transport::packet::MTU as u32,
        }
    }
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
    /// The link it arrived over.
    pub(super) link: LinkFigures,
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
    /// Mehr paths not kept because the table was full of paths the router still holds.
    pub(super) paths_refused: u64,
    /// Neighbours not kept because the table was full of neighbours still heard.
    pub(super) neighbours_refused: u64,
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
            paths_refused: 0,
            neighbours_refused: 0,
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

    /// The app data of this node's announces: the Mehr extension with its origin cost. The
    /// origin's hop has crossed no link yet: its fee and its best bandwidth, no latency.
    pub(super) fn app_data(&self, bitrate: u64) -> Vec<u8> {
        let origin = LinkFigures {
            bitrate,
            latency_ms: 0,
        };
        let hop = HopCost {
            latency_ms: 0,
            ..origin.hop(self.cost_per_byte)
        };
        MehrExtension::new(CompactPathCost::origin(&hop))
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
            link,
        } = *heard;
        let Some(Ok(extension)) = announce.mehr_extension() else {
            return Vec::new();
        };
        if announce.destination == self.destination {
            return Vec::new();
        }
        if hops == 1
            && !self.neighbours.contains_key(&announce.destination)
            && self.neighbours.len() >= MAX_NEIGHBOURS
        {
            // Full: make room only by forgetting a neighbour the router no longer holds a
            // path to (gone, or pushed out as unproved); one still routed stays.
            let gone = self
                .neighbours
                .iter()
                .filter(|(dest, _)| router.path(dest).is_none())
                .min_by_key(|(_, n)| n.heard)
                .map(|(dest, _)| *dest);
            match gone {
                Some(dest) => {
                    self.neighbours.remove(&dest);
                }
                None => self.neighbours_refused += 1,
            }
        }
        if hops == 1
            && (self.neighbours.len() < MAX_NEIGHBOURS
                || self.neighbours.contains_key(&announce.destination))
        {
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
            // The router's own table favours proved paths; this one follows it: entries
            // whose router path is gone make room, and they are removed rather than kept
            // for good.
            self.paths.retain(|dest, _| router.path(dest).is_some());
            if self.paths.len() >= MAX_MEHR_PATHS {
                self.paths_refused += 1;
                return Vec::new();
            }
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
        let ours = cost.add_hop(&link.hop(self.cost_per_byte));
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

    /// Every known way to `destination` (the router's path first), each priced from here:
    /// what the next hop's annotation says the rest costs (a neighbour's own cost for a
    /// neighbour; unknown without an annotation), plus this node's link to the next hop,
    /// which costs no fee.
    /// Costs come from the `mehr.node` announces of the node that owns the destination, so
    /// an app destination of a Mehr node is priced like the node. `first_link` gives the
    /// figures of this node's interfaces.
    pub(super) fn route_options(
        &self,
        router: &Router,
        destination: &DestinationHash,
        first_link: impl Fn(InterfaceId) -> LinkFigures,
    ) -> Vec<(PathCandidate, RouteOption)> {
        self.priced(router, destination, usize::MAX, first_link)
    }

    /// The first `limit` of [`MehrNode::route_options`].
    fn priced(
        &self,
        router: &Router,
        destination: &DestinationHash,
        limit: usize,
        first_link: impl Fn(InterfaceId) -> LinkFigures,
    ) -> Vec<(PathCandidate, RouteOption)> {
        let mut candidates = router.path_candidates(destination);
        candidates.truncate(limit);
        let node = router
            .known_destination(destination)
            .map(|k| super::mehr_node_destination(&k.identity.hash()));
        let origin_cost = node
            .and_then(|node| router.known_destination(&node))
            .and_then(|k| MehrExtension::from_app_data(&k.app_data).ok().flatten())
            .map(|extension| extension.origin_cost);
        let node_candidates = node.map_or_else(Vec::new, |node| router.path_candidates(&node));
        candidates
            .into_iter()
            .map(|candidate| {
                let told = node
                    .zip(
                        node_candidates
                            .iter()
                            .find(|c| c.next_hop == candidate.next_hop),
                    )
                    .and_then(|(node, via)| {
                        self.annotations
                            .get(&(node, via.random_hash, via.next_hop))
                            .copied()
                    });
                // A neighbour's own cost is in its announce. Further away, only the next
                // hop's annotation prices the path: without one it is unknown (a plain
                // Reticulum relay, an annotation still on its way, or our own announce
                // echoed back by a neighbour whose path runs through us), never free.
                let rest = if candidate.hops <= 1 {
                    origin_cost
                } else {
                    told
                };
                let cost = rest.map(|rest| rest.add_hop(&first_link(candidate.interface).hop(0.0)));
                let option = RouteOption {
                    hops: candidate.hops,
                    cost,
                };
                (candidate, option)
            })
            .collect()
    }

    /// The way to `destination` that `policy` prefers, if a path is known.
    pub(super) fn choose_route(
        &self,
        router: &Router,
        destination: &DestinationHash,
        policy: RoutePolicy,
        first_link: impl Fn(InterfaceId) -> LinkFigures,
    ) -> Option<Route> {
        // Every send comes through here: the default policy takes the router's path
        // unscored, so only that one is priced.
        let limit = if policy.weights().is_some() {
            usize::MAX
        } else {
            1
        };
        let options = self.priced(router, destination, limit, first_link);
        let scored: Vec<RouteOption> = options.iter().map(|(_, o)| *o).collect();
        let (candidate, option) = options[route_policy::choose(policy, &scored)?];
        Some(Route {
            next_hop: candidate.next_hop,
            hops: candidate.hops,
            cost: option.cost,
        })
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
