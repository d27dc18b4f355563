//! Mesh simulation: discovery latency in a 50-node mesh and capability gossip bytes against
//! the tier-T3 budget, on LoRa (1200 bit/s) and WiFi (10 Mbit/s) links. Run with
//! `--nocapture` to see the figures.

mod sim;

use mehr_market::params::RING3_PULL_HOPS;
use sim::{LORA, Mesh, Profile, WIFI, stats};

const NODES: usize = 50;
const PROVIDERS: usize = 8;
const MAX_PRICE: u64 = 80;

fn run(profile: Profile) {
    let mut mesh = Mesh::build(NODES, PROVIDERS, profile, 2024);
    let gossip = mesh.run_gossip(1, 3);
    let (mean, median, max) = stats(&gossip.per_link_per_hour);
    let (node_mean, _, node_max) = stats(&gossip.per_node_per_hour);
    println!(
        "[{}] {} nodes, {} links; T3 budget {} B/h per link",
        profile.name,
        mesh.len(),
        mesh.links(),
        gossip.budget_per_link_per_hour
    );
    println!(
        "[{}] gossip per link: mean {mean:.0} B/h, median {median:.0}, max {max:.0} ({:.1}% of \
         the budget at the max); per node over all its links: mean {node_mean:.0} B/h, max \
         {node_max:.0}; {:.2} re-signed adverts per node per hour",
        profile.name,
        100.0 * max / gossip.budget_per_link_per_hour as f64,
        gossip.adverts_per_node_per_hour
    );
    for per_hour in &gossip.per_link_per_hour {
        assert!(
            *per_hour <= gossip.budget_per_link_per_hour as f64,
            "a link used {per_hour} B/h, over its T3 budget"
        );
    }
    assert!(
        gossip.per_link_per_hour.iter().all(|b| *b > 0.0),
        "refreshes must flow"
    );

    let mut first_hops = Vec::new();
    let mut first_gap = Vec::new();
    let mut ms = Vec::new();
    let mut settled = Vec::new();
    let mut nearest_ms = Vec::new();
    let mut optimal_hops = Vec::new();
    let mut bytes = Vec::new();
    let mut rings = [0usize; 4];
    let mut nearest_found = 0;
    let mut queries = 0;
    let mut out_of_reach = 0;
    for consumer in 0..NODES {
        let report = mesh.discover(consumer, MAX_PRICE);
        let Some(optimal) = report.optimal_hops else {
            continue;
        };
        if optimal > u32::from(RING3_PULL_HOPS) {
            // Beyond the ring-3 flood: the search must end exhausted, having tried every ring.
            assert_eq!(report.nearest_hops, None);
            assert_eq!(report.rings, 3);
            out_of_reach += 1;
            continue;
        }
        queries += 1;
        optimal_hops.push(f64::from(optimal));
        let nearest = report.nearest_hops.unwrap_or_else(|| {
            panic!("node {consumer}: no provider found, one is {optimal} hops away")
        });
        assert!(report.first_price.is_some_and(|p| p <= MAX_PRICE));
        assert!(
            nearest >= optimal,
            "hop counts cannot beat the shortest path"
        );
        if nearest == optimal {
            nearest_found += 1;
        }
        if optimal == 1 {
            assert_eq!(report.rings, 0, "a neighbour provider needs no widening");
            assert_eq!(report.ms, 0);
        }
        rings[usize::from(report.rings)] += 1;
        first_hops.push(f64::from(report.first_hops.unwrap_or(nearest)));
        first_gap.push(f64::from(
            report.first_hops.unwrap_or(nearest)
                - optimal.min(report.first_hops.unwrap_or(nearest)),
        ));
        ms.push(report.ms as f64);
        settled.push(report.settled_ms as f64);
        nearest_ms.push(report.nearest_ms.expect("the nearest provider was found") as f64);
        bytes.push(report.pull_bytes as f64);
    }
    let (h_mean, _, h_max) = stats(&first_hops);
    let (gap_mean, _, gap_max) = stats(&first_gap);
    let (ms_mean, ms_median, ms_max) = stats(&ms);
    let (s_mean, s_median, s_max) = stats(&settled);
    let (n_mean, n_median, n_max) = stats(&nearest_ms);
    let (o_mean, _, o_max) = stats(&optimal_hops);
    let (b_mean, _, b_max) = stats(&bytes);
    let name = profile.name;
    println!(
        "[{name}] discovery of a provider at most {MAX_PRICE} μ/call, from each of {queries} nodes \
         ({out_of_reach} more have none within {RING3_PULL_HOPS} hops):"
    );
    println!(
        "[{name}]   nearest such provider: {o_mean:.2} hops on average (max {o_max}); known after \
         mean {n_mean:.0} ms, median {n_median:.0}, max {n_max:.0}"
    );
    println!(
        "[{name}]   resolved in ring 0/1/2/3: {rings:?}; first satisfying offer after mean \
         {ms_mean:.0} ms (median {ms_median:.0}, max {ms_max:.0}), {h_mean:.2} hops away \
         (max {h_max}; {gap_mean:.2} hops more than the nearest on average, max {gap_max})"
    );
    println!(
        "[{name}]   all answers in after mean {s_mean:.0} ms (median {s_median:.0}, max \
         {s_max:.0}); nearest provider among the offers then: {nearest_found}/{queries}; pull \
         traffic per query mean {b_mean:.0} B, max {b_max:.0} B"
    );
    assert_eq!(
        nearest_found, queries,
        "once the ring's answers are in, the nearest cheap provider is among the offers"
    );
}

#[test]
fn lora_mesh_discovery_and_gossip_budget() {
    run(LORA);
}

#[test]
fn wifi_mesh_discovery_and_gossip_budget() {
    run(WIFI);
}
