//! The ledger part's state machine, synchronous and free of I/O except the store: every
//! input (a control message, a forwarding report, a timer tick, an operator request) updates
//! the state and queues writes, outgoing messages and notices; [`LedgerCore::flush`] then
//! commits the writes in one synced batch and only then hands out the messages. A signature
//! is therefore never sent before the state it commits to is durable, and many updates share
//! one disk sync (group commit).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ed25519_dalek::SigningKey;
use mehr_ledger::{
    ChannelId, NodeId, Party,
    burn::burn_of,
    channel::{
        Channel, ChannelError, ChannelKeys, ChannelMessage, ChannelPhase, OpenProposal,
        UnilateralReason,
    },
    ledger::{Ledger, SettlementKind, SettlementRecord, Snapshot},
    lottery::{
        LotteryError, PacketRateEstimator, RedeemedTickets, RelayTicket, VrfKeyCertificate,
        VrfProver, VrfVerifier,
    },
    trust::TrustConfig,
};
use mehr_transport::identity::{Identity, PrivateIdentity};
use rand::{SeedableRng, rngs::StdRng};

use super::{
    records::{
        ADOPTED_ACTIVATION, ADOPTED_SNAPSHOT, CHANNELS, EPOCHS, OPENS, RECORDS, REDEEMED,
        RedeemedKey, StoredChannel, StoredOpen, StoredRecord, TRUST, node_id,
    },
    relay::SentLog,
    requests::{REQUESTS, RequestBook, RequestKey, RequestKind, StoredRequest, fingerprint},
    wire::{GossipedRecord, LedgerMessage},
};
use crate::store::{Store, StoreError};

/// The settings the core works with (from `[ledger]` and `[transport]`).
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// The network's disclosed genesis allocation.
    pub(crate) genesis: BTreeMap<NodeId, u64>,
    /// This node's relay price, μ per byte (the transport's advertised fee).
    pub(crate) price_per_byte: f64,
    /// Whether this node charges for relaying (participation L1 and up).
    pub(crate) charge_relays: bool,
    /// Deposit offered, and asked of the peer, when a channel is opened on demand, μ.
    pub(crate) channel_deposit: u64,
    /// Largest deposit this node commits when a peer's open asks it for one, μ.
    pub(crate) max_requested_deposit: u64,
    /// Length of one gossip round, ms (settlement timeouts and dispute windows count rounds).
    pub(crate) round_ms: u64,
    /// How often outstanding proposals are sent again, ms.
    pub(crate) retry_ms: u64,
    /// How long an unanswered open is kept, ms.
    pub(crate) open_timeout_ms: u64,
    /// How often a relay reconsiders its win probability (a lottery period), ms.
    pub(crate) lottery_period_ms: u64,
    /// How often ledger digests go to the neighbours, ms.
    pub(crate) gossip_interval_ms: u64,
    /// How often an open channel whose state moved is checkpointed into the ledger, ms.
    pub(crate) checkpoint_interval_ms: u64,
    /// Length of a ledger epoch, ms: the next epoch is proposed this long after the last one
    /// was adopted (see [`super::epochs`]).
    pub(crate) epoch_ms: u64,
}

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A channel needs the peer's public key, which only its `mehr.node` announce tells; the
    /// peer may be any number of hops away.
    #[error("no announce heard from node {0}, so its key is unknown")]
    UnknownPeer(NodeId),
    /// The node itself.
    #[error("a node cannot open a channel with itself")]
    SelfChannel,
    /// A channel with the peer is open or being opened.
    #[error("channel {channel} with {peer} is already {state}")]
    ChannelExists {
        /// The peer.
        peer: NodeId,
        /// The channel.
        channel: ChannelId,
        /// "open" or "being opened".
        state: &'static str,
    },
    /// No open channel with the peer.
    #[error("no open channel with {0}")]
    NoChannel(NodeId),
    /// No channel with this id.
    #[error("no channel {0}")]
    UnknownChannel(ChannelId),
    /// A deposit above the free balance.
    #[error("deposit of {requested} μMHR is above this node's free balance of {available} μMHR")]
    InsufficientFunds {
        /// Free balance.
        available: i128,
        /// Deposit asked for.
        requested: u64,
    },
    /// A payment above what the channel holds for this node.
    #[error(
        "payment of {requested} μMHR is above this node's balance in channel {channel} ({available} μMHR not yet committed)"
    )]
    Overdraft {
        /// The channel.
        channel: ChannelId,
        /// Balance not committed to earlier payments.
        available: u64,
        /// Payment asked for.
        requested: u64,
    },
    /// A zero amount.
    #[error("{0} must be above zero")]
    ZeroAmount(&'static str),
    /// The peer refused the open.
    #[error("{peer} refused channel {channel}: {reason}")]
    OpenRefused {
        /// The peer.
        peer: NodeId,
        /// The channel.
        channel: ChannelId,
        /// Why, in words.
        reason: &'static str,
    },
    /// The channel state machine refused the operation.
    #[error("channel {channel}: {source}")]
    Channel {
        /// The channel.
        channel: ChannelId,
        /// The crate's reason.
        source: ChannelError,
    },
    /// The ticket or relay key is invalid.
    #[error("{0}")]
    Ticket(String),
    /// The peer did not answer in time.
    #[error("{0} did not finish in time (is the peer reachable?)")]
    Timeout(&'static str),
    /// A store failure; the ledger part stops so that nothing unsaved is ever sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be restored.
    #[error("stored channel {channel} cannot be restored: {reason}")]
    Restore {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: String,
    },
    /// The stored epoch snapshot could not be restored.
    #[error("the stored epoch snapshot cannot be restored: {0}")]
    RestoreEpoch(String),
    /// The ledger part stopped (shutdown, or an earlier store failure).
    #[error("the ledger is not running")]
    Stopped,
    /// A request id already named a request with other arguments.
    #[error(
        "request_id was used before for a {what} with other arguments (another peer or amount); use a new id for a new request"
    )]
    RequestReused {
        /// "payment" or "channel open".
        what: &'static str,
    },
}

/// The time inputs of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Wall-clock milliseconds since the Unix epoch.
    pub(crate) unix_ms: u64,
}

/// A message to send once the state behind it is durable.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The node to send it to.
    pub(crate) to: NodeId,
    /// The message.
    pub(crate) message: LedgerMessage,
}

