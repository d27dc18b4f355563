//! Economics between real daemons over the real transport: a relay paid through its channel
//! with the sender (tickets, the 2% burn), trusted neighbours relayed free, payments that
//! survive `kill -9`, partitions whose ledgers converge after healing, forged messages
//! counted, marketplace agreements paid through the channel with the provider (a neighbour or
//! a node two hops away), what verified storage earns paid the same way, and a unilateral
//! close on an old state that loses its dispute and releases its escrow.

mod common;

use std::time::Duration;

use common::{
    Planned, TestDaemon, channel_with, eventually, free_port, free_udp_port, plan, tcp_client,
    tcp_server, wait_neighbour,
};
use futures::StreamExt;
use mehr_sdk::{
    Client, InvokeOptions, Placement, SettleResult, Settlement,
    market::Proposal,
    proto as pb,
    serve::{FunctionSpec, HandlerError, handler_fn},
    storage::{PutOptions, ReplicateOptions},
};
use mehr_transport::identity::PrivateIdentity;
use nix::sys::signal::Signal;
use serde_json::Value;

const GENESIS: u64 = 10_000_000;
const DEPOSIT: u64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A node whose identity is known before it starts, so every node's config can list the
/// same genesis allocation.
fn ledger_toml(nodes: &[Planned]) -> String {
    ledger_toml_with(nodes, "")
}

/// [`ledger_toml`] with more `[ledger]` keys (TOML lines).
fn ledger_toml_with(nodes: &[Planned], keys: &str) -> String {
    let mut toml = format!("[ledger]\ngossip_interval_secs = 1\nretry_millis = 500\n{keys}");
    for node in nodes {
        toml.push_str(&format!(
            "[[ledger.genesis]]\nnode = \"{}\"\namount_umhr = {GENESIS}\n",
            hex::encode(node.id)
        ));
    }
    toml
}

/// A simulated link at 1 Mbit/s: the partition test is about the ledger, not about how long
/// a LoRa-speed link (the sim's default) takes to carry the market's and ledger's traffic.
const SIM_BITRATE: u64 = 1_000_000;

fn sim(listen: u16, peer: u16) -> String {
    format!(
        "[[interfaces]]\ntype = \"sim\"\nlisten_port = {listen}\npeer_port = {peer}\n\
         bitrate = {SIM_BITRATE}\n"
    )
}

fn sim_spec(listen: u16, peer: u16) -> pb::InterfaceSpec {
    pb::InterfaceSpec {
        r#type: "sim".into(),
        listen_port: Some(u32::from(listen)),
        peer_port: Some(u32::from(peer)),
        bitrate: Some(SIM_BITRATE),
        ..Default::default()
    }
}

/// Writes the node's config (transport, interfaces and `ledger` sections first, so the
/// genesis tables come last) and starts it.
fn start(node: &Planned, config: &str) -> TestDaemon {
    std::fs::write(&node.config, config).unwrap();
    TestDaemon::start_in(
        &node.data_dir,
        &[
            "--config",
            node.config.to_str().unwrap(),
            "--log-level",
            "mehrd::ledger=debug,info",
        ],
    )
}

fn restart(node: &Planned) -> TestDaemon {
    TestDaemon::start_in(&node.data_dir, &["--config", node.config.to_str().unwrap()])
}

async fn wait_path(client: &Client, destination: &[u8]) {
    eventually("a path", WAIT, || async {
        client
            .paths(false)
            .await
            .ok()?
            .into_iter()
            .any(|p| p.destination == destination)
            .then_some(())
    })
    .await;
}

