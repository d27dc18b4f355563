use super::*;
use crate::capabilities::FunctionId;
use crate::cost::{CostError, CostStructure};
use crate::identity::test_keys::node_key;
use crate::params::OFFER_TIMEOUT_MS;
use crate::record::RecordError;
use mehr_ledger::ChannelId;
use proptest::prelude::*;

const CONSUMER: u8 = 1;
const PROVIDER: u8 = 2;

fn request(consumer: u8, provider: u8, per_call: u64) -> Request {
    Request {
        consumer: node_key(consumer).node_id(),
        provider: node_key(provider).node_id(),
        capability: Capability::Compute(ComputeTarget::Function(FunctionId::of("embed"))),
        cost_cap: CostStructure::PerInvocation {
            per_call,
            max_input: 4096,
        },
        duration_seconds: 600,
        channel: ChannelId([9; 16]),
        proof: ProofMethod::ResultHash,
        privacy: Privacy::None,
        nonce: 5,
    }
}

fn price(per_call: u64) -> CostStructure {
    CostStructure::PerInvocation {
        per_call,
        max_input: 65_536,
    }
}

/// Runs the negotiation to the offer; returns (consumer side, provider side, offer).
fn negotiate(now: u64) -> (Agreement, Agreement, SignedOffer) {
    negotiate_nonce(now, 5)
}

fn negotiate_nonce(now: u64, nonce: u64) -> (Agreement, Agreement, SignedOffer) {
    let (c, p) = (node_key(CONSUMER), node_key(PROVIDER));
    let mut req = request(CONSUMER, PROVIDER, 100);
    req.nonce = nonce;
    let (mut consumer, req) = Agreement::propose(&c, req, now).unwrap();
    let mut provider =
        Agreement::receive_request(req, &c.peer_key(), p.node_id(), now + 100).unwrap();
    let terms = OfferTerms::new(provider.request().body(), price(80));
    let offer = provider.make_offer(&p, terms, now + 200).unwrap();
    consumer
        .receive_offer(offer.clone(), &p.peer_key(), now + 300)
        .unwrap();
    (consumer, provider, offer)
}

fn activate(now: u64) -> (Agreement, Agreement) {
    activate_nonce(now, 5)
}

fn activate_nonce(now: u64, nonce: u64) -> (Agreement, Agreement) {
    let (mut consumer, mut provider, _) = negotiate_nonce(now, nonce);
    let acc = consumer.accept(&node_key(CONSUMER), now + 400).unwrap();
    provider
        .receive_acceptance(acc, &node_key(CONSUMER).peer_key(), now + 500)
        .unwrap();
    (consumer, provider)
}

#[test]
fn happy_path_reaches_active_on_both_sides_with_one_id() {
    let (consumer, provider) = activate(1_000);
    assert_eq!(consumer.state(), AgreementState::Active);
    assert_eq!(provider.state(), AgreementState::Active);
    assert_eq!(consumer.id(), provider.id());
    let id = consumer.id().unwrap();
    let mut pre = consumer.request().as_bytes().to_vec();
    pre.extend_from_slice(consumer.offer().unwrap().as_bytes());
    assert_eq!(id.0, *blake3::hash(&pre).as_bytes());
    assert_eq!(consumer.counterparty(), node_key(PROVIDER).node_id());
    assert_eq!(provider.counterparty(), node_key(CONSUMER).node_id());
    assert_eq!(consumer.cost(), Some(price(80)));
    // Runs 600 s from activation.
    assert_eq!(consumer.ends_at_ms(), Some(1_400 + 600_000));
    assert_eq!(consumer.next_deadline_ms(), Some(601_400));
}

#[test]
fn active_agreement_completes_after_its_duration() {
    let (mut consumer, mut provider) = activate(0);
    assert_eq!(consumer.tick(600_399), None);
    assert_eq!(consumer.tick(600_400), Some(AgreementState::Completed));
    assert_eq!(provider.tick(600_500), Some(AgreementState::Completed));
    assert!(consumer.state().is_final());
    assert_eq!(consumer.tick(700_000), None);
}

