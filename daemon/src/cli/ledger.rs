//! `mehr balance|channels|channel|trust|ledger|ticket`.

use std::time::Duration;

use clap::{Args, Subcommand};
use mehr_sdk::{Client, SettleResult, Settlement, proto as pb};
use serde_json::{Value, json};

use super::output::Output;

/// `mehr channel` actions.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Open a payment channel with a Mehr node (a neighbour or one further away whose
    /// announce was heard), depositing AMOUNT.
    Open {
        /// The peer's node id (32 hex characters).
        node: String,
        /// This node's deposit: μMHR, or MHR with an `mhr` suffix (`2mhr`).
        amount: String,
        /// Deposit asked of the peer (same units); it refuses above its own limit.
        #[arg(long, default_value = "0")]
        peer_deposit: String,
        /// Seconds to wait for the peer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Idempotency key (1–64 characters): run the command again with the same key after
        /// a failure and it converges on the same channel (default: a fresh key, reused by
        /// the command's own retries).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Pay a peer AMOUNT through the open channel with it (the payee gets 98%).
    Pay {
        /// The peer's node id (32 hex characters).
        node: String,
        /// The amount: μMHR, or MHR with an `mhr` suffix.
        amount: String,
        /// Seconds to wait for the co-signature.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Idempotency key (1–64 characters): run the command again with the same key after
        /// a failure and the payment is made once (default: a fresh key, reused by the
        /// command's own retries).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Record a channel's latest state in the ledger (a checkpoint), or close it.
    Settle(SettleArgs),
}

/// `mehr channel settle` arguments.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The channel id (32 hex characters), as `mehr channels` shows it.
    channel: String,
    /// Close the channel (the peer co-signs).
    #[arg(long, conflicts_with = "unilateral")]
    close: bool,
    /// Close without the peer: file the latest co-signed state; a dispute window follows.
    #[arg(long)]
    unilateral: bool,
    /// Seconds to wait for the peer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// `mehr trust` actions.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a peer: its traffic is relayed free and never touches channels.
    Add {
        /// The peer's node id (32 hex characters).
        node: String,
        /// Credit extended to it (μMHR, or MHR with an `mhr` suffix).
        #[arg(long, default_value = "0")]
        credit_limit: String,
    },
    /// Stop trusting a peer.
    Remove {
        /// The peer's node id (32 hex characters).
        node: String,
    },
    /// List the trusted peers.
    List,
}

/// `mehr ticket` actions.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Check a relay lottery ticket against the relay's key.
    Verify {
        /// The certified ticket (488 hex characters: the ticket and the relay's VRF key
        /// certificate), as `mehr events` shows it.
        ticket: String,
        /// The relay's 64-byte public identity or 32-byte Ed25519 key, in hex.
        #[arg(long)]
        relay: String,
    },
}

fn id_arg(what: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text).map_err(|_| anyhow::anyhow!("{what} `{text}` is not hex"))?;
    anyhow::ensure!(
        bytes.len() == 16,
        "{what} must be 16 bytes (32 hex characters), not {}",
        bytes.len()
    );
    Ok(bytes)
}

/// `1500` → 1500 μMHR; `2mhr` → 2 000 000 μMHR; `0.5mhr` → 500 000 μMHR.
fn amount_arg(text: &str) -> anyhow::Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let bad = || anyhow::anyhow!("amount `{text}` is not a number of μMHR or of MHR (`2mhr`)");
    if let Some(mhr) = lower.strip_suffix("mhr") {
        let (whole, fraction) = mhr.split_once('.').unwrap_or((mhr, ""));
        anyhow::ensure!(
            fraction.len() <= 6,
            "amount `{text}` has more than 6 decimals"
        );
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction: u64 = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<6}").parse().map_err(|_| bad())?
        };
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(|| anyhow::anyhow!("amount `{text}` is too large"))
    } else {
        lower.parse().map_err(|_| bad())
    }
}

