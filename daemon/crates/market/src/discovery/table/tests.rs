use super::*;
use crate::capabilities::tests::{full, relay_only};
use crate::capabilities::{Compute, CpuClass, NodeCapabilities, OfferedFunction};
use crate::cost::CostStructure;
use crate::discovery::{Filter, NoReputation, ReputationAt};
use crate::identity::test_keys::node_key;
use crate::reputation::{Outcome, ReputationBook, ServiceKind};

const ME: u8 = 200;

fn me() -> NodeId {
    node_key(ME).node_id()
}

fn function_node(price: u64) -> NodeCapabilities {
    let mut caps = relay_only(1);
    caps.compute = Some(Compute {
        cpu_class: CpuClass::Medium,
        memory_mb: 4096,
        mhr_byte: false,
        wasm: true,
        cost_per_million_cycles: 10,
        functions: vec![OfferedFunction {
            name: "embed".into(),
            description: String::new(),
            cost: CostStructure::PerInvocation {
                per_call: price,
                max_input: 65_536,
            },
            max_concurrent: 1,
        }],
    });
    caps
}

fn neighbour(table: &mut DiscoveryTable, seed: u8, caps: &NodeCapabilities, link_cost: u64) {
    let key = node_key(seed);
    let advert = caps.sign(&key, 1, 600).unwrap();
    let origin = Origin::neighbour(key.node_id(), link_cost);
    table
        .insert_advert(advert, &key.peer_key(), origin, 0, 0)
        .unwrap();
}

fn embed_query(max_price: u64) -> Query {
    Query::new(Filter::function("embed", Some(max_price)))
}

#[test]
fn nearest_cheap_provider_is_found_locally_without_widening() {
    let mut t = DiscoveryTable::new(me());
    neighbour(&mut t, 1, &function_node(50), 1);
    neighbour(&mut t, 2, &function_node(20), 1);
    neighbour(&mut t, 3, &function_node(500), 1);
    neighbour(&mut t, 4, &relay_only(1), 1);
    let res = t.query(&embed_query(100), &NoReputation, 1_000);
    assert_eq!(res.next, NextStep::Satisfied);
    let ids: Vec<NodeId> = res.offers.iter().map(|o| o.node_id).collect();
    assert_eq!(ids, vec![node_key(2).node_id(), node_key(1).node_id()]);
    assert_eq!(res.offers[0].unit_price, Some(20));
    assert_eq!(
        res.offers[0].cost,
        Some(CostStructure::PerInvocation {
            per_call: 20,
            max_input: 65_536
        })
    );
}

#[test]
fn query_widens_only_when_the_inner_rings_fall_short() {
    let mut t = DiscoveryTable::new(me());
    neighbour(&mut t, 1, &function_node(500), 1);
    neighbour(&mut t, 2, &relay_only(1), 1);
    // Neighbour 2 knows a cheap provider; neighbour 1 only an expensive one.
    let cheap = CapabilitySummary::aggregate(CapabilityKind::Function, [(Some(30), 1)]).unwrap();
    let dear = CapabilitySummary::aggregate(CapabilityKind::Function, [(Some(900), 1)]).unwrap();
    t.insert_summaries(node_key(2).node_id(), 1, vec![cheap], 0)
        .unwrap();
    t.insert_summaries(node_key(1).node_id(), 1, vec![dear], 0)
        .unwrap();
    let res = t.query(&embed_query(100), &NoReputation, 1_000);
    assert!(res.offers.is_empty());
    assert_eq!(
        res.next,
        NextStep::Widen(Widen {
            ring: 1,
            via: vec![node_key(2).node_id()]
        })
    );
    // Neighbour 2 answers the pull with the 2-hop provider.
    let far_key = node_key(9);
    let far = function_node(30).sign(&far_key, 4, 600).unwrap();
    let answer = PullAnswer {
        nonce: 1,
        entries: vec![PullEntry {
            public_key: far_key.public_key(),
            hops: 1,
            path_cost: 2,
            age_seconds: 60,
            advert: far,
        }],
    };
    let results = t.ingest_pull_answer(&answer, node_key(2).node_id(), 1, 1, 2_000);
    assert_eq!(results, vec![Ok(InsertOutcome::New)]);
    let origin = t.origin(&far_key.node_id(), 2_000).unwrap();
    assert_eq!((origin.ring, origin.hops, origin.path_cost), (1, 2, 3));
    let q = Query {
        searched_ring: 1,
        ..embed_query(100)
    };
    let res = t.query(&q, &NoReputation, 2_000);
    assert_eq!(res.next, NextStep::Satisfied);
    assert_eq!(res.offers[0].node_id, far_key.node_id());
    // Wanting two offers widens again, this time with no hint for ring 2.
    let q = Query { want: 2, ..q };
    assert_eq!(
        t.query(&q, &NoReputation, 2_000).next,
        NextStep::Widen(Widen {
            ring: 2,
            via: vec![]
        })
    );
    let q = Query {
        searched_ring: 3,
        ..q
    };
    let res = t.query(&q, &NoReputation, 2_000);
    assert_eq!(res.next, NextStep::Exhausted);
    assert_eq!(res.offers.len(), 1);
}

