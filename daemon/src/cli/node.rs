//! `mehr info` and `mehr events`.

use futures::StreamExt;
use mehr_sdk::{Client, proto as pb};
use serde_json::json;

use super::output::{self, Output};

/// `mehr info`.
pub(super) async fn info(client: &Client, out: &Output) -> anyhow::Result<()> {
    let info = client.info().await?;
    let level = pb::ParticipationLevel::try_from(info.participation_level)
        .unwrap_or(pb::ParticipationLevel::Unspecified);
    let (level_short, level_text) = match level {
        pb::ParticipationLevel::L0Transport => ("L0", "L0 (transport only)"),
        pb::ParticipationLevel::L1Relay => ("L1", "L1 (relay with economics)"),
        pb::ParticipationLevel::L2Full => ("L2", "L2 (full node)"),
        pb::ParticipationLevel::Unspecified => ("unknown", "unknown"),
    };
    let endpoints: Vec<String> = info.api_endpoints.iter().map(endpoint_text).collect();
    out.record(
        &[
            ("node id", hex::encode(&info.identity_hash)),
            ("x25519 key", hex::encode(&info.x25519_public_key)),
            ("ed25519 key", hex::encode(&info.ed25519_public_key)),
            ("version", info.version.clone()),
            ("participation", level_text.to_string()),
            ("uptime", output::duration(info.uptime_seconds)),
            ("started", output::timestamp(info.started_at_unix_ms)),
            ("data dir", info.data_dir.clone()),
            ("api", endpoints.join("\n")),
        ],
        json!({
            "node_id": hex::encode(&info.identity_hash),
            "x25519_public_key": hex::encode(&info.x25519_public_key),
            "ed25519_public_key": hex::encode(&info.ed25519_public_key),
            "version": info.version,
            "participation_level": level_short,
            "uptime_seconds": info.uptime_seconds,
            "started_at_unix_ms": info.started_at_unix_ms,
            "data_dir": info.data_dir,
            "api_endpoints": info.api_endpoints.iter().map(|e| json!({
                "kind": if e.kind == pb::ApiEndpointKind::Unix as i32 { "unix" } else { "tcp" },
                "address": e.address,
                "tls": e.tls,
                "requires_token": e.requires_token,
            })).collect::<Vec<_>>(),
        }),
    );
    Ok(())
}

fn endpoint_text(endpoint: &pb::ApiEndpoint) -> String {
    if endpoint.kind == pb::ApiEndpointKind::Unix as i32 {
        format!("unix:{}  (owner only)", endpoint.address)
    } else {
        let scheme = if endpoint.tls { "https" } else { "http" };
        let token = if endpoint.requires_token {
            "  (bearer token)"
        } else {
            ""
        };
        format!("{scheme}://{}{token}", endpoint.address)
    }
}

/// `mehr events`: prints events until the node stops.
pub(super) async fn events(client: &Client, out: &Output) -> anyhow::Result<()> {
    let mut events = client.watch_events().await?;
    while let Some(event) = events.next().await {
        let event = event?;
        let (text, detail) = describe(&event);
        out.line(
            &format!(
                "#{:<6} {}  {text}",
                event.sequence,
                output::timestamp(event.at_unix_ms)
            ),
            json!({ "sequence": event.sequence, "at_unix_ms": event.at_unix_ms, "event": detail }),
        );
    }
    Ok(())
}