/// `1234567` → `1.234567 MHR`.
fn mhr(umhr: i128) -> String {
    let sign = if umhr < 0 { "-" } else { "" };
    let abs = umhr.unsigned_abs();
    format!("{sign}{}.{:06} MHR", abs / 1_000_000, abs % 1_000_000)
}

fn phase_name(phase: i32) -> &'static str {
    match pb::ChannelPhase::try_from(phase) {
        Ok(pb::ChannelPhase::Open) => "open",
        Ok(pb::ChannelPhase::Disputing) => "disputing",
        Ok(pb::ChannelPhase::Closed) => "closed",
        _ => "unknown",
    }
}

fn role_name(role: i32) -> &'static str {
    match pb::ChannelRole::try_from(role) {
        Ok(pb::ChannelRole::Opener) => "opener",
        Ok(pb::ChannelRole::Acceptor) => "acceptor",
        _ => "unknown",
    }
}

/// The name of a settlement kind.
pub(super) fn settlement_kind_name(kind: i32) -> &'static str {
    match pb::SettlementKind::try_from(kind) {
        Ok(pb::SettlementKind::Checkpoint) => "checkpoint",
        Ok(pb::SettlementKind::CooperativeClose) => "cooperative_close",
        Ok(pb::SettlementKind::UnilateralClose) => "unilateral_close",
        _ => "unknown",
    }
}

fn channel_json(c: &pb::Channel) -> Value {
    json!({
        "channel_id": hex::encode(&c.channel_id),
        "peer": hex::encode(&c.peer),
        "role": role_name(c.role),
        "phase": phase_name(c.phase),
        "seq": c.seq,
        "balance_umhr": c.balance_umhr,
        "peer_balance_umhr": c.peer_balance_umhr,
        "deposit_umhr": c.deposit_umhr,
        "peer_deposit_umhr": c.peer_deposit_umhr,
        "paid_umhr": c.paid_umhr,
        "received_umhr": c.received_umhr,
        "burned_umhr": c.burned_umhr,
        "lottery_period": c.lottery_period,
        "win_ppm": c.win_ppm,
        "peer_win_ppm": c.peer_win_ppm,
        "owed_umhr": c.owed_umhr,
        "proposal_outstanding": c.proposal_outstanding,
        "dispute_closes_at_round": c.dispute_closes_at_round,
        "tickets_won": c.tickets_won,
        "tickets_paid": c.tickets_paid,
        "recorded_seq": c.recorded_seq,
        "peer_trusted": c.peer_trusted,
    })
}

fn print_channel(out: &Output, c: &pb::Channel) {
    out.record(
        &[
            ("channel", hex::encode(&c.channel_id)),
            ("peer", hex::encode(&c.peer)),
            ("role", role_name(c.role).to_string()),
            ("phase", phase_name(c.phase).to_string()),
            ("seq", c.seq.to_string()),
            ("balance", mhr(i128::from(c.balance_umhr))),
            ("peer balance", mhr(i128::from(c.peer_balance_umhr))),
            ("paid", mhr(i128::from(c.paid_umhr))),
            ("received", mhr(i128::from(c.received_umhr))),
            ("burned", mhr(i128::from(c.burned_umhr))),
        ],
        channel_json(c),
    );
}

/// `mehr balance`.
pub(super) async fn balance(client: &Client, out: &Output) -> anyhow::Result<()> {
    let b = client.balance().await?;
    out.record(
        &[
            ("node", hex::encode(&b.node_id)),
            ("genesis", mhr(i128::from(b.genesis_umhr))),
            ("settled", mhr(i128::from(b.settled_umhr))),
            ("escrowed", mhr(i128::from(b.escrowed_umhr))),
            ("free", mhr(i128::from(b.free_umhr))),
            ("in channels", mhr(i128::from(b.in_channels_umhr))),
            ("committed", mhr(i128::from(b.committed_umhr))),
        ],
        json!({
            "node_id": hex::encode(&b.node_id),
            "genesis_umhr": b.genesis_umhr,
            "settled_umhr": b.settled_umhr,
            "escrowed_umhr": b.escrowed_umhr,
            "free_umhr": b.free_umhr,
            "in_channels_umhr": b.in_channels_umhr,
            "committed_umhr": b.committed_umhr,
        }),
    );
    Ok(())
}

