//! Payments that are durable and enforced, between real daemons (issue 17): market dues
//! queued when a consumer is killed with `kill -9` are paid exactly once after its restart; a
//! provider refuses a consumer whose unpaid dues exceed its credit; a repeated `request_id` on
//! Pay answers with the first payment and moves money once, also across a restart; an open
//! whose acceptance comes after the opener gave up converges instead of wedging the pair;
//! GetLedger's accounts come in pages.

mod common;

use std::time::Duration;

use common::{
    Planned, TestDaemon, channel_with, eventually, free_port, free_udp_port, plan, tcp_client,
    tcp_server, wait_neighbour,
};
use mehr_sdk::{
    Client, InvokeOptions, Placement, proto as pb,
    serve::{FunctionSpec, HandlerError, ServeHandle, handler_fn},
};
use nix::sys::signal::Signal;

const GENESIS: u64 = 10_000_000;
const DEPOSIT: u64 = 1_000_000;
const PRICE: u64 = 5_000;
const WAIT: Duration = Duration::from_secs(30);
const MARKET: &str =
    "[market]\ngossip_round_ms = 500\nbeacon_interval_ms = 1000\npull_timeout_ms = 1500\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A node whose identity is known before it starts, so that the configs can name it.
/// `[ledger]` with a genesis allocation for each of `funded`.
fn ledger_toml(funded: &[&Planned], extra: &str) -> String {
    let mut toml = format!("[ledger]\ngossip_interval_secs = 1\nretry_millis = 500\n{extra}");
    for node in funded {
        toml.push_str(&format!(
            "[[ledger.genesis]]\nnode = \"{}\"\namount_umhr = {GENESIS}\n",
            hex::encode(node.id)
        ));
    }
    toml
}

fn start(node: &Planned, config: &str) -> TestDaemon {
    std::fs::write(&node.config, config).unwrap();
    restart(node)
}