fn json(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn burn_of(gross: u64) -> u64 {
    (gross * 2).div_ceil(100)
}

#[test]
fn a_relay_is_paid_through_its_channel_with_the_sender_and_the_burn_shows() {
    let nodes = plan(3);
    let port = free_port();
    let genesis = ledger_toml(&nodes);
    // B relays between A and C and charges 4 μMHR per byte.
    let b = start(
        &nodes[1],
        &format!(
            "{}[transport]\ncost_per_byte = 4.0\n{genesis}",
            tcp_server(port)
        ),
    );
    let a = start(&nodes[0], &format!("{}{genesis}", tcp_client(port)));
    let c = start(&nodes[2], &format!("{}{genesis}", tcp_client(port)));
    let (a_id, b_id) = (nodes[0].id, nodes[1].id);
    runtime().block_on(async {
        let (ac, bc, cc) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        wait_neighbour(&bc, &a_id).await;
        wait_neighbour(&ac, &b_id).await;
        let mut events = ac.watch_events().await.unwrap();
        let inbox = cc.listen("paid.inbox", true).await.unwrap();
        wait_path(&ac, &inbox.destination).await;
        let send = |i: u32| {
            let (ac, destination) = (ac.clone(), inbox.destination.clone());
            async move {
                let report = ac
                    .send(&destination, format!("message {i}").into_bytes(), WAIT)
                    .await
                    .unwrap();
                assert!(report.delivered);
            }
        };
        // The first packet through B makes it ask A for a channel; until A accepts, B relays
        // unpaid.
        send(0).await;
        eventually("B's channel with A", WAIT, || async {
            channel_with(&bc, &a_id).await.map(|_| ())
        })
        .await;
        for i in 1..=60u32 {
            send(i).await;
        }

        // B opened a channel with A on demand; its tickets were paid, each once.
        let (relay, payer) = eventually("the tickets paid", WAIT, || async {
            let relay = channel_with(&bc, &a_id).await?;
            let payer = channel_with(&ac, &b_id).await?;
            (relay.tickets_won > 0
                && payer.tickets_paid == relay.tickets_won
                && !payer.proposal_outstanding
                && payer.owed_umhr == 0
                && payer.seq == relay.seq)
                .then_some((relay, payer))
        })
        .await;
        assert_eq!(relay.role(), pb::ChannelRole::Opener, "the relay opened it");
        assert_eq!(relay.peer_deposit_umhr, DEPOSIT);
        assert_eq!(payer.paid_umhr, relay.received_umhr);
        assert!(relay.received_umhr > 0);
        // Each ticket pays cost / p, p = 1/5 on a fresh channel.
        assert_eq!(relay.win_ppm, 200_000);
        assert_eq!(
            relay.balance_umhr,
            relay.deposit_umhr + relay.received_umhr - burn_of(relay.received_umhr),
            "the relay keeps 98%"
        );
        assert_eq!(relay.burned_umhr, burn_of(relay.received_umhr));
        assert_eq!(payer.balance_umhr, DEPOSIT - payer.paid_umhr);

        let ledger = bc.ledger_summary().await.unwrap();
        let counters = ledger.relay.unwrap();
        assert!(counters.relayed_paid >= 60, "{counters:?}");
        assert!(counters.relayed_unpaid >= 1, "{counters:?}");
        assert_eq!(counters.tickets_won, relay.tickets_won);
        assert_eq!(counters.relayed_free, 0);

        // The CLI shows the same, and a checkpoint carries the burn into the ledger.
        let channels = json(b.cli(&["--json", "channels"]));
        assert_eq!(channels[0]["burned_umhr"], relay.burned_umhr);
        let settled = json(b.cli(&[
            "--json",
            "channel",
            "settle",
            &hex::encode(&relay.channel_id),
        ]));
        assert_eq!(settled["kind"], "checkpoint");
        let summary = eventually("the checkpoint at A", WAIT, || async {
            let s = ac.ledger_summary().await.ok()?;
            (s.burned_unfolded_umhr == relay.burned_umhr).then_some(s)
        })
        .await;
        let account = |id: &[u8; 16]| {
            summary
                .accounts
                .iter()
                .find(|acc| acc.node_id.as_ref() == id)
                .unwrap()
                .balance_umhr
        };
        assert_eq!(
            account(&b_id),
            (GENESIS + relay.received_umhr - relay.burned_umhr) as i64
        );
        assert_eq!(account(&a_id), (GENESIS - payer.paid_umhr) as i64);

        // Anyone can check a ticket: A saw them in its events.
        let ticket = loop {
            let event = tokio::time::timeout(WAIT, events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Some(pb::node_event::Kind::TicketRedeemed(t)) = event.kind {
                break t;
            }
        };
        let relay_key = hex::encode(bc.info().await.unwrap().ed25519_public_key);
        let verdict = json(c.cli(&[
            "--json",
            "ticket",
            "verify",
            &hex::encode(&ticket.ticket),
            "--relay",
            &relay_key,
        ]));
        assert_eq!(verdict["valid"], true);
        assert_eq!(verdict["committed_checked"], false, "C is not a party");
        assert_eq!(verdict["payout_umhr"], ticket.payout_umhr);
        let at_payer = ac
            .verify_ticket(&ticket.ticket, &nodes[1].identity.public().public_key())
            .await
            .unwrap();
        assert!(at_payer.valid && at_payer.committed_checked, "{at_payer:?}");
        let mut forged = ticket.ticket.to_vec();
        forged[100] ^= 1;
        let output = c.cli(&[
            "ticket",
            "verify",
            &hex::encode(&forged),
            "--relay",
            &relay_key,
        ]);
        assert_eq!(output.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("not valid"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// A relay agreement is paid by delivery receipts instead of the lottery: A buys relaying
/// from B (4 μMHR per byte) and sends C messages through it. Each message C proves is charged
/// on the agreement, a chunk of bytes at a time, and paid through A's channel with B; B's
/// lottery tickets for those packets are declined, so nothing is paid twice.
#[test]
fn a_relay_agreement_is_paid_per_proved_byte_and_its_tickets_are_declined() {
    let nodes = plan(3);
    let port = free_port();
    let genesis = ledger_toml(&nodes);
    let market = "[market]\ngossip_round_ms = 500\nbeacon_interval_ms = 1000\n";
    let b = start(
        &nodes[1],
        &format!(
            "{}[transport]\ncost_per_byte = 4.0\n{market}{genesis}",
            tcp_server(port)
        ),
    );
    let a = start(
        &nodes[0],
        &format!(
            "{}{market}relay_charge_bytes = 200\n{genesis}",
            tcp_client(port)
        ),
    );
    let c = start(&nodes[2], &format!("{}{genesis}", tcp_client(port)));
    let (a_id, b_id) = (nodes[0].id, nodes[1].id);
    runtime().block_on(async {
        let (ac, bc, cc) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        wait_neighbour(&bc, &a_id).await;
        wait_neighbour(&ac, &b_id).await;
        let cap = pb::CostStructure {
            kind: Some(pb::cost_structure::Kind::PerByte(pb::PerByte {
                per_byte_umhr: 4,
            })),
        };
        let agreement = ac
            .propose_agreement(
                Proposal::relay(&b_id)
                    .cost_cap(cap)
                    .proof(pb::ProofMethod::DeliveryReceipt)
                    .accept()
                    .wait(WAIT),
            )
            .await
            .unwrap();
        let active = |client: &Client| {
            let (client, id) = (client.clone(), agreement.agreement_id.clone());
            async move {
                client
                    .agreements()
                    .await
                    .ok()?
                    .into_iter()
                    .find(|g| g.agreement_id == id && g.state() == pb::AgreementState::Active)
            }
        };
        eventually("the agreement active at A", WAIT, || active(&ac)).await;
        eventually("the agreement active at B", WAIT, || active(&bc)).await;

        let inbox = cc.listen("metered.inbox", true).await.unwrap();
        wait_path(&ac, &inbox.destination).await;
        // The first packet through B makes it ask A for a lottery channel; B draws tickets
        // once it is open.
        let warm_up = b"warm-up".to_vec();
        let mut sent_bytes = warm_up.len() as u64;
        assert!(
            ac.send(&inbox.destination, warm_up, WAIT)
                .await
                .unwrap()
                .delivered
        );
        eventually("B's channel with A", WAIT, || async {
            channel_with(&bc, &a_id).await.map(|_| ())
        })
        .await;
        for i in 0..60u32 {
            let payload = format!("metered message {i}").into_bytes();
            sent_bytes += payload.len() as u64;
            let report = ac.send(&inbox.destination, payload, WAIT).await.unwrap();
            assert!(report.delivered);
            assert_eq!(report.route.unwrap().next_hop.as_ref(), b_id);
        }
        // Most bytes went in whole chunks; this rest waits for the quiet spell.
        let tail = b"tail!".to_vec();
        sent_bytes += tail.len() as u64;
        assert!(
            ac.send(&inbox.destination, tail, WAIT)
                .await
                .unwrap()
                .delivered
        );

        // Billed by the chunk, the rest after a quiet spell; paid through the channel.
        let (charged, payer) = eventually("the proved bytes charged and paid", WAIT, || async {
            let charged = active(&ac).await?;
            let payer = channel_with(&ac, &b_id).await?;
            (charged.charged_units == sent_bytes
                && payer.paid_umhr == charged.charged_umhr
                && payer.owed_umhr == 0)
                .then_some((charged, payer))
        })
        .await;
        assert_eq!(charged.charged_umhr, 4 * sent_bytes);
        eventually("B's side of the channel", WAIT, || async {
            let relay = channel_with(&bc, &a_id).await?;
            (relay.received_umhr == payer.paid_umhr).then_some(())
        })
        .await;

        // B still drew its lottery on A's packets; A declined every winning ticket.
        let declined = eventually("B's tickets declined", WAIT, || async {
            let won = channel_with(&bc, &a_id).await?.tickets_won;
            let counters = ac.ledger_summary().await.ok()?.relay?;
            (won > 0 && counters.tickets_declined == won).then_some(counters)
        })
        .await;
        assert_eq!(declined.tickets_paid, 0, "{declined:?}");
        assert_eq!(payer.tickets_paid, 0);
    });
}

#[test]
fn a_trusted_pair_relays_free_without_tickets_or_channels() {
    let nodes = plan(3);
    let port = free_port();
    let genesis = ledger_toml(&nodes);
    let b = start(
        &nodes[1],
        &format!(
            "{}[transport]\ncost_per_byte = 4.0\n{genesis}",
            tcp_server(port)
        ),
    );
    let a = start(&nodes[0], &format!("{}{genesis}", tcp_client(port)));
    let c = start(&nodes[2], &format!("{}{genesis}", tcp_client(port)));
    let (a_hex, b_hex) = (hex::encode(nodes[0].id), hex::encode(nodes[1].id));
    // Trust is set before any traffic, through the CLI, on both sides.
    let added = json(b.cli(&["--json", "trust", "add", &a_hex]));
    assert_eq!(added["changed"], true);
    json(a.cli(&["--json", "trust", "add", &b_hex, "--credit-limit", "1mhr"]));
    let list = json(a.cli(&["--json", "trust", "list"]));
    assert_eq!(list[0]["node_id"], b_hex.as_str());
    assert_eq!(list[0]["credit_limit_umhr"], 1_000_000);
    runtime().block_on(async {
        let (ac, bc, cc) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        wait_neighbour(&bc, &nodes[0].id).await;
        let inbox = cc.listen("free.inbox", true).await.unwrap();
        wait_path(&ac, &inbox.destination).await;
        for i in 0..30u32 {
            let report = ac
                .send(&inbox.destination, format!("free {i}").into_bytes(), WAIT)
                .await
                .unwrap();
            assert!(report.delivered);
        }
        let relay = bc.ledger_summary().await.unwrap().relay.unwrap();
        assert!(relay.relayed_free >= 30, "{relay:?}");
        assert_eq!(relay.relayed_paid, 0);
        assert_eq!(relay.tickets_won, 0);
        assert!(ac.channels().await.unwrap().is_empty());
        assert!(bc.channels().await.unwrap().is_empty());
        assert_eq!(
            ac.ledger_summary()
                .await
                .unwrap()
                .relay
                .unwrap()
                .tickets_paid,
            0
        );
        // Revoking is reported, and a second revocation changes nothing.
        assert!(bc.untrust(&nodes[0].id).await.unwrap());
        assert!(!bc.untrust(&nodes[0].id).await.unwrap());
        let err = bc.trust(&nodes[1].id, 0).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    });
}

/// What a run of payments asked for: `certain` was taken on for sure (answered, or timed
/// out waiting for the peer: the payment is then owed and completes later); `possible` adds
/// the call that was cut off when the payer died (it may or may not have been stored).
#[derive(Default, Clone, Copy, Debug)]
struct Asked {
    certain: u64,
    possible: u64,
}

/// Pays `count` × `amount` from `payer` to `peer` one call at a time, until done or until the
/// payer's daemon goes away.
async fn pay_many(payer: &Client, peer: &[u8; 16], count: u32, amount: u64) -> Asked {
    let mut asked = Asked::default();
    for _ in 0..count {
        match payer.pay(peer, amount, Duration::from_millis(700)).await {
            Ok(_) => asked.certain += amount,
            Err(e) if e.code() == Some(tonic::Code::DeadlineExceeded) => asked.certain += amount,
            Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => {
                panic!("payment refused: {e}")
            }
            // The payer died under the call.
            Err(_) => {
                asked.possible = asked.certain + amount;
                return asked;
            }
        }
    }
    asked.possible = asked.certain;
    asked
}

#[test]
fn kill_9_between_update_and_ack_loses_no_cosigned_state_and_spends_nothing_twice() {
    let nodes = plan(2);
    let port = free_port();
    let genesis = ledger_toml(&nodes);
    let mut a = start(&nodes[0], &format!("{}{genesis}", tcp_server(port)));
    let mut b = start(&nodes[1], &format!("{}{genesis}", tcp_client(port)));
    let (a_id, b_id) = (nodes[0].id, nodes[1].id);
    let rt = runtime();
    let (channel_id, first) = rt.block_on(async {
        let ac = a.client().await.unwrap();
        wait_neighbour(&ac, &b_id).await;
        let channel = ac.open_channel(&b_id, DEPOSIT, 0, WAIT).await.unwrap();
        assert_eq!(channel.seq, 0);
        (
            channel.channel_id.to_vec(),
            pay_many(&ac, &b_id, 20, 100).await,
        )
    });
    assert_eq!(first.certain, 2_000);
    let (mut low, mut high) = (first.certain, first.possible);

    // Payments keep flowing while the payee dies without warning, and again while the payer
    // does: every kill lands somewhere between a proposal and its acknowledgement.
    for victim in [1, 0] {
        let paying = {
            let client = rt.block_on(a.client()).unwrap();
            rt.spawn(async move { pay_many(&client, &b_id, 400, 10).await })
        };
        std::thread::sleep(Duration::from_millis(700));
        if victim == 1 {
            b.stop_with(Signal::SIGKILL, Duration::from_secs(5));
            b = restart(&nodes[1]);
        } else {
            a.stop_with(Signal::SIGKILL, Duration::from_secs(5));
        }
        let asked = rt.block_on(paying).unwrap();
        low += asked.certain;
        high += asked.possible;
        if victim == 0 {
            a = restart(&nodes[0]);
        }
    }
    rt.block_on(async {
        let (ac, bc) = (a.client().await.unwrap(), b.client().await.unwrap());
        let (payer, payee) = eventually("both sides agree", Duration::from_secs(60), || async {
            let payer = channel_with(&ac, &b_id).await?;
            let payee = channel_with(&bc, &a_id).await?;
            (payer.seq == payee.seq && !payer.proposal_outstanding && payer.owed_umhr == 0)
                .then_some((payer, payee))
        })
        .await;
        assert_eq!(payer.channel_id.as_ref(), channel_id.as_slice());
        assert_eq!(
            payer.paid_umhr, payee.received_umhr,
            "one state on both sides"
        );
        assert!(
            (low..=high).contains(&payer.paid_umhr),
            "every payment taken on is paid, none twice: paid {}, asked {low}..={high}",
            payer.paid_umhr
        );
        assert_eq!(
            payee.balance_umhr,
            payer.paid_umhr - burn_of(payer.paid_umhr)
        );
        assert_eq!(payer.balance_umhr, DEPOSIT - payer.paid_umhr);
    });
}

#[test]
fn partitions_that_transact_apart_hold_equal_ledgers_after_healing() {
    let nodes = plan(4);
    let genesis = ledger_toml(&nodes);
    let (left, right) = (free_port(), free_port());
    let (sim_b, sim_c) = (free_udp_port(), free_udp_port());
    // A — B ~~ C — D: TCP on the sides, a simulated link in the middle.
    let a = start(&nodes[0], &format!("{}{genesis}", tcp_client(left)));
    let b = start(
        &nodes[1],
        &format!("{}{}{genesis}", tcp_server(left), sim(sim_b, sim_c)),
    );
    let c = start(
        &nodes[2],
        &format!("{}{}{genesis}", tcp_server(right), sim(sim_c, sim_b)),
    );
    let d = start(&nodes[3], &format!("{}{genesis}", tcp_client(right)));
    let ids: Vec<[u8; 16]> = nodes.iter().map(|n| n.id).collect();
    runtime().block_on(async {
        let clients = [
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
            d.client().await.unwrap(),
        ];
        wait_neighbour(&clients[1], &ids[2]).await;
        wait_neighbour(&clients[0], &ids[1]).await;
        wait_neighbour(&clients[3], &ids[2]).await;
        let sim_of = |client: &Client| {
            let client = client.clone();
            async move {
                client
                    .interfaces()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|i| i.spec.as_ref().unwrap().r#type == "sim")
                    .unwrap()
                    .id
            }
        };
        // Cut the middle.
        clients[1]
            .remove_interface(sim_of(&clients[1]).await)
            .await
            .unwrap();
        clients[2]
            .remove_interface(sim_of(&clients[2]).await)
            .await
            .unwrap();

        // Each side opens a channel, pays, and checkpoints.
        for (payer, payee, amount) in [(0, 1, 30_000), (3, 2, 70_000)] {
            let channel = clients[payer]
                .open_channel(&ids[payee], DEPOSIT, 0, WAIT)
                .await
                .unwrap();
            clients[payer].pay(&ids[payee], amount, WAIT).await.unwrap();
            let settled = clients[payee]
                .settle_channel(&channel.channel_id, Settlement::Checkpoint, WAIT)
                .await
                .unwrap();
            assert!(matches!(settled, SettleResult::Recorded(ref r) if r.seq == 1));
        }
        let digest = |s: &pb::GetLedgerResponse| {
            (
                s.snapshot_root.clone(),
                s.records_digest.clone(),
                s.record_count,
                s.accounts.clone(),
            )
        };
        let sides = eventually("each side agrees within itself", WAIT, || async {
            let mut all = Vec::new();
            for c in &clients {
                all.push(digest(&c.ledger_summary().await.ok()?));
            }
            (all[0] == all[1] && all[2] == all[3]).then_some(all)
        })
        .await;
        assert_ne!(sides[1], sides[2], "the partitions hold different ledgers");

        // Heal: the simulated link comes back on both ends.
        clients[1]
            .add_interface(sim_spec(sim_b, sim_c))
            .await
            .unwrap();
        clients[2]
            .add_interface(sim_spec(sim_c, sim_b))
            .await
            .unwrap();
        // Both ends hear each other again (whichever came up first is greeted back).
        wait_neighbour(&clients[1], &ids[2]).await;
        wait_neighbour(&clients[2], &ids[1]).await;
        let healed = eventually("one ledger everywhere", Duration::from_secs(60), || async {
            let mut all = Vec::new();
            for c in &clients {
                all.push(digest(&c.ledger_summary().await.ok()?));
            }
            all.windows(2).all(|w| w[0] == w[1]).then(|| all[0].clone())
        })
        .await;
        assert_eq!(healed.2, 2, "one winning record per channel");
        let balance = |id: &[u8; 16]| {
            healed
                .3
                .iter()
                .find(|acc| acc.node_id.as_ref() == id)
                .unwrap()
                .balance_umhr
        };
        assert_eq!(
            balance(&ids[1]),
            (GENESIS + 30_000 - burn_of(30_000)) as i64
        );
        assert_eq!(balance(&ids[3]), (GENESIS - 70_000) as i64);
        let via_cli = json(d.cli(&["--json", "ledger"]));
        assert_eq!(via_cli["records_digest"], hex::encode(&healed.1));
    });
}

#[test]
fn malformed_and_forged_channel_messages_are_rejected_and_counted() {
    let nodes = plan(2);
    let port = free_port();
    let genesis = ledger_toml(&nodes);
    let a = start(&nodes[0], &format!("{}{genesis}", tcp_server(port)));
    let b = start(&nodes[1], &format!("{}{genesis}", tcp_client(port)));
    let b_id = nodes[1].id;
    runtime().block_on(async {
        let (ac, bc) = (a.client().await.unwrap(), b.client().await.unwrap());
        wait_neighbour(&ac, &b_id).await;
        wait_neighbour(&bc, &nodes[0].id).await;
        let channel = ac.open_channel(&b_id, DEPOSIT, 0, WAIT).await.unwrap();
        ac.pay(&b_id, 5_000, WAIT).await.unwrap();

        // A stranger's messages reach B as messages to its mehr.node destination.
        let b_node = mehr_node(&bc).await;
        let send = |payload: Vec<u8>| {
            let ac = ac.clone();
            let b_node = b_node.clone();
            async move { ac.send(&b_node, payload, WAIT).await.unwrap() }
        };
        // Undecodable: a channel message of 3 bytes.
        send(vec![0x10, 1, 2, 3]).await;
        // Forged: an update for B's channel signed by a key that is not A's, sent under a
        // stranger's identity, and under A's identity with a bad signature.
        let stranger = PrivateIdentity::generate(&mut rand::rngs::OsRng);
        let mut update = vec![0x10];
        update.extend_from_slice(&stranger.public().public_key());
        update.push(0x03); // UpdateProposal
        update.push(0); // proposer A
        let mut body = vec![0u8; 104];
        body[..16].copy_from_slice(&channel.channel_id);
        body[16..32].copy_from_slice(&nodes[0].id);
        body[32..48].copy_from_slice(&b_id);
        body[96..100].copy_from_slice(&200_000u32.to_le_bytes());
        body[100..104].copy_from_slice(&200_000u32.to_le_bytes());
        body[48..56].copy_from_slice(&DEPOSIT.to_le_bytes());
        // The next seq, so that the signature is the only thing wrong (a jump past
        // MAX_SEQUENCE_STEP would be refused before the signature is looked at).
        body[64..72].copy_from_slice(&2u64.to_le_bytes());
        update.extend_from_slice(&body);
        update.extend_from_slice(&[7u8; 64]);
        send(update.clone()).await;
        update[1..65].copy_from_slice(&nodes[0].identity.public().public_key());
        send(update).await;
        let rejected = eventually("the rejections counted", WAIT, || async {
            let r = bc.ledger_summary().await.ok()?.rejected?;
            (r.malformed >= 1 && r.forged >= 2).then_some(r)
        })
        .await;
        assert!(rejected.total >= 3, "{rejected:?}");
        let shown = json(b.cli(&["--json", "ledger"]));
        assert!(shown["rejected"]["forged"].as_u64().unwrap() >= 2, "{shown}");
        // Nothing changed.
        let channel = channel_with(&bc, &nodes[0].id).await.unwrap();
        assert_eq!(channel.seq, 1);

        // Errors through the API name what was wrong.
        let err = ac.pay(&b_id, 10 * DEPOSIT, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
        assert!(err.to_string().contains("above this node's balance"), "{err}");
        let err = ac.open_channel(&b_id, 1, 0, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::AlreadyExists), "{err}");
        let err = ac.pay(&[9; 16], 1, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        let err = ac.open_channel(&[9; 16], 1, 0, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        let err = ac.pay(&[1, 2], 1, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
        let err = ac
            .settle_channel(&channel.channel_id, Settlement::Unilateral, WAIT)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
        assert!(err.to_string().contains("not allowed yet"), "{err}");
        let output = a.cli(&["channel", "pay", "zz", "5"]);
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("not hex"));

        // A cooperative close ends the channel on both sides.
        let closed = ac
            .settle_channel(&channel.channel_id, Settlement::Close, WAIT)
            .await
            .unwrap();
        assert!(matches!(closed, SettleResult::Recorded(ref r) if r.kind() == pb::SettlementKind::CooperativeClose));
        eventually("closed at B", WAIT, || async {
            let list = bc.channels().await.ok()?;
            (list[0].phase() == pb::ChannelPhase::Closed).then_some(())
        })
        .await;
        let balance = bc.balance().await.unwrap();
        assert_eq!(balance.escrowed_umhr, 0);
        assert_eq!(balance.settled_umhr, (GENESIS + 5_000 - burn_of(5_000)) as i64);
    });
}

async fn mehr_node(client: &Client) -> Vec<u8> {
    client
        .transport_stats()
        .await
        .unwrap()
        .mehr_destination
        .to_vec()
}

/// A function served on B and called from A through the marketplace: the agreement's charges
/// are paid through a channel A opens with B on demand, so B's side of the channel receives
/// what the agreement says A was charged (less the 2 % burn).
#[test]
fn marketplace_charges_are_paid_through_the_channel_with_the_provider() {
    let nodes = plan(2);
    let port = free_port();
    let market =
        "[market]\ngossip_round_ms = 500\nbeacon_interval_ms = 1000\npull_timeout_ms = 1500\n";
    let genesis = ledger_toml(&nodes);
    let a = start(&nodes[0], &format!("{}{market}{genesis}", tcp_server(port)));
    let b = start(&nodes[1], &format!("{}{market}{genesis}", tcp_client(port)));
    let (a_id, b_id) = (nodes[0].id, nodes[1].id);
    runtime().block_on(async {
        let (ac, bc) = (a.client().await.unwrap(), b.client().await.unwrap());
        wait_neighbour(&ac, &b_id).await;
        let handler = handler_fn(|call, _out| async move {
            let text =
                std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
            Ok::<Vec<u8>, HandlerError>(text.to_uppercase().into_bytes())
        });
        let _serving = bc
            .serve(
                vec![FunctionSpec::new("upper").price_per_invocation_umhr(5_000)],
                handler,
            )
            .await
            .unwrap();
        let mesh = || InvokeOptions::default().placement(Placement::Mesh);
        let first = eventually("upper found on the mesh", WAIT, || async {
            ac.invoke_with("upper", b"pay me".to_vec(), mesh())
                .await
                .ok()
        })
        .await;
        assert_eq!(first.output.as_ref(), b"PAY ME");
        assert_eq!(first.remote.unwrap().charged_umhr, 5_000);
        let second = ac
            .invoke_with("upper", b"again".to_vec(), mesh())
            .await
            .unwrap();
        assert_eq!(second.remote.unwrap().charged_umhr, 5_000);

        let (payer, payee) = eventually("both calls paid", WAIT, || async {
            let payer = channel_with(&ac, &b_id).await?;
            let payee = channel_with(&bc, &a_id).await?;
            (payer.paid_umhr == 10_000 && payee.received_umhr == 10_000).then_some((payer, payee))
        })
        .await;
        assert_eq!(
            payer.deposit_umhr, DEPOSIT,
            "opened on demand with ledger.channel_deposit_umhr"
        );
        assert_eq!(payer.balance_umhr, DEPOSIT - 10_000);
        assert_eq!(payee.balance_umhr, 10_000 - burn_of(10_000));
    });
}

/// The same with the provider two hops away (A – B – C: A serves, C calls): C opens the
/// agreement's channel with A itself, not with the relay B, and pays it what the agreements
/// say it was charged; B only carries the messages (it charges no relay fee here, so it has no
/// lottery channel either) and learns the settlement records by gossip. The channel settles
/// across the two hops, and `OpenChannel` works towards a node that is not a neighbour too.
#[test]
fn marketplace_charges_are_paid_to_a_provider_two_hops_away() {
    let nodes = plan(3);
    let port = free_port();
    let market =
        "[market]\ngossip_round_ms = 500\nbeacon_interval_ms = 1000\npull_timeout_ms = 1500\n";
    let genesis = ledger_toml(&nodes);
    // B is the middle of the line: A and C each connect only to it.
    let b = start(&nodes[1], &format!("{}{market}{genesis}", tcp_server(port)));
    let a = start(&nodes[0], &format!("{}{market}{genesis}", tcp_client(port)));
    let c = start(&nodes[2], &format!("{}{market}{genesis}", tcp_client(port)));
    let (a_id, b_id, c_id) = (nodes[0].id, nodes[1].id, nodes[2].id);
    runtime().block_on(async {
        let (ac, bc, cc) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        wait_neighbour(&ac, &b_id).await;
        wait_neighbour(&cc, &b_id).await;
        let c_neighbours = cc.neighbours().await.unwrap();
        assert!(
            c_neighbours.iter().all(|n| n.node_id.as_ref() != a_id),
            "A is not C's neighbour"
        );
        let handler = handler_fn(|call, _out| async move {
            let text =
                std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
            Ok::<Vec<u8>, HandlerError>(text.to_uppercase().into_bytes())
        });
        let _serving = ac
            .serve(
                vec![FunctionSpec::new("upper").price_per_invocation_umhr(5_000)],
                handler,
            )
            .await
            .unwrap();
        let mesh = || InvokeOptions::default().placement(Placement::Mesh);
        let first = eventually("upper found two hops away", Duration::from_secs(60), || {
            let cc = cc.clone();
            async move {
                cc.invoke_with("upper", b"pay me".to_vec(), mesh())
                    .await
                    .ok()
            }
        })
        .await;
        assert_eq!(first.output.as_ref(), b"PAY ME");
        let remote = first.remote.unwrap();
        assert_eq!(remote.providers[0].node_id.as_ref(), a_id);
        assert_eq!(remote.charged_umhr, 5_000);
        let second = cc
            .invoke_with("upper", b"again".to_vec(), mesh())
            .await
            .unwrap();
        assert_eq!(second.remote.unwrap().charged_umhr, 5_000);

        let (payer, payee) = eventually("both calls paid to A", WAIT, || async {
            let payer = channel_with(&cc, &a_id).await?;
            let payee = channel_with(&ac, &c_id).await?;
            (payer.paid_umhr == 10_000 && payee.received_umhr == 10_000).then_some((payer, payee))
        })
        .await;
        assert_eq!(payer.channel_id, payee.channel_id, "one channel, seen by both");
        assert_eq!(payer.role(), pb::ChannelRole::Opener);
        assert_eq!(
            payer.deposit_umhr, DEPOSIT,
            "opened on demand with ledger.channel_deposit_umhr"
        );
        assert_eq!(payer.balance_umhr, DEPOSIT - 10_000);
        assert_eq!(payee.balance_umhr, 10_000 - burn_of(10_000));
        assert_eq!(payee.peer_balance_umhr, payer.balance_umhr);
        let charged: u64 = cc
            .agreements()
            .await
            .unwrap()
            .iter()
            .filter(|g| g.counterparty.as_ref() == a_id)
            .map(|g| g.charged_umhr)
            .sum();
        assert_eq!(charged, payer.paid_umhr, "paid what the agreements charged");
        assert!(
            bc.channels().await.unwrap().is_empty(),
            "the relay is no party"
        );
        assert!(channel_with(&cc, &b_id).await.is_none());
        assert!(channel_with(&ac, &b_id).await.is_none());

        // A cooperative close across the two hops; the relay learns the record by gossip.
        let closed = cc
            .settle_channel(&payer.channel_id, Settlement::Close, WAIT)
            .await
            .unwrap();
        assert!(matches!(closed, SettleResult::Recorded(ref r) if r.kind() == pb::SettlementKind::CooperativeClose));
        eventually("the close at B", WAIT, || async {
            let summary = bc.ledger_summary().await.ok()?;
            let account = |id: &[u8; 16]| {
                summary
                    .accounts
                    .iter()
                    .find(|acc| acc.node_id.as_ref() == id)
                    .map(|acc| acc.balance_umhr)
            };
            (account(&c_id)? == (GENESIS - 10_000) as i64
                && account(&a_id)? == (GENESIS + 10_000 - burn_of(10_000)) as i64)
                .then_some(())
        })
        .await;

        eventually("the close at A", WAIT, || async {
            let list = ac.channels().await.ok()?;
            list.iter()
                .any(|ch| {
                    ch.channel_id == payer.channel_id && ch.phase() == pb::ChannelPhase::Closed
                })
                .then_some(())
        })
        .await;

        // OpenChannel towards a node two hops away, the other way round.
        let opened = ac.open_channel(&c_id, 2 * DEPOSIT, 0, WAIT).await.unwrap();
        assert_eq!(opened.peer.as_ref(), c_id);
        assert_eq!(opened.phase(), pb::ChannelPhase::Open);
        assert_eq!(opened.deposit_umhr, 2 * DEPOSIT);
        let at_c = eventually("the new channel at C", WAIT, || async {
            channel_with(&cc, &a_id).await
        })
        .await;
        assert_eq!(at_c.channel_id, opened.channel_id);
        assert_eq!(at_c.role(), pb::ChannelRole::Acceptor);
        assert_eq!(at_c.peer_deposit_umhr, 2 * DEPOSIT);
        // A node nobody heard of has no key to open a channel with.
        let err = ac.open_channel(&[9; 16], 1, 0, WAIT).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        assert!(err.to_string().contains("no announce heard"), "{err}");
        assert!(bc.channels().await.unwrap().is_empty());
    });
}

/// Remote storage: what passed challenges earn each provider is paid through the channel with
/// it (opened on demand), and the placement moves it from owed to paid.
#[test]
fn verified_storage_is_paid_through_the_channel_with_each_provider() {
    let nodes = plan(3);
    let port = free_port();
    let storage = "[storage]\nchallenge_interval_secs = 0\nremote_timeout_secs = 30\n";
    let genesis = ledger_toml(&nodes);
    let a = start(
        &nodes[0],
        &format!("{}{storage}{genesis}", tcp_server(port)),
    );
    let b = start(
        &nodes[1],
        &format!("{}{storage}{genesis}", tcp_client(port)),
    );
    let c = start(
        &nodes[2],
        &format!("{}{storage}{genesis}", tcp_client(port)),
    );
    let providers = [nodes[1].id, nodes[2].id];
    runtime().block_on(async {
        let ac = a.client().await.unwrap();
        let (bc, cc) = (b.client().await.unwrap(), c.client().await.unwrap());
        for (client, provider) in [(&bc, providers[0]), (&cc, providers[1])] {
            wait_neighbour(&ac, &provider).await;
            wait_neighbour(client, &nodes[0].id).await;
        }
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let stored = ac.put_bytes(data, PutOptions::default()).await.unwrap();
        let id = stored.object.id;
        let options = ReplicateOptions {
            price_per_byte_day_umhr: 100_000,
            ..ReplicateOptions::on(providers).with_code(1, 1)
        };
        ac.replicate(&id, options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let results = ac.challenge(&id).await.unwrap();
        assert!(results.iter().all(|r| r.passed), "{results:?}");

        let placement = eventually("both providers paid", WAIT, || async {
            let placement = ac.status(&id).await.ok()?.placement?;
            placement
                .shards
                .iter()
                .all(|s| s.paid_umhr > 0 && s.owed_umhr == 0)
                .then_some(placement)
        })
        .await;
        for shard in &placement.shards {
            // 20 000 bytes for at least 1.5 s at 100 000 μMHR per byte-day.
            assert!(
                shard.paid_umhr >= 20_000 * 100_000 * 1_500 / 86_400_000,
                "{shard:?}"
            );
            let channel = channel_with(&ac, &shard.provider).await.unwrap();
            assert_eq!(
                channel.paid_umhr, shard.paid_umhr,
                "paid through the channel"
            );
        }
    });
}

/// Two daemons: B comes back from a backup that predates its last payment and closes the
/// channel alone on that old state (allowed once three cooperative settlements failed); A
/// answers the dispute with the newer co-signed state, both close on it when the window ends,
/// and the epochs that follow fold the close and release the escrow on both sides. Rounds of
/// 10 ms make the 2880-round dispute window 29 s.
#[test]
fn a_unilateral_close_on_an_old_state_loses_its_dispute_and_the_escrow_is_released() {
    let nodes = plan(2);
    let port = free_port();
    let genesis = ledger_toml_with(
        &nodes,
        "round_millis = 10\nepoch_secs = 3\ncheckpoint_interval_secs = 3600\n",
    );
    let a = start(&nodes[0], &format!("{}{genesis}", tcp_server(port)));
    let mut b = start(&nodes[1], &format!("{}{genesis}", tcp_client(port)));
    let (a_id, b_id) = (nodes[0].id, nodes[1].id);
    let rt = runtime();
    let ac = rt.block_on(a.client()).unwrap();
    let channel_id = rt.block_on(async {
        wait_neighbour(&ac, &b_id).await;
        let channel = ac.open_channel(&b_id, DEPOSIT, 0, WAIT).await.unwrap();
        ac.pay(&b_id, 5_000, WAIT).await.unwrap();
        channel.channel_id.to_vec()
    });
    let channel = |client: Client| {
        let id = channel_id.clone();
        async move {
            client
                .channels()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.channel_id.as_ref() == id.as_slice())
        }
    };

    // B's backup at seq 1 (taken stopped, as an operator copies a data dir)…
    b.stop_with(Signal::SIGTERM, Duration::from_secs(15));
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&nodes[1].data_dir, backup.path());
    b = restart(&nodes[1]);
    rt.block_on(async {
        let bc = b.client().await.unwrap();
        wait_neighbour(&ac, &b_id).await;
        wait_neighbour(&bc, &a_id).await;
        assert_eq!(ac.pay(&b_id, 6_000, WAIT).await.unwrap().seq, 2);
    });
    // …from which it comes back, having forgotten seq 2.
    b.stop_with(Signal::SIGTERM, Duration::from_secs(15));
    std::fs::remove_dir_all(&nodes[1].data_dir).unwrap();
    copy_dir(backup.path(), &nodes[1].data_dir);
    b = restart(&nodes[1]);
    let bc = rt.block_on(b.client()).unwrap();
    rt.block_on(async {
        wait_neighbour(&bc, &a_id).await;
        assert_eq!(channel(bc.clone()).await.unwrap().seq, 1);

        // Not alone before three cooperative settlements failed; A refuses the old state.
        let early = bc
            .settle_channel(&channel_id, Settlement::Unilateral, WAIT)
            .await
            .unwrap_err();
        assert_eq!(
            early.code(),
            Some(tonic::Code::FailedPrecondition),
            "{early}"
        );
        for attempt in 0..3 {
            let refused = bc
                .settle_channel(&channel_id, Settlement::Checkpoint, Duration::from_secs(5))
                .await;
            assert!(refused.is_err(), "attempt {attempt}: {refused:?}");
        }
        let filed = bc
            .settle_channel(&channel_id, Settlement::Unilateral, WAIT)
            .await
            .unwrap();
        assert!(matches!(filed, SettleResult::Disputing { .. }), "{filed:?}");

        // A answers with seq 2; when the window ends both sides close on it.
        eventually("both closed on seq 2", Duration::from_secs(90), || async {
            let (mine, theirs) = (channel(ac.clone()).await?, channel(bc.clone()).await?);
            let closed = |c: &pb::Channel| {
                c.phase() == pb::ChannelPhase::Closed && c.recorded_seq == Some(2)
            };
            (closed(&mine) && closed(&theirs)).then_some(())
        })
        .await;
        // Epochs fold the close, then release its escrow: the old state lost.
        eventually("the escrow released", Duration::from_secs(60), || async {
            let (a, b) = (ac.balance().await.ok()?, bc.balance().await.ok()?);
            (a.escrowed_umhr == 0 && b.escrowed_umhr == 0 && a.free_umhr == a.settled_umhr)
                .then_some((a, b))
        })
        .await;
        let a = ac.balance().await.unwrap();
        assert_eq!(
            a.settled_umhr,
            (GENESIS - 11_000) as i64,
            "A paid both payments"
        );
        let b = bc.balance().await.unwrap();
        let received = mehr_ledger::burn::net_of(11_000);
        assert!(
            b.settled_umhr >= (GENESIS + received) as i64,
            "B holds both payments (and what their service minted): {b:?}"
        );
    });
}

/// Copies a directory tree (a stopped node's data dir).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