/// `mehr channels`.
pub(super) async fn channels(client: &Client, out: &Output) -> anyhow::Result<()> {
    let channels = client.channels().await?;
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            vec![
                hex::encode(&c.channel_id),
                hex::encode(&c.peer),
                phase_name(c.phase).to_string(),
                c.seq.to_string(),
                c.balance_umhr.to_string(),
                c.peer_balance_umhr.to_string(),
                c.paid_umhr.to_string(),
                c.received_umhr.to_string(),
                c.burned_umhr.to_string(),
                format!("{}/{}", c.tickets_won, c.tickets_paid),
            ]
        })
        .collect();
    out.table(
        &[
            "CHANNEL",
            "PEER",
            "PHASE",
            "SEQ",
            "BALANCE μ",
            "PEER μ",
            "PAID μ",
            "RECEIVED μ",
            "BURNED μ",
            "TICKETS WON/PAID",
        ],
        &rows,
        Value::Array(channels.iter().map(channel_json).collect()),
    );
    Ok(())
}

/// `mehr channel open|pay|settle`.
pub(super) async fn channel(
    client: &Client,
    out: &Output,
    command: ChannelCommand,
) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Open {
            node,
            amount,
            peer_deposit,
            timeout,
            request_id,
        } => {
            let (peer, deposit) = (id_arg("node", &node)?, amount_arg(&amount)?);
            let peer_deposit = amount_arg(&peer_deposit)?;
            let timeout = Duration::from_secs(timeout);
            let channel = match request_id {
                Some(id) => {
                    client
                        .open_channel_with_request_id(
                            &peer,
                            deposit,
                            peer_deposit,
                            id.as_bytes(),
                            timeout,
                        )
                        .await?
                }
                None => {
                    client
                        .open_channel(&peer, deposit, peer_deposit, timeout)
                        .await?
                }
            };
            print_channel(out, &channel);
        }
        ChannelCommand::Pay {
            node,
            amount,
            timeout,
            request_id,
        } => {
            let (peer, amount) = (id_arg("node", &node)?, amount_arg(&amount)?);
            let timeout = Duration::from_secs(timeout);
            let channel = match request_id {
                Some(id) => {
                    client
                        .pay_with_request_id(&peer, amount, id.as_bytes(), timeout)
                        .await?
                }
                None => client.pay(&peer, amount, timeout).await?,
            };
            print_channel(out, &channel);
        }
        ChannelCommand::Settle(args) => {
            let how = if args.unilateral {
                Settlement::Unilateral
            } else if args.close {
                Settlement::Close
            } else {
                Settlement::Checkpoint
            };
            match client
                .settle_channel(
                    &id_arg("channel", &args.channel)?,
                    how,
                    Duration::from_secs(args.timeout),
                )
                .await?
            {
                SettleResult::Recorded(r) => out.record(
                    &[
                        ("record", hex::encode(&r.record_id)),
                        ("channel", hex::encode(&r.channel_id)),
                        ("kind", settlement_kind_name(r.kind).to_string()),
                        ("seq", r.seq.to_string()),
                        ("balance A", mhr(i128::from(r.balance_a_umhr))),
                        ("balance B", mhr(i128::from(r.balance_b_umhr))),
                    ],
                    json!({
                        "record_id": hex::encode(&r.record_id),
                        "channel_id": hex::encode(&r.channel_id),
                        "kind": settlement_kind_name(r.kind),
                        "seq": r.seq,
                        "balance_a_umhr": r.balance_a_umhr,
                        "balance_b_umhr": r.balance_b_umhr,
                    }),
                ),
                SettleResult::Disputing { closes_at_round } => out.record(
                    &[
                        ("channel", args.channel.clone()),
                        ("disputing until round", closes_at_round.to_string()),
                    ],
                    json!({ "channel_id": args.channel, "dispute_closes_at_round": closes_at_round }),
                ),
            }
        }
    }
    Ok(())
}

