//! The marketplace with real daemons over loopback TCP: discovery in rings finds the nearest
//! cheap provider first and widens when needed; agreements form, are visible and persisted on
//! both sides, and end when heartbeats stop; verified calls catch a lying provider, which
//! loses reputation and is no longer chosen; forged adverts and offers are refused and
//! counted; a node resells a neighbour's function; `mehrd devnet` runs a mesh.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{TestDaemon, bin, eventually, free_port};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use mehr_market::{
    CostStructure, NodeKey,
    agreement::{Offer, ProofMethod, SignedOffer},
    capabilities::{Availability, NodeCapabilities, Services},
    message::MarketMessage,
};
use mehr_sdk::{
    Client, InvokeOptions, Placement,
    market::{Discover, Proposal, Tier, VerifiedOptions},
    proto as pb,
    serve::{FunctionSpec, HandlerError, ServeHandle, handler_fn},
};
use nix::sys::signal::Signal;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fast market timings, a TCP server, and clients to the servers of `connect_to`.
fn node_config(relay_fee: u64, server: u16, connect_to: &[u16], market: &str) -> String {
    let mut toml = format!(
        "[transport]\ncost_per_byte = {relay_fee}.0\n\n[market]\ngossip_round_ms = 500\n\
         beacon_interval_ms = 1000\npull_timeout_ms = 1500\nheartbeat_interval_ms = 1000\n\
         heartbeat_max_misses = 5\n{market}\n\
         [[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {server}\n"
    );
    for port in connect_to {
        toml.push_str(&format!(
            "\n[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {port}\n"
        ));
    }
    toml
}

/// One daemon of a test mesh.
struct Node {
    daemon: TestDaemon,
    data_dir: PathBuf,
    config: PathBuf,
    id: Vec<u8>,
}

impl Node {
    async fn client(&self) -> Client {
        self.daemon.client().await.unwrap()
    }

    /// Restarts the daemon on the same data dir and config.
    fn restart(&mut self) {
        self.daemon
            .stop_with(Signal::SIGTERM, Duration::from_secs(10));
        self.daemon =
            TestDaemon::start_in(&self.data_dir, &["--config", self.config.to_str().unwrap()]);
    }
}

/// Starts `n` daemons linked by `edges` (the second node connects to the first's server);
/// `market(i)` adds `[market]` keys and `relay_fee(i)` sets the transport fee.
fn mesh(
    dir: &Path,
    n: usize,
    edges: &[(usize, usize)],
    relay_fee: impl Fn(usize) -> u64,
    market: impl Fn(usize) -> String,
) -> Vec<Node> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let targets: Vec<u16> = edges
            .iter()
            .filter(|(_, b)| *b == i)
            .map(|(a, _)| ports[*a])
            .collect();
        let config = dir.join(format!("node-{i}.toml"));
        std::fs::write(
            &config,
            node_config(relay_fee(i), ports[i], &targets, &market(i)),
        )
        .unwrap();
        let data_dir = dir.join(format!("node-{i}"));
        let daemon = TestDaemon::start_in(&data_dir, &["--config", config.to_str().unwrap()]);
        nodes.push(Node {
            daemon,
            data_dir,
            config,
            id: Vec::new(),
        });
    }
    let rt = runtime();
    for node in &mut nodes {
        node.id = rt.block_on(async {
            node.client()
                .await
                .info()
                .await
                .unwrap()
                .identity_hash
                .to_vec()
        });
    }
    nodes
}

/// Serves `function` at `price` from this test process; the handler answers with the input
/// upper-cased, or with garbage while `lie` is set.
async fn serve(client: &Client, function: &str, price: u64, lie: Arc<AtomicBool>) -> ServeHandle {
    let handler = handler_fn(move |call, _out| {
        let lie = lie.clone();
        async move {
            let text =
                std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
            if lie.load(Ordering::SeqCst) {
                return Ok::<Vec<u8>, HandlerError>(b"forty-two".to_vec());
            }
            Ok(text.to_uppercase().into_bytes())
        }
    });
    client
        .serve(
            vec![
                FunctionSpec::new(function)
                    .price_per_invocation_umhr(price)
                    .max_concurrency(4),
            ],
            handler,
        )
        .await
        .unwrap()
}

async fn agreement_on(client: &Client, agreement_id: &[u8]) -> Option<pb::Agreement> {
    client
        .agreements()
        .await
        .ok()?
        .into_iter()
        .find(|a| a.agreement_id == agreement_id)
}

fn state(a: &pb::Agreement) -> pb::AgreementState {
    pb::AgreementState::try_from(a.state).unwrap()
}

