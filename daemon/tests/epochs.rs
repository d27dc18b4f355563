//! Epochs between real daemons: an 8-node devnet (the `mehrd devnet` topology) with payment
//! traffic runs short epochs; every node adopts the same snapshots; the minted amount of each
//! epoch equals the minting formula recomputed here from the snapshots' channel baselines;
//! Σ balances = genesis + minted − burned at every observation; two identities of one
//! operator cycling payments between them mint nothing; and a node killed with `kill -9` as
//! an epoch is being adopted comes back with nothing lost.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{Planned, TestDaemon, eventually, free_port, plan};
use mehr_sdk::{Client, proto as pb};
use nix::sys::signal::Signal;

const NODES: usize = 8;
const GENESIS: u64 = 10_000_000;
const DEPOSIT: u64 = 2_000_000;
const EPOCH_SECS: u64 = 3;
const WAIT: Duration = Duration::from_secs(30);
/// The two identities run by one operator.
const CYCLERS: (usize, usize) = (6, 7);
/// Who pays whom: consumers 0–2 buy from providers 3–5, provider 3 also buys from 5, and
/// the operator of 6 and 7 moves value back and forth between its two identities.
const CHANNELS: [(usize, usize); 5] = [(0, 3), (1, 4), (2, 5), (3, 5), CYCLERS];
/// The node killed during an adoption.
const VICTIM: usize = 4;

/// Node `i`'s config: the devnet's links (`mehrd::devnet::topology`), short epochs, and the
/// same genesis everywhere.
fn config(nodes: &[Planned], ports: &[u16], i: usize) -> String {
    let mut toml = format!(
        "[transport]\nannounce_interval_secs = 300\n\
         [[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {}\n",
        ports[i]
    );
    for (a, b) in mehrd::devnet::topology(NODES) {
        if b == i {
            toml.push_str(&format!(
                "[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {}\n",
                ports[a]
            ));
        }
    }
    toml.push_str(&format!(
        "[ledger]\ngossip_interval_secs = 1\nretry_millis = 500\ncheckpoint_interval_secs = 1\n\
         epoch_secs = {EPOCH_SECS}\nchannel_deposit_umhr = {DEPOSIT}\nmax_requested_deposit_umhr = {DEPOSIT}\n"
    ));
    for node in nodes {
        toml.push_str(&format!(
            "[[ledger.genesis]]\nnode = \"{}\"\namount_umhr = {GENESIS}\n",
            hex::encode(node.id)
        ));
    }
    toml
}

fn start(node: &Planned) -> TestDaemon {
    TestDaemon::start_in(
        &node.data_dir,
        &[
            "--config",
            node.config.to_str().unwrap(),
            "--log-level",
            "mehrd::ledger=info,mehrd::ledger::epochs=debug,mehrd::transport::messaging=debug,warn",
        ],
    )
}

fn burn_of(gross: u64) -> u64 {
    (gross * 2).div_ceil(100)
}

fn net_of(gross: u64) -> u64 {
    gross - burn_of(gross)
}

fn id16(bytes: &[u8]) -> [u8; 16] {
    bytes.try_into().unwrap()
}

/// A folded channel's key: channel id, party A, party B.
type ChannelKey = ([u8; 16], [u8; 16], [u8; 16]);

/// What one node reported about one epoch, the first time it was seen there.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    root: Vec<u8>,
    minted: u64,
    burned: u64,
    /// Channel key → (paid A→B, paid B→A).
    baselines: BTreeMap<ChannelKey, (u64, u64)>,
}

fn seen(s: &pb::GetLedgerResponse) -> Seen {
    Seen {
        root: s.snapshot_root.to_vec(),
        minted: s.minted_umhr,
        burned: s.burned_folded_umhr,
        baselines: s
            .folded_channels
            .iter()
            .map(|c| {
                (
                    (id16(&c.channel_id), id16(&c.party_a), id16(&c.party_b)),
                    (c.paid_a_to_b_umhr, c.paid_b_to_a_umhr),
                )
            })
            .collect(),
    }
}