/// `mehr trust add|remove|list`.
pub(super) async fn trust(
    client: &Client,
    out: &Output,
    command: TrustCommand,
) -> anyhow::Result<()> {
    match command {
        TrustCommand::Add { node, credit_limit } => {
            let changed = client
                .trust(&id_arg("node", &node)?, amount_arg(&credit_limit)?)
                .await?;
            out.line(
                &if changed {
                    format!("trusting {node}")
                } else {
                    format!("{node} was already trusted with this limit")
                },
                json!({ "node_id": node, "trusted": true, "changed": changed }),
            );
        }
        TrustCommand::Remove { node } => {
            let changed = client.untrust(&id_arg("node", &node)?).await?;
            out.line(
                &if changed {
                    format!("no longer trusting {node}")
                } else {
                    format!("{node} was not trusted")
                },
                json!({ "node_id": node, "trusted": false, "changed": changed }),
            );
        }
        TrustCommand::List => {
            let peers = client.trusted_peers().await?;
            let rows: Vec<Vec<String>> = peers
                .iter()
                .map(|p| vec![hex::encode(&p.node_id), p.credit_limit_umhr.to_string()])
                .collect();
            out.table(
                &["NODE", "CREDIT LIMIT μ"],
                &rows,
                Value::Array(
                    peers
                        .iter()
                        .map(|p| {
                            json!({
                                "node_id": hex::encode(&p.node_id),
                                "credit_limit_umhr": p.credit_limit_umhr,
                            })
                        })
                        .collect(),
                ),
            );
        }
    }
    Ok(())
}