/// Something that happened that waiting requests and event subscribers care about.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// A channel became open (both signed seq 0).
    Opened {
        /// The channel.
        channel: ChannelId,
        /// The other party.
        peer: NodeId,
    },
    /// A proposed open was refused, timed out, or lost to the peer's concurrent proposal.
    OpenFailed {
        /// The channel that was proposed.
        channel: ChannelId,
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: &'static str,
        /// The peer's channel that won, for a concurrent open.
        instead: Option<ChannelId>,
    },
    /// A new state was co-signed.
    CoSigned {
        /// The channel.
        channel: ChannelId,
        /// Its seq.
        seq: u64,
    },
    /// A settlement record of this node's channel was completed.
    Settled {
        /// The channel.
        channel: ChannelId,
        /// The record.
        record: SettlementRecord,
    },
    /// A unilateral settlement started a dispute window.
    DisputeStarted {
        /// The channel.
        channel: ChannelId,
        /// Round at which it resolves.
        closes_at_round: u64,
    },
    /// This node paid a relay's winning ticket.
    TicketRedeemed {
        /// The channel.
        channel: ChannelId,
        /// The relay.
        relay: NodeId,
        /// The ticket.
        ticket: RelayTicket,
        /// The relay's VRF key certificate the ticket was checked under.
        certificate: VrfKeyCertificate,
        /// Gross payout, μ.
        payout: u64,
    },
    /// This node won a relay ticket and sent it to the payer.
    TicketWon {
        /// The channel.
        channel: ChannelId,
        /// The payer.
        payer: NodeId,
        /// Gross payout it is worth, μ.
        payout: u64,
    },
}

/// What [`LedgerCore::flush`] hands back.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// Messages to send now.
    pub(crate) outgoing: Vec<Outgoing>,
    /// What happened.
    pub(crate) notices: Vec<Notice>,
}

/// Rejected inbound messages, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RejectCounters {
    /// Undecodable.
    pub(crate) malformed: u64,
    /// Bad signatures, wrong sender, states that break the channel's rules.
    pub(crate) forged: u64,
    /// Stale or replayed states and acknowledgements.
    pub(crate) stale: u64,
    /// About channels or opens this node does not know.
    pub(crate) unknown: u64,
    /// Well-formed but refused by policy (overdraft, an unknown packet, a price above the
    /// relay's advertised one).
    pub(crate) refused: u64,
}

impl RejectCounters {
    /// All rejections.
    pub(crate) fn total(&self) -> u64 {
        self.malformed + self.forged + self.stale + self.unknown + self.refused
    }
}

/// Relay and payment counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TrafficCounters {
    /// Packets relayed for a trusted neighbour (free).
    pub(crate) relayed_free: u64,
    /// Packets relayed for a paying neighbour (a lottery draw each).
    pub(crate) relayed_paid: u64,
    /// Packets relayed for an untrusted neighbour with no open channel yet.
    pub(crate) relayed_unpaid: u64,
    /// Packets relayed whose upstream neighbour is unknown (shared media).
    pub(crate) relayed_unattributed: u64,
    /// Tickets won and sent to payers.
    pub(crate) tickets_won: u64,
    /// Tickets of other relays this node paid.
    pub(crate) tickets_paid: u64,
    /// Tickets declined because a relay agreement with the relay pays for the packet.
    pub(crate) tickets_declined: u64,
}

/// A proposal this node sent and that is not answered yet.
#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    /// The message, to send again.
    pub(super) message: ChannelMessage,
    /// The payment it carries (0 for terms and settlements), μ gross.
    pub(super) payment: u64,
    /// When it was last sent, Unix ms (0: not yet).
    pub(super) sent_ms: u64,
}

/// A channel this node is a party of.
pub(super) struct ChannelEntry {
    pub(super) channel: Channel,
    pub(super) peer: Identity,
    pub(super) peer_id: NodeId,
    /// The peer's VRF key, once a certificate signed by its identity was checked (learnt
    /// from its first ticket; the key never changes for an identity).
    pub(super) verifier: Option<VrfVerifier>,
    pub(super) redeemed: RedeemedTickets,
    pub(super) owed: u64,
    pub(super) redeemed_gross: u64,
    pub(super) tickets_redeemed: u64,
    pub(super) tickets_won: u64,
    pub(super) outstanding: Option<Outstanding>,
    /// A settlement the operator (or the checkpoint timer) asked for, proposed when the
    /// channel has no proposal outstanding.
    pub(super) settle_wanted: Option<SettlementKind>,
    /// When the win probability was last reconsidered, Unix ms.
    pub(super) terms_checked_ms: u64,
    /// Packets relayed for the peer since the last period change.
    pub(super) relayed_since_terms: u64,
    /// Seq of the last state checkpointed into the ledger by this node.
    pub(super) checkpointed_seq: Option<u64>,
    pub(super) checkpoint_checked_ms: u64,
}

impl ChannelEntry {
    pub(super) fn id(&self) -> ChannelId {
        self.channel.id()
    }

    /// This node's balance in the latest co-signed state.
    pub(super) fn my_balance(&self) -> u64 {
        self.channel.latest().body.balance(self.channel.me())
    }

    /// This node's balance not yet committed to payments (proposed or owed).
    pub(super) fn available(&self) -> u64 {
        let in_flight = self.outstanding.as_ref().map_or(0, |o| o.payment);
        self.my_balance()
            .saturating_sub(in_flight)
            .saturating_sub(self.owed)
    }

    pub(super) fn stored(&self) -> StoredChannel {
        StoredChannel {
            peer: self.peer.public_key(),
            owed: self.owed,
            redeemed_gross: self.redeemed_gross,
            tickets_redeemed: self.tickets_redeemed,
            tickets_won: self.tickets_won,
            channel: self.channel.to_persisted(),
        }
    }
}

/// An open this node proposed.
pub(super) struct PendingOpen {
    pub(super) peer: Identity,
    pub(super) proposal: OpenProposal,
    pub(super) proposed_ms: u64,
    pub(super) sent_ms: u64,
}

/// A Mehr neighbour as the ledger needs it.
#[derive(Debug, Clone)]
pub(crate) struct NeighbourInfo {
    /// Its public identity.
    pub(crate) identity: Identity,
    /// Highest price per byte its announce allows for, μ (covers the announce's rounding).
    pub(crate) max_price_per_byte: f64,
}

/// Writes waiting for the next flush.
#[derive(Default)]
pub(super) struct PendingWrites {
    pub(super) channels: BTreeSet<ChannelId>,
    pub(super) opens_put: BTreeMap<ChannelId, StoredOpen>,
    pub(super) opens_delete: BTreeSet<ChannelId>,
    pub(super) records_put: BTreeMap<[u8; 32], StoredRecord>,
    pub(super) records_delete: BTreeSet<[u8; 32]>,
    pub(super) redeemed: Vec<RedeemedKey>,
    pub(super) trust: BTreeMap<NodeId, Option<u64>>,
    /// An adopted epoch: its snapshot and its activation, encoded.
    pub(super) epoch: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) requests_put: BTreeMap<[u8; 32], StoredRequest>,
    pub(super) requests_delete: BTreeSet<[u8; 32]>,
}