/// A line A–B–C–D–E. B sells `embed` at 100, C at 40, E at 5. Discovery from A under a cap of
/// 50 finds C (two hops) before the cheaper but farther E; under a cap of 10 it widens to the
/// flood and finds E four hops away. A agreement with C forms and is visible on both sides, a
/// verified call is charged on both, both sides keep it across a restart, and when C stops
/// answering heartbeats A's agreement is terminated.
#[test]
fn five_node_line_discovery_agreements_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let edges = [(0, 1), (1, 2), (2, 3), (3, 4)];
    let mut nodes = mesh(dir.path(), 5, &edges, |i| i as u64, |_| String::new());
    let rt = runtime();
    rt.block_on(async {
        let clients: Vec<Client> =
            futures::future::join_all(nodes.iter().map(|n| n.client())).await;
        let lie = Arc::new(AtomicBool::new(false));
        let _b = serve(&clients[1], "embed", 100, lie.clone()).await;
        let _c = serve(&clients[2], "embed", 40, lie.clone()).await;
        let _e = serve(&clients[4], "embed", 5, lie.clone()).await;
        let a = &clients[0];
        let (b_id, c_id, e_id) = (
            nodes[1].id.clone(),
            nodes[2].id.clone(),
            nodes[4].id.clone(),
        );
        let (b_id, c_id, e_id) = (&b_id, &c_id, &e_id);

        // Under 50: B (one hop) is too dear, so ring 1 answers: C, two hops away.
        let near = eventually("C found under 50 μMHR", Duration::from_secs(60), || async {
            let found = a
                .discover(Discover::function("embed").max_price(50))
                .await
                .ok()?;
            (found.offers.first()?.node_id == *c_id).then_some(found)
        })
        .await;
        let best = &near.offers[0];
        assert_eq!((best.ring, best.hops), (1, 2), "{near:?}");
        assert_eq!(best.unit_price_umhr, Some(40));
        assert!(
            near.offers
                .iter()
                .all(|o| o.node_id != *e_id && o.node_id != *b_id),
            "the cheaper E is farther than needed and B is over the cap: {near:?}"
        );
        assert_eq!(
            pb::DiscoveryOutcome::try_from(near.outcome).unwrap(),
            pb::DiscoveryOutcome::Satisfied
        );

        // Under 10 only E qualifies: nothing within three hops, so the flood finds it.
        let far = eventually("E found under 10 μMHR", Duration::from_secs(60), || async {
            let found = a
                .discover(Discover::function("embed").max_price(10))
                .await
                .ok()?;
            (found.offers.first()?.node_id == *e_id).then_some(found)
        })
        .await;
        assert_eq!((far.offers[0].ring, far.offers[0].hops), (3, 4), "{far:?}");
        assert!(far.pulls_sent >= 2, "ring 1 then ring 3: {far:?}");

        // The CLI shows the same.
        let out = nodes[0].daemon.cli(&[
            "--json",
            "discover",
            "--function",
            "embed",
            "--max-price",
            "50",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["offers"][0]["node_id"], hex::encode(c_id));

        // An agreement with C, countersigned as soon as C offers.
        let proposed = a
            .propose_agreement(
                Proposal::function(c_id, "embed")
                    .accept()
                    .duration(Duration::from_secs(600))
                    .wait(Duration::from_secs(30)),
            )
            .await
            .unwrap();
        assert_eq!(state(&proposed), pb::AgreementState::Active, "{proposed:?}");
        let id = proposed.agreement_id.to_vec();
        let on_c = eventually(
            "the agreement active on C",
            Duration::from_secs(20),
            || async {
                agreement_on(&clients[2], &id)
                    .await
                    .filter(|a| state(a) == pb::AgreementState::Active)
            },
        )
        .await;
        assert_eq!(on_c.role, pb::AgreementRole::Provider as i32);
        assert_eq!(on_c.counterparty, nodes[0].id);
        assert_eq!(on_c.request_id, proposed.request_id);
        let out = nodes[2].daemon.cli(&["--json", "agreements"]);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed["agreements"][0]["agreement_id"], hex::encode(&id));
        assert_eq!(listed["agreements"][0]["state"], "active");

        // A verified call under the cap reuses it and is charged on both sides.
        let verdict = a
            .invoke_verified(
                "embed",
                b"hello".to_vec(),
                Tier::Reputation,
                VerifiedOptions {
                    max_price_umhr: Some(50),
                    deadline: Some(Duration::from_secs(10)),
                },
            )
            .await
            .unwrap();
        assert_eq!(verdict.output.as_ref(), b"HELLO");
        assert_eq!(verdict.providers[0].node_id, *c_id);
        let listed_on_a = nodes[0].daemon.cli(&["--json", "agreements"]);
        assert_eq!(
            verdict.providers[0].agreement_id,
            id,
            "the active agreement is reused: {verdict:?} {}",
            String::from_utf8_lossy(&listed_on_a.stdout)
        );
        assert_eq!(verdict.charged_umhr, 40);
        assert_eq!(agreement_on(a, &id).await.unwrap().charged_umhr, 40);
        let charged = eventually("C's side charged", Duration::from_secs(10), || async {
            agreement_on(&clients[2], &id)
                .await
                .filter(|a| a.charged_units == 1)
        })
        .await;
        assert_eq!(charged.charged_umhr, 40);

        // Both sides persist it (C first, so that A finds it up when its heartbeats resume).
        drop(clients);
        // Restarting waits for the daemon on a runtime of its own: step out of this one.
        tokio::task::block_in_place(|| {
            nodes[2].restart();
            nodes[0].restart();
        });
        let a = nodes[0].client().await;
        let c = nodes[2].client().await;
        let kept = a.agreement(&id).await.unwrap();
        assert_eq!(state(&kept), pb::AgreementState::Active);
        assert_eq!(kept.charged_umhr, 40);
        assert_eq!(
            state(&c.agreement(&proposed.request_id).await.unwrap()),
            pb::AgreementState::Active
        );

        // C stops answering: after three missed heartbeats A ends the agreement.
        nodes[2]
            .daemon
            .stop_with(Signal::SIGKILL, Duration::from_secs(10));
        let ended = eventually(
            "the agreement terminated",
            Duration::from_secs(60),
            || async {
                a.agreement(&id)
                    .await
                    .ok()
                    .filter(|a| state(a) == pb::AgreementState::Terminated)
            },
        )
        .await;
        assert!(ended.note.contains("heartbeats missed"), "{ended:?}");
        assert_eq!(ended.charged_umhr, 40, "no charge after the end");
        let reputation = a.reputation(Some(c_id)).await.unwrap();
        assert_eq!(reputation[0].failures, 1, "{reputation:?}");
        assert!(reputation[0].compute_score < 100, "{reputation:?}");
    });
}