#[test]
fn a_satisfying_inner_ring_hides_outer_offers() {
    let mut t = DiscoveryTable::new(me());
    neighbour(&mut t, 1, &function_node(90), 1);
    let far_key = node_key(9);
    let far = function_node(10).sign(&far_key, 1, 600).unwrap();
    let origin = Origin {
        ring: 1,
        hops: 3,
        path_cost: 5,
        via: node_key(1).node_id(),
    };
    t.insert_advert(far, &far_key.peer_key(), origin, 0, 0)
        .unwrap();
    let res = t.query(&embed_query(100), &NoReputation, 0);
    assert_eq!(res.offers.len(), 1);
    assert_eq!(res.offers[0].node_id, node_key(1).node_id());
    let res = t.query(
        &Query {
            want: 2,
            ..embed_query(100)
        },
        &NoReputation,
        0,
    );
    assert_eq!(res.next, NextStep::Satisfied);
    assert_eq!(res.offers[0].node_id, far_key.node_id());
}

#[test]
fn forged_stale_replayed_and_expired_adverts_are_refused() {
    let mut t = DiscoveryTable::new(me());
    let key = node_key(1);
    let origin = Origin::neighbour(key.node_id(), 1);
    let v2 = relay_only(1).sign(&key, 2, 60).unwrap();
    assert_eq!(
        t.insert_advert(v2.clone(), &key.peer_key(), origin, 0, 0),
        Ok(InsertOutcome::New)
    );
    // Same advert again: stale.
    assert!(matches!(
        t.insert_advert(v2.clone(), &key.peer_key(), origin, 0, 0),
        Err(DiscoveryError::Advert(CapabilityError::Stale {
            stored: 2,
            received: 2,
            ..
        }))
    ));
    // Older seq: stale.
    let v1 = relay_only(5).sign(&key, 1, 60).unwrap();
    assert!(matches!(
        t.insert_advert(v1.clone(), &key.peer_key(), origin, 0, 0),
        Err(DiscoveryError::Advert(CapabilityError::Stale { .. }))
    ));
    // Same seq, different content (equivocation): stale.
    let v2b = relay_only(7).sign(&key, 2, 60).unwrap();
    assert!(t.insert_advert(v2b, &key.peer_key(), origin, 0, 0).is_err());
    // Signed by another node.
    assert!(matches!(
        t.insert_advert(
            relay_only(1).sign(&key, 3, 60).unwrap(),
            &node_key(2).peer_key(),
            origin,
            0,
            0
        ),
        Err(DiscoveryError::Advert(CapabilityError::WrongNode { .. }))
    ));
    // Expired on arrival (relayed with its whole ttl used up).
    assert!(matches!(
        t.insert_advert(
            relay_only(1).sign(&key, 3, 60).unwrap(),
            &key.peer_key(),
            origin,
            60,
            0
        ),
        Err(DiscoveryError::Advert(CapabilityError::Expired { .. }))
    ));
    // Newer seq: update.
    let v3 = relay_only(3).sign(&key, 3, 60).unwrap();
    assert_eq!(
        t.insert_advert(v3, &key.peer_key(), origin, 10, 0),
        Ok(InsertOutcome::Updated { previous_seq: 2 })
    );
    // It expires 50 s later (ttl 60 − age 10) and is then gone from reads…
    assert!(t.advert(&key.node_id(), 49_999).is_some());
    assert!(t.advert(&key.node_id(), 50_000).is_none());
    assert_eq!(t.expire(50_000), 1);
    // …but a replay of an old seq cannot bring it back.
    assert!(matches!(
        t.insert_advert(v2, &key.peer_key(), origin, 0, 60_000),
        Err(DiscoveryError::Advert(CapabilityError::Stale {
            stored: 3,
            ..
        }))
    ));
    let v4 = relay_only(3).sign(&key, 4, 60).unwrap();
    assert_eq!(
        t.insert_advert(v4, &key.peer_key(), origin, 0, 60_000),
        Ok(InsertOutcome::New)
    );
    // Own advert and impossible rings are refused.
    let mine = node_key(ME);
    assert_eq!(
        t.insert_advert(
            relay_only(1).sign(&mine, 1, 60).unwrap(),
            &mine.peer_key(),
            origin,
            0,
            0
        ),
        Err(DiscoveryError::OwnAdvert)
    );
    let far = Origin { ring: 4, ..origin };
    assert!(matches!(
        t.insert_advert(
            relay_only(1).sign(&node_key(3), 1, 60).unwrap(),
            &node_key(3).peer_key(),
            far,
            0,
            0
        ),
        Err(DiscoveryError::BadRing { ring: 4 })
    ));
}

