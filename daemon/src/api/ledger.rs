//! `mehr.v1.LedgerService`: balance, channels, payments, settlements, trust, the CRDT
//! ledger and ticket verification. Thin: converts and delegates to [`LedgerHandle`].

use std::time::Duration;

use mehr_ledger::{
    ChannelId, NodeId, Party,
    channel::ChannelPhase,
    ledger::{ChannelStatus, SettlementKind, SettlementRecord},
    lottery::{RELAY_TICKET_LEN, RelayTicket, VRF_CERTIFICATE_LEN, VrfKeyCertificate},
};
use mehr_proto::v1::{self as pb, ledger_service_server::LedgerService};
use mehr_transport::identity::{Identity, PUBLIC_KEY_LEN};
use tonic::{Request, Response, Status};

use super::{
    deadline::CallDeadline,
    paging::{Filters, PageRequest},
    status::invalid_field,
};
use crate::ledger::{ChannelView, LedgerHandle, RelayKey, SettleMode, SettleOutcome};

/// Wait for a peer when the request names no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The LedgerService implementation.
#[derive(Clone)]
pub struct LedgerApi {
    ledger: LedgerHandle,
}

impl LedgerApi {
    /// Serves `ledger`.
    pub fn new(ledger: LedgerHandle) -> Self {
        LedgerApi { ledger }
    }
}

fn id16(field: &str, bytes: &[u8]) -> Result<[u8; 16], Status> {
    bytes.try_into().map_err(|_| {
        invalid_field(
            field,
            format!(
                "{field} must be 16 bytes (32 hex characters), not {}",
                bytes.len()
            ),
        )
    })
}

fn node(field: &str, bytes: &[u8]) -> Result<NodeId, Status> {
    id16(field, bytes).map(NodeId)
}

/// How long to wait for the peer: `ms`, or the default for 0, ending before the call's
/// deadline so that a silent peer is a clear error rather than a CANCELLED call.
fn timeout<T>(request: &Request<T>, ms: u32) -> Duration {
    let wait = match ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    CallDeadline::cap(request, wait)
}

fn positive(field: &str, amount: u64) -> Result<u64, Status> {
    if amount == 0 {
        Err(invalid_field(field, format!("{field} must be above zero")))
    } else {
        Ok(amount)
    }
}

/// An i128 amount as sint64, saturating.
fn signed(amount: i128) -> i64 {
    i64::try_from(amount).unwrap_or(if amount < 0 { i64::MIN } else { i64::MAX })
}

/// A u128 amount as uint64, saturating.
fn unsigned(amount: u128) -> u64 {
    u64::try_from(amount).unwrap_or(u64::MAX)
}

/// The proto enum of a settlement kind.
pub(crate) fn kind_to_proto(kind: SettlementKind) -> pb::SettlementKind {
    match kind {
        SettlementKind::Checkpoint => pb::SettlementKind::Checkpoint,
        SettlementKind::CooperativeClose => pb::SettlementKind::CooperativeClose,
        SettlementKind::UnilateralClose => pb::SettlementKind::UnilateralClose,
    }
}

fn channel_to_proto(c: &ChannelView) -> pb::Channel {
    pb::Channel {
        channel_id: c.id.0.to_vec().into(),
        peer: c.peer.0.to_vec().into(),
        role: match c.me {
            Party::A => pb::ChannelRole::Opener,
            Party::B => pb::ChannelRole::Acceptor,
        } as i32,
        phase: match c.phase {
            ChannelPhase::Open => pb::ChannelPhase::Open,
            ChannelPhase::Disputing => pb::ChannelPhase::Disputing,
            ChannelPhase::Closed => pb::ChannelPhase::Closed,
        } as i32,
        seq: c.seq,
        balance_umhr: c.my_balance,
        peer_balance_umhr: c.peer_balance,
        deposit_umhr: c.my_deposit,
        peer_deposit_umhr: c.peer_deposit,
        paid_umhr: c.paid,
        received_umhr: c.received,
        burned_umhr: c.burned,
        lottery_period: c.period,
        win_ppm: c.my_win_ppm,
        peer_win_ppm: c.peer_win_ppm,
        owed_umhr: c.owed,
        proposal_outstanding: c.proposal_outstanding,
        dispute_closes_at_round: c.dispute_closes_at_round,
        tickets_won: c.tickets_won,
        tickets_paid: c.tickets_redeemed,
        recorded_seq: c.checkpointed_seq,
        peer_trusted: c.trusted_peer,
    }
}