/// The minting formula, recomputed from two consecutive snapshots' baselines (docs/PROTOCOL.md
/// "Minting"): per node, income = what it received net of the burn, spending = what it paid,
/// both from the cumulative totals; nodes that paid each other are one cluster; the epoch
/// mints half of the clusters' positive net (the emission, ≥ 10^10 μ with one active node,
/// is far above it here and asserted so); a cluster's share goes to its members with positive
/// net in proportion, rounding down at each step. Returns the total and the minting nodes.
fn expected_mint(before: &Seen, after: &Seen) -> (u64, BTreeMap<[u8; 16], u128>) {
    let mut income: BTreeMap<[u8; 16], i128> = BTreeMap::new();
    let mut spending: BTreeMap<[u8; 16], i128> = BTreeMap::new();
    let mut paid: BTreeSet<([u8; 16], [u8; 16])> = BTreeSet::new();
    for (key, (ab, ba)) in &after.baselines {
        let (b_ab, b_ba) = before.baselines.get(key).copied().unwrap_or((0, 0));
        let (_, a, b) = *key;
        for (payer, payee, from, to) in [(a, b, b_ab, *ab), (b, a, b_ba, *ba)] {
            if to > from {
                *spending.entry(payer).or_default() += i128::from(to - from);
                *income.entry(payee).or_default() += i128::from(net_of(to) - net_of(from));
                paid.insert((payer, payee));
            }
        }
    }
    // Clusters: connected components of mutual payers.
    let mut cluster: BTreeMap<[u8; 16], [u8; 16]> = BTreeMap::new();
    let nodes: BTreeSet<[u8; 16]> = income.keys().chain(spending.keys()).copied().collect();
    for n in &nodes {
        cluster.insert(*n, *n);
    }
    loop {
        let mut changed = false;
        for (x, y) in &paid {
            if paid.contains(&(*y, *x)) {
                let (cx, cy) = (cluster[x], cluster[y]);
                if cx != cy {
                    let low = cx.min(cy);
                    for c in cluster.values_mut() {
                        if *c == cx || *c == cy {
                            *c = low;
                        }
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let net =
        |n: &[u8; 16]| income.get(n).copied().unwrap_or(0) - spending.get(n).copied().unwrap_or(0);
    let mut cluster_net: BTreeMap<[u8; 16], i128> = BTreeMap::new();
    for n in &nodes {
        *cluster_net.entry(cluster[n]).or_default() += net(n);
    }
    let eligible: u128 = cluster_net.values().map(|v| (*v).max(0) as u128).sum();
    let cap = eligible / 2;
    assert!(cap < 10_000_000_000, "the emission does not bind here");
    let mut per_node = BTreeMap::new();
    let mut total = 0u128;
    if cap > 0 {
        for (c, cnet) in &cluster_net {
            if *cnet <= 0 {
                continue;
            }
            let share = cap * (*cnet as u128) / eligible;
            let members: Vec<&[u8; 16]> = nodes.iter().filter(|n| cluster[*n] == *c).collect();
            let positive: u128 = members.iter().map(|n| net(n).max(0) as u128).sum();
            for n in members {
                let own = net(n).max(0) as u128;
                let amount = share * own / positive;
                if amount > 0 {
                    per_node.insert(*n, amount);
                    total += amount;
                }
            }
        }
    }
    (u64::try_from(total).unwrap(), per_node)
}

/// Where each node stands and what its ledger logged about epochs: what a stalled run needs
/// to be diagnosed from CI's output alone.
fn epoch_report(
    rt: &tokio::runtime::Runtime,
    clients: &[Client],
    daemons: &[TestDaemon],
) -> String {
    let mut report = String::new();
    for (i, (client, daemon)) in clients.iter().zip(daemons).enumerate() {
        let state = match rt.block_on(client.ledger_summary()) {
            Ok(s) => format!(
                "epoch {} root {}",
                s.epoch,
                hex::encode(&s.snapshot_root[..s.snapshot_root.len().min(8)])
            ),
            Err(e) => format!("unreachable: {e}"),
        };
        report.push_str(&format!("node {i}: {state}\n"));
        if let Ok(t) = rt.block_on(client.transport_stats()) {
            let drops: Vec<String> = t
                .drops
                .iter()
                .chain(&t.part_drops)
                .map(|d| format!("{}={}", d.reason, d.count))
                .collect();
            report.push_str(&format!(
                "  paths {} links {} lost_path_requests {} drops {}\n",
                t.paths,
                t.links,
                t.lost_path_requests,
                drops.join(" ")
            ));
        }
        let log = daemon.stderr();
        let unsent: Vec<&str> = log.lines().filter(|l| l.contains("not sent")).collect();
        report.push_str(&format!("  {} posted messages not sent\n", unsent.len()));
        for line in &unsent[unsent.len().saturating_sub(4)..] {
            report.push_str(&format!("  {line}\n"));
        }
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("epoch")).collect();
        for line in &lines[lines.len().saturating_sub(25)..] {
            report.push_str(&format!("  {line}\n"));
        }
    }
    report
}

#[test]
fn a_devnet_with_traffic_runs_epochs_that_mint_by_the_formula_and_survive_kill_9() {
    let nodes = plan(NODES);
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    for (i, node) in nodes.iter().enumerate() {
        std::fs::write(&node.config, config(&nodes, &ports, i)).unwrap();
    }
    let mut daemons: Vec<TestDaemon> = nodes.iter().map(start).collect();
    let ids: Vec<[u8; 16]> = nodes.iter().map(|n| n.id).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut clients: Vec<Client> = rt.block_on(async {
        let mut clients = Vec::new();
        for d in &daemons {
            clients.push(d.client().await.unwrap());
        }
        clients
    });
    // Every channel opens (the peers need each other's announces first).
    rt.block_on(async {
        for (payer, payee) in CHANNELS {
            eventually("a channel", Duration::from_secs(60), || async {
                clients[payer]
                    .open_channel(&ids[payee], DEPOSIT, DEPOSIT, Duration::from_secs(5))
                    .await
                    .ok()
            })
            .await;
        }
    });

    // Traffic: every second each channel carries a payment whose amount varies by round.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let running = running.clone();
        let clients = clients.clone();
        let ids = ids.clone();
        rt.spawn(async move {
            let mut round = 0u64;
            while running.load(Ordering::Relaxed) {
                round += 1;
                for (k, (payer, payee)) in CHANNELS.iter().enumerate() {
                    let amount = 1_000 + 137 * ((round + k as u64) % 7);
                    // A failure (the victim down) is fine: the baselines say what was paid.
                    let _ = clients[*payer]
                        .pay(&ids[*payee], amount, Duration::from_secs(3))
                        .await;
                }
                // The operator's second identity sends part of it back.
                let _ = clients[CYCLERS.1]
                    .pay(
                        &ids[CYCLERS.0],
                        400 + 50 * (round % 5),
                        Duration::from_secs(3),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };

    // Watch every node; note each epoch the first time a node shows it.
    let mut observed: Vec<BTreeMap<u64, Seen>> = vec![BTreeMap::new(); NODES];
    let genesis_total = i128::from(GENESIS) * NODES as i128;
    let observe =
        |clients: &[Client], skip: Option<usize>, observed: &mut Vec<BTreeMap<u64, Seen>>| {
            rt.block_on(async {
                for (i, c) in clients.iter().enumerate() {
                    if Some(i) == skip {
                        continue;
                    }
                    let Ok(s) = c.ledger_summary().await else {
                        continue;
                    };
                    let total: i128 = s.accounts.iter().map(|a| i128::from(a.balance_umhr)).sum();
                    assert_eq!(
                        total,
                        genesis_total + i128::from(s.minted_umhr)
                            - i128::from(s.burned_folded_umhr)
                            - i128::from(s.burned_unfolded_umhr),
                        "node {i} at epoch {}: Σ balances = genesis + minted − burned",
                        s.epoch
                    );
                    assert!(s.overdrafts.is_empty(), "node {i}: no overdraft");
                    observed[i].entry(s.epoch).or_insert_with(|| seen(&s));
                }
            })
        };
    let epoch_of =
        |c: &Client| rt.block_on(async { c.ledger_summary().await.map(|s| s.epoch).unwrap_or(0) });

    // Two epochs with traffic, then kill -9 the victim the moment another node adopts the
    // next one (the activation is flooding: the victim is adopting it or about to).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while observed
        .iter()
        .map(|o| o.keys().max().copied().unwrap_or(0))
        .min()
        .unwrap()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "epochs 1 and 2 everywhere"
        );
        observe(&clients, None, &mut observed);
        std::thread::sleep(Duration::from_millis(150));
    }
    let before_kill = epoch_of(&clients[VICTIM]);
    loop {
        assert!(std::time::Instant::now() < deadline + Duration::from_secs(30));
        observe(&clients, None, &mut observed);
        if (0..NODES).any(|i| i != VICTIM && epoch_of(&clients[i]) > before_kill) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    daemons[VICTIM].stop_with(Signal::SIGKILL, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    daemons[VICTIM] = start(&nodes[VICTIM]);
    clients[VICTIM] = rt.block_on(daemons[VICTIM].client()).unwrap();

    // At least 5 epochs in all, everywhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        observe(&clients, None, &mut observed);
        let lowest = (0..NODES).map(|i| epoch_of(&clients[i])).min().unwrap();
        if lowest >= 6 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "6 epochs everywhere, at {lowest}\n{}",
                epoch_report(&rt, &clients, &daemons)
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    running.store(false, Ordering::Relaxed);
    rt.block_on(traffic).unwrap();

    // Every node that saw an epoch saw the same snapshot.
    let mut epochs: BTreeMap<u64, Seen> = BTreeMap::new();
    for (i, per_node) in observed.iter().enumerate() {
        for (epoch, s) in per_node {
            match epochs.get(epoch) {
                Some(first) => assert_eq!(first, s, "node {i}, epoch {epoch}: one snapshot"),
                None => {
                    epochs.insert(*epoch, s.clone());
                }
            }
        }
    }
    // Minted per epoch = the formula, for every pair of consecutive epochs observed.
    let (a, b) = (ids[CYCLERS.0], ids[CYCLERS.1]);
    let mut checked = 0;
    let mut minted_by_providers = 0u128;
    let genesis_seen = Seen {
        root: Vec::new(),
        minted: 0,
        burned: 0,
        baselines: BTreeMap::new(),
    };
    for (epoch, after) in epochs.range(1..) {
        let before = match epochs.get(&(epoch - 1)) {
            Some(before) => before,
            None if *epoch == 1 => &genesis_seen,
            None => continue,
        };
        let (expected, per_node) = expected_mint(before, after);
        assert_eq!(
            after.minted - before.minted,
            expected,
            "epoch {epoch}: minted = min(E_s, ½ Σ positive cluster net)"
        );
        assert!(!per_node.contains_key(&a) && !per_node.contains_key(&b));
        minted_by_providers += per_node.values().sum::<u128>();
        checked += 1;
    }
    assert!(checked >= 5, "the formula was checked on {checked} epochs");
    assert!(minted_by_providers > 0, "real service minted");

    rt.block_on(async {
        // One ledger everywhere once the traffic stopped and its last records were folded,
        // the victim included.
        // Epochs go on every 3 s, so the nodes are read at once (one after another, a loaded
        // machine can straddle an activation every time) and for up to two minutes.
        let last = eventually("one snapshot everywhere", 4 * WAIT, || async {
            let summaries =
                futures::future::join_all(clients.iter().map(|c| c.ledger_summary())).await;
            let mut all = Vec::new();
            for s in summaries {
                let s = s.ok()?;
                if s.burned_unfolded_umhr != 0 {
                    return None;
                }
                all.push((s.epoch, s.snapshot_root.clone()));
            }
            all.windows(2).all(|w| w[0] == w[1]).then(|| all[0].clone())
        })
        .await;
        assert!(last.0 >= 6);
        // The victim lost nothing: each of its channels shows the same state on both ends.
        for (payer, payee) in CHANNELS {
            if payer != VICTIM && payee != VICTIM {
                continue;
            }
            let other = if payer == VICTIM { payee } else { payer };
            eventually("both ends agree", WAIT, || async {
                let mine = clients[VICTIM]
                    .channels()
                    .await
                    .ok()?
                    .into_iter()
                    .find(|c| c.peer.as_ref() == ids[other])?;
                let theirs = clients[other]
                    .channels()
                    .await
                    .ok()?
                    .into_iter()
                    .find(|c| c.peer.as_ref() == ids[VICTIM])?;
                (mine.seq == theirs.seq
                    && mine.paid_umhr == theirs.received_umhr
                    && mine.received_umhr == theirs.paid_umhr
                    && mine.seq > 0)
                    .then_some(())
            })
            .await;
        }
        // The operator's two identities together only lost the burn: cycling minted nothing.
        // (Their channel's last payment is folded once it was checkpointed and an epoch
        // folded the checkpoint: the snapshots above may agree on an epoch before that.)
        let (s, cycle) = eventually("the cyclers' last state folded", 2 * WAIT, || async {
            let cycle = clients[CYCLERS.0]
                .channels()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.peer.as_ref() == b)?;
            let s = clients[0].ledger_summary().await.ok()?;
            let folded = s
                .folded_channels
                .iter()
                .find(|c| c.channel_id.as_ref() == cycle.channel_id.as_ref())?;
            (s.burned_unfolded_umhr == 0
                && (folded.paid_a_to_b_umhr, folded.paid_b_to_a_umhr)
                    == (cycle.paid_umhr, cycle.received_umhr))
                .then_some((s, cycle))
        })
        .await;
        let balance = |id: &[u8; 16]| {
            s.accounts
                .iter()
                .find(|acc| acc.node_id.as_ref() == id)
                .unwrap()
                .balance_umhr
        };
        assert_eq!(
            balance(&a) + balance(&b),
            (2 * GENESIS - burn_of(cycle.paid_umhr) - burn_of(cycle.received_umhr)) as i64,
            "one operator's identities: genesis minus the burn, nothing minted"
        );
    });
    for d in &mut daemons {
        d.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    }
}