#[test]
fn no_offer_within_thirty_seconds_expires_the_request() {
    let c = node_key(CONSUMER);
    let (mut consumer, req) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 100), 0).unwrap();
    assert_eq!(consumer.next_deadline_ms(), Some(OFFER_TIMEOUT_MS));
    assert_eq!(consumer.tick(OFFER_TIMEOUT_MS - 1), None);
    // A late offer is refused and the request expires.
    let p = node_key(PROVIDER);
    let mut provider = Agreement::receive_request(req, &c.peer_key(), p.node_id(), 0).unwrap();
    let offer = provider
        .make_offer(
            &p,
            OfferTerms::new(provider.request().body(), price(10)),
            1_000,
        )
        .unwrap();
    assert!(matches!(
        consumer.receive_offer(offer, &p.peer_key(), OFFER_TIMEOUT_MS),
        Err(AgreementError::Timeout { .. })
    ));
    assert_eq!(consumer.state(), AgreementState::Expired);
    // The provider, too, may not offer after 30 s.
    let (_, req) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 100), 0).unwrap();
    let mut late = Agreement::receive_request(req, &c.peer_key(), p.node_id(), 0).unwrap();
    assert!(matches!(
        late.make_offer(
            &p,
            OfferTerms::new(late.request().body(), price(10)),
            OFFER_TIMEOUT_MS
        ),
        Err(AgreementError::Timeout { .. })
    ));
    let (_, req) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 100), 0).unwrap();
    let mut idle = Agreement::receive_request(req, &c.peer_key(), p.node_id(), 0).unwrap();
    assert_eq!(idle.tick(OFFER_TIMEOUT_MS), Some(AgreementState::Expired));
}

#[test]
fn offer_not_countersigned_in_time_expires() {
    let (mut consumer, mut provider, _) = negotiate(0);
    // Offer valid 30 s: provider offered at 200, consumer received at 300.
    assert!(matches!(
        consumer.accept(&node_key(CONSUMER), 30_300),
        Err(AgreementError::Timeout { .. })
    ));
    assert_eq!(consumer.state(), AgreementState::Expired);
    assert_eq!(provider.tick(30_199), None);
    assert_eq!(provider.tick(30_200), Some(AgreementState::Expired));
}

#[test]
fn late_acceptance_is_refused_by_the_provider() {
    let (mut consumer, mut provider, _) = negotiate(0);
    let acc = consumer.accept(&node_key(CONSUMER), 30_000).unwrap();
    assert!(matches!(
        provider.receive_acceptance(acc, &node_key(CONSUMER).peer_key(), 30_200),
        Err(AgreementError::Timeout { .. })
    ));
    assert_eq!(provider.state(), AgreementState::Expired);
}