/// The ledger part's state.
pub(crate) struct LedgerCore {
    pub(super) me: NodeId,
    pub(super) identity: Identity,
    pub(super) key: SigningKey,
    pub(super) prover: VrfProver,
    /// This node's VRF public key signed by its identity, sent with every ticket.
    pub(super) vrf_certificate: VrfKeyCertificate,
    /// Channel nonces.
    pub(super) rng: StdRng,
    pub(super) store: Store,
    pub(super) config: CoreConfig,
    pub(super) trust: TrustConfig,
    pub(super) channels: BTreeMap<ChannelId, ChannelEntry>,
    /// The open channel used with each peer.
    pub(super) by_peer: HashMap<NodeId, ChannelId>,
    pub(super) opens: BTreeMap<ChannelId, PendingOpen>,
    /// Opens that expired unanswered, by when they expired (Unix ms): an acceptance that
    /// arrives late still opens the channel (the peer holds it already), instead of leaving
    /// the pair with a channel only one side knows. In memory, at most [`MAX_EXPIRED_OPENS`],
    /// for [`EXPIRED_OPEN_MEMORY`] open timeouts.
    pub(super) expired_opens: BTreeMap<ChannelId, (PendingOpen, u64)>,
    pub(super) ledger: Ledger,
    /// Public identities of every party of a held record.
    pub(super) parties: HashMap<NodeId, Identity>,
    pub(super) neighbours: HashMap<NodeId, NeighbourInfo>,
    pub(super) rates: HashMap<NodeId, PacketRateEstimator>,
    pub(super) sent: SentLog,
    /// Relays paid under a relay agreement for this node's own packets (from the market).
    pub(super) relay_cover: BTreeSet<NodeId>,
    /// Upstream nodes that relayed through this node unpaid before the ledger's copy of the
    /// neighbour list knew them: a channel is asked of each once the list does.
    pub(super) awaiting_neighbour: BTreeSet<NodeId>,
    /// Earliest time an on-demand open to a peer may be tried again.
    pub(super) open_backoff: HashMap<NodeId, u64>,
    /// Records to gossip at the next flush.
    pub(super) gossip: Vec<GossipedRecord>,
    /// When each neighbour last got a page of the record set from this node.
    pub(super) pushed_ms: HashMap<NodeId, u64>,
    /// Where the next page of the record set for each neighbour starts.
    pub(super) reconcile_cursor: HashMap<NodeId, mehr_ledger::ledger::ChannelKey>,
    /// Admission of gossiped records.
    pub(super) admission: super::admission::RecordAdmission,
    /// Drops by reason, shared with the node's other parts (GetStats).
    pub(crate) drops: crate::seams::drops::PartDrops,
    pub(super) digest_sent_ms: u64,
    pub(super) records_digest: Option<[u8; 32]>,
    pub(super) writes: PendingWrites,
    /// Idempotency keys of Pay and OpenChannel.
    pub(super) requests: RequestBook,
    /// No key expires before this time, Unix ms (0: not started): set at the first expiry
    /// check after a start, so that the payments a restart resumes find their keys even when
    /// the node was down longer than the retention.
    pub(super) requests_kept_until_ms: u64,
    pub(super) outbox: Vec<Outgoing>,
    pub(super) notices: Vec<Notice>,
    pub(super) rejects: RejectCounters,
    pub(super) traffic: TrafficCounters,
    /// The time of the step being handled, Unix ms.
    pub(super) last_now_ms: u64,
    /// A neighbour was needed that the ledger's copy of the list lacks.
    pub(super) neighbours_stale: bool,
    /// The epoch protocol.
    pub(crate) epochs: super::epochs::EpochState,
    poisoned: bool,
}

/// How long after a start no request id expires: the payments a restart resumes (the market's
/// dues queue, within seconds) find their keys however long the node was down.
pub(super) const REQUEST_GRACE_AFTER_START_MS: u64 = 10 * 60 * 1000;

/// Expired opens remembered for a late acceptance at most.
pub(super) const MAX_EXPIRED_OPENS: usize = 1024;
/// How many open timeouts an expired open is remembered for a late acceptance.
pub(super) const EXPIRED_OPEN_MEMORY: u64 = 10;

/// The Ed25519 signing key of a node identity.
pub(crate) fn signing_key(identity: &PrivateIdentity) -> SigningKey {
    let private = identity.to_private_key();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&private[32..]);
    SigningKey::from_bytes(&seed)
}

/// Keys of a channel, from this node's side.
pub(super) fn channel_keys(me: Party, mine: &Identity, peer: &Identity) -> ChannelKeys {
    match me {
        Party::A => ChannelKeys {
            a: *mine.signing_key(),
            b: *peer.signing_key(),
        },
        Party::B => ChannelKeys {
            a: *peer.signing_key(),
            b: *mine.signing_key(),
        },
    }
}

impl LedgerCore {
    /// Loads the ledger state of the node `identity` from `store`.
    pub(crate) fn load(
        store: Store,
        identity: &PrivateIdentity,
        config: CoreConfig,
        rng: StdRng,
    ) -> Result<Self, LedgerError> {
        let key = signing_key(identity);
        let prover =
            VrfProver::for_identity(&key).map_err(|e| LedgerError::Ticket(e.to_string()))?;
        let vrf_certificate = VrfKeyCertificate::issue(&key, &prover);
        let mut core = LedgerCore {
            me: NodeId(identity.hash().0),
            identity: identity.public().clone(),
            key,
            prover,
            vrf_certificate,
            rng,
            ledger: Ledger::new(Snapshot::genesis(config.genesis.clone())),
            store,
            config,
            trust: TrustConfig::new(0),
            channels: BTreeMap::new(),
            by_peer: HashMap::new(),
            opens: BTreeMap::new(),
            parties: HashMap::new(),
            neighbours: HashMap::new(),
            rates: HashMap::new(),
            sent: SentLog::default(),
            relay_cover: BTreeSet::new(),
            awaiting_neighbour: BTreeSet::new(),
            open_backoff: HashMap::new(),
            expired_opens: BTreeMap::new(),
            gossip: Vec::new(),
            pushed_ms: HashMap::new(),
            reconcile_cursor: HashMap::new(),
            admission: Default::default(),
            drops: Default::default(),
            digest_sent_ms: 0,
            records_digest: None,
            writes: PendingWrites::default(),
            requests: RequestBook::default(),
            requests_kept_until_ms: 0,
            outbox: Vec::new(),
            notices: Vec::new(),
            rejects: RejectCounters::default(),
            traffic: TrafficCounters::default(),
            last_now_ms: 0,
            neighbours_stale: false,
            epochs: Default::default(),
            poisoned: false,
        };
        core.load_state()?;
        Ok(core)
    }

