//! Announces: validating them into the path table, rebroadcasting them (delay, retries,
//! passive acknowledgement, interface modes and caps), and path requests and responses.

use crate::announce::Announce;
use crate::clock::Timestamp;
use crate::hashes::{DestinationHash, IdentityHash};
use crate::packet::{Context, MAX_HOPS, Packet, TransportType};
use crate::path_request::PathRequest;
use std::time::Duration;

use super::{
    AlternatePath, AnnounceAdmission, Discovery, DropReason, InterfaceId, InterfaceMode,
    KnownDestination, LOCAL_REBROADCASTS_MAX, MAX_ALTERNATES, MAX_REBROADCASTS,
    PATH_DISCOVERY_TIMEOUT, PATH_REQUEST_GRACE, PATH_REQUEST_ROAMING_GRACE, PathEntry,
    PendingAnnounce, Priority, REBROADCAST_RETRY, REBROADCAST_WINDOW_MS, Router, RouterError,
    RouterEvent,
};

impl Router {
    pub(super) fn process_announce(
        &mut self,
        interface: InterfaceId,
        packet: Packet,
        announce: Announce,
        now: Timestamp,
    ) {
        let destination = announce.destination;
        if let Some(known) = self.known.get(&destination)
            && known.identity != announce.identity
        {
            return self.drop_packet(DropReason::AnnounceKeyMismatch, Some(interface));
        }
        if self.destinations.contains_key(&destination) {
            return; // our own announce, echoed back
        }
        self.note_local_rebroadcast(&packet, now);

        // A full table makes room only among destinations without a proved path (and
        // without a link of ours): Sybil announces cannot push out the ones with a history.
        let paths = &self.paths;
        let links = &self.links;
        let admitted = self.known.insert_favouring(
            destination,
            KnownDestination {
                identity: announce.identity.clone(),
                app_data: announce.app_data.clone(),
                ratchet: announce.ratchet,
                random_hash: announce.random_hash,
                heard_at: now,
            },
            |destination, _| {
                paths.get(destination).is_some_and(|p| p.proved)
                    || links.values().any(|l| l.link.destination() == *destination)
            },
        );
        if admitted.is_err() {
            return self.drop_packet(DropReason::PathTableFull, Some(interface));
        }

        let blob = announce.random_hash;
        let emitted = announce.emitted_at();
        let should_add = match self.paths.get(&destination) {
            None => true,
            Some(path) => {
                let fresh = !path.random_blobs.contains(&blob);
                if packet.hops <= path.hops {
                    fresh && emitted > path.timebase()
                } else if now >= path.expires || emitted > path.timebase() {
                    fresh
                } else {
                    false
                }
            }
        };
        if !should_add {
            // Not Reticulum's path, but still a way there: kept for senders that choose a
            // path by cost rather than by hops (see [`Router::path_candidates`]).
            self.note_alternate(destination, &packet, interface, emitted, blob, now);
            return;
        }

        let path_response = packet.context == Context::PATH_RESPONSE;
        if self.config.transport_enabled && !path_response {
            let delay =
                Duration::from_millis(u64::from(self.rng.next_u32() % REBROADCAST_WINDOW_MS));
            self.pending_announces.insert(
                destination,
                PendingAnnounce {
                    retransmit_at: now.saturating_add(delay),
                    retries: 0,
                    hops: packet.hops,
                    packet: packet.clone(),
                    local_rebroadcasts: 0,
                    path_response: false,
                    attached: None,
                },
            );
        }
        if let Some(discovery) = self.discoveries.remove(&destination) {
            let response = self.transported_announce(&packet, packet.hops, true);
            let frame = response.encode();
            for id in discovery.requesting {
                self.transmit(id, frame.clone(), Priority::Announce);
            }
        }

        let expiry = self.path_expiry_on(interface);
        let next_hop = packet.transport_id.unwrap_or(IdentityHash(destination.0));
        let (mut random_blobs, alternates, proved) = match self.paths.remove(&destination) {
            Some(old) => {
                let alternates = old.alternates_after_replacement(next_hop, emitted, now);
                (old.random_blobs, alternates, old.proved)
            }
            None => Default::default(),
        };
        random_blobs.push_back(blob);
        while random_blobs.len() > self.config.max_random_blobs {
            random_blobs.pop_front();
        }
        let hops = packet.hops;
        let admitted = self.paths.insert_favouring(
            destination,
            PathEntry {
                learned_at: now,
                last_used: now,
                next_hop,
                hops,
                expires: now.saturating_add(expiry),
                random_blobs,
                interface,
                announce: packet,
                alternates,
                proved,
            },
            |_, path| path.proved,
        );
        if admitted.is_err() {
            self.pending_announces.remove(&destination);
            return self.drop_packet(DropReason::PathTableFull, Some(interface));
        }
        self.emit(RouterEvent::PathLearned {
            destination,
            hops,
            interface,
        });
        self.emit(RouterEvent::AnnounceReceived {
            announce: Box::new(announce),
            hops,
            interface,
            path_response,
        });
    }