#[test]
fn forged_and_mismatched_offers_are_refused() {
    let (c, p) = (node_key(CONSUMER), node_key(PROVIDER));
    let (mut consumer, req) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 100), 0).unwrap();
    // An offer from a third node impersonating nobody: wrong provider field.
    let intruder = node_key(3);
    let (_, other_req) = Agreement::propose(&c, request(CONSUMER, 3, 100), 0).unwrap();
    let mut third =
        Agreement::receive_request(other_req, &c.peer_key(), intruder.node_id(), 0).unwrap();
    let foreign = third
        .make_offer(
            &intruder,
            OfferTerms::new(third.request().body(), price(1)),
            0,
        )
        .unwrap();
    assert!(matches!(
        consumer.receive_offer(foreign, &intruder.peer_key(), 10),
        Err(AgreementError::WrongNode { .. })
    ));
    // The right provider, but verified with another key.
    let mut provider =
        Agreement::receive_request(req.clone(), &c.peer_key(), p.node_id(), 0).unwrap();
    let offer = provider
        .make_offer(&p, OfferTerms::new(provider.request().body(), price(90)), 0)
        .unwrap();
    assert!(matches!(
        consumer.receive_offer(offer.clone(), &intruder.peer_key(), 10),
        Err(AgreementError::Record(RecordError::WrongSigner { .. }))
    ));
    // A tampered offer (price changed after signing).
    let mut bytes = offer.as_bytes().to_vec();
    bytes[49] ^= 0x01;
    let tampered = SignedOffer::decode(&bytes).unwrap();
    assert!(matches!(
        consumer.receive_offer(tampered, &p.peer_key(), 10),
        Err(AgreementError::Record(RecordError::BadSignature { .. }))
    ));
    // An offer for another request of the same pair.
    let mut r3 = request(CONSUMER, PROVIDER, 100);
    r3.nonce = 6;
    let (_, req3) = Agreement::propose(&c, r3, 0).unwrap();
    let mut prov3 = Agreement::receive_request(req3, &c.peer_key(), p.node_id(), 0).unwrap();
    let other = prov3
        .make_offer(&p, OfferTerms::new(prov3.request().body(), price(90)), 0)
        .unwrap();
    assert!(matches!(
        consumer.receive_offer(other, &p.peer_key(), 10),
        Err(AgreementError::Mismatch { .. })
    ));
    assert_eq!(consumer.state(), AgreementState::Proposed);
    // The provider cannot offer twice, nor above the cap.
    assert!(matches!(
        provider.make_offer(&p, OfferTerms::new(provider.request().body(), price(90)), 0),
        Err(AgreementError::WrongState { .. })
    ));
    let mut fresh = Agreement::receive_request(req, &c.peer_key(), p.node_id(), 0).unwrap();
    assert!(matches!(
        fresh.make_offer(&p, OfferTerms::new(fresh.request().body(), price(101)), 0),
        Err(AgreementError::Cost(CostError::PriceAboveCap { .. }))
    ));
    // A request addressed to someone else is refused.
    let (_, req4) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 100), 0).unwrap();
    assert!(matches!(
        Agreement::receive_request(req4, &c.peer_key(), intruder.node_id(), 0),
        Err(AgreementError::WrongNode { .. })
    ));
}

#[test]
fn rejection_ends_the_negotiation() {
    let (c, p) = (node_key(CONSUMER), node_key(PROVIDER));
    let (mut consumer, req) = Agreement::propose(&c, request(CONSUMER, PROVIDER, 1), 0).unwrap();
    let mut provider = Agreement::receive_request(req, &c.peer_key(), p.node_id(), 0).unwrap();
    let rej = provider.reject(&p, RejectReason::PriceTooLow).unwrap();
    assert_eq!(
        provider.state(),
        AgreementState::Rejected(RejectReason::PriceTooLow)
    );
    assert!(matches!(
        consumer.receive_rejection(rej.clone(), &node_key(3).peer_key()),
        Err(AgreementError::Record(_))
    ));
    consumer.receive_rejection(rej, &p.peer_key()).unwrap();
    assert_eq!(
        consumer.state(),
        AgreementState::Rejected(RejectReason::PriceTooLow)
    );
    assert!(matches!(
        consumer.accept(&c, 1),
        Err(AgreementError::WrongState { .. })
    ));
}

#[test]
fn steps_of_the_wrong_side_or_state_are_refused() {
    let (mut consumer, mut provider, _) = negotiate(0);
    assert!(matches!(
        provider.accept(&node_key(PROVIDER), 1),
        Err(AgreementError::WrongRole { .. })
    ));
    assert!(matches!(
        consumer.reject(&node_key(CONSUMER), RejectReason::Busy),
        Err(AgreementError::WrongRole { .. })
    ));
    assert!(matches!(
        consumer.terminate(),
        Err(AgreementError::WrongState { .. })
    ));
    // Accepting with someone else's key.
    assert!(matches!(
        consumer.accept(&node_key(7), 500),
        Err(AgreementError::Record(RecordError::WrongSigner { .. }))
    ));
}