fn record_to_proto(r: &SettlementRecord) -> pb::SettlementRecord {
    pb::SettlementRecord {
        record_id: r.id().to_vec().into(),
        channel_id: r.body.channel_id.0.to_vec().into(),
        seq: r.body.seq,
        kind: kind_to_proto(r.kind) as i32,
        balance_a_umhr: r.body.balance_a,
        balance_b_umhr: r.body.balance_b,
        encoded: r.encode().to_vec().into(),
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn get_balance(
        &self,
        _: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let b = self.ledger.balance().await?;
        Ok(Response::new(pb::GetBalanceResponse {
            node_id: b.node.0.to_vec().into(),
            genesis_umhr: b.genesis,
            settled_umhr: signed(b.settled),
            escrowed_umhr: signed(b.escrowed),
            free_umhr: signed(b.free),
            in_channels_umhr: b.in_channels,
            committed_umhr: b.committed,
        }))
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListChannels"),
            request.page_size,
            &request.page_token,
        )?;
        let all = self.ledger.channels().await?;
        let (channels, next_page_token) = paging.page(all, |c| c.id.0.to_vec());
        Ok(Response::new(pb::ListChannelsResponse {
            channels: channels.iter().map(channel_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn open_channel(
        &self,
        request: Request<pb::OpenChannelRequest>,
    ) -> Result<Response<pb::OpenChannelResponse>, Status> {
        let wait = timeout(&request, request.get_ref().timeout_ms);
        let request = request.into_inner();
        let peer = node("peer", &request.peer)?;
        let request_id = super::request_id::parse(&request.request_id)?;
        let channel = self
            .ledger
            .open_channel(
                peer,
                request.deposit_umhr,
                request.peer_deposit_umhr,
                request_id,
                wait,
            )
            .await?;
        Ok(Response::new(pb::OpenChannelResponse {
            channel: Some(channel_to_proto(&channel)),
        }))
    }

    async fn pay(
        &self,
        request: Request<pb::PayRequest>,
    ) -> Result<Response<pb::PayResponse>, Status> {
        let wait = timeout(&request, request.get_ref().timeout_ms);
        let request = request.into_inner();
        let peer = node("peer", &request.peer)?;
        let amount = positive("amount_umhr", request.amount_umhr)?;
        let request_id = super::request_id::parse(&request.request_id)?;
        let channel = self.ledger.pay(peer, amount, request_id, wait).await?;
        Ok(Response::new(pb::PayResponse {
            channel: Some(channel_to_proto(&channel)),
        }))
    }

    async fn settle_channel(
        &self,
        request: Request<pb::SettleChannelRequest>,
    ) -> Result<Response<pb::SettleChannelResponse>, Status> {
        let wait = timeout(&request, request.get_ref().timeout_ms);
        let request = request.into_inner();
        let channel = ChannelId(id16("channel_id", &request.channel_id)?);
        let mode = match request.mode() {
            pb::SettlementMode::Checkpoint => SettleMode::Checkpoint,
            pb::SettlementMode::Close => SettleMode::Close,
            pb::SettlementMode::Unilateral => SettleMode::Unilateral,
            pb::SettlementMode::Unspecified => {
                return Err(invalid_field(
                    "mode",
                    "mode must be CHECKPOINT, CLOSE or UNILATERAL",
                ));
            }
        };
        let outcome = match self.ledger.settle(channel, mode, wait).await? {
            SettleOutcome::Recorded(record) => {
                pb::settle_channel_response::Outcome::Record(record_to_proto(&record))
            }
            SettleOutcome::Disputing { closes_at_round } => {
                pb::settle_channel_response::Outcome::DisputeClosesAtRound(closes_at_round)
            }
        };
        Ok(Response::new(pb::SettleChannelResponse {
            outcome: Some(outcome),
        }))
    }

    async fn list_trusted(
        &self,
        request: Request<pb::ListTrustedRequest>,
    ) -> Result<Response<pb::ListTrustedResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListTrusted"),
            request.page_size,
            &request.page_token,
        )?;
        let all = self.ledger.trusted().await?;
        let (peers, next_page_token) = paging.page(all, |(id, _)| id.0.to_vec());
        Ok(Response::new(pb::ListTrustedResponse {
            peers: peers
                .into_iter()
                .map(|(id, limit)| pb::TrustedPeer {
                    node_id: id.0.to_vec().into(),
                    credit_limit_umhr: limit,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn set_trust(
        &self,
        request: Request<pb::SetTrustRequest>,
    ) -> Result<Response<pb::SetTrustResponse>, Status> {
        let request = request.into_inner();
        let peer = node("node_id", &request.node_id)?;
        if peer == self.ledger.node_id() {
            return Err(invalid_field(
                "node_id",
                "node_id is this node's own id; trust is for other nodes",
            ));
        }
        let changed = self
            .ledger
            .set_trust(peer, request.trusted, request.credit_limit_umhr)
            .await?;
        Ok(Response::new(pb::SetTrustResponse { changed }))
    }

    async fn get_ledger(
        &self,
        request: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::GetLedgerResponse>, Status> {
        let r = request.into_inner();
        let paging = PageRequest::parse(Filters::new("GetLedger"), r.page_size, &r.page_token)?;
        let s = self.ledger.summary().await?;
        let (accounts, next_page_token) =
            paging.page(s.accounts.clone(), |(id, _, _)| id.0.to_vec());
        Ok(Response::new(pb::GetLedgerResponse {
            epoch: s.epoch,
            snapshot_root: s.snapshot_root.to_vec().into(),
            records_digest: s.records_digest.to_vec().into(),
            record_count: s.record_count,
            supply_umhr: unsigned(s.supply),
            burned_folded_umhr: unsigned(s.burned_folded),
            burned_unfolded_umhr: unsigned(s.burned_unfolded),
            minted_umhr: unsigned(s.minted),
            next_page_token,
            accounts: accounts
                .iter()
                .map(|(id, balance, escrowed)| pb::LedgerAccount {
                    node_id: id.0.to_vec().into(),
                    balance_umhr: signed(*balance),
                    escrowed_umhr: signed(*escrowed),
                })
                .collect(),
            equivocations: s.equivocations,
            overdrafts: s.overdrafts.iter().map(|id| id.0.to_vec().into()).collect(),
            rejected: Some(pb::RejectedMessages {
                malformed: s.rejects.malformed,
                forged: s.rejects.forged,
                stale: s.rejects.stale,
                unknown: s.rejects.unknown,
                refused: s.rejects.refused,
                total: s.rejects.total(),
            }),
            relay: Some(pb::RelayCounters {
                relayed_free: s.traffic.relayed_free,
                relayed_paid: s.traffic.relayed_paid,
                relayed_unpaid: s.traffic.relayed_unpaid,
                relayed_unattributed: s.traffic.relayed_unattributed,
                tickets_won: s.traffic.tickets_won,
                tickets_paid: s.traffic.tickets_paid,
                reports_dropped: self.ledger.relay_reports_dropped(),
                tickets_declined: s.traffic.tickets_declined,
            }),
            folded_channels: s
                .folded
                .iter()
                .map(|(key, base)| pb::FoldedChannel {
                    channel_id: key.channel_id.0.to_vec().into(),
                    party_a: key.party_a.0.to_vec().into(),
                    party_b: key.party_b.0.to_vec().into(),
                    seq: base.seq,
                    paid_a_to_b_umhr: base.paid_a_to_b,
                    paid_b_to_a_umhr: base.paid_b_to_a,
                    status: match base.status {
                        ChannelStatus::Open => "open",
                        ChannelStatus::Closing { .. } => "closing",
                        ChannelStatus::Closed => "closed",
                    }
                    .into(),
                })
                .collect(),
            epochs: Some(pb::EpochCounters {
                proposed: s.epochs.proposed,
                acked: s.epochs.acked,
                adopted: s.epochs.adopted,
                stale: s.epochs.stale,
                refused: s.epochs.refused,
            }),
        }))
    }

    async fn verify_ticket(
        &self,
        request: Request<pb::VerifyTicketRequest>,
    ) -> Result<Response<pb::VerifyTicketResponse>, Status> {
        let request = request.into_inner();
        // The certified form events publish: the ticket, then the relay's VRF key
        // certificate (the VRF key is not the identity key, so the ticket alone is not
        // verifiable).
        const CERTIFIED_LEN: usize = RELAY_TICKET_LEN + VRF_CERTIFICATE_LEN;
        if request.ticket.len() != CERTIFIED_LEN {
            return Err(invalid_field(
                "ticket",
                format!(
                    "ticket must be {CERTIFIED_LEN} bytes (a {RELAY_TICKET_LEN}-byte relay ticket \
                     and the relay's {VRF_CERTIFICATE_LEN}-byte VRF key certificate, as events \
                     publish it), not {}",
                    request.ticket.len()
                ),
            ));
        }
        let (ticket_bytes, certificate_bytes) = request.ticket.split_at(RELAY_TICKET_LEN);
        let ticket = RelayTicket::decode(ticket_bytes).map_err(|e| {
            invalid_field("ticket", format!("ticket is not a valid relay ticket: {e}"))
        })?;
        let certificate = VrfKeyCertificate::decode(certificate_bytes).ok_or_else(|| {
            invalid_field("ticket", "the VRF key certificate has the wrong length")
        })?;
        let relay = match request.relay_key.len() {
            PUBLIC_KEY_LEN => RelayKey::Identity(Box::new(
                Identity::from_slice(&request.relay_key).map_err(|e| {
                    invalid_field(
                        "relay_key",
                        format!("relay_key is not a valid identity: {e}"),
                    )
                })?,
            )),
            32 => {
                let bytes: [u8; 32] = request.relay_key[..]
                    .try_into()
                    .map_err(|_| invalid_field("relay_key", "relay_key must be 32 bytes"))?;
                RelayKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(
                    |_| invalid_field("relay_key", "relay_key is not a valid Ed25519 key"),
                )?)
            }
            n => {
                return Err(invalid_field(
                    "relay_key",
                    format!(
                        "relay_key must be a 64-byte identity or a 32-byte Ed25519 key, not {n} bytes"
                    ),
                ));
            }
        };
        let verdict = self
            .ledger
            .verify_ticket(ticket.clone(), certificate, relay)
            .await?;
        Ok(Response::new(pb::VerifyTicketResponse {
            valid: verdict.valid,
            payout_umhr: verdict.payout,
            reason: verdict.reason,
            committed_checked: verdict.committed_checked,
            channel_id: ticket.channel_id.0.to_vec().into(),
            period: ticket.period,
            win_ppm: ticket.win_probability.ppm(),
            packet_hash: ticket.packet_hash.to_vec().into(),
            cost_umhr: ticket.cost,
        }))
    }
}