    /// Remembers a valid announce of `destination` that did not become its path: the same
    /// announce heard through another neighbour, or one with more hops. Kept per next hop
    /// (the latest), at most [`MAX_ALTERNATES`] per destination, fewest hops first; older
    /// emissions than the path's own are ignored, as they may describe a path since broken.
    fn note_alternate(
        &mut self,
        destination: DestinationHash,
        packet: &Packet,
        interface: InterfaceId,
        emitted: u64,
        random_blob: [u8; crate::announce::RANDOM_HASH_LEN],
        now: Timestamp,
    ) {
        let expires = now.saturating_add(self.path_expiry_on(interface));
        let Some(path) = self.paths.get_mut(&destination) else {
            return;
        };
        let next_hop = packet.transport_id.unwrap_or(IdentityHash(destination.0));
        if next_hop == path.next_hop || emitted < path.timebase() {
            return;
        }
        // Our own rebroadcast comes back two hops longer from a neighbour whose path runs
        // through us: sending "through" it would loop back here and be dropped as a
        // duplicate.
        let echo = self.config.transport_enabled
            && path.random_blobs.contains(&random_blob)
            && packet.hops >= path.hops.saturating_add(2);
        if echo {
            return;
        }
        path.alternates.retain(|a| a.next_hop != next_hop);
        path.alternates.push(AlternatePath {
            next_hop,
            interface,
            hops: packet.hops,
            expires,
            random_blob,
        });
        path.alternates.sort_by_key(|a| a.hops);
        path.alternates.truncate(MAX_ALTERNATES);
    }

    /// How long a path learned on `interface` lives, by the interface's mode.
    pub(super) fn path_expiry_on(&self, interface: InterfaceId) -> Duration {
        let mode = self
            .interfaces
            .get(&interface)
            .map(|i| i.config.mode)
            .unwrap_or_default();
        match mode {
            InterfaceMode::AccessPoint => self.config.access_point_path_expiry,
            InterfaceMode::Roaming => self.config.roaming_path_expiry,
            _ => self.config.path_expiry,
        }
    }

    /// Hearing neighbours rebroadcast an announce we are about to repeat makes ours
    /// unnecessary (Reticulum's passive acknowledgement).
    pub(super) fn note_local_rebroadcast(&mut self, packet: &Packet, now: Timestamp) {
        if !self.config.transport_enabled || packet.transport_id.is_none() {
            return;
        }
        let Some(entry) = self.pending_announces.get_mut(&packet.destination) else {
            return;
        };
        let heard_hops = packet.hops.saturating_sub(1);
        let mut done = false;
        if heard_hops == entry.hops {
            entry.local_rebroadcasts = entry.local_rebroadcasts.saturating_add(1);
            done = entry.retries > 0 && entry.local_rebroadcasts >= LOCAL_REBROADCASTS_MAX;
        }
        if heard_hops == entry.hops.saturating_add(1)
            && entry.retries > 0
            && now < entry.retransmit_at
        {
            done = true;
        }
        if done {
            self.pending_announces.remove(&packet.destination);
        }
    }