fn describe(event: &pb::NodeEvent) -> (String, serde_json::Value) {
    use pb::node_event::Kind;
    match &event.kind {
        Some(Kind::ShuttingDown(e)) => (
            format!("shutting down: {}", e.reason),
            json!({ "type": "shutting_down", "reason": e.reason }),
        ),
        Some(Kind::FunctionRegistered(e)) => (
            format!(
                "function registered: {} ({})",
                e.function_id,
                super::compute::kind_name(e.kind)
            ),
            json!({
                "type": "function_registered",
                "function_id": e.function_id,
                "kind": super::compute::kind_name(e.kind),
            }),
        ),
        Some(Kind::FunctionUnregistered(e)) => (
            format!(
                "function unregistered: {} ({}): {}",
                e.function_id,
                super::compute::kind_name(e.kind),
                e.reason
            ),
            json!({
                "type": "function_unregistered",
                "function_id": e.function_id,
                "kind": super::compute::kind_name(e.kind),
                "reason": e.reason,
            }),
        ),
        Some(Kind::ObjectStored(e)) => (
            format!(
                "object stored: {} ({} bytes){}",
                hex::encode(&e.id),
                e.length,
                if e.name.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", e.name)
                }
            ),
            json!({ "type": "object_stored", "id": hex::encode(&e.id), "length": e.length, "name": e.name }),
        ),
        Some(Kind::ObjectDeleted(e)) => (
            format!(
                "object deleted: {} ({} bytes)",
                hex::encode(&e.id),
                e.length
            ),
            json!({ "type": "object_deleted", "id": hex::encode(&e.id), "length": e.length }),
        ),
        Some(Kind::ObjectPlaced(e)) => (
            format!(
                "object placed: {} ({} shards)",
                hex::encode(&e.id),
                e.shards
            ),
            json!({ "type": "object_placed", "id": hex::encode(&e.id), "shards": e.shards }),
        ),
        Some(Kind::ShardLost(e)) => (
            format!(
                "shard lost: {} shard {} on {}",
                hex::encode(&e.object_id),
                e.shard,
                hex::encode(&e.provider)
            ),
            json!({ "type": "shard_lost", "object_id": hex::encode(&e.object_id), "shard": e.shard, "provider": hex::encode(&e.provider) }),
        ),
        Some(Kind::ShardRepaired(e)) => (
            format!(
                "shard repaired: {} shard {} now on {}",
                hex::encode(&e.object_id),
                e.shard,
                hex::encode(&e.provider)
            ),
            json!({ "type": "shard_repaired", "object_id": hex::encode(&e.object_id), "shard": e.shard, "provider": hex::encode(&e.provider) }),
        ),
        Some(Kind::ChannelOpened(e)) => (
            format!(
                "channel {} opened with {}",
                hex::encode(&e.channel_id),
                hex::encode(&e.peer)
            ),
            json!({ "type": "channel_opened", "channel_id": hex::encode(&e.channel_id), "peer": hex::encode(&e.peer) }),
        ),
        Some(Kind::ChannelUpdated(e)) => (
            format!(
                "channel {} co-signed seq {}",
                hex::encode(&e.channel_id),
                e.seq
            ),
            json!({ "type": "channel_updated", "channel_id": hex::encode(&e.channel_id), "seq": e.seq }),
        ),
        Some(Kind::SettlementRecorded(e)) => (
            format!(
                "channel {} settled at seq {} ({})",
                hex::encode(&e.channel_id),
                e.seq,
                super::ledger::settlement_kind_name(e.kind)
            ),
            json!({
                "type": "settlement_recorded",
                "channel_id": hex::encode(&e.channel_id),
                "seq": e.seq,
                "kind": super::ledger::settlement_kind_name(e.kind),
            }),
        ),
        Some(Kind::ChannelDisputed(e)) => (
            format!(
                "channel {} disputed until round {}",
                hex::encode(&e.channel_id),
                e.closes_at_round
            ),
            json!({ "type": "channel_disputed", "channel_id": hex::encode(&e.channel_id), "closes_at_round": e.closes_at_round }),
        ),
        Some(Kind::TicketRedeemed(e)) => (
            format!(
                "paid a ticket of relay {} on channel {}: {} μMHR",
                hex::encode(&e.relay),
                hex::encode(&e.channel_id),
                e.payout_umhr
            ),
            json!({
                "type": "ticket_redeemed",
                "channel_id": hex::encode(&e.channel_id),
                "relay": hex::encode(&e.relay),
                "ticket": hex::encode(&e.ticket),
                "payout_umhr": e.payout_umhr,
            }),
        ),
        Some(Kind::TicketWon(e)) => (
            format!(
                "won a relay ticket on channel {}, paid by {}: {} μMHR",
                hex::encode(&e.channel_id),
                hex::encode(&e.payer),
                e.payout_umhr
            ),
            json!({
                "type": "ticket_won",
                "channel_id": hex::encode(&e.channel_id),
                "payer": hex::encode(&e.payer),
                "payout_umhr": e.payout_umhr,
            }),
        ),
        Some(Kind::Lagged(e)) => (
            format!("missed {} events (reading too slowly)", e.missed),
            json!({ "type": "lagged", "missed": e.missed }),
        ),
        Some(Kind::InterfaceUp(e)) => (
            format!("interface {} up: {}", e.interface_id, e.name),
            json!({ "type": "interface_up", "interface_id": e.interface_id, "name": e.name }),
        ),
        Some(Kind::InterfaceDown(e)) => (
            format!(
                "interface {} down: {} ({})",
                e.interface_id, e.name, e.reason
            ),
            json!({ "type": "interface_down", "interface_id": e.interface_id, "name": e.name, "reason": e.reason }),
        ),
        Some(Kind::PathLearned(e)) => (
            format!(
                "path to {} learned: {} hops via interface {}",
                hex::encode(&e.destination),
                e.hops,
                e.interface_id
            ),
            json!({ "type": "path_learned", "destination": hex::encode(&e.destination), "hops": e.hops, "interface_id": e.interface_id }),
        ),
        Some(Kind::MessageReceived(e)) => (
            format!(
                "message of {} bytes for {}",
                e.size_bytes,
                hex::encode(&e.destination)
            ),
            json!({ "type": "message_received", "destination": hex::encode(&e.destination), "size_bytes": e.size_bytes }),
        ),
        Some(Kind::AgreementChanged(e)) => {
            let id = if e.agreement_id.is_empty() {
                &e.request_id
            } else {
                &e.agreement_id
            };
            let role = super::market::role_name(e.role);
            let state = super::market::state_name(e.state);
            (
                format!(
                    "agreement {} ({role} with {}): {state}{}",
                    hex::encode(id),
                    hex::encode(&e.counterparty),
                    if e.note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", e.note)
                    }
                ),
                json!({
                    "type": "agreement_changed",
                    "request_id": hex::encode(&e.request_id),
                    "agreement_id": hex::encode(&e.agreement_id),
                    "counterparty": hex::encode(&e.counterparty),
                    "role": role,
                    "state": state,
                    "note": e.note,
                }),
            )
        }
        Some(Kind::OfferChanged(e)) => (
            format!("offer re-signed: advert seq {}", e.seq),
            json!({ "type": "offer_changed", "seq": e.seq }),
        ),
        Some(Kind::PeerExcluded(e)) => (
            format!(
                "provider {} excluded until {}: {}",
                hex::encode(&e.node_id),
                output::timestamp(e.until_unix_ms),
                e.reason
            ),
            json!({ "type": "peer_excluded", "node_id": hex::encode(&e.node_id), "reason": e.reason, "until_unix_ms": e.until_unix_ms }),
        ),
        None => (
            "unknown event (newer daemon?)".to_string(),
            json!({ "type": "unknown" }),
        ),
    }
}