#[test]
fn either_side_can_cancel_with_a_signed_notice() {
    let (mut consumer, mut provider) = activate(0);
    let notice = provider
        .cancel(&node_key(PROVIDER), CancelReason::Shutdown)
        .unwrap();
    assert_eq!(
        provider.state(),
        AgreementState::Cancelled {
            by: Role::Provider,
            reason: CancelReason::Shutdown
        }
    );
    assert!(matches!(
        consumer.receive_cancel(notice.clone(), &node_key(CONSUMER).peer_key()),
        Err(AgreementError::Record(RecordError::WrongSigner { .. }))
    ));
    consumer
        .receive_cancel(notice, &node_key(PROVIDER).peer_key())
        .unwrap();
    assert_eq!(
        consumer.state(),
        AgreementState::Cancelled {
            by: Role::Provider,
            reason: CancelReason::Shutdown
        }
    );
    // A consumer may cancel an offer it does not want.
    let (mut consumer, mut provider, _) = negotiate(0);
    let notice = consumer
        .cancel(&node_key(CONSUMER), CancelReason::Requested)
        .unwrap();
    provider
        .receive_cancel(notice, &node_key(CONSUMER).peer_key())
        .unwrap();
    assert!(matches!(
        provider.state(),
        AgreementState::Cancelled {
            by: Role::Consumer,
            ..
        }
    ));
    // A cancel for another agreement between the same two is refused.
    let (mut other, _) = activate_nonce(0, 77);
    let foreign = other
        .cancel(&node_key(CONSUMER), CancelReason::Requested)
        .unwrap();
    let (_, mut prov) = activate(0);
    assert_ne!(other.id(), prov.id());
    assert!(matches!(
        prov.receive_cancel(foreign, &node_key(CONSUMER).peer_key()),
        Err(AgreementError::Mismatch { .. })
    ));
}

#[test]
fn heartbeat_failure_terminates_and_jobs_can_complete_early() {
    let (mut consumer, _) = activate(0);
    consumer.terminate().unwrap();
    assert_eq!(consumer.state(), AgreementState::Terminated);
    assert_eq!(consumer.tick(10_000_000), None);
    let (mut consumer, _) = activate(0);
    consumer.complete().unwrap();
    assert_eq!(consumer.state(), AgreementState::Completed);
}

#[test]
fn both_sides_persist_and_restore_every_state() {
    let mut samples = Vec::new();
    let (c, p, _) = negotiate(0);
    samples.push(c);
    samples.push(p);
    let (mut c, p) = activate(0);
    samples.push(p);
    c.cancel(&node_key(CONSUMER), CancelReason::Unpaid).unwrap();
    samples.push(c);
    let (c, _) =
        Agreement::propose(&node_key(CONSUMER), request(CONSUMER, PROVIDER, 5), 7).unwrap();
    samples.push(c);
    for a in samples {
        let bytes = a.to_bytes();
        let restored = Agreement::from_bytes(&bytes).unwrap();
        assert_eq!(restored, a);
    }
    // Inconsistent records are refused.
    let (c, _, _) = negotiate(0);
    let mut bytes = c.to_bytes();
    bytes[2] = 2; // claim Active without an acceptance
    assert!(matches!(
        Agreement::from_bytes(&bytes),
        Err(AgreementError::Persisted(_))
    ));
}

