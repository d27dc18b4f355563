//! Transport: forwarding packets addressed to this node's transport id, link-table traffic,
//! proofs back along the reverse table, and routing of locally originated packets.

use crate::clock::Timestamp;
use crate::hashes::{DestinationHash, IdentityHash, LinkId, PacketHash};
use crate::link::{
    LINK_REQUEST_KEYS_LEN, LinkProof, LinkState, Role, SIGNALLING_LEN, Signalling, link_id,
};
use crate::packet::{Context, DestinationType, MTU, Packet, PacketType, TransportType};
use crate::proof::ProofData;

use super::{
    DropReason, InterfaceId, LinkEntry, PER_HOP_TIMEOUT, PathCandidate, Priority, ReverseEntry,
    Router, RouterError, RouterEvent,
};

impl Router {
    /// Forwards a packet whose transport id is ours. Returns false if it should be
    /// processed locally instead (a local destination reached through us).
    pub(super) fn forward_in_transport(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        hash: &PacketHash,
        now: Timestamp,
    ) -> bool {
        let Some(path) = self.paths.get_mut(&packet.destination) else {
            if self.destinations.contains_key(&packet.destination) {
                return false;
            }
            self.drop_packet(DropReason::NoPath, Some(interface));
            self.rediscover(packet.destination, now);
            return true;
        };
        path.last_used = now;
        let (next_hop, remaining, out_interface) = (path.next_hop, path.hops, path.interface);
        let mut out = packet.clone();
        if remaining > 1 {
            out.transport_id = Some(next_hop);
            out.transport_type = TransportType::Transport;
        } else {
            out.transport_id = None;
            out.transport_type = TransportType::Broadcast;
        }
        if packet.packet_type == PacketType::LinkRequest {
            self.clamp_signalling(&mut out, Some(interface), Some(out_interface));
            let proof_deadline = now.saturating_add(PER_HOP_TIMEOUT * u32::from(remaining.max(1)));
            self.link_table.insert(
                link_id(packet),
                LinkEntry {
                    at: now,
                    next_hop_interface: out_interface,
                    remaining_hops: remaining,
                    received_on: interface,
                    taken_hops: packet.hops,
                    destination: packet.destination,
                    validated: false,
                    proof_deadline,
                },
            );
        } else {
            self.reverse.insert(
                hash.truncated(),
                ReverseEntry {
                    received_on: interface,
                    sent_on: out_interface,
                    at: now,
                },
            );
        }
        self.counters.forwarded += 1;
        self.report_forwarded(&out, Some(interface), out_interface);
        let priority = if packet.packet_type == PacketType::LinkRequest {
            Priority::Control
        } else {
            Priority::Data
        };
        self.transmit(out_interface, out.encode(), priority);
        true
    }

    /// Forwards traffic of a link this node transports, in whichever direction it goes.
    pub(super) fn forward_on_link(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        hash: &PacketHash,
        now: Timestamp,
    ) {
        let Some(entry) = self.link_table.get_mut(&LinkId::from(packet.destination)) else {
            return;
        };
        if !entry.validated {
            return self.drop_packet(DropReason::LinkRejected, Some(interface));
        }
        let out = if entry.next_hop_interface == entry.received_on {
            (packet.hops == entry.remaining_hops || packet.hops == entry.taken_hops)
                .then_some(entry.next_hop_interface)
        } else if interface == entry.next_hop_interface && packet.hops == entry.remaining_hops {
            Some(entry.received_on)
        } else if interface == entry.received_on && packet.hops == entry.taken_hops {
            Some(entry.next_hop_interface)
        } else {
            None
        };
        let Some(out) = out else {
            return self.drop_packet(DropReason::LinkRejected, Some(interface));
        };
        entry.at = now;
        self.packet_hashes.insert(*hash);
        self.counters.forwarded += 1;
        self.report_forwarded(packet, Some(interface), out);
        self.transmit(out, packet.encode(), Priority::Data);
    }

    /// Clamps or strips a link request's MTU signalling to what the interfaces it crosses
    /// support, as Reticulum does.
    pub(super) fn clamp_signalling(
        &self,
        packet: &mut Packet,
        from: Option<InterfaceId>,
        to: Option<InterfaceId>,
    ) {
        if packet.data.len() != LINK_REQUEST_KEYS_LEN + SIGNALLING_LEN {
            return;
        }
        let mtu_of = |i: Option<InterfaceId>| {
            i.and_then(|i| self.interfaces.get(&i))
                .and_then(|s| s.config.hw_mtu)
        };
        let Some(out_mtu) = (match to {
            Some(_) => mtu_of(to),
            None => mtu_of(from),
        }) else {
            packet.data.truncate(LINK_REQUEST_KEYS_LEN);
            return;
        };
        let mut bytes = [0u8; SIGNALLING_LEN];
        bytes.copy_from_slice(&packet.data[LINK_REQUEST_KEYS_LEN..]);
        let signalled = Signalling::decode(&bytes);
        let limit = mtu_of(from).map_or(out_mtu, |m| m.min(out_mtu));
        if limit < signalled.mtu {
            let clamped = Signalling {
                mtu: limit,
                mode: signalled.mode,
            };
            packet.data.truncate(LINK_REQUEST_KEYS_LEN);
            packet.data.extend_from_slice(&clamped.encode());
        }
    }