/// A star: A in the middle, four providers of `upper` around it; P1 is the cheapest and lies
/// once it has earned some reputation. The redundant tier outvotes it: its reputation drops,
/// it is excluded, and the next calls go to the others.
#[test]
fn a_lying_provider_loses_reputation_and_stops_being_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let edges = [(0, 1), (0, 2), (0, 3), (0, 4)];
    let nodes = mesh(dir.path(), 5, &edges, |_| 0, |_| String::new());
    let rt = runtime();
    rt.block_on(async {
        let clients: Vec<Client> =
            futures::future::join_all(nodes.iter().map(|n| n.client())).await;
        let lie = Arc::new(AtomicBool::new(false));
        let honest = Arc::new(AtomicBool::new(false));
        let mut serving = Vec::new();
        for (i, price) in [(1, 1), (2, 5), (3, 6), (4, 7)] {
            let flag = if i == 1 { lie.clone() } else { honest.clone() };
            serving.push(serve(&clients[i], "upper", price, flag).await);
        }
        let a = &clients[0];
        let mut events = a.watch_events().await.unwrap();
        eventually(
            "four providers of upper",
            Duration::from_secs(60),
            || async {
                let found = a
                    .discover(Discover::function("upper").want(4).max_ring(0))
                    .await
                    .ok()?;
                (found.offers.len() == 4).then_some(())
            },
        )
        .await;
        let redundant = |input: &'static [u8]| {
            a.invoke_verified(
                "upper",
                input.to_vec(),
                Tier::Redundant { k: 3 },
                VerifiedOptions {
                    max_price_umhr: None,
                    deadline: Some(Duration::from_secs(10)),
                },
            )
        };

        // All honest: the three cheapest agree and gain reputation.
        let first = redundant(b"one").await.unwrap();
        assert_eq!(first.output.as_ref(), b"ONE");
        let asked: Vec<&[u8]> = first.providers.iter().map(|p| p.node_id.as_ref()).collect();
        assert!(
            asked.contains(&nodes[1].id.as_slice()),
            "the cheapest is asked"
        );
        assert!(
            first
                .providers
                .iter()
                .all(|p| p.outcome == pb::ProviderOutcome::Agreed as i32)
        );
        let before = a.reputation(Some(&nodes[1].id)).await.unwrap()[0].compute_score;
        assert!(before > 0);

        // P1 lies: outvoted 2 to 1, flagged with its signed result, excluded.
        lie.store(true, Ordering::SeqCst);
        let second = redundant(b"two").await.unwrap();
        assert_eq!(second.output.as_ref(), b"TWO");
        let liar = second
            .providers
            .iter()
            .find(|p| p.node_id == nodes[1].id)
            .expect("P1 was asked");
        assert_eq!(liar.outcome, pb::ProviderOutcome::Dissented as i32);
        assert!(!liar.signed_result.is_empty(), "the evidence comes back");
        assert_eq!(second.charged_umhr, 5 + 6, "the liar is not paid");
        let after = a.reputation(Some(&nodes[1].id)).await.unwrap();
        assert!(after[0].compute_score < before, "{before} -> {after:?}");
        assert!(after[0].excluded_until_unix_ms > 0, "{after:?}");
        let excluded = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = events
                    .next()
                    .await
                    .expect("events end only at shutdown")
                    .unwrap();
                if let Some(pb::node_event::Kind::PeerExcluded(e)) = event.kind {
                    return e;
                }
            }
        })
        .await
        .expect("a PeerExcluded event");
        assert_eq!(excluded.node_id, nodes[1].id);

        // It is no longer chosen, for any tier.
        let third = redundant(b"three").await.unwrap();
        assert_eq!(third.output.as_ref(), b"THREE");
        assert!(third.providers.iter().all(|p| p.node_id != nodes[1].id));
        assert_eq!(third.providers.len(), 3);
        let single = a
            .invoke_verified(
                "upper",
                b"four".to_vec(),
                Tier::Reputation,
                VerifiedOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            single.providers[0].node_id, nodes[2].id,
            "the cheapest honest one"
        );
        let audited = a
            .invoke_verified(
                "upper",
                b"five".to_vec(),
                Tier::Optimistic { one_in: 1 },
                VerifiedOptions::default(),
            )
            .await
            .unwrap();
        assert!(audited.audited);
        assert_eq!(audited.output.as_ref(), b"FIVE");
        assert_eq!(audited.providers.len(), 2);

        // The CLI agrees.
        let out = nodes[0]
            .daemon
            .cli(&["--json", "reputation", &hex::encode(&nodes[1].id)]);
        assert!(out.status.success());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(json["peers"][0]["excluded_until_unix_ms"].as_u64().unwrap() > 0);
        let out = nodes[0].daemon.cli(&[
            "agree",
            "run",
            "upper",
            "--tier",
            "redundant:3",
            "--input",
            "/dev/null",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("agreed"));

        // Too many providers wanted: NOT_FOUND with the count.
        let err = a
            .invoke_verified(
                "upper",
                b"x".to_vec(),
                Tier::Redundant { k: 9 },
                VerifiedOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        assert!(err.to_string().contains("needs 9"), "{err}");
    });
}