#[test]
fn a_state_has_one_stored_encoding() {
    // Found by the agreement_store fuzz target: a nonzero byte that the state leaves unused
    // was accepted and dropped, so the stored agreement did not re-encode to its bytes.
    let (c, _, _) = negotiate(0);
    let bytes = c.to_bytes();
    assert_eq!(Agreement::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    for at in [3, 4] {
        let mut padded = bytes.clone();
        padded[at] = 8;
        assert!(matches!(
            Agreement::from_bytes(&padded),
            Err(AgreementError::Persisted("unknown state"))
        ));
    }
}

#[test]
fn capability_chain_links_validate() {
    // Upstream: reseller R (node 2) buys from provider P (node 3) at 80 per call.
    let (r, p, c) = (node_key(2), node_key(3), node_key(1));
    let (mut up_c, up_req) = Agreement::propose(&r, request(2, 3, 100), 0).unwrap();
    let mut up_p = Agreement::receive_request(up_req, &r.peer_key(), p.node_id(), 0).unwrap();
    let offer = up_p
        .make_offer(&p, OfferTerms::new(up_p.request().body(), price(80)), 0)
        .unwrap();
    up_c.receive_offer(offer, &p.peer_key(), 0).unwrap();
    // Not yet active: no resale terms.
    assert!(matches!(
        resale_terms(&up_c, 15, 30, ProofMethod::ResultHash),
        Err(ChainError::UpstreamNotActive(AgreementState::Offered))
    ));
    up_c.accept(&r, 0).unwrap();
    // Downstream: consumer C (node 1) buys from R at 80 + 15.
    let (mut down_c, down_req) = Agreement::propose(&c, request(1, 2, 100), 0).unwrap();
    let mut down_p = Agreement::receive_request(down_req, &c.peer_key(), r.node_id(), 0).unwrap();
    let terms = resale_terms(&up_c, 15, 30, ProofMethod::ResultHash).unwrap();
    assert_eq!(terms.cost, price(95));
    let offer = down_p.make_offer(&r, terms, 0).unwrap();
    down_c.receive_offer(offer, &r.peer_key(), 0).unwrap();
    let link = validate_chain_link(&down_c, &up_c).unwrap();
    assert_eq!(link.markup, 15);
    // R is paid 95 gross, keeps net_of(95) = 93 and pays 80 upstream.
    assert_eq!(link.net_margin, 13);
    assert_eq!(link.reseller, r.node_id());
    assert_eq!(Some(link.upstream), up_c.id());
    assert_eq!(Some(link.downstream), down_c.id());
    // The same checks from the reseller's provider-side view.
    assert_eq!(validate_chain_link(&down_p, &up_c).unwrap(), link);
    // A downstream priced below the upstream, or naming another upstream, is refused.
    let (mut d2, req2) = Agreement::propose(&c, request(1, 2, 100), 0).unwrap();
    let mut p2 = Agreement::receive_request(req2, &c.peer_key(), r.node_id(), 0).unwrap();
    let mut cheap = resale_terms(&up_c, 0, 30, ProofMethod::ResultHash).unwrap();
    cheap.cost = price(70);
    let o = p2.make_offer(&r, cheap, 0).unwrap();
    d2.receive_offer(o, &r.peer_key(), 0).unwrap();
    assert!(matches!(
        validate_chain_link(&d2, &up_c),
        Err(ChainError::Cost(CostError::BelowUpstream { .. }))
    ));
    let (mut d3, req3) = Agreement::propose(&c, request(1, 2, 100), 0).unwrap();
    let mut p3 = Agreement::receive_request(req3, &c.peer_key(), r.node_id(), 0).unwrap();
    let plain = OfferTerms::new(p3.request().body(), price(90));
    let o = p3.make_offer(&r, plain, 0).unwrap();
    d3.receive_offer(o, &r.peer_key(), 0).unwrap();
    assert!(matches!(
        validate_chain_link(&d3, &up_c),
        Err(ChainError::NotNamed { named: None, .. })
    ));
    // A chain whose downstream provider is not the upstream consumer.
    assert!(matches!(
        validate_chain_link(&up_c, &down_c),
        Err(ChainError::NotNamed { .. })
    ));
}

#[test]
fn break_even_markup_covers_the_burn() {
    use mehr_ledger::burn::net_of;
    assert_eq!(break_even_markup(0), 0);
    // net_of(81) = 81 − ceil(1.62) = 79 < 80; net_of(82) = 82 − 2 = 80.
    assert_eq!(break_even_markup(80), 2);
    assert_eq!(break_even_markup(1), 1);
    for p in [1u64, 7, 49, 50, 51, 980, 1_000_000, u64::MAX / 2] {
        let m = break_even_markup(p);
        assert!(net_of(p + m) >= p, "p={p}");
        assert!(net_of(p + m - 1) < p || m == 0, "p={p} m={m} not minimal");
    }
}

proptest! {
    #[test]
    fn random_persisted_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Agreement::from_bytes(&bytes);
    }

    #[test]
    fn mutated_persisted_agreements_never_panic(pos in 0usize..800, byte in any::<u8>()) {
        let (c, _) = activate(0);
        let mut bytes = c.to_bytes();
        let len = bytes.len();
        bytes[pos % len] = byte;
        if let Ok(mut a) = Agreement::from_bytes(&bytes) {
            let _ = a.tick(u64::MAX);
            let _ = a.next_deadline_ms();
        }
    }
}