    pub(super) fn handle_path_request(
        &mut self,
        interface: InterfaceId,
        packet: &Packet,
        now: Timestamp,
    ) {
        let request = match PathRequest::parse(&packet.data) {
            Ok(r) => r,
            Err(_) => return self.drop_packet(DropReason::MalformedPathRequest, Some(interface)),
        };
        if !self.path_request_tags.insert(request.unique_key()) {
            return self.drop_packet(DropReason::DuplicatePathRequest, Some(interface));
        }
        let destination = request.destination;
        if self.destinations.contains_key(&destination) {
            if let Ok(response) = self.local_announce(&destination, true, now) {
                self.packet_hashes.insert(response.hash());
                self.transmit(interface, response.encode(), Priority::Announce);
            }
            return;
        }
        if !self.config.transport_enabled {
            return;
        }
        let mode = self
            .interfaces
            .get(&interface)
            .map(|i| i.config.mode)
            .unwrap_or_default();
        if let Some(path) = self.paths.get(&destination) {
            if request.requesting_transport == Some(path.next_hop)
                || (mode == InterfaceMode::Roaming && path.interface == interface)
            {
                return;
            }
            let mut delay = PATH_REQUEST_GRACE;
            if mode == InterfaceMode::Roaming {
                delay += PATH_REQUEST_ROAMING_GRACE;
            }
            let response = PendingAnnounce {
                retransmit_at: now.saturating_add(delay),
                retries: MAX_REBROADCASTS - 1,
                hops: path.hops,
                packet: path.announce.clone(),
                local_rebroadcasts: 0,
                path_response: true,
                attached: Some(interface),
            };
            if let Some(existing) = self.pending_announces.remove(&destination) {
                self.held_announces.insert(destination, existing);
            }
            self.pending_announces.insert(destination, response);
            return;
        }
        // Reticulum searches for unknown paths only for requests from gateway-like
        // interfaces. A relay also searches for its full-mode neighbours within the lost-path
        // bucket: after it restarted (or a neighbour dropped its paths with the connection)
        // nothing else would find a destination whose announce is hours away.
        if !mode.discovers_paths() && !self.lost_path_requests.take(now) {
            return;
        }
        if let Some(existing) = self.discoveries.get_mut(&destination) {
            if !existing.requesting.contains(&interface) {
                existing.requesting.push(interface);
            }
            return;
        }
        self.discoveries.insert(
            destination,
            Discovery {
                requesting: vec![interface],
                deadline: now.saturating_add(PATH_DISCOVERY_TIMEOUT),
            },
        );
        let forwarded = PathRequest {
            destination,
            requesting_transport: Some(self.transport_id),
            tag: request.tag,
        };
        let frame = forwarded.to_packet().encode();
        for id in self.interface_ids() {
            if id != interface {
                self.transmit(id, frame.clone(), Priority::Control);
            }
        }
    }

    /// Asks the network again for the path to `destination`, which traffic in transport
    /// through this node needed and this node does not have: its table was emptied by a
    /// restart (or the path expired) while its neighbours still route through it. Without
    /// this their packets are dropped here until the destination's next announce, which may
    /// be hours away; with it a neighbour that holds the path answers from its table (as for
    /// any path request) and the next packet goes through. One request per destination while
    /// its discovery is open, within a token bucket.
    pub(super) fn rediscover(&mut self, destination: DestinationHash, now: Timestamp) {
        if !self.config.transport_enabled
            || self.discoveries.contains_key(&destination)
            || !self.lost_path_requests.take(now)
        {
            return;
        }
        self.discoveries.insert(
            destination,
            Discovery {
                requesting: Vec::new(),
                deadline: now.saturating_add(PATH_DISCOVERY_TIMEOUT),
            },
        );
        let request = PathRequest::new(destination, Some(self.transport_id), &mut *self.rng);
        self.path_request_tags.insert(request.unique_key());
        let frame = request.to_packet().encode();
        for id in self.interface_ids() {
            self.transmit(id, frame.clone(), Priority::Control);
        }
        self.counters.lost_path_requests += 1;
    }

    pub(super) fn run_pending_announces(&mut self, now: Timestamp) {
        for destination in self.pending_announces.keys() {
            let Some(entry) = self.pending_announces.get_mut(&destination) else {
                continue;
            };
            if entry.retries >= MAX_REBROADCASTS {
                self.pending_announces.remove(&destination);
                continue;
            }
            if now < entry.retransmit_at {
                continue;
            }
            entry.retransmit_at = now.saturating_add(REBROADCAST_RETRY);
            entry.retries += 1;
            let entry = entry.clone();
            if entry.hops < MAX_HOPS {
                let packet =
                    self.transported_announce(&entry.packet, entry.hops, entry.path_response);
                self.counters.announces_rebroadcast += 1;
                self.broadcast_announce(&packet, entry.attached, false, now);
            }
            if let Some(held) = self.held_announces.remove(&destination) {
                self.pending_announces.insert(destination, held);
            }
        }
    }