fn restart(node: &Planned) -> TestDaemon {
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

async fn serve_upper(client: &Client) -> ServeHandle {
    let handler = handler_fn(|call, _out| async move {
        let text =
            std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
        Ok::<Vec<u8>, HandlerError>(text.to_uppercase().into_bytes())
    });
    client
        .serve(
            vec![FunctionSpec::new("upper").price_per_invocation_umhr(PRICE)],
            handler,
        )
        .await
        .unwrap()
}

fn mesh() -> InvokeOptions {
    InvokeOptions::default().placement(Placement::Mesh)
}

/// Charged, paid and owed over `client`'s agreements of `role`.
async fn dues(client: &Client, role: pb::AgreementRole) -> (u64, u64, u64) {
    client
        .agreements()
        .await
        .unwrap()
        .iter()
        .filter(|a| a.role() == role)
        .fold((0, 0, 0), |(c, p, o), a| {
            (c + a.charged_umhr, p + a.paid_umhr, o + a.owed_umhr)
        })
}

/// A consumer runs up dues its provider cannot be paid yet (the provider's ledger does not
/// know the consumer's funds, so it refuses the channel), is refused once they exceed the
/// provider's credit, and is killed with `kill -9` while they are queued. After both restart
/// (the provider now knowing the consumer's genesis allocation) the queue pays every charge
/// exactly once, and the consumer is served again.
#[test]
fn queued_dues_survive_kill_9_are_paid_exactly_once_and_overdue_consumers_are_refused() {
    let nodes = plan(2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let port = free_port();
    let credit = format!("{MARKET}consumer_credit_umhr = {}\n", 2 * PRICE + PRICE / 2);
    let mut consumer = start(
        a,
        &format!("{}{MARKET}{}", tcp_server(port), ledger_toml(&[a, b], "")),
    );
    // B's genesis lacks A's allocation: it refuses A's channel as underfunded for now.
    let provider_config =
        |funded: &[&Planned]| format!("{}{credit}{}", tcp_client(port), ledger_toml(funded, ""));
    let mut provider = start(b, &provider_config(&[b]));
    let rt = runtime();
    rt.block_on(async {
        let (ac, bc) = (
            consumer.client().await.unwrap(),
            provider.client().await.unwrap(),
        );
        wait_neighbour(&ac, &b.id).await;
        let _serving = serve_upper(&bc).await;
        let first = eventually("upper found on the mesh", WAIT, || async {
            ac.invoke_with("upper", b"one".to_vec(), mesh()).await.ok()
        })
        .await;
        assert_eq!(first.remote.unwrap().charged_umhr, PRICE);
        for text in ["two", "three"] {
            let served = ac
                .invoke_with("upper", text.as_bytes().to_vec(), mesh())
                .await;
            assert_eq!(served.unwrap().remote.unwrap().charged_umhr, PRICE);
        }
        // 15 000 owed, above the credit of 12 500: refused, and told why.
        let refused = ac
            .invoke_with("upper", b"four".to_vec(), mesh())
            .await
            .unwrap_err();
        assert_eq!(refused.reason(), Some("PAYMENT_OVERDUE"), "{refused}");
        assert_eq!(refused.code(), Some(tonic::Code::FailedPrecondition));
        assert!(refused.to_string().contains("12500"), "{refused}");
        // The dues are queued, owed and unpaid, on both sides.
        assert_eq!(
            dues(&ac, pb::AgreementRole::Consumer).await,
            (3 * PRICE, 0, 3 * PRICE)
        );
        assert_eq!(
            dues(&bc, pb::AgreementRole::Provider).await,
            (3 * PRICE, 0, 3 * PRICE)
        );
        let stats = bc.market_stats().await.unwrap();
        assert!(stats.jobs_refused >= 1);
    });

    consumer.stop_with(Signal::SIGKILL, Duration::from_secs(5));
    provider.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    std::fs::write(&b.config, provider_config(&[a, b])).unwrap();
    let provider = restart(b);
    let consumer = restart(a);
    rt.block_on(async {
        let (ac, bc) = (
            consumer.client().await.unwrap(),
            provider.client().await.unwrap(),
        );
        let (payer, payee) =
            eventually("the queued dues paid", Duration::from_secs(60), || async {
                let payer = channel_with(&ac, &b.id).await?;
                let payee = channel_with(&bc, &a.id).await?;
                (payer.paid_umhr >= 3 * PRICE && payee.received_umhr == payer.paid_umhr)
                    .then_some((payer, payee))
            })
            .await;
        assert_eq!(payer.paid_umhr, 3 * PRICE, "paid once, not twice");
        assert_eq!(payer.deposit_umhr, DEPOSIT);
        // Nothing more is paid later: the queue is empty and every agreement says so.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(channel_with(&ac, &b.id).await.unwrap().paid_umhr, 3 * PRICE);
        assert_eq!(payee.received_umhr, 3 * PRICE);
        assert_eq!(
            dues(&ac, pb::AgreementRole::Consumer).await,
            (3 * PRICE, 3 * PRICE, 0)
        );
        assert_eq!(
            dues(&bc, pb::AgreementRole::Provider).await,
            (3 * PRICE, 3 * PRICE, 0)
        );
        // Paid up, the consumer is served again.
        let _serving = serve_upper(&bc).await;
        let again = eventually("served again", WAIT, || async {
            ac.invoke_with("upper", b"again".to_vec(), mesh())
                .await
                .ok()
        })
        .await;
        assert_eq!(again.output.as_ref(), b"AGAIN");
    });
}

/// A repeated `request_id` on Pay answers with the first payment and moves nothing, also
/// after the payer was killed and restarted; the same id with another amount is refused; an
/// open retried under its id answers with its channel. GetLedger pages its accounts.
#[test]
fn a_repeated_pay_request_id_moves_money_once_and_get_ledger_pages() {
    let nodes = plan(2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let port = free_port();
    let genesis = ledger_toml(&[a, b], "");
    let mut payer = start(a, &format!("{}{genesis}", tcp_server(port)));
    let payee = start(b, &format!("{}{genesis}", tcp_client(port)));
    let rt = runtime();
    let channel_id = rt.block_on(async {
        let (ac, bc) = (payer.client().await.unwrap(), payee.client().await.unwrap());
        wait_neighbour(&ac, &b.id).await;
        let opened = ac
            .open_channel_with_request_id(&b.id, DEPOSIT, 0, b"open-1", WAIT)
            .await
            .unwrap();
        let again = ac
            .open_channel_with_request_id(&b.id, DEPOSIT, 0, b"open-1", WAIT)
            .await
            .unwrap();
        assert_eq!(again.channel_id, opened.channel_id, "the same channel");
        let paid = ac
            .pay_with_request_id(&b.id, 1_000, b"pay-1", WAIT)
            .await
            .unwrap();
        assert_eq!(paid.paid_umhr, 1_000);
        let repeated = ac
            .pay_with_request_id(&b.id, 1_000, b"pay-1", WAIT)
            .await
            .unwrap();
        assert_eq!(repeated.paid_umhr, 1_000, "the first result, nothing moved");
        let reused = ac
            .pay_with_request_id(&b.id, 2_000, b"pay-1", WAIT)
            .await
            .unwrap_err();
        assert_eq!(reused.reason(), Some("REQUEST_ID_REUSED"), "{reused}");
        assert_eq!(reused.code(), Some(tonic::Code::InvalidArgument));
        let too_long = ac
            .pay_with_request_id(&b.id, 1_000, &[7; 65], WAIT)
            .await
            .unwrap_err();
        assert_eq!(too_long.code(), Some(tonic::Code::InvalidArgument));
        ac.pay(&b.id, 500, WAIT).await.unwrap();
        eventually("B has both payments", WAIT, || async {
            (channel_with(&bc, &a.id).await?.received_umhr == 1_500).then_some(())
        })
        .await;

        // GetLedger in pages of one account, in node id order, covering every account.
        let mut ledger = ac.ledger();
        let whole = ac.ledger_summary().await.unwrap();
        assert!(whole.accounts.len() >= 2, "A and B at least");
        let (mut paged, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let page = ledger
                .get_ledger(pb::GetLedgerRequest {
                    page_size: 1,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(page.accounts.len(), 1);
            paged.extend(page.accounts);
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, whole.accounts.len());
        assert_eq!(paged, whole.accounts);
        assert!(paged.windows(2).all(|w| w[0].node_id < w[1].node_id));
        let bad = ledger
            .get_ledger(pb::GetLedgerRequest {
                page_size: 1,
                page_token: "not a token".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        opened.channel_id
    });

    // The key is durable: after kill -9 the repeated payment still moves nothing.
    payer.stop_with(Signal::SIGKILL, Duration::from_secs(5));
    let payer = restart(a);
    rt.block_on(async {
        let (ac, bc) = (payer.client().await.unwrap(), payee.client().await.unwrap());
        wait_neighbour(&ac, &b.id).await;
        let repeated = ac
            .pay_with_request_id(&b.id, 1_000, b"pay-1", WAIT)
            .await
            .unwrap();
        assert_eq!(repeated.channel_id, channel_id);
        assert_eq!(repeated.paid_umhr, 1_500, "nothing moved by the repeat");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(channel_with(&bc, &a.id).await.unwrap().received_umhr, 1_500);
        assert_eq!(channel_with(&ac, &b.id).await.unwrap().paid_umhr, 1_500);
    });
}

/// An acceptance that arrives after the opener gave up (a link with 1.5 s of latency each
/// way, an open timeout of 2 s) still opens the channel on both sides, and a retry under the
/// same `request_id` answers with it: before issue 17 the pair was wedged, the acceptor holding
/// a channel the opener had forgotten and refusing every new one.
#[test]
fn an_open_answered_after_the_opener_gave_up_converges() {
    let nodes = plan(2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let slow = |listen: u16, peer: u16| {
        format!(
            "[[interfaces]]\ntype = \"sim\"\nlisten_port = {listen}\npeer_port = {peer}\n\
             bitrate = 1000000\nlatency_ms = 1500\n"
        )
    };
    let genesis = ledger_toml(&[a, b], "open_timeout_millis = 2000\n");
    let opener = start(a, &format!("{}{genesis}", slow(port_a, port_b)));
    let acceptor = start(b, &format!("{}{genesis}", slow(port_b, port_a)));
    runtime().block_on(async {
        let (ac, bc) = (
            opener.client().await.unwrap(),
            acceptor.client().await.unwrap(),
        );
        eventually(
            "a Mehr neighbour over the slow link",
            Duration::from_secs(60),
            || async {
                ac.neighbours()
                    .await
                    .ok()?
                    .into_iter()
                    .any(|n| n.node_id.as_ref() == b.id)
                    .then_some(())
            },
        )
        .await;
        let gave_up = ac
            .open_channel_with_request_id(&b.id, DEPOSIT, 0, b"slow-open", Duration::from_secs(5))
            .await;
        assert!(
            gave_up.is_err(),
            "3 s round trip, 2 s open timeout: {gave_up:?}"
        );
        let (mine, theirs) = eventually("the late acceptance opens it", WAIT, || async {
            Some((
                channel_with(&ac, &b.id).await?,
                channel_with(&bc, &a.id).await?,
            ))
        })
        .await;
        assert_eq!(mine.channel_id, theirs.channel_id);
        let retried = ac
            .open_channel_with_request_id(&b.id, DEPOSIT, 0, b"slow-open", WAIT)
            .await
            .unwrap();
        assert_eq!(retried.channel_id, mine.channel_id, "the retry converges");
        let paid = ac.pay(&b.id, 2_000, WAIT).await.unwrap();
        assert_eq!(paid.paid_umhr, 2_000, "and the channel carries payments");
    });
}
