//! The market's tasks: one receiver per control message kind, gossip rounds, proved
//! deliveries for relay agreements, the tick for deadlines and heartbeats, beacons, and the
//! event follower that triggers a round when the node's facts change.

use super::{
    BTreeSet, ControlMessage, Duration, EventKind, GossipFrame, IdentityHash, JobPartial,
    JobResult, KEY_LOOKUP, MIN_ROUND_GAP, Market, MarketMessage, NeighbourFact, NodeId, PeerKey,
    PresenceBeacon, ProvedDelivery, SignedJob, TICK, WireError, build_capabilities, collect_facts,
    kinds, mehr_node_destination, mpsc, now_ms, wire,
};

impl Market {
    pub(super) async fn receive(self, mut messages: mpsc::Receiver<ControlMessage>) {
        loop {
            let message = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            self.on_control(message).await;
        }
    }

    pub(super) async fn on_control(&self, message: ControlMessage) {
        let now = now_ms();
        match message.kind {
            kinds::RECORD => match wire::decode_record(&message.body) {
                Ok(MarketMessage::Request(request)) => {
                    // A bounded number of handlers: the receive loop never waits for one
                    // (gossip and beacons share it), so a request past the bound is dropped
                    // and counted; its sender retries (records are sent until proved).
                    match self.shared.request_handlers.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let market = self.clone();
                            tokio::spawn(async move {
                                market.on_request(request).await;
                                drop(permit);
                            });
                        }
                        Err(_) => self.shared.drops.count("market.requests_busy"),
                    }
                }
                Ok(record) => {
                    let out = self.state().on_record(record, now);
                    self.send_all(out);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed market record");
                    self.state().counters.records_refused += 1;
                }
            },
            kinds::GOSSIP => match GossipFrame::decode(&message.body) {
                Ok(frame) => {
                    if !self.state().links.contains_key(&frame.from) {
                        // A neighbour that appeared since the last round.
                        let neighbours = self.neighbour_facts().await;
                        self.state().sync_links(&neighbours, now);
                    }
                    let out = self.state().on_gossip(frame, now);
                    self.send_all(out);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed gossip");
                    let mut state = self.state();
                    if matches!(e, WireError::Record { .. }) && message.body.get(16) == Some(&0x20)
                    {
                        state.counters.adverts_refused += 1;
                    } else {
                        state.counters.gossip_refused += 1;
                    }
                }
            },
            kinds::BEACON => match PresenceBeacon::decode(&message.body) {
                Ok(beacon) => self.state().on_beacon(beacon, message.interface),
                Err(_) => self.state().counters.gossip_refused += 1,
            },
            kinds::JOB | kinds::JOB_STREAMED => match SignedJob::decode(&message.body) {
                Ok(job) => {
                    let streamed = message.kind == kinds::JOB_STREAMED;
                    match self.shared.job_handlers.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let market = self.clone();
                            tokio::spawn(async move {
                                market.on_job(job, streamed).await;
                                drop(permit);
                            });
                        }
                        Err(_) => self.shared.drops.count("market.jobs_busy"),
                    }
                }
                Err(_) => self.state().counters.jobs_refused += 1,
            },
            kinds::JOB_PARTIAL => match JobPartial::decode(&message.body) {
                Ok(partial) => self.state().on_job_partial(partial),
                Err(_) => self.state().counters.records_refused += 1,
            },
            kinds::JOB_RESULT => match JobResult::decode(&message.body) {
                Ok(result) => self.state().on_job_result(result),
                Err(_) => self.state().counters.records_refused += 1,
            },
            _ => {}
        }
    }

    pub(super) async fn gossip_loop(self) {
        let round = Duration::from_millis(self.shared.config.market.gossip_round_ms);
        let mut interval = tokio::time::interval(round);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
                _ = self.shared.round_now.notified() => {}
            }
            self.gossip_round().await;
            tokio::time::sleep(MIN_ROUND_GAP).await;
        }
    }

    /// One gossip round: re-read the node's facts, re-sign the advert if it changed, sync
    /// the neighbour links, and send what each link's budget allows.
    pub(super) async fn gossip_round(&self) {
        let neighbours = self.neighbour_facts().await;
        let (mut facts, modules) = collect_facts(
            &self.shared.transport,
            self.shared.functions.as_ref(),
            self.shared.storage_room.as_ref(),
            &self.shared.config,
        )
        .await;
        let now = now_ms();
        let out = {
            let mut state = self.state();
            state.sync_links(&neighbours, now);
            state.modules = modules;
            if self.shared.config.market.resell {
                let local: BTreeSet<String> = facts
                    .functions
                    .iter()
                    .map(|f| f.function_id.clone())
                    .collect();
                facts.resold = state.resale_functions(&local, now);
            }
            state.resold = facts.resold.iter().map(|f| f.name.clone()).collect();
            let capabilities =
                build_capabilities(&facts, &state.settings, &self.shared.config.market);
            if let Err(e) = state.refresh_advert(capabilities, now) {
                tracing::error!(error = %e, "cannot re-sign the advert");
            }
            state.gossip_poll(now)
        };
        self.send_all(out);
    }

    /// Meters relay agreements by the deliveries their relays carried (see `relay_meter`).
    pub(super) async fn delivery_loop(self, mut deliveries: mpsc::Receiver<ProvedDelivery>) {
        loop {
            let delivery = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let relay = NodeId(delivery.next_hop.0);
            self.state()
                .relay_delivered(relay, delivery.bytes, now_ms());
        }
    }

    pub(super) async fn tick_loop(self) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let out = self.state().tick(now_ms());
            self.send_all(out);
        }
    }

    pub(super) async fn beacon_loop(self) {
        let every = Duration::from_millis(self.shared.config.market.beacon_interval_ms);
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let load = self.load().await;
            let out = self.state().beacons(now_ms(), load);
            self.send_all(out);
        }
    }

    pub(super) async fn event_loop(
        self,
        mut events: tokio::sync::broadcast::Receiver<crate::events::Event>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let relevant = match event {
                Ok(event) => matches!(
                    event.kind,
                    EventKind::FunctionRegistered { .. }
                        | EventKind::FunctionUnregistered { .. }
                        | EventKind::ObjectStored { .. }
                        | EventKind::ObjectDeleted { .. }
                        | EventKind::InterfaceUp { .. }
                        | EventKind::InterfaceDown { .. }
                        | EventKind::PathLearned { hops: 1, .. }
                ),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            if relevant {
                self.shared.round_now.notify_one();
            }
        }
    }

    /// Load 0 (idle) … 255 (saturated) of the functions this node serves.
    pub(super) async fn load(&self) -> u8 {
        self.shared.functions.load()
    }

    /// Mehr neighbours with their keys, link bit rates and relay fees.
    pub(super) async fn neighbour_facts(&self) -> Vec<NeighbourFact> {
        let transport = &self.shared.transport;
        let (Ok(neighbours), Ok(interfaces)) =
            (transport.neighbours().await, transport.interfaces().await)
        else {
            return Vec::new();
        };
        let mut facts = Vec::new();
        for n in neighbours {
            let node_id = NodeId(n.node_id.0);
            let Ok(Some(public)) = transport.identity_of(n.node_id).await else {
                continue;
            };
            let Ok(key) = PeerKey::from_public_key(&public) else {
                continue;
            };
            let bitrate = interfaces
                .iter()
                .find(|i| i.id == n.interface)
                .map_or(crate::config::interfaces::DEFAULT_IP_BITRATE, |i| i.bitrate);
            facts.push(NeighbourFact {
                node_id,
                key,
                interface: n.interface,
                bitrate,
                cost: n.cost.cost_per_byte().max(0.0).ceil() as u64,
            });
        }
        facts
    }

    /// The key of `node`: known already, from its announce, or after asking for its path.
    pub(super) async fn peer_key(&self, node: NodeId) -> Option<PeerKey> {
        if let Some(key) = self.state().known_key(&node) {
            return Some(key);
        }
        let transport = &self.shared.transport;
        let id = IdentityHash(node.0);
        let mut public = transport.identity_of(id).await.ok().flatten();
        if public.is_none() {
            let _ = transport
                .request_path(mehr_node_destination(&id), KEY_LOOKUP)
                .await;
            public = transport.identity_of(id).await.ok().flatten();
        }
        let key = PeerKey::from_public_key(&public?).ok()?;
        (key.node_id() == node).then(|| {
            self.state().remember_key(key.clone());
            key
        })
    }

    // ---- offer -----------------------------------------------------------------------
}