#[test]
fn the_same_advert_over_a_better_path_only_updates_the_origin() {
    let mut t = DiscoveryTable::new(me());
    let key = node_key(1);
    let advert = relay_only(1).sign(&key, 1, 600).unwrap();
    let far = Origin {
        ring: 1,
        hops: 3,
        path_cost: 9,
        via: node_key(2).node_id(),
    };
    t.insert_advert(advert.clone(), &key.peer_key(), far, 0, 0)
        .unwrap();
    let near = Origin::neighbour(key.node_id(), 1);
    assert_eq!(
        t.insert_advert(advert.clone(), &key.peer_key(), near, 0, 0),
        Ok(InsertOutcome::BetterPath)
    );
    assert_eq!(t.origin(&key.node_id(), 0), Some(near));
    // A newer advert that arrives the long way keeps the short path.
    let newer = relay_only(2).sign(&key, 2, 600).unwrap();
    t.insert_advert(newer, &key.peer_key(), far, 0, 0).unwrap();
    assert_eq!(t.origin(&key.node_id(), 0), Some(near));
    // Losing the link to the neighbour drops what came through it.
    t.forget_via(&key.node_id());
    assert!(t.is_empty(0));
}

#[test]
fn full_table_evicts_the_farthest_entry_only_for_a_closer_one() {
    let mut t = DiscoveryTable::new(me()).with_capacity(2);
    let far = |via: u8| Origin {
        ring: 1,
        hops: 3,
        path_cost: 1,
        via: node_key(via).node_id(),
    };
    for seed in [1u8, 2] {
        let k = node_key(seed);
        t.insert_advert(
            relay_only(1).sign(&k, 1, 600).unwrap(),
            &k.peer_key(),
            far(seed),
            0,
            0,
        )
        .unwrap();
    }
    let k3 = node_key(3);
    assert!(matches!(
        t.insert_advert(
            relay_only(1).sign(&k3, 1, 600).unwrap(),
            &k3.peer_key(),
            far(3),
            0,
            0
        ),
        Err(DiscoveryError::Full { capacity: 2, .. })
    ));
    assert_eq!(
        t.insert_advert(
            relay_only(1).sign(&k3, 1, 600).unwrap(),
            &k3.peer_key(),
            Origin::neighbour(k3.node_id(), 1),
            0,
            0
        ),
        Ok(InsertOutcome::New)
    );
    assert_eq!(t.len(0), 2);
}