    fn load_state(&mut self) -> Result<(), LedgerError> {
        let store = self.store.clone();
        if let Some(snapshot) = store.get(EPOCHS, &ADOPTED_SNAPSHOT.to_string())? {
            let activation = store.get(EPOCHS, &ADOPTED_ACTIVATION.to_string())?;
            self.restore_epoch(&snapshot, activation.as_deref())
                .map_err(LedgerError::RestoreEpoch)?;
        }
        for item in store.scan_from(TRUST, &[]) {
            let (peer, limit) = item?;
            self.trust.trust(NodeId(peer), limit);
        }
        for item in store.scan_from(RECORDS, &[]) {
            let (_, stored) = item?;
            if let Some((a, b)) = stored.identities() {
                self.parties.insert(node_id(&a), a);
                self.parties.insert(node_id(&b), b);
            }
            // Records were verified before they were stored.
            self.ledger.join_verified(stored.record);
        }
        for item in store.scan_from(CHANNELS, &[]) {
            let (id, stored) = item?;
            let entry = self.restore_channel(id, stored)?;
            if entry.channel.phase() == ChannelPhase::Open {
                self.by_peer.entry(entry.peer_id).or_insert(id);
            }
            self.channels.insert(id, entry);
        }
        for item in store.scan_from(REQUESTS, &[]) {
            let (key, stored) = item?;
            self.requests.insert(RequestKey(key), stored);
        }
        for item in store.scan_from(OPENS, &[]) {
            let (id, stored) = item?;
            let peer =
                Identity::from_public_key(&stored.peer).map_err(|e| LedgerError::Restore {
                    channel: id,
                    reason: e.to_string(),
                })?;
            self.opens.insert(
                id,
                PendingOpen {
                    peer,
                    proposal: stored.proposal,
                    proposed_ms: stored.proposed_unix_ms,
                    sent_ms: 0,
                },
            );
        }
        Ok(())
    }

    fn restore_channel(
        &self,
        id: ChannelId,
        stored: StoredChannel,
    ) -> Result<ChannelEntry, LedgerError> {
        let restore_err = |reason: String| LedgerError::Restore {
            channel: id,
            reason,
        };
        let peer =
            Identity::from_public_key(&stored.peer).map_err(|e| restore_err(e.to_string()))?;
        let keys = channel_keys(stored.channel.me, &self.identity, &peer);
        let channel = Channel::from_persisted(&stored.channel, keys)
            .map_err(|e| restore_err(e.to_string()))?;
        let me = channel.me();
        let latest = channel.latest().body;
        let outstanding = stored
            .channel
            .pending
            .as_deref()
            .and_then(|bytes| ChannelMessage::decode(bytes).ok())
            .map(|message| {
                let payment = match &message {
                    ChannelMessage::Update(u) => {
                        u.body.paid_by(me).saturating_sub(latest.paid_by(me))
                    }
                    _ => 0,
                };
                Outstanding {
                    message,
                    payment,
                    sent_ms: 0,
                }
            });
        let mut redeemed = RedeemedTickets::new(latest.lottery.period.saturating_sub(1));
        let oldest = latest.lottery.period.saturating_sub(1);
        for item in self.store.scan_prefix(REDEEMED, &id.0) {
            let (key, _) = item?;
            if key.period >= oldest {
                // A stored entry is a ticket already paid; the set only rebuilds memory.
                let _ = redeemed.redeem(key.period, key.packet_hash);
            }
        }
        let checkpointed_seq = self
            .ledger
            .winner(&mehr_ledger::ledger::ChannelKey {
                channel_id: id,
                party_a: latest.party_a,
                party_b: latest.party_b,
            })
            .map(|r| r.body.seq);
        Ok(ChannelEntry {
            verifier: None,
            peer_id: node_id(&peer),
            peer,
            channel,
            redeemed,
            owed: stored.owed,
            redeemed_gross: stored.redeemed_gross,
            tickets_redeemed: stored.tickets_redeemed,
            tickets_won: stored.tickets_won,
            outstanding,
            settle_wanted: None,
            terms_checked_ms: 0,
            relayed_since_terms: 0,
            checkpointed_seq,
            checkpoint_checked_ms: 0,
        })
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.me
    }

    /// Whether `peer` is in the ledger's copy of the Mehr neighbour list.
    pub(crate) fn is_neighbour(&self, peer: &NodeId) -> bool {
        self.neighbours.contains_key(peer)
    }

    /// Replaces the set of relays this node pays under relay agreements: this node's own
    /// packets handed to them from now on are paid by the agreement, and their tickets for
    /// those packets are declined.
    pub(crate) fn set_relay_cover(&mut self, cover: BTreeSet<NodeId>) {
        self.relay_cover = cover;
    }

    /// Whether a neighbour was looked for and missing since the last call: the caller should
    /// refresh the list from the transport.
    pub(crate) fn take_neighbours_stale(&mut self) -> bool {
        std::mem::take(&mut self.neighbours_stale)
    }

    /// Whether an earlier store failure stopped the core.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The current lottery/settlement round.
    pub(super) fn round(&self, now: Now) -> u64 {
        now.unix_ms / self.config.round_ms.max(1)
    }

    /// The ledger epoch (the adopted snapshot's).
    pub(super) fn epoch(&self) -> u64 {
        self.ledger.snapshot().epoch()
    }

    pub(super) fn send(&mut self, to: NodeId, message: LedgerMessage) {
        self.outbox.push(Outgoing { to, message });
    }

    pub(super) fn send_channel(&mut self, to: NodeId, message: ChannelMessage) {
        let sender = self.identity.clone();
        self.send(to, LedgerMessage::Channel { sender, message });
    }

    pub(super) fn mark_dirty(&mut self, channel: ChannelId) {
        self.writes.channels.insert(channel);
    }

    /// Deposits of this node's open channels that no ledger record escrows yet (just opened,
    /// the seq-0 checkpoint not completed), μ.
    fn unrecorded_deposits(&self) -> u64 {
        self.channels
            .values()
            .filter(|e| e.channel.phase() != ChannelPhase::Closed && e.checkpointed_seq.is_none())
            .map(|e| {
                let d = e.channel.deposits();
                match e.channel.me() {
                    Party::A => d.a,
                    Party::B => d.b,
                }
            })
            .chain(self.opens.values().map(|o| o.proposal.body.balance_a))
            .fold(0u64, u64::saturating_add)
    }

    /// What this node may still lock into a new channel, μ.
    pub(crate) fn free_balance(&self) -> i128 {
        self.ledger.account(&self.me).free() - i128::from(self.unrecorded_deposits())
    }