    pub(super) fn process_proof(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        now: Timestamp,
    ) {
        if packet.context == Context::LRPROOF {
            return self.process_link_proof(interface, packet, now);
        }
        let mut handled = false;
        if self.config.transport_enabled
            && let Some(entry) = self.reverse.remove(&packet.destination)
        {
            handled = true;
            if interface == entry.sent_on {
                self.counters.forwarded += 1;
                self.transmit(entry.received_on, packet.encode(), Priority::Control);
            }
        }
        if packet.destination_type == DestinationType::Link
            && self.links.contains_key(&LinkId::from(packet.destination))
        {
            return self.receive_on_link(interface, packet, &packet.hash(), now);
        }
        if let Some(receipt) = self.receipts.get(&packet.destination) {
            let valid = ProofData::parse(&packet.data)
                .and_then(|p| p.verify(&receipt.packet_hash, &receipt.signer))
                .is_ok();
            if valid {
                let packet_hash = receipt.packet_hash;
                self.receipts.remove(&packet.destination);
                return self.emit(RouterEvent::DeliveryProved { packet_hash });
            }
            return self.drop_packet(DropReason::InvalidProof, Some(interface));
        }
        if !handled {
            self.drop_packet(DropReason::NotForUs, Some(interface));
        }
    }

    pub(super) fn process_link_proof(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        now: Timestamp,
    ) {
        let id = LinkId::from(packet.destination);
        if self.config.transport_enabled
            && let Some(entry) = self.link_table.get(&id)
        {
            if packet.hops != entry.remaining_hops || interface != entry.next_hop_interface {
                return self.drop_packet(DropReason::InvalidLinkProof, Some(interface));
            }
            let valid = self.known.get(&entry.destination).is_some_and(|known| {
                LinkProof::parse(&packet.data)
                    .and_then(|p| p.verify(&id, &known.identity))
                    .is_ok()
            });
            if !valid {
                return self.drop_packet(DropReason::InvalidLinkProof, Some(interface));
            }
            let back = entry.received_on;
            let destination = entry.destination;
            self.mark_path_proved(&destination);
            if let Some(entry) = self.link_table.get_mut(&id) {
                entry.validated = true;
                entry.at = now;
            }
            self.counters.forwarded += 1;
            return self.transmit(back, packet.encode(), Priority::Control);
        }
        let Some(local) = self.links.get_mut(&id) else {
            return self.drop_packet(DropReason::NotForUs, Some(interface));
        };
        if local.link.role() != Role::Initiator || local.link.state() != LinkState::Pending {
            return self.drop_packet(DropReason::InvalidLinkProof, Some(interface));
        }
        match local.link.handle_proof(packet, now, &mut *self.rng) {
            Ok(rtt_packet) => {
                local.interface = Some(interface);
                let rtt = local.link.rtt().unwrap_or_default();
                let destination = local.link.destination();
                self.mark_path_proved(&destination);
                self.transmit(interface, rtt_packet.encode(), Priority::Control);
                self.emit(RouterEvent::LinkEstablished {
                    link_id: id,
                    destination,
                    role: Role::Initiator,
                    rtt,
                });
            }
            Err(_) => self.drop_packet(DropReason::InvalidLinkProof, Some(interface)),
        }
    }

    /// Routes a locally originated packet: along the known path (HEADER_2 when more than one
    /// hop away), else on every interface.
    pub(super) fn route_outbound(
        &mut self,
        packet: Packet,
        priority: Priority,
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        self.route_outbound_via(packet, priority, None, now)
    }

    /// Like [`Router::route_outbound`], through the next hop `via` when it is one of the
    /// destination's candidates.
    pub(super) fn route_outbound_via(
        &mut self,
        mut packet: Packet,
        priority: Priority,
        via: Option<IdentityHash>,
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        packet.check_mtu(MTU)?;
        if self.interfaces.is_empty() {
            return Err(RouterError::NoInterfaces);
        }
        let hash = packet.hash();
        self.packet_hashes.insert(hash);
        let routable = packet.packet_type != PacketType::Announce
            && !matches!(
                packet.destination_type,
                DestinationType::Plain | DestinationType::Group
            );
        let route = if routable {
            self.outbound_route(&packet.destination, via)
        } else {
            None
        };
        if let Some(route) = route {
            if let Some(path) = self.paths.get_mut(&packet.destination) {
                path.last_used = now;
            }
            if route.hops > 1 && packet.transport_id.is_none() {
                packet.transport_id = Some(route.next_hop);
                packet.transport_type = TransportType::Transport;
            }
            self.report_forwarded(&packet, None, route.interface);
            self.transmit(route.interface, packet.encode(), priority);
        } else {
            let frame = packet.encode();
            for id in self.interface_ids() {
                self.transmit(id, frame.clone(), priority);
            }
        }
        Ok(hash)
    }

    /// The way a packet of this node's to `destination` leaves: through `via` when it is a
    /// candidate, else along the path.
    pub(super) fn outbound_route(
        &self,
        destination: &DestinationHash,
        via: Option<IdentityHash>,
    ) -> Option<PathCandidate> {
        let path = self.paths.get(destination)?;
        let chosen = via.filter(|hop| *hop != path.next_hop).and_then(|hop| {
            path.alternates
                .iter()
                .find(|a| a.next_hop == hop)
                .map(|a| a.candidate())
        });
        Some(chosen.unwrap_or_else(|| path.candidate()))
    }
}