/// `mehr ledger`.
pub(super) async fn ledger(client: &Client, out: &Output) -> anyhow::Result<()> {
    let s = client.ledger_summary().await?;
    let rejected = s.rejected.unwrap_or_default();
    let relay = s.relay.unwrap_or_default();
    if out.json {
        let accounts: Vec<Value> = s
            .accounts
            .iter()
            .map(|a| {
                json!({
                    "node_id": hex::encode(&a.node_id),
                    "balance_umhr": a.balance_umhr,
                    "escrowed_umhr": a.escrowed_umhr,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "epoch": s.epoch,
                "snapshot_root": hex::encode(&s.snapshot_root),
                "records_digest": hex::encode(&s.records_digest),
                "record_count": s.record_count,
                "supply_umhr": s.supply_umhr,
                "burned_folded_umhr": s.burned_folded_umhr,
                "burned_unfolded_umhr": s.burned_unfolded_umhr,
                "minted_umhr": s.minted_umhr,
                "accounts": accounts,
                "equivocations": s.equivocations,
                "overdrafts": s.overdrafts.iter().map(hex::encode).collect::<Vec<_>>(),
                "rejected": {
                    "malformed": rejected.malformed,
                    "forged": rejected.forged,
                    "stale": rejected.stale,
                    "unknown": rejected.unknown,
                    "refused": rejected.refused,
                    "total": rejected.total,
                },
                "relay": {
                    "relayed_free": relay.relayed_free,
                    "relayed_paid": relay.relayed_paid,
                    "relayed_unpaid": relay.relayed_unpaid,
                    "relayed_unattributed": relay.relayed_unattributed,
                    "tickets_won": relay.tickets_won,
                    "tickets_paid": relay.tickets_paid,
                    "tickets_declined": relay.tickets_declined,
                    "reports_dropped": relay.reports_dropped,
                },
            })
        );
        return Ok(());
    }
    out.record(
        &[
            ("epoch", s.epoch.to_string()),
            ("snapshot root", hex::encode(&s.snapshot_root)),
            ("records digest", hex::encode(&s.records_digest)),
            ("records", s.record_count.to_string()),
            ("supply", mhr(i128::from(s.supply_umhr))),
            (
                "burned",
                format!(
                    "{} (epochs) + {} (since)",
                    mhr(i128::from(s.burned_folded_umhr)),
                    mhr(i128::from(s.burned_unfolded_umhr))
                ),
            ),
            ("minted", mhr(i128::from(s.minted_umhr))),
            ("equivocations", s.equivocations.to_string()),
            ("overdrafts", s.overdrafts.len().to_string()),
            (
                "rejected",
                format!(
                    "{} (malformed {}, forged {}, stale {}, unknown {}, refused {})",
                    rejected.total,
                    rejected.malformed,
                    rejected.forged,
                    rejected.stale,
                    rejected.unknown,
                    rejected.refused
                ),
            ),
            (
                "relayed",
                format!(
                    "paid {}, free {}, unpaid {}, unattributed {}",
                    relay.relayed_paid,
                    relay.relayed_free,
                    relay.relayed_unpaid,
                    relay.relayed_unattributed
                ),
            ),
            (
                "tickets",
                format!(
                    "won {}, paid {}, declined {} (paid under relay agreements)",
                    relay.tickets_won, relay.tickets_paid, relay.tickets_declined
                ),
            ),
        ],
        Value::Null,
    );
    println!();
    let rows: Vec<Vec<String>> = s
        .accounts
        .iter()
        .map(|a| {
            vec![
                hex::encode(&a.node_id),
                a.balance_umhr.to_string(),
                a.escrowed_umhr.to_string(),
            ]
        })
        .collect();
    out.table(&["ACCOUNT", "BALANCE μ", "ESCROWED μ"], &rows, Value::Null);
    Ok(())
}

/// `mehr ticket verify`.
pub(super) async fn ticket(
    client: &Client,
    out: &Output,
    command: TicketCommand,
) -> anyhow::Result<()> {
    let TicketCommand::Verify { ticket, relay } = command;
    let ticket =
        hex::decode(ticket.trim()).map_err(|_| anyhow::anyhow!("the ticket is not hex"))?;
    let relay = hex::decode(relay.trim()).map_err(|_| anyhow::anyhow!("--relay is not hex"))?;
    let v = client.verify_ticket(&ticket, &relay).await?;
    out.record(
        &[
            ("valid", v.valid.to_string()),
            ("payout", mhr(i128::from(v.payout_umhr))),
            ("channel", hex::encode(&v.channel_id)),
            ("period", v.period.to_string()),
            ("win probability", format!("{} ppm", v.win_ppm)),
            ("cost", format!("{} μMHR", v.cost_umhr)),
            ("committed terms checked", v.committed_checked.to_string()),
            ("reason", v.reason.clone()),
        ],
        json!({
            "valid": v.valid,
            "payout_umhr": v.payout_umhr,
            "reason": v.reason,
            "committed_checked": v.committed_checked,
            "channel_id": hex::encode(&v.channel_id),
            "period": v.period,
            "win_ppm": v.win_ppm,
            "packet_hash": hex::encode(&v.packet_hash),
            "cost_umhr": v.cost_umhr,
        }),
    );
    anyhow::ensure!(v.valid, "the ticket is not valid: {}", v.reason);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_in_micro_and_whole_mhr() {
        assert_eq!(amount_arg("1500").unwrap(), 1500);
        assert_eq!(amount_arg("2mhr").unwrap(), 2_000_000);
        assert_eq!(amount_arg("0.5MHR").unwrap(), 500_000);
        assert_eq!(amount_arg(".000001mhr").unwrap(), 1);
        assert!(amount_arg("0.0000001mhr").is_err());
        assert!(amount_arg("ten").is_err());
        assert!(amount_arg("99999999999999999999mhr").is_err());
    }

    #[test]
    fn amounts_print_as_mhr() {
        assert_eq!(mhr(1_234_567), "1.234567 MHR");
        assert_eq!(mhr(-5), "-0.000005 MHR");
    }
}