    pub(super) fn release_queued_announces(&mut self, now: Timestamp) {
        let max_age = self.config.queued_announce_lifetime;
        let mut released = Vec::new();
        for (id, state) in self.interfaces.iter_mut() {
            if let Some(frame) = state.release_announce(now, max_age) {
                released.push((*id, frame));
            }
        }
        for (id, frame) in released {
            self.transmit(id, frame, Priority::Announce);
        }
    }

    pub(super) fn local_announce(
        &mut self,
        destination: &DestinationHash,
        path_response: bool,
        now: Timestamp,
    ) -> Result<Packet, RouterError> {
        let local = self
            .destinations
            .get(destination)
            .ok_or(RouterError::NotLocal(*destination))?;
        let unix = self
            .clock
            .unix_secs
            .saturating_add(now.since(self.clock.at).as_secs());
        // Receivers take an announce as news only if it was emitted in a later second than
        // the last one they took (the emission time is in whole seconds), so a second
        // announce within the same second — a price change right after a greeting — would
        // be ignored until the next periodic one. Each announce is dated at least a second
        // after the one before.
        let unix = match self.last_emitted.get(destination) {
            Some(&last) if last >= unix => last + 1,
            _ => unix,
        };
        self.last_emitted.insert(*destination, unix);
        let announce = Announce::create_random(
            &local.identity,
            &local.name,
            &local.app_data,
            None,
            unix,
            &mut *self.rng,
        );
        Ok(announce.to_packet(path_response))
    }

    /// An announce as this node rebroadcasts it: HEADER_2 with our transport id.
    pub(super) fn transported_announce(
        &self,
        received: &Packet,
        hops: u8,
        path_response: bool,
    ) -> Packet {
        let mut packet = received.clone();
        packet.hops = hops;
        packet.transport_id = Some(self.transport_id);
        packet.transport_type = TransportType::Transport;
        packet.context = if path_response {
            Context::PATH_RESPONSE
        } else {
            Context::NONE
        };
        packet
    }

    /// Sends an announce on `attached` (no cap, as Reticulum does for targeted announces),
    /// or on every interface whose mode allows it, through the announce cap for rebroadcasts.
    pub(super) fn broadcast_announce(
        &mut self,
        packet: &Packet,
        attached: Option<InterfaceId>,
        local: bool,
        now: Timestamp,
    ) {
        let frame = packet.encode();
        if let Some(id) = attached {
            return self.transmit(id, frame, Priority::Announce);
        }
        let from = self.paths.get(&packet.destination).map(|p| p.interface);
        let from_mode = from
            .and_then(|id| self.interfaces.get(&id))
            .map(|i| i.config.mode);
        if !local && from_mode.is_none() {
            return;
        }
        let emitted =
            Announce::parse_unverified(packet.destination, packet.context_flag, &packet.data)
                .map(|a| a.emitted_at())
                .unwrap_or(0);
        let mut send = Vec::new();
        let mut full = 0;
        for (id, state) in self.interfaces.iter_mut() {
            if !announce_allowed(state.config.mode, from_mode, local)
                || (!local && state.config.point_to_point && from == Some(*id))
            {
                continue;
            }
            if packet.hops == 0 {
                send.push(*id);
                continue;
            }
            match state.admit_announce(packet.destination, packet.hops, emitted, &frame, now) {
                AnnounceAdmission::SendNow => send.push(*id),
                AnnounceAdmission::Queued => {}
                AnnounceAdmission::QueueFull => full += 1,
            }
        }
        for _ in 0..full {
            self.drop_packet(DropReason::AnnounceQueueFull, None);
        }
        for id in send {
            self.transmit(id, frame.clone(), Priority::Announce);
        }
    }
}

/// Whether an announce may go out on an interface of mode `to`, given the mode of the
/// interface its path came from (`None` for unknown) and whether it is our own.
fn announce_allowed(to: InterfaceMode, from: Option<InterfaceMode>, local: bool) -> bool {
    match to {
        InterfaceMode::AccessPoint => false,
        InterfaceMode::Roaming => {
            local
                || !matches!(
                    from,
                    Some(InterfaceMode::Roaming | InterfaceMode::Boundary) | None
                )
        }
        InterfaceMode::Boundary => local || !matches!(from, Some(InterfaceMode::Roaming) | None),
        _ => true,
    }
}