    /// Commits the queued writes in one synced batch, then hands out the messages and
    /// notices. After a store failure nothing is handed out and the core stops.
    pub(crate) fn flush(&mut self) -> Result<Flushed, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Stopped);
        }
        self.queue_gossip();
        let writes = std::mem::take(&mut self.writes);
        let mut batch = self.store.batch();
        for id in &writes.channels {
            if let Some(entry) = self.channels.get(id) {
                batch.put(CHANNELS, id, &entry.stored());
            }
        }
        for (id, open) in &writes.opens_put {
            batch.put(OPENS, id, open);
        }
        for id in &writes.opens_delete {
            batch.delete(OPENS, id);
        }
        for (id, record) in &writes.records_put {
            batch.put(RECORDS, id, record);
        }
        for id in &writes.records_delete {
            batch.delete(RECORDS, id);
        }
        for key in &writes.redeemed {
            batch.put(REDEEMED, key, &Vec::new());
        }
        for (key, request) in &writes.requests_put {
            batch.put(REQUESTS, key, request);
        }
        for key in &writes.requests_delete {
            batch.delete(REQUESTS, key);
        }
        if let Some((snapshot, activation)) = &writes.epoch {
            batch.put(EPOCHS, &ADOPTED_SNAPSHOT.to_string(), snapshot);
            batch.put(EPOCHS, &ADOPTED_ACTIVATION.to_string(), activation);
        }
        for (peer, limit) in &writes.trust {
            match limit {
                Some(limit) => batch.put(TRUST, &peer.0, limit),
                None => batch.delete(TRUST, &peer.0),
            }
        }
        if !batch.is_empty()
            && let Err(e) = self.store.commit(batch)
        {
            self.poisoned = true;
            self.outbox.clear();
            self.notices.clear();
            return Err(e.into());
        }
        Ok(Flushed {
            outgoing: std::mem::take(&mut self.outbox),
            notices: std::mem::take(&mut self.notices),
        })
    }

    // ----- operator requests --------------------------------------------------------------

    /// Proposes a channel to `peer`: this node deposits `deposit`, the peer `peer_deposit`.
    /// Completes with [`Notice::Opened`] or [`Notice::OpenFailed`].
    ///
    /// The peer may be any Mehr node whose key is known, not only a neighbour: an agreement's
    /// channel is between its consumer and its provider however far apart they are, and
    /// channel messages are control messages the transport routes to any node. A neighbour's
    /// key comes from the neighbour list; any other node's is `announced`, the key its
    /// announce carried, which the caller looks up in the transport (a key that does not
    /// hash to `peer` is ignored).
    ///
    /// With a `request` key the open is idempotent: the channel nonce comes from the key, so
    /// a retry proposes the very same channel (and the peer, holding it already, sends its
    /// acceptance again), and a key seen before answers with the channel it named.
    pub(crate) fn open_channel(
        &mut self,
        peer: NodeId,
        announced: Option<Identity>,
        deposit: u64,
        peer_deposit: u64,
        request: Option<RequestKey>,
        now: Now,
    ) -> Result<ChannelId, LedgerError> {
        self.last_now_ms = now.unix_ms;
        if peer == self.me {
            return Err(LedgerError::SelfChannel);
        }
        if deposit == 0 && peer_deposit == 0 {
            return Err(LedgerError::ZeroAmount("the sum of the deposits"));
        }
        let print = fingerprint(RequestKind::Open, peer, &[deposit, peer_deposit]);
        if let Some(key) = request
            && let Some(known) = self.requests.get(&key).copied()
        {
            if known.fingerprint != print {
                return Err(LedgerError::RequestReused {
                    what: "channel open",
                });
            }
            // Open, or still being opened: the caller waits for it like the first call did.
            if self.channels.contains_key(&known.channel) || self.opens.contains_key(&known.channel)
            {
                return Ok(known.channel);
            }
            // The first proposal expired unanswered here (its acceptance was lost): propose the
            // same channel again below.
        }
        if let Some(&channel) = self.by_peer.get(&peer) {
            return Err(LedgerError::ChannelExists {
                peer,
                channel,
                state: "open",
            });
        }
        if let Some((&channel, _)) = self.opens.iter().find(|(_, o)| node_id(&o.peer) == peer) {
            return Err(LedgerError::ChannelExists {
                peer,
                channel,
                state: "being opened",
            });
        }
        let identity = self
            .neighbours
            .get(&peer)
            .map(|n| n.identity.clone())
            .or_else(|| announced.filter(|identity| node_id(identity) == peer))
            .ok_or(LedgerError::UnknownPeer(peer))?;
        let available = self.free_balance();
        if i128::from(deposit) > available {
            return Err(LedgerError::InsufficientFunds {
                available,
                requested: deposit,
            });
        }
        let seed = request.map(|key| key.nonce_seed());
        let id = self.propose_open(identity, deposit, peer_deposit, seed, now)?;
        if let Some(key) = request {
            self.remember_request(
                key,
                StoredRequest {
                    kind: RequestKind::Open as u8,
                    created_unix_ms: now.unix_ms,
                    fingerprint: print,
                    channel: id,
                    target: 0,
                },
            );
        }
        Ok(id)
    }

    /// Remembers a request in the next flush, forgetting what falls out of the bounds.
    fn remember_request(&mut self, key: RequestKey, request: StoredRequest) {
        if self
            .requests
            .get(&key)
            .is_some_and(|known| *known == request)
        {
            return;
        }
        for forgotten in self.requests.insert(key, request) {
            self.writes.requests_put.remove(&forgotten);
            self.writes.requests_delete.insert(forgotten);
        }
        self.writes.requests_delete.remove(&key.0);
        self.writes.requests_put.insert(key.0, request);
    }

    /// Forgets the request ids older than their retention, but none in the first
    /// [`REQUEST_GRACE_AFTER_START_MS`] after a start.
    pub(super) fn expire_requests(&mut self, now: Now) {
        if self.requests_kept_until_ms == 0 {
            self.requests_kept_until_ms = now.unix_ms.saturating_add(REQUEST_GRACE_AFTER_START_MS);
        }
        if now.unix_ms < self.requests_kept_until_ms {
            return;
        }
        for forgotten in self.requests.expire(now.unix_ms) {
            self.writes.requests_put.remove(&forgotten);
            self.writes.requests_delete.insert(forgotten);
        }
    }

    /// What `peer` has paid this node over every channel with it that this node still holds
    /// (the co-signed cumulative totals), μ.
    pub(crate) fn received_from(&self, peer: NodeId) -> u64 {
        self.channels
            .values()
            .filter(|e| e.peer_id == peer)
            .map(|e| {
                let body = e.channel.latest().body;
                match e.channel.me() {
                    Party::A => body.paid_b_to_a,
                    Party::B => body.paid_a_to_b,
                }
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Queues `amount` μ to pay `peer` over the open channel with it. Returns the channel and
    /// the cumulative total this node will have paid once the payment is co-signed.
    ///
    /// With a `request` key the payment is idempotent: a key seen before moves nothing and
    /// answers with the channel and total of the first payment.
    pub(crate) fn pay(
        &mut self,
        peer: NodeId,
        amount: u64,
        request: Option<RequestKey>,
        now: Now,
    ) -> Result<(ChannelId, u64), LedgerError> {
        self.last_now_ms = now.unix_ms;
        if amount == 0 {
            return Err(LedgerError::ZeroAmount("amount"));
        }
        let print = fingerprint(RequestKind::Pay, peer, &[amount]);
        if let Some(key) = request
            && let Some(known) = self.requests.get(&key)
        {
            if known.fingerprint != print {
                return Err(LedgerError::RequestReused { what: "payment" });
            }
            return Ok((known.channel, known.target));
        }
        let id = *self
            .by_peer
            .get(&peer)
            .ok_or(LedgerError::NoChannel(peer))?;
        let entry = self
            .channels
            .get_mut(&id)
            .ok_or(LedgerError::UnknownChannel(id))?;
        let available = entry.available();
        if amount > available {
            return Err(LedgerError::Overdraft {
                channel: id,
                available,
                requested: amount,
            });
        }
        entry.owed += amount;
        let me = entry.channel.me();
        let in_flight = entry.outstanding.as_ref().map_or(0, |o| o.payment);
        let target = entry.channel.latest().body.paid_by(me) + in_flight + entry.owed;
        self.mark_dirty(id);
        self.advance(id);
        if let Some(key) = request {
            self.remember_request(
                key,
                StoredRequest {
                    kind: RequestKind::Pay as u8,
                    created_unix_ms: now.unix_ms,
                    fingerprint: print,
                    channel: id,
                    target,
                },
            );
        }
        Ok((id, target))
    }

    /// Starts a settlement: a checkpoint or a cooperative close is proposed to the peer (as
    /// soon as no other proposal is outstanding) and completes with [`Notice::Settled`]; a
    /// unilateral settlement is filed at once and returns the round its dispute window
    /// closes at.
    pub(crate) fn settle(
        &mut self,
        id: ChannelId,
        kind: SettlementKind,
        now: Now,
    ) -> Result<Option<u64>, LedgerError> {
        self.last_now_ms = now.unix_ms;
        let round = self.round(now);
        let epoch = self.epoch();
        let entry = self
            .channels
            .get_mut(&id)
            .ok_or(LedgerError::UnknownChannel(id))?;
        if entry.channel.phase() != ChannelPhase::Open {
            return Err(LedgerError::Channel {
                channel: id,
                source: ChannelError::WrongState {
                    operation: "settle",
                    phase: match entry.channel.phase() {
                        ChannelPhase::Disputing => "disputing",
                        _ => "closed",
                    },
                },
            });
        }
        if kind != SettlementKind::UnilateralClose {
            entry.settle_wanted = Some(match (entry.settle_wanted, kind) {
                (Some(SettlementKind::CooperativeClose), _) => SettlementKind::CooperativeClose,
                _ => kind,
            });
            self.advance(id);
            return Ok(None);
        }
        let reason = if entry.channel.settlement_failures()
            >= mehr_ledger::params::SETTLEMENT_FAILURES_BEFORE_UNILATERAL
        {
            UnilateralReason::Unresponsive
        } else {
            UnilateralReason::Abandonment
        };
        let filing = entry
            .channel
            .file_unilateral(reason, round, epoch, &self.key)
            .map_err(|source| LedgerError::Channel {
                channel: id,
                source,
            })?;
        entry.outstanding = None;
        let closes_at_round = entry.channel.dispute().map_or(round, |d| d.closes_at());
        let peer = entry.peer_id;
        self.by_peer.remove(&peer);
        self.mark_dirty(id);
        self.send_channel(peer, ChannelMessage::Unilateral(filing));
        self.notices.push(Notice::DisputeStarted {
            channel: id,
            closes_at_round,
        });
        Ok(Some(closes_at_round))
    }

    /// Trusts `peer` (relayed free, never charged) or revokes trust. Returns whether
    /// anything changed.
    pub(crate) fn set_trust(&mut self, peer: NodeId, trusted: bool, credit_limit: u64) -> bool {
        let changed = if trusted {
            let before = self
                .trust
                .trusted_peers()
                .find(|(id, _)| **id == peer)
                .map(|(_, p)| p.credit_limit);
            self.trust.trust(peer, credit_limit);
            before != Some(credit_limit)
        } else {
            self.trust.revoke(&peer)
        };
        if changed {
            self.writes
                .trust
                .insert(peer, trusted.then_some(credit_limit));
        }
        changed
    }

    // ----- views ---------------------------------------------------------------------------

    /// The trusted peers and their credit limits.
    pub(crate) fn trusted(&self) -> Vec<(NodeId, u64)> {
        self.trust
            .trusted_peers()
            .map(|(id, p)| (*id, p.credit_limit))
            .collect()
    }

    /// Sets the relay fee this node charges, μ per byte.
    pub(crate) fn set_relay_price(&mut self, price_per_byte: f64) {
        self.config.price_per_byte = price_per_byte;
    }

    /// This node's balance.
    pub(crate) fn balance(&self) -> BalanceView {
        let account = self.ledger.account(&self.me);
        let mut in_channels = 0u64;
        let mut committed = 0u64;
        for e in self.channels.values() {
            if e.channel.phase() != ChannelPhase::Closed {
                in_channels = in_channels.saturating_add(e.my_balance());
                committed = committed.saturating_add(e.my_balance() - e.available());
            }
        }
        BalanceView {
            node: self.me,
            genesis: self.config.genesis.get(&self.me).copied().unwrap_or(0),
            settled: account.balance,
            escrowed: account.escrowed,
            free: self.free_balance(),
            in_channels,
            committed,
        }
    }

    /// Every channel, by id.
    pub(crate) fn channel_views(&self) -> Vec<ChannelView> {
        self.channels.values().map(|e| self.view(e)).collect()
    }

    /// One channel.
    pub(crate) fn channel_view(&self, id: &ChannelId) -> Option<ChannelView> {
        self.channels.get(id).map(|e| self.view(e))
    }

    fn view(&self, e: &ChannelEntry) -> ChannelView {
        let body = e.channel.latest().body;
        let me = e.channel.me();
        let other = me.other();
        let deposits = e.channel.deposits();
        ChannelView {
            id: e.id(),
            peer: e.peer_id,
            me,
            phase: e.channel.phase(),
            seq: body.seq,
            my_balance: body.balance(me),
            peer_balance: body.balance(other),
            my_deposit: if me == Party::A {
                deposits.a
            } else {
                deposits.b
            },
            peer_deposit: if me == Party::A {
                deposits.b
            } else {
                deposits.a
            },
            paid: body.paid_by(me),
            received: body.paid_by(other),
            burned: burn_of(body.paid_a_to_b) + burn_of(body.paid_b_to_a),
            period: body.lottery.period,
            my_win_ppm: body.lottery.win_probability(me).ppm(),
            peer_win_ppm: body.lottery.win_probability(other).ppm(),
            owed: e.owed,
            proposal_outstanding: e.outstanding.is_some(),
            dispute_closes_at_round: e.channel.dispute().map(|d| d.closes_at()),
            tickets_won: e.tickets_won,
            tickets_redeemed: e.tickets_redeemed,
            checkpointed_seq: e.checkpointed_seq,
            trusted_peer: self.trust.is_trusted(&e.peer_id),
        }
    }

    /// A summary of the CRDT ledger.
    pub(crate) fn summary(&mut self) -> LedgerSummary {
        let records_digest = self.records_digest();
        let snapshot = self.ledger.snapshot();
        let mut unfolded_burn: u128 = 0;
        for record in self.ledger.records() {
            let key = mehr_ledger::ledger::ChannelKey {
                channel_id: record.body.channel_id,
                party_a: record.body.party_a,
                party_b: record.body.party_b,
            };
            let (base_ab, base_ba) = snapshot
                .channels()
                .get(&key)
                .map_or((0, 0), |b| (b.paid_a_to_b, b.paid_b_to_a));
            let burn = |now: u64, base: u64| burn_of(now).saturating_sub(burn_of(base.min(now)));
            unfolded_burn += u128::from(burn(record.body.paid_a_to_b, base_ab))
                + u128::from(burn(record.body.paid_b_to_a, base_ba));
        }
        let accounts = self
            .ledger
            .accounts()
            .into_iter()
            .map(|(node, a)| (node, a.balance, a.escrowed))
            .collect();
        LedgerSummary {
            epoch: snapshot.epoch(),
            snapshot_root: snapshot.root(),
            records_digest,
            record_count: self.ledger.record_count() as u64,
            supply: snapshot.supply(),
            burned_folded: snapshot.burned_total(),
            burned_unfolded: unfolded_burn,
            minted: snapshot.minted_total(),
            accounts,
            equivocations: self.ledger.equivocations().len() as u64,
            overdrafts: self.ledger.overdrafts().into_iter().collect(),
            rejects: self.rejects,
            traffic: self.traffic,
            folded: snapshot.channels().iter().map(|(k, b)| (*k, *b)).collect(),
            epochs: self.epochs.counters,
        }
    }

    /// Checks a relay ticket against the VRF key `certificate` names, after checking that
    /// `relay_key` signed it; when this node has the ticket's channel, also against the
    /// probability the channel committed for its period.
    pub(crate) fn verify_ticket(
        &self,
        ticket: &RelayTicket,
        certificate: &VrfKeyCertificate,
        relay_key: &ed25519_dalek::VerifyingKey,
    ) -> TicketVerdict {
        let verifier = match certificate.verify(relay_key) {
            Ok(v) => v,
            Err(e) => return TicketVerdict::invalid(e),
        };
        let payout = match ticket.verify(&verifier) {
            Ok(payout) => payout,
            Err(e) => return TicketVerdict::invalid(e),
        };
        let committed = self.channels.get(&ticket.channel_id).map(|e| {
            let relay = if e.peer.signing_key() == relay_key {
                e.channel.me().other()
            } else {
                e.channel.me()
            };
            e.channel.committed_win_probability(ticket.period, relay)
                == Some(ticket.win_probability)
        });
        TicketVerdict {
            valid: committed != Some(false),
            payout,
            reason: match committed {
                Some(false) => {
                    "the probability is not the one the channel committed for the period".into()
                }
                _ => String::new(),
            },
            committed_checked: committed.is_some(),
        }
    }

    /// Digest of the records held: Blake3 over their ids in the ledger's order.
    pub(crate) fn records_digest(&mut self) -> [u8; 32] {
        if let Some(d) = self.records_digest {
            return d;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"mehr/ledger-records/v1");
        for record in self.ledger.records() {
            h.update(&record.id());
        }
        let digest = *h.finalize().as_bytes();
        self.records_digest = Some(digest);
        digest
    }

    // ----- shared steps --------------------------------------------------------------------

    /// Stores a record this node holds (its own channel's, or gossiped) and joins it into the
    /// ledger; queues it for gossip when it is new.
    pub(super) fn record_settlement(
        &mut self,
        record: SettlementRecord,
        identity_a: Identity,
        identity_b: Identity,
    ) -> Result<mehr_ledger::ledger::InsertOutcome, mehr_ledger::ledger::RecordError> {
        use mehr_ledger::ledger::InsertOutcome;
        let key = mehr_ledger::ledger::ChannelKey {
            channel_id: record.body.channel_id,
            party_a: record.body.party_a,
            party_b: record.body.party_b,
        };
        let previous = self.ledger.winner(&key).map(SettlementRecord::id);
        let keys = ChannelKeys {
            a: *identity_a.signing_key(),
            b: *identity_b.signing_key(),
        };
        let outcome = self.ledger.insert(record, &keys)?;
        if matches!(
            outcome,
            InsertOutcome::Applied | InsertOutcome::Equivocation
        ) {
            if outcome == InsertOutcome::Applied
                && let Some(old) = previous
            {
                self.writes.records_put.remove(&old);
                self.writes.records_delete.insert(old);
            }
            self.writes.records_put.insert(
                record.id(),
                StoredRecord {
                    record,
                    identity_a: identity_a.public_key(),
                    identity_b: identity_b.public_key(),
                },
            );
            self.records_digest = None;
            self.parties
                .insert(node_id(&identity_a), identity_a.clone());
            self.parties
                .insert(node_id(&identity_b), identity_b.clone());
            self.gossip.push(GossipedRecord {
                record,
                identity_a,
                identity_b,
            });
            if let Some(entry) = self.channels.get_mut(&record.body.channel_id)
                && entry.checkpointed_seq.is_none_or(|s| s < record.body.seq)
            {
                entry.checkpointed_seq = Some(record.body.seq);
            }
        }
        Ok(outcome)
    }

    /// Moves a channel forward: proposes what is waiting (a payment owed, a settlement asked
    /// for) when no proposal is outstanding.
    pub(super) fn advance(&mut self, id: ChannelId) {
        let round = self.round(Now {
            unix_ms: self.last_now_ms,
        });
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        if entry.channel.phase() != ChannelPhase::Open || entry.outstanding.is_some() {
            return;
        }
        let peer = entry.peer_id;
        if let Some(kind) = entry.settle_wanted.take() {
            match entry.channel.propose_settlement(kind, round, &self.key) {
                Ok(proposal) => {
                    let message = ChannelMessage::SettleProposal(proposal);
                    entry.outstanding = Some(Outstanding {
                        message,
                        payment: 0,
                        sent_ms: self.last_now_ms,
                    });
                    self.mark_dirty(id);
                    self.send_channel(peer, message);
                    return;
                }
                Err(e) => tracing::warn!(channel = %id, error = %e, "cannot propose a settlement"),
            }
        }
        if entry.owed == 0 {
            return;
        }
        let amount = entry.owed;
        match entry.channel.propose_payment(amount, &self.key) {
            Ok(proposal) => {
                entry.owed = 0;
                let message = ChannelMessage::Update(proposal);
                entry.outstanding = Some(Outstanding {
                    message,
                    payment: amount,
                    sent_ms: self.last_now_ms,
                });
                self.mark_dirty(id);
                self.send_channel(peer, message);
            }
            Err(e) => {
                // Owed amounts are checked against the balance when they are taken on, so
                // this only happens if the channel changed underneath; keep them owed.
                tracing::warn!(channel = %id, error = %e, "cannot propose a payment");
            }
        }
    }

    /// Proposes an open to `peer` and records it (durably before it is sent).
    pub(super) fn propose_open(
        &mut self,
        peer: Identity,
        deposit: u64,
        peer_deposit: u64,
        nonce_seed: Option<[u8; 32]>,
        now: Now,
    ) -> Result<ChannelId, LedgerError> {
        let peer_id = node_id(&peer);
        let keys = channel_keys(Party::A, &self.identity, &peer);
        // A request's own seed makes its proposal the same on every retry.
        let mut seeded = nonce_seed.map(StdRng::from_seed);
        let rng: &mut StdRng = match seeded.as_mut() {
            Some(rng) => rng,
            None => &mut self.rng,
        };
        let pending = Channel::propose_open(
            rng,
            self.me,
            peer_id,
            keys,
            mehr_ledger::channel::Deposits {
                a: deposit,
                b: peer_deposit,
            },
            mehr_ledger::channel::LotteryTerms::initial(),
            &self.key,
        );
        let proposal = *pending
            .map_err(|source| LedgerError::Channel {
                channel: ChannelId::default(),
                source,
            })?
            .proposal();
        let id = proposal.body.channel_id;
        self.writes.opens_put.insert(
            id,
            StoredOpen {
                peer: peer.public_key(),
                proposed_unix_ms: now.unix_ms,
                proposal,
            },
        );
        self.opens.insert(
            id,
            PendingOpen {
                peer,
                proposal,
                proposed_ms: now.unix_ms,
                sent_ms: now.unix_ms,
            },
        );
        self.expired_opens.remove(&id);
        self.send_channel(peer_id, ChannelMessage::OpenProposal(proposal));
        Ok(id)
    }

    /// Counts a refused inbound channel message by the kind of error.
    pub(super) fn count_channel_error(&mut self, error: &ChannelError) {
        match error {
            ChannelError::StaleSequence { .. } | ChannelError::NoPendingProposal => {
                self.rejects.stale += 1
            }
            ChannelError::BadSignature { .. }
            | ChannelError::WrongParty
            | ChannelError::UnauthorizedDebit { .. }
            | ChannelError::PartiesChanged
            | ChannelError::BalanceNotConserved { .. }
            | ChannelError::DepositChanged { .. }
            | ChannelError::InconsistentBody
            | ChannelError::PaymentReversed { .. }
            | ChannelError::InvalidLotteryTerms(_)
            | ChannelError::InvalidOpen(_)
            | ChannelError::StateMismatch { .. } => self.rejects.forged += 1,
            ChannelError::UnknownChannel(_) => self.rejects.unknown += 1,
            ChannelError::Decode(_) => self.rejects.malformed += 1,
            _ => self.rejects.refused += 1,
        }
    }
}

/// This node's money, μ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BalanceView {
    /// The node.
    pub(crate) node: NodeId,
    /// Its genesis allocation.
    pub(crate) genesis: u64,
    /// Balance in the ledger (genesis plus settled channel flows).
    pub(crate) settled: i128,
    /// Of which escrowed in channels, per the ledger's records.
    pub(crate) escrowed: i128,
    /// What may still go into a new channel.
    pub(crate) free: i128,
    /// This node's balances in its open channels (latest co-signed states).
    pub(crate) in_channels: u64,
    /// Of which committed to payments proposed or owed.
    pub(crate) committed: u64,
}

/// A channel as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelView {
    pub(crate) id: ChannelId,
    pub(crate) peer: NodeId,
    pub(crate) me: Party,
    pub(crate) phase: ChannelPhase,
    pub(crate) seq: u64,
    pub(crate) my_balance: u64,
    pub(crate) peer_balance: u64,
    pub(crate) my_deposit: u64,
    pub(crate) peer_deposit: u64,
    /// Cumulative gross paid by this node.
    pub(crate) paid: u64,
    /// Cumulative gross paid to this node.
    pub(crate) received: u64,
    /// Burned on both directions' totals.
    pub(crate) burned: u64,
    pub(crate) period: u64,
    pub(crate) my_win_ppm: u32,
    pub(crate) peer_win_ppm: u32,
    pub(crate) owed: u64,
    pub(crate) proposal_outstanding: bool,
    pub(crate) dispute_closes_at_round: Option<u64>,
    pub(crate) tickets_won: u64,
    pub(crate) tickets_redeemed: u64,
    pub(crate) checkpointed_seq: Option<u64>,
    pub(crate) trusted_peer: bool,
}