/// Sends `body` as market control message `kind` to `to`'s `mehr.node` from `from`'s API.
/// Records (0x20) are proved delivered; gossip is not (the caller checks its effect).
async fn send_control(from: &Client, to: &Client, kind: u8, body: &[u8]) {
    let destination = to
        .transport_stats()
        .await
        .unwrap()
        .mehr_destination
        .to_vec();
    let mut payload = vec![kind];
    payload.extend_from_slice(body);
    if kind == 0x20 {
        let report = from
            .send(&destination, payload, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(report.delivered, "{report:?}");
    } else {
        // Unproved: the send waits out its short timeout whatever happens.
        let _ = from
            .send(&destination, payload, Duration::from_millis(300))
            .await;
    }
}

fn gossip(from: &[u8], message: &MarketMessage) -> Vec<u8> {
    let mut body = from.to_vec();
    body.extend_from_slice(&message.encode());
    body
}

/// Forged and replayed adverts, gossip from strangers and forged offers are refused and
/// counted; malformed and impossible requests get clear status codes.
#[test]
fn forged_adverts_and_offers_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 2, &[(0, 1)], |_| 0, |_| String::new());
    let rt = runtime();
    rt.block_on(async {
        let a = nodes[0].client().await;
        let b = nodes[1].client().await;
        eventually("B's advert at A", Duration::from_secs(30), || async {
            (a.market_stats().await.ok()?.adverts_held == 1).then_some(())
        })
        .await;
        let stats = a.market_stats().await.unwrap();

        // An advert naming B, signed by another key.
        let forger = NodeKey::new(SigningKey::from_bytes(&[7; 32]), [8; 32]);
        let caps = NodeCapabilities {
            interfaces: vec![],
            compute: None,
            storage: None,
            services: Services::default(),
            availability: Availability::AlwaysOn,
        };
        let mut forged = caps.sign(&forger, 1_000, 600).unwrap().as_bytes().to_vec();
        forged[1..17].copy_from_slice(&nodes[1].id);
        let mut message = vec![0x20];
        message.extend_from_slice(&forged);
        let mut body = nodes[1].id.clone();
        body.extend_from_slice(&message);
        send_control(&b, &a, 0x21, &body).await;
        // B's own advert, replayed.
        let replay = b.offer().await.unwrap().advert.to_vec();
        let mut message = vec![0x20];
        message.extend_from_slice(&replay);
        let mut body = nodes[1].id.clone();
        body.extend_from_slice(&message);
        send_control(&b, &a, 0x21, &body).await;
        // Gossip claiming to come from a node that is not a neighbour.
        let summaries = MarketMessage::Summaries(Vec::new());
        send_control(&b, &a, 0x21, &gossip(&[9; 16], &summaries)).await;
        let counted = eventually(
            "forgery and replay counted",
            Duration::from_secs(10),
            || async {
                let now = a.market_stats().await.ok()?;
                (now.adverts_forged > stats.adverts_forged
                    && now.adverts_stale > stats.adverts_stale
                    && now.gossip_refused > stats.gossip_refused)
                    .then_some(now)
            },
        )
        .await;
        assert_eq!(counted.adverts_held, 1, "the genuine advert stays");

        // A proposal B rejects (it sells nothing), then two forged offers for it.
        let proposed = a
            .propose_agreement(
                Proposal::function(&nodes[1].id, "nothing")
                    .cost_cap(pb::CostStructure {
                        kind: Some(pb::cost_structure::Kind::PerInvocation(pb::PerInvocation {
                            per_call_umhr: 10,
                            max_input_bytes: 0,
                        })),
                    })
                    .wait(Duration::from_secs(30)),
            )
            .await
            .unwrap();
        assert_eq!(
            state(&proposed),
            pb::AgreementState::Rejected,
            "{proposed:?}"
        );
        assert!(proposed.note.contains("Unsupported"), "{proposed:?}");
        let request_hash: [u8; 32] = proposed.request_id.as_ref().try_into().unwrap();
        let offer = SignedOffer::sign(
            Offer {
                request_hash,
                provider: forger.node_id(),
                cost: CostStructure::PerInvocation {
                    per_call: 1,
                    max_input: 0,
                },
                valid_for_seconds: 30,
                proof: ProofMethod::ResultHash,
                upstream: None,
            },
            &forger,
        )
        .unwrap();
        let before = a.market_stats().await.unwrap().records_forged;
        send_control(&b, &a, 0x20, &MarketMessage::Offer(offer.clone()).encode()).await;
        // The same offer with B's id put in: the signature no longer verifies.
        let mut bytes = MarketMessage::Offer(offer).encode();
        bytes[33..49].copy_from_slice(&nodes[1].id);
        send_control(&b, &a, 0x20, &bytes).await;
        eventually(
            "both forged offers counted",
            Duration::from_secs(10),
            || async { (a.market_stats().await.ok()?.records_forged >= before + 2).then_some(()) },
        )
        .await;
        assert_eq!(
            state(&a.agreement(&proposed.request_id).await.unwrap()),
            pb::AgreementState::Rejected
        );
        let out = nodes[0].daemon.cli(&["market-stats"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("forged"));

        // Status codes.
        let code = |e: mehr_sdk::Error| e.code();
        assert_eq!(
            code(a.agreement(&[1; 5]).await.unwrap_err()),
            Some(tonic::Code::InvalidArgument)
        );
        assert_eq!(
            code(a.agreement(&[1; 32]).await.unwrap_err()),
            Some(tonic::Code::NotFound)
        );
        assert_eq!(
            code(a.accept_agreement(&proposed.request_id).await.unwrap_err()),
            Some(tonic::Code::FailedPrecondition)
        );
        assert_eq!(
            code(a.cancel_agreement(&proposed.request_id).await.unwrap_err()),
            Some(tonic::Code::FailedPrecondition)
        );
        let err = a
            .propose_agreement(Proposal::function(&[3; 16], "embed").wait(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        let err = a
            .propose_agreement(Proposal::function(&nodes[1].id, "unpriced"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        assert!(err.to_string().contains("price cap"), "{err}");
        let err = a
            .discover(Discover::kind(pb::CapabilityKind::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
        let err = a
            .discover(Discover::kind(pb::CapabilityKind::Relay).max_ring(7))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
        assert!(err.to_string().contains("max_ring"), "{err}");
        let err = a
            .invoke_verified(
                "nobody-serves-this",
                b"x".to_vec(),
                Tier::Reputation,
                VerifiedOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        let err = a
            .invoke_verified(
                "x",
                b"x".to_vec(),
                Tier::Redundant { k: 1 },
                VerifiedOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
        let out = nodes[0].daemon.cli(&["agreements", "abcd"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");

        // The offer settings change the advert at once and survive a restart.
        let offer = a
            .set_offer(pb::UpdateOfferRequest {
                storage_price_per_byte_day_umhr: Some(3),
                offer_relay: Some(false),
                ..Default::default()
            })
            .await
            .unwrap();
        let caps = offer.capabilities.unwrap();
        assert!(caps.interfaces.is_empty());
        assert_eq!(caps.storage.unwrap().cost_per_byte_day_umhr, 3);
        assert!(offer.seq > stats.own_seq);
    });
}

/// A line A–R–P where only P serves `far` and R resells: R advertises it marked up, A's call
/// goes to R, R buys from P under its own agreement (a chain link), and cancelling A's
/// agreement cancels R's with P.
#[test]
fn a_node_resells_a_neighbours_function_in_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(
        dir.path(),
        3,
        &[(0, 1), (1, 2)],
        |i| if i == 2 { 50 } else { 0 },
        |i| {
            if i == 1 {
                "resell = true\n".into()
            } else {
                String::new()
            }
        },
    );
    let rt = runtime();
    rt.block_on(async {
        let (a, r, p) = (
            nodes[0].client().await,
            nodes[1].client().await,
            nodes[2].client().await,
        );
        let _far = serve(&p, "far", 20, Arc::new(AtomicBool::new(false))).await;
        let resold = eventually("R advertising far", Duration::from_secs(60), || async {
            let offer = r.offer().await.ok()?;
            offer
                .resold_functions
                .contains(&"far".to_string())
                .then_some(offer)
        })
        .await;
        let price = resold
            .capabilities
            .unwrap()
            .compute
            .unwrap()
            .functions
            .into_iter()
            .find(|f| f.name == "far")
            .unwrap()
            .cost;
        match price.unwrap().kind {
            Some(pb::cost_structure::Kind::PerInvocation(c)) => {
                assert_eq!(c.per_call_umhr, 21, "20 plus the 2 % burn's break-even")
            }
            other => panic!("{other:?}"),
        }
        eventually("R's resale known at A", Duration::from_secs(60), || async {
            let found = a
                .discover(Discover::function("far").max_ring(0))
                .await
                .ok()?;
            (found.offers.first()?.node_id == nodes[1].id).then_some(())
        })
        .await;

        let verdict = a
            .invoke_verified(
                "far",
                b"chain".to_vec(),
                Tier::Reputation,
                VerifiedOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(verdict.output.as_ref(), b"CHAIN");
        assert_eq!(verdict.providers[0].node_id, nodes[1].id);
        assert_eq!(verdict.charged_umhr, 21);
        let downstream = a
            .agreement(&verdict.providers[0].agreement_id)
            .await
            .unwrap();
        assert!(
            !downstream.upstream_agreement_id.is_empty(),
            "{downstream:?}"
        );
        let at_r = r.agreements().await.unwrap();
        let upstream = at_r
            .iter()
            .find(|x| x.role == pb::AgreementRole::Consumer as i32)
            .expect("R bought upstream");
        assert_eq!(upstream.agreement_id, downstream.upstream_agreement_id);
        assert_eq!(upstream.counterparty, nodes[2].id);
        assert_eq!(upstream.charged_umhr, 20);
        let at_p = eventually("P's side charged", Duration::from_secs(10), || async {
            agreement_on(&p, &upstream.agreement_id)
                .await
                .filter(|x| x.charged_units == 1)
        })
        .await;
        assert_eq!(at_p.counterparty, nodes[1].id);

        let cancelled = a.cancel_agreement(&downstream.agreement_id).await.unwrap();
        assert_eq!(state(&cancelled), pb::AgreementState::Cancelled);
        eventually(
            "the chain cancelled up to P",
            Duration::from_secs(30),
            || async {
                agreement_on(&p, &upstream.agreement_id)
                    .await
                    .filter(|x| state(x) == pb::AgreementState::Cancelled)
            },
        )
        .await;
    });
}

/// ComputeService.Invoke reaches the mesh: a function served on A is called from C (two
/// hops away) by plain `Invoke` (placement auto falls back to the mesh for a function this
/// node does not have), by `placement = mesh` with the redundant tier, through the stream,
/// and through the CLI; a WASM module deployed on A is called from C too. A function nobody serves is NOT_FOUND, and `placement = local` never
/// leaves the node.
#[test]
fn compute_invoke_runs_a_function_served_elsewhere_on_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 3, &[(0, 1), (1, 2)], |_| 0, |_| String::new());
    let rt = runtime();
    rt.block_on(async {
        let clients: Vec<Client> =
            futures::future::join_all(nodes.iter().map(|n| n.client())).await;
        let honest = Arc::new(AtomicBool::new(false));
        let _a = serve(&clients[0], "shout", 3, honest.clone()).await;
        let _b = serve(&clients[1], "shout", 4, honest.clone()).await;
        let c = &clients[2];

        // Auto placement: C has no `shout`, so the call goes to the cheapest provider found.
        let done = eventually(
            "C invokes shout on the mesh",
            Duration::from_secs(60),
            || async { c.invoke("shout", b"hi there".to_vec()).await.ok() },
        )
        .await;
        assert_eq!(done.output.as_ref(), b"HI THERE");
        let metering = done.metering.unwrap();
        let remote = done.remote.unwrap();
        assert!(
            [nodes[0].id.as_slice(), nodes[1].id.as_slice()]
                .contains(&metering.provider_node_id.as_ref()),
            "{metering:?}"
        );
        assert_eq!(remote.providers.len(), 1, "{remote:?}");
        assert_eq!(remote.providers[0].node_id, metering.provider_node_id);
        assert!(
            remote.charged_umhr == 3 || remote.charged_umhr == 4,
            "{remote:?}"
        );
        assert_eq!(
            remote.output_hash.as_ref(),
            blake3::hash(b"HI THERE").as_bytes(),
            "the output hash is the verification hash of the output"
        );

        // Explicit mesh placement with two providers that must agree.
        let both = c
            .invoke_with(
                "shout",
                b"twice".to_vec(),
                InvokeOptions::default()
                    .placement(Placement::Mesh)
                    .tier(Tier::Redundant { k: 2 }),
            )
            .await
            .unwrap();
        assert_eq!(both.output.as_ref(), b"TWICE");
        let remote = both.remote.unwrap();
        let asked: Vec<&[u8]> = remote
            .providers
            .iter()
            .map(|p| p.node_id.as_ref())
            .collect();
        assert!(asked.contains(&nodes[0].id.as_slice()) && asked.contains(&nodes[1].id.as_slice()));
        assert_eq!(
            remote.charged_umhr, 7,
            "both agreeing providers are paid: {remote:?}"
        );

        // A function that answers in one piece streams as one final message.
        let mut stream = c
            .invoke_stream("shout", b"streamed".to_vec(), InvokeOptions::default())
            .await
            .unwrap();
        let last = stream.next().await.unwrap().unwrap();
        assert!(last.done);
        assert_eq!(last.output.as_ref(), b"STREAMED");
        assert!(last.remote.is_some());
        assert!(stream.next().await.is_none());

        // One that produces its output in parts streams them across the mesh as they come:
        // a word at a time from A, two hops from C, then the rest with the verdict.
        let _spell = clients[0]
            .serve(
                vec![
                    FunctionSpec::new("spell")
                        .price_per_invocation_umhr(2)
                        .max_concurrency(4),
                ],
                handler_fn(|call, out| async move {
                    for word in call.input.split(|b| *b == b' ') {
                        out.send(word.to_ascii_uppercase())
                            .await
                            .map_err(|_| HandlerError::new("the call was cancelled"))?;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok::<Vec<u8>, HandlerError>(b"!".to_vec())
                }),
            )
            .await
            .unwrap();
        let messages = eventually(
            "C streams spell from A",
            Duration::from_secs(60),
            || async {
                let stream = c
                    .invoke_stream("spell", b"one two three".to_vec(), InvokeOptions::default())
                    .await
                    .ok()?;
                stream
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
            },
        )
        .await;
        let (last, parts) = messages.split_last().unwrap();
        assert!(last.done && last.remote.is_some(), "{last:?}");
        assert_eq!(last.output.as_ref(), b"!");
        assert_eq!(parts.len(), 3, "one message per word: {parts:?}");
        assert!(parts.iter().all(|p| !p.done));
        let whole: Vec<u8> = messages.iter().flat_map(|m| m.output.to_vec()).collect();
        assert_eq!(whole, b"ONETWOTHREE!");
        assert_eq!(
            last.remote.as_ref().unwrap().output_hash.as_ref(),
            blake3::hash(b"ONETWOTHREE!").as_bytes(),
            "the streamed parts are the start of the output the provider signed"
        );

        // A WASM module deployed on A is called from C the same way.
        clients[0]
            .deploy_module(
                mehr_compute::wat_to_wasm(include_str!("wasm/fixture.wat")).unwrap(),
                Some("fx"),
            )
            .await
            .unwrap();
        let reversed = eventually(
            "C invokes fx/reverse on A",
            Duration::from_secs(60),
            || async { c.invoke("fx/reverse", b"stressed".to_vec()).await.ok() },
        )
        .await;
        assert_eq!(reversed.output.as_ref(), b"desserts");
        assert_eq!(reversed.metering.unwrap().provider_node_id, nodes[0].id);

        // Nobody serves `whisper`; local placement does not look beyond this node.
        let err = c.invoke("whisper", b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        let err = c
            .invoke_with(
                "shout",
                b"x".to_vec(),
                InvokeOptions::default().placement(Placement::Local),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");

        // The CLI: `mehr invoke --mesh` shows the provider and the charge.
        let input = dir.path().join("input.txt");
        std::fs::write(&input, b"cli").unwrap();
        let out = nodes[2].daemon.cli(&[
            "--json",
            "invoke",
            "shout",
            "--mesh",
            "--input",
            input.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            json["remote"]["providers"].as_array().unwrap().len(),
            1,
            "{json}"
        );
    });
}

/// `mehrd devnet` starts N daemons that find each other and stops them all on SIGINT.
#[test]
fn devnet_runs_a_mesh_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port().clamp(20_000, 60_000);
    let devnet = Command::new(bin("mehrd"))
        .args([
            "devnet",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = runtime();
    let node = |i: usize| dir.path().join(format!("node-{i}"));
    rt.block_on(async {
        // Node 2 offers storage (even nodes do), two hops from node 0.
        eventually(
            "node 2's storage found from node 0",
            Duration::from_secs(90),
            || async {
                let output = Command::new(bin("mehr"))
                    .arg("--data-dir")
                    .arg(node(0))
                    .args(["--json", "discover", "storage", "--want", "2"])
                    .output()
                    .ok()?;
                let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
                let offers = json["offers"].as_array()?;
                offers.iter().any(|o| o["hops"] == 2).then_some(())
            },
        )
        .await;
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(devnet.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    let output = devnet.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("node-2") && stdout.contains("stopping the devnet"),
        "{stdout}"
    );
    for i in 0..3 {
        assert!(
            !node(i).join("mehrd.sock").exists(),
            "node {i} stopped and removed its socket"
        );
    }
}

/// A drained provider takes no new mesh work either: a job on an agreement it already holds is
/// refused with the reason, a new agreement is declined as busy, and both work again once the
/// drain ends. (The API side of a drain is tested in tests/operations.rs.)
#[test]
fn a_drained_provider_refuses_new_jobs_and_agreements_from_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 2, &[(0, 1)], |_| 0, |_| String::new());
    let rt = runtime();
    rt.block_on(async {
        let provider = nodes[0].client().await;
        let consumer = nodes[1].client().await;
        let upper = handler_fn(|call, _out| async move {
            Ok::<Vec<u8>, HandlerError>(call.input.to_ascii_uppercase())
        });
        let _served = provider
            .serve(
                vec![
                    FunctionSpec::new("shout").price_per_invocation_umhr(2),
                    FunctionSpec::new("whisper").price_per_invocation_umhr(2),
                ],
                upper,
            )
            .await
            .unwrap();
        let on_mesh = InvokeOptions::default().placement(Placement::Mesh);
        let invoke = |function: &'static str| {
            let consumer = consumer.clone();
            let options = on_mesh.clone();
            async move {
                consumer
                    .invoke_with(function, b"hi".to_vec(), options)
                    .await
            }
        };
        // One advert carries both functions: once `shout` is found, so is `whisper`.
        eventually(
            "shout served over the mesh",
            Duration::from_secs(60),
            || async { invoke("shout").await.ok() },
        )
        .await;

        let drained = nodes[0].daemon.cli(&["drain"]);
        assert!(drained.status.success(), "{drained:?}");
        let refused = invoke("shout").await.unwrap_err();
        assert!(
            refused.to_string().contains("provider draining"),
            "{refused}"
        );
        let declined = invoke("whisper").await.unwrap_err();
        assert!(declined.to_string().contains("rejected"), "{declined}");
        let stats = provider.transport_stats().await.unwrap();
        let drained_count = stats
            .part_drops
            .iter()
            .find(|d| d.reason == "market.drained")
            .map_or(0, |d| d.count);
        assert!(drained_count >= 2, "{:?}", stats.part_drops);

        assert!(nodes[0].daemon.cli(&["drain", "--resume"]).status.success());
        assert_eq!(invoke("shout").await.unwrap().output.as_ref(), b"HI");
        assert_eq!(invoke("whisper").await.unwrap().output.as_ref(), b"HI");
    });
}