#[test]
fn summaries_cover_providers_within_two_hops() {
    let mut t = DiscoveryTable::new(me());
    neighbour(&mut t, 1, &function_node(50), 1);
    neighbour(&mut t, 2, &full(), 1);
    let k = node_key(3);
    t.insert_advert(
        function_node(10).sign(&k, 1, 600).unwrap(),
        &k.peer_key(),
        Origin {
            ring: 1,
            hops: 3,
            path_cost: 1,
            via: node_key(1).node_id(),
        },
        0,
        0,
    )
    .unwrap();
    assert!(t.summaries(0, 0).is_empty());
    let all = t.summaries(2, 0);
    let f2 = all
        .iter()
        .find(|s| s.kind == CapabilityKind::Function)
        .unwrap();
    assert_eq!((f2.count, f2.max_hops), (3, 3));
    let sums = t.summaries(1, 0);
    let f = sums
        .iter()
        .find(|s| s.kind == CapabilityKind::Function)
        .unwrap();
    // The 3-hop provider is left out; full() offers functions from 300 μ.
    assert_eq!(f.count, 2);
    assert_eq!(f.min_cost, encode_cost_code(50));
    assert_eq!((f.min_hops, f.max_hops), (1, 1));
    let relay = sums
        .iter()
        .find(|s| s.kind == CapabilityKind::Relay)
        .unwrap();
    assert_eq!(relay.count, 2);
    assert!(sums.iter().all(|s| s.kind != CapabilityKind::Naming));
}

#[test]
fn pulls_are_answered_with_own_and_held_adverts_within_reach() {
    let mine = node_key(ME);
    let mut t = DiscoveryTable::new(mine.node_id());
    t.set_own_advert(
        function_node(70).sign(&mine, 1, 600).unwrap(),
        mine.peer_key(),
    );
    neighbour(&mut t, 1, &function_node(50), 4);
    let k = node_key(3);
    t.insert_advert(
        function_node(10).sign(&k, 1, 600).unwrap(),
        &k.peer_key(),
        Origin {
            ring: 1,
            hops: 2,
            path_cost: 1,
            via: node_key(1).node_id(),
        },
        100,
        0,
    )
    .unwrap();
    let pull = PullRequest {
        nonce: 77,
        filter: Filter::function("embed", Some(60)),
        max_hops: 3,
        forward: false,
        limit: 8,
    };
    let answer = t.answer_pull(&pull, 30_000);
    assert_eq!(answer.nonce, 77);
    let got: Vec<(NodeId, u8, u64, u32)> = answer
        .entries
        .iter()
        .map(|e| (e.advert.node_id(), e.hops, e.path_cost, e.age_seconds))
        .collect();
    // Own advert is too dear (70 > 60); the 2-hop one is the cheapest; its age grew by 30 s.
    assert_eq!(
        got,
        vec![(k.node_id(), 2, 1, 130), (node_key(1).node_id(), 1, 4, 30)]
    );
    // A 2-hop limit reaches only the neighbour; limit 1 keeps the best.
    let near = PullRequest {
        max_hops: 2,
        ..pull
    };
    assert_eq!(t.answer_pull(&near, 0).entries.len(), 1);
    let one = PullRequest { limit: 1, ..pull };
    assert_eq!(
        t.answer_pull(&one, 0).entries[0].advert.node_id(),
        k.node_id()
    );
    let any = PullRequest {
        filter: Filter::function("embed", None),
        ..pull
    };
    let all = t.answer_pull(&any, 0);
    assert_eq!(all.entries.len(), 3);
    assert!(
        all.entries
            .iter()
            .any(|e| e.hops == 0 && e.advert.node_id() == mine.node_id())
    );
    // The answer verifies at the requester.
    let mut other = DiscoveryTable::new(node_key(99).node_id());
    let results = other.ingest_pull_answer(&answer, mine.node_id(), 2, 1, 0);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(other.origin(&k.node_id(), 0).unwrap().hops, 3);
}

#[test]
fn reputation_and_load_enter_the_ranking() {
    let mut t = DiscoveryTable::new(me());
    neighbour(&mut t, 1, &function_node(50), 1);
    neighbour(&mut t, 2, &function_node(50), 1);
    let q = Query {
        want: 2,
        ..embed_query(100)
    };
    // Equal offers: the lower node id wins the tie.
    let lower = node_key(1).node_id().min(node_key(2).node_id());
    let higher = node_key(1).node_id().max(node_key(2).node_id());
    assert_eq!(t.query(&q, &NoReputation, 0).offers[0].node_id, lower);
    let mut book = ReputationBook::new();
    for round in 0..20 {
        book.record(higher, ServiceKind::Compute, Outcome::Success, 0, round);
    }
    let rep = ReputationAt {
        book: &book,
        round: 20,
    };
    assert_eq!(t.query(&q, &rep, 0).offers[0].node_id, higher);
    t.set_load(higher, 255);
    t.set_load(lower, 0);
    assert_eq!(t.query(&q, &NoReputation, 0).offers[0].node_id, lower);
}