/// The CRDT ledger as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerSummary {
    pub(crate) epoch: u64,
    pub(crate) snapshot_root: [u8; 32],
    pub(crate) records_digest: [u8; 32],
    pub(crate) record_count: u64,
    pub(crate) supply: u128,
    pub(crate) burned_folded: u128,
    pub(crate) burned_unfolded: u128,
    pub(crate) minted: u128,
    /// (node, balance, escrowed), by node id.
    pub(crate) accounts: Vec<(NodeId, i128, i128)>,
    pub(crate) equivocations: u64,
    pub(crate) overdrafts: Vec<NodeId>,
    pub(crate) rejects: RejectCounters,
    pub(crate) traffic: TrafficCounters,
    /// The adopted snapshot's channel baselines.
    pub(crate) folded: Vec<(
        mehr_ledger::ledger::ChannelKey,
        mehr_ledger::ledger::Baseline,
    )>,
    pub(crate) epochs: super::epochs::EpochCounters,
}

/// The outcome of checking a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketVerdict {
    /// Whether it is a valid winning ticket.
    pub(crate) valid: bool,
    /// Its gross payout when valid.
    pub(crate) payout: u64,
    /// Why not, when invalid.
    pub(crate) reason: String,
    /// Whether the channel's committed probability was checked too.
    pub(crate) committed_checked: bool,
}

impl TicketVerdict {
    fn invalid(error: LotteryError) -> Self {
        TicketVerdict {
            valid: false,
            payout: 0,
            reason: error.to_string(),
            committed_checked: false,
        }
    }
}
