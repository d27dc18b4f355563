//! Local delivery: packets for this node's destinations and links, and link timers.

use crate::clock::Timestamp;
use crate::hashes::{LinkId, PacketHash};
use crate::link::{Link, LinkEvent, LinkState};
use crate::packet::{Context, DestinationType, Packet};
use crate::proof::prove_packet;

use super::{
    Action, DropReason, InterfaceId, LocalLink, Priority, ProofStrategy, Router, RouterEvent,
};

impl Router {
    pub(super) fn accept_link(&mut self, interface: InterfaceId, packet: &Packet, now: Timestamp) {
        let Some(local) = self.destinations.get(&packet.destination) else {
            return self.drop_packet(DropReason::NotForUs, Some(interface));
        };
        if !local.accepts_links || packet.destination_type != DestinationType::Single {
            return self.drop_packet(DropReason::InvalidLinkRequest, Some(interface));
        }
        let prove_all = matches!(
            local.proof_strategy,
            ProofStrategy::All | ProofStrategy::Links
        );
        // Requests alone cost nothing to send: unestablished links make room for newcomers
        // (the oldest first), established ones never do.
        let handshaking = self
            .links
            .values()
            .filter(|l| l.link.state() == LinkState::Handshake)
            .count();
        let full = self.links.len() >= self.config.max_local_links
            || handshaking >= self.config.max_handshaking_links;
        let mut request = packet.clone();
        self.clamp_signalling(&mut request, Some(interface), None);
        let Some(local) = self.destinations.get(&packet.destination) else {
            return;
        };
        match Link::accept(&local.identity, &request, now, &mut *self.rng) {
            Ok((link, proof)) => {
                // Only a well-formed request takes a slot from an older handshake.
                if full && !self.evict_oldest_handshake() {
                    return self.drop_packet(DropReason::LinkSlotsFull, Some(interface));
                }
                let id = link.id();
                self.links.insert(
                    id,
                    LocalLink {
                        link,
                        opened_at: now,
                        interface: Some(interface),
                        prove_all,
                    },
                );
                self.transmit(interface, proof.encode(), Priority::Control);
            }
            Err(_) => self.drop_packet(DropReason::InvalidLinkRequest, Some(interface)),
        }
    }

    /// Drops the link answered longest ago that is still in its handshake, to make room for
    /// a new one. Returns false if no link is in its handshake.
    pub(super) fn evict_oldest_handshake(&mut self) -> bool {
        let oldest = self
            .links
            .iter()
            .filter(|(_, l)| l.link.state() == LinkState::Handshake)
            .min_by_key(|(_, l)| l.opened_at)
            .map(|(id, _)| *id);
        let Some(id) = oldest else {
            return false;
        };
        self.links.remove(&id);
        self.drop_packet(DropReason::LinkHandshakeEvicted, None);
        true
    }

    pub(super) fn deliver_data(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        hash: &PacketHash,
        now: Timestamp,
    ) {
        if packet.destination_type == DestinationType::Link {
            return self.receive_on_link(interface, packet, hash, now);
        }
        let Some(local) = self.destinations.get(&packet.destination) else {
            return self.drop_packet(DropReason::NotForUs, Some(interface));
        };
        if packet.destination_type != DestinationType::Single {
            return self.drop_packet(DropReason::NotForUs, Some(interface));
        }
        let plaintext = match local.identity.decrypt(&packet.data) {
            Ok(p) => p,
            Err(_) => return self.drop_packet(DropReason::Undecryptable, Some(interface)),
        };
        let proof = (local.proof_strategy == ProofStrategy::All)
            .then(|| prove_packet(hash, &local.identity, false));
        self.counters.delivered += 1;
        self.actions.push_back(Action::Deliver {
            destination: packet.destination,
            packet: packet.clone(),
            plaintext,
            interface,
        });
        if let Some(proof) = proof {
            self.transmit(interface, proof.encode(), Priority::Control);
        }
    }

    pub(super) fn receive_on_link(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        hash: &PacketHash,
        now: Timestamp,
    ) {
        let id = LinkId::from(packet.destination);
        let Some(local) = self.links.get_mut(&id) else {
            return self.drop_packet(DropReason::NotForUs, Some(interface));
        };
        if local.interface != Some(interface) {
            // It may still arrive on the right interface.
            self.packet_hashes.remove(hash);
            return self.drop_packet(DropReason::LinkRejected, Some(interface));
        }
        let outcome = match local.link.receive(packet, now) {
            Ok(o) => o,
            Err(_) => return self.drop_packet(DropReason::LinkRejected, Some(interface)),
        };
        let destination = local.link.destination();
        let role = local.link.role();
        let auto_proof = match &outcome.event {
            LinkEvent::Data { context, .. } => {
                *context == Context::CHANNEL || (local.prove_all && *context == Context::NONE)
            }
            _ => false,
        };
        let proof = auto_proof.then(|| local.link.prove(packet));
        if let Some(reply) = outcome.reply {
            self.transmit(interface, reply.encode(), Priority::Control);
        }
        if let Some(proof) = proof {
            self.transmit(interface, proof.encode(), Priority::Control);
        }
        let event = match outcome.event {
            LinkEvent::Established { rtt } => Some(RouterEvent::LinkEstablished {
                link_id: id,
                destination,
                role,
                rtt,
            }),
            LinkEvent::Data { context, plaintext } => {
                self.counters.delivered += 1;
                Some(RouterEvent::LinkData {
                    link_id: id,
                    context,
                    plaintext,
                    packet_hash: *hash,
                })
            }
            LinkEvent::Identified(identity) => Some(RouterEvent::LinkIdentified {
                link_id: id,
                identity,
            }),
            LinkEvent::Proof { packet_hash } => Some(RouterEvent::DeliveryProved { packet_hash }),
            LinkEvent::Closed(reason) => {
                self.links.remove(&id);
                Some(RouterEvent::LinkClosed {
                    link_id: id,
                    reason,
                })
            }
            LinkEvent::Keepalive => None,
        };
        if let Some(event) = event {
            self.emit(event);
        }
    }

    pub(super) fn poll_links(&mut self, now: Timestamp) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            let Some(local) = self.links.get_mut(&id) else {
                continue;
            };
            let poll = local.link.poll(now, &mut *self.rng);
            let interface = local.interface;
            if let (Some(packet), Some(interface)) = (poll.send, interface) {
                self.transmit(interface, packet.encode(), Priority::Control);
            }
            if let Some(reason) = poll.closed {
                self.links.remove(&id);
                self.emit(RouterEvent::LinkClosed {
                    link_id: id,
                    reason,
                });
            }
        }
    }
}
