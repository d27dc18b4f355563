//! What this node offers (its offer settings and relay price) and finding what others
//! offer (discovery through the table and pulls from neighbours).

use super::{
    BTreeSet, DiscoverRequest, Discovery, DiscoveryOutcome, Duration, FoundOffer, Instant, Market,
    MarketError, NextStep, NodeId, OfferSettings, OfferUpdate, OfferView, PULL_LIMIT, Query,
    SETTINGS_KEY, STATE, mpsc, now_ms, state,
};

impl Market {
    /// The node's own offer.
    pub fn offer(&self) -> OfferView {
        let state = self.state();
        let advert = state.own_advert();
        OfferView {
            node_id: self.shared.me,
            seq: advert.seq(),
            ttl_seconds: advert.ttl_seconds(),
            capabilities: advert.capabilities().clone(),
            advert: advert.as_bytes().to_vec(),
            settings: state.settings.clone(),
            resold: state.resold.iter().cloned().collect(),
        }
    }

    /// Changes the offer settings (kept in the store across restarts) and re-signs the
    /// advert at once.
    pub async fn set_offer(&self, update: OfferUpdate) -> Result<OfferView, MarketError> {
        for name in update.function_prices.keys() {
            if name.is_empty() || name.len() > mehr_market::params::MAX_FUNCTION_NAME_LEN {
                return Err(MarketError::InvalidArgument {
                    field: "function_prices",
                    reason: format!("function id `{name}` must be 1 to 64 bytes"),
                });
            }
        }
        {
            let mut state = self.state();
            let mut settings = if update.reset {
                OfferSettings::from_config(&self.shared.config)
            } else {
                state.settings.clone()
            };
            let set = |slot: &mut bool, value: Option<bool>| {
                if let Some(v) = value {
                    *slot = v;
                }
            };
            set(&mut settings.offer_relay, update.offer_relay);
            set(&mut settings.offer_storage, update.offer_storage);
            set(&mut settings.offer_compute, update.offer_compute);
            if let Some(v) = update.relay_price_per_byte_umhr {
                settings.relay_price_per_byte_umhr = v;
            }
            if let Some(v) = update.storage_price_per_byte_day_umhr {
                settings.storage_price_per_byte_day_umhr = v;
            }
            if let Some(v) = update.wasm_price_per_million_cycles_umhr {
                settings.wasm_price_per_million_cycles_umhr = v;
            }
            for name in &update.remove_function_prices {
                settings.function_prices.remove(name);
            }
            settings.function_prices.extend(update.function_prices);
            if let Some(a) = update.availability {
                settings.availability = a;
            }
            if update.reset {
                let mut batch = self.shared.store.batch();
                batch.delete(STATE, &SETTINGS_KEY.to_string());
                self.shared.store.commit(batch)?;
            }
            if !update.reset || settings != OfferSettings::from_config(&self.shared.config) {
                state::store_postcard(&self.shared.store, SETTINGS_KEY, &settings)?;
            }
            self.shared.relay_price.send_if_modified(|price| {
                std::mem::replace(price, settings.relay_price_per_byte_umhr)
                    != settings.relay_price_per_byte_umhr
            });
            self.shared.storage_terms.send_if_modified(|terms| {
                std::mem::replace(terms, settings.storage_terms()) != settings.storage_terms()
            });
            state.settings = settings;
        }
        self.gossip_round().await;
        Ok(self.offer())
    }

    /// The relay price of the offer (μMHR per byte) as it changes: what the node's announces
    /// carry and its ledger charges (see `crate::relay_price`).
    pub fn relay_price(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.relay_price.subscribe()
    }

    // ---- discovery -------------------------------------------------------------------

    /// Finds providers: what the table holds first, then pulls ring by ring (ring 2, the
    /// trust graph, has no peers here yet and is skipped) until `want` are found, the rings
    /// are exhausted, or the time is up.
    pub async fn discover(&self, request: DiscoverRequest) -> Result<Discovery, MarketError> {
        if request.max_ring > mehr_market::params::MAX_RING {
            return Err(MarketError::InvalidArgument {
                field: "max_ring",
                reason: format!("is {}, rings are 0 to 3", request.max_ring),
            });
        }
        let started = Instant::now();
        let deadline = started + request.timeout;
        let pull_timeout = Duration::from_millis(self.shared.config.market.pull_timeout_ms);
        let mut query = Query {
            filter: request.filter,
            want: request.want.max(1),
            searched_ring: 0,
            max_ring: request.max_ring,
        };
        let (mut pulls_sent, mut answers) = (0u32, 0u32);
        loop {
            let resolution = self.state().query(&query, now_ms());
            let outcome = match &resolution.next {
                NextStep::Satisfied => Some(DiscoveryOutcome::Satisfied),
                NextStep::Exhausted => Some(DiscoveryOutcome::Exhausted),
                NextStep::Widen(_) if Instant::now() >= deadline => {
                    Some(DiscoveryOutcome::TimedOut)
                }
                NextStep::Widen(_) => None,
            };
            if let Some(outcome) = outcome {
                let state = self.state();
                let now = now_ms();
                return Ok(Discovery {
                    offers: resolution
                        .offers
                        .into_iter()
                        .map(|offer| FoundOffer {
                            capabilities: state
                                .table
                                .advert(&offer.node_id, now)
                                .map(|a| a.capabilities().clone()),
                            offer,
                        })
                        .collect(),
                    outcome,
                    rings_searched: query.searched_ring,
                    pulls_sent,
                    answers,
                    elapsed: started.elapsed(),
                });
            }
            let NextStep::Widen(widen) = resolution.next else {
                continue;
            };
            if widen.ring == 2 {
                query.searched_ring = 2;
                continue;
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (nonce, asked, out) =
                self.state()
                    .start_pull(&widen, request.filter, PULL_LIMIT, tx, now_ms());
            pulls_sent += asked.len() as u32;
            self.send_all(out);
            let mut waiting: BTreeSet<NodeId> = asked.into_iter().collect();
            let flood = widen.ring >= mehr_market::params::MAX_RING;
            let ring_deadline = deadline.min(Instant::now() + pull_timeout);
            let probe = Query {
                searched_ring: widen.ring,
                ..query
            };
            while !waiting.is_empty() {
                let from = tokio::select! {
                    from = rx.recv() => from,
                    _ = tokio::time::sleep_until(ring_deadline.into()) => None,
                };
                let Some(from) = from else {
                    break;
                };
                answers += 1;
                if !flood {
                    waiting.remove(&from);
                }
                if self.state().query(&probe, now_ms()).next == NextStep::Satisfied {
                    break;
                }
            }
            self.state().end_pull(nonce);
            query.searched_ring = widen.ring;
        }
    }

    // ---- agreements ------------------------------------------------------------------
}
