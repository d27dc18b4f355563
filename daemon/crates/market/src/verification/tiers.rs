//! Compute verification tiers (seed 003, §5): a reusable mechanism over output hashes.
//!
//! | tier | providers | rule |
//! |---|---|---|
//! | `Reputation` | 1 | accept; reputation is the deterrent |
//! | `Optimistic { one_in: N }` | 1, plus 1 auditor on a random 1-in-N call | divergence flags the primary |
//! | `Redundant { k: K }` | K | a strict majority of the K asked wins; dissenters are flagged |
//!
//! Results are compared by `output_hash = Blake3(output)`. A provider signs its result
//! ([`SignedComputeResult`]), so a flagged result is evidence, not hearsay.
//!
//! ```text
//! ComputeResult: agreement_id [32], job_hash [32], output_hash [32], proof_system u8
//!                (0 none, 1 RISC Zero, 2 SP1, 3 Jolt), proof (u16 length + ≤ 4096 B),
//!                signer [16] (provider), sig [64]
//! ```

use std::collections::BTreeMap;

use mehr_ledger::NodeId;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::agreement::AgreementId;
use crate::params::MAX_PROOF_LEN;
use crate::record::signed_record;
use crate::reputation::Outcome;
use crate::signing::MarketTag;
use crate::wire::{DecodeError, Reader, ReaderExt, Writer};

/// How much verification a compute call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Accept the result; cheapest.
    Reputation,
    /// Accept, but re-run one call in `one_in` on another provider (≈10 for ~1.1× cost).
    Optimistic {
        /// Audit rate denominator, at least 1.
        one_in: u32,
    },
    /// Run on `k` providers; the majority wins.
    Redundant {
        /// Providers asked, at least 2 (3 is the spec's example).
        k: u8,
    },
}

/// Why a tier cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TierError {
    /// `Optimistic { one_in: 0 }`.
    #[error("optimistic tier needs one_in ≥ 1")]
    ZeroAuditRate,
    /// `Redundant { k }` with `k < 2`.
    #[error("redundant tier needs k ≥ 2 providers, got {k}")]
    TooFewProviders {
        /// The k given.
        k: u8,
    },
}

/// How to run one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Distinct providers to send the job to.
    pub providers: u8,
    /// Whether this call is an optimistic audit (the second provider is the auditor).
    pub audited: bool,
}

/// Plans one call under `tier`; the audit draw uses the caller's RNG.
pub fn plan(tier: Tier, rng: &mut impl RngCore) -> Result<Plan, TierError> {
    match tier {
        Tier::Reputation => Ok(Plan {
            providers: 1,
            audited: false,
        }),
        Tier::Optimistic { one_in: 0 } => Err(TierError::ZeroAuditRate),
        Tier::Optimistic { one_in } => {
            let audited = rng.gen_range(0..one_in) == 0;
            Ok(Plan {
                providers: if audited { 2 } else { 1 },
                audited,
            })
        }
        Tier::Redundant { k } if k < 2 => Err(TierError::TooFewProviders { k }),
        Tier::Redundant { k } => Ok(Plan {
            providers: k,
            audited: false,
        }),
    }
}

/// `Blake3(output)`: what results are compared by.
pub fn output_hash(output: &[u8]) -> [u8; 32] {
    *blake3::hash(output).as_bytes()
}

/// The outcome of a redundant run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The output hash a strict majority of the providers asked agree on, if any.
    pub accepted: Option<[u8; 32]>,
    /// Providers that returned the accepted output.
    pub agreeing: Vec<NodeId>,
    /// Providers that returned another output (flag them).
    pub dissenters: Vec<NodeId>,
    /// Providers asked that returned nothing.
    pub missing: Vec<NodeId>,
}

impl Verdict {
    /// Reputation updates: success for the agreeing, failure for dissenters and missing. With
    /// no majority, only the missing are penalised: nobody can tell who lied.
    pub fn outcomes(&self) -> Vec<(NodeId, Outcome)> {
        self.agreeing
            .iter()
            .map(|n| (*n, Outcome::Success))
            .chain(
                self.dissenters
                    .iter()
                    .chain(&self.missing)
                    .map(|n| (*n, Outcome::Failure)),
            )
            .collect()
    }
}

/// Majority verdict over the results of the providers `asked`. Results from nodes not asked
/// are ignored, and only a provider's first result counts. A hash wins with more than half of
/// the providers asked (2 of 3), so silence cannot manufacture a majority.
pub fn redundant_verdict(asked: &[NodeId], results: &[(NodeId, [u8; 32])]) -> Verdict {
    let mut first: BTreeMap<NodeId, [u8; 32]> = BTreeMap::new();
    for (node, hash) in results {
        if asked.contains(node) {
            first.entry(*node).or_insert(*hash);
        }
    }
    let mut votes: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for hash in first.values() {
        *votes.entry(*hash).or_default() += 1;
    }
    let accepted = votes
        .iter()
        .find(|(_, count)| **count * 2 > asked.len())
        .map(|(hash, _)| *hash);
    let mut v = Verdict {
        accepted,
        ..Verdict::default()
    };
    let mut seen = Vec::new();
    for node in asked {
        if seen.contains(node) {
            continue;
        }
        seen.push(*node);
        match (first.get(node), accepted) {
            (None, _) => v.missing.push(*node),
            (Some(h), Some(a)) if *h == a => v.agreeing.push(*node),
            (Some(_), Some(_)) => v.dissenters.push(*node),
            (Some(_), None) => {}
        }
    }
    v
}

/// The outcome of an optimistic audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditVerdict {
    /// The auditor reproduced the primary's output.
    Consistent,
    /// The outputs differ: the primary is flagged (seed 003). The auditor may be the one
    /// lying; a daemon that cares escalates the job to `Redundant` to settle it.
    Diverged {
        /// The provider flagged.
        flagged: NodeId,
    },
}

/// Compares the primary's and the auditor's output hashes.
pub fn audit_verdict(primary: (NodeId, [u8; 32]), auditor: (NodeId, [u8; 32])) -> AuditVerdict {
    if primary.1 == auditor.1 {
        AuditVerdict::Consistent
    } else {
        AuditVerdict::Diverged { flagged: primary.0 }
    }
}

/// Proof system of a compute result; u8 codes as §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProofSystem {
    /// 0: no proof.
    None,
    /// 1: RISC Zero.
    RiscZero,
    /// 2: SP1.
    Sp1,
    /// 3: Jolt.
    Jolt,
}

impl ProofSystem {
    fn from_code(code: u8) -> Option<Self> {
        [
            ProofSystem::None,
            ProofSystem::RiscZero,
            ProofSystem::Sp1,
            ProofSystem::Jolt,
        ]
        .get(usize::from(code))
        .copied()
    }
}

/// A provider's result for one job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ComputeResult {
    /// The agreement the job ran under.
    pub agreement_id: AgreementId,
    /// `Blake3` of the job (function or module id and input).
    pub job_hash: [u8; 32],
    /// `Blake3(output)`.
    pub output_hash: [u8; 32],
    /// The proof's system.
    pub proof_system: ProofSystem,
    /// The proof, at most 4096 bytes (empty with `ProofSystem::None`).
    pub proof: Vec<u8>,
    /// The provider (signer).
    pub signer: NodeId,
}

impl ComputeResult {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.signer
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.agreement_id.0);
        w.raw(&self.job_hash);
        w.raw(&self.output_hash);
        w.u8(self.proof_system as u8);
        w.bytes16(&self.proof);
        w.raw(&self.signer.0);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let agreement_id = AgreementId(r.array()?);
        let job_hash = r.array()?;
        let output_hash = r.array()?;
        let code = r.u8()?;
        let proof_system =
            ProofSystem::from_code(code).ok_or_else(|| r.unknown("proof_system", code))?;
        let proof = r.bytes16("proof", MAX_PROOF_LEN)?.to_vec();
        if (proof_system == ProofSystem::None) != proof.is_empty() {
            return Err(r.invalid("proof", "present exactly when a proof system is named"));
        }
        Ok(Self {
            agreement_id,
            job_hash,
            output_hash,
            proof_system,
            proof,
            signer: NodeId(r.array()?),
        })
    }
}

/// Largest compute result: 32·3 + 1 + 2 + 4096 + 16 + 64.
pub const MAX_COMPUTE_RESULT_LEN: usize = 96 + 1 + 2 + MAX_PROOF_LEN + 16 + 64;

signed_record!(
    /// A signed [`ComputeResult`].
    SignedComputeResult,
    ComputeResult,
    MarketTag::ComputeResult,
    "compute result",
    MAX_COMPUTE_RESULT_LEN
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use crate::record::RecordError;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn n(i: u8) -> NodeId {
        NodeId([i; 16])
    }

    #[test]
    fn redundant_tier_with_one_liar_accepts_the_majority_and_flags_the_liar() {
        let good = output_hash(b"42");
        let bad = output_hash(b"41");
        let asked = [n(1), n(2), n(3)];
        let v = redundant_verdict(&asked, &[(n(1), good), (n(2), bad), (n(3), good)]);
        assert_eq!(v.accepted, Some(good));
        assert_eq!(v.agreeing, vec![n(1), n(3)]);
        assert_eq!(v.dissenters, vec![n(2)]);
        assert!(v.missing.is_empty());
        assert_eq!(
            v.outcomes(),
            vec![
                (n(1), Outcome::Success),
                (n(3), Outcome::Success),
                (n(2), Outcome::Failure)
            ]
        );
    }

    #[test]
    fn no_majority_flags_nobody_but_the_silent() {
        let asked = [n(1), n(2), n(3)];
        let v = redundant_verdict(
            &asked,
            &[(n(1), output_hash(b"a")), (n(2), output_hash(b"b"))],
        );
        assert_eq!(v.accepted, None);
        assert!(v.agreeing.is_empty() && v.dissenters.is_empty());
        assert_eq!(v.missing, vec![n(3)]);
        // One answer out of three is not a majority either.
        let v = redundant_verdict(&asked, &[(n(1), output_hash(b"a"))]);
        assert_eq!(v.accepted, None);
        // Strangers and repeated votes do not count.
        let h = output_hash(b"a");
        let v = redundant_verdict(&asked, &[(n(1), h), (n(1), h), (n(9), h), (n(9), h)]);
        assert_eq!(v.accepted, None);
        // Two of three with one silent is a majority.
        let v = redundant_verdict(&asked, &[(n(1), h), (n(3), h)]);
        assert_eq!(v.accepted, Some(h));
        assert_eq!(v.missing, vec![n(2)]);
    }

    #[test]
    fn optimistic_audit_divergence_flags_the_primary() {
        assert_eq!(
            audit_verdict((n(1), output_hash(b"x")), (n(2), output_hash(b"x"))),
            AuditVerdict::Consistent
        );
        assert_eq!(
            audit_verdict((n(1), output_hash(b"x")), (n(2), output_hash(b"y"))),
            AuditVerdict::Diverged { flagged: n(1) }
        );
    }

    #[test]
    fn planner_audits_about_one_in_n() {
        let mut rng = StdRng::seed_from_u64(7);
        let audited = (0..10_000)
            .filter(|_| {
                plan(Tier::Optimistic { one_in: 10 }, &mut rng)
                    .unwrap()
                    .audited
            })
            .count();
        assert!((800..1200).contains(&audited), "{audited}");
        let always = plan(Tier::Optimistic { one_in: 1 }, &mut rng).unwrap();
        assert_eq!(
            always,
            Plan {
                providers: 2,
                audited: true
            }
        );
        assert_eq!(
            plan(Tier::Reputation, &mut rng).unwrap(),
            Plan {
                providers: 1,
                audited: false
            }
        );
        assert_eq!(
            plan(Tier::Redundant { k: 3 }, &mut rng).unwrap().providers,
            3
        );
        assert_eq!(
            plan(Tier::Optimistic { one_in: 0 }, &mut rng),
            Err(TierError::ZeroAuditRate)
        );
        assert_eq!(
            plan(Tier::Redundant { k: 1 }, &mut rng),
            Err(TierError::TooFewProviders { k: 1 })
        );
    }

    #[test]
    fn compute_results_round_trip_and_verify() {
        let p = node_key(3);
        let result = ComputeResult {
            agreement_id: AgreementId([1; 32]),
            job_hash: [2; 32],
            output_hash: output_hash(b"out"),
            proof_system: ProofSystem::Sp1,
            proof: vec![9; 100],
            signer: p.node_id(),
        };
        let signed = SignedComputeResult::sign(result.clone(), &p).unwrap();
        let decoded = SignedComputeResult::decode(signed.as_bytes()).unwrap();
        decoded.verify(&p.peer_key()).unwrap();
        assert_eq!(decoded.body(), &result);
        assert!(decoded.verify(&node_key(4).peer_key()).is_err());
        let empty_proof = ComputeResult {
            proof: vec![],
            ..result
        };
        assert!(matches!(
            SignedComputeResult::sign(empty_proof, &p),
            Err(RecordError::Malformed(_))
        ));
        let huge = ComputeResult {
            proof: vec![1; MAX_PROOF_LEN + 1],
            ..decoded.body().clone()
        };
        assert!(matches!(
            SignedComputeResult::sign(huge, &p),
            Err(RecordError::Malformed(DecodeError::TooLarge { .. }))
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedComputeResult::decode(&bytes);
        }

        #[test]
        fn a_strict_majority_always_wins(liars in 0usize..3, k in 3usize..8) {
            let asked: Vec<NodeId> = (0..k as u8).map(n).collect();
            let good = output_hash(b"good");
            let liars = liars.min((k - 1) / 2);
            let results: Vec<(NodeId, [u8; 32])> = asked
                .iter()
                .enumerate()
                .map(|(i, node)| (*node, if i < liars { output_hash(&[i as u8]) } else { good }))
                .collect();
            let v = redundant_verdict(&asked, &results);
            prop_assert_eq!(v.accepted, Some(good));
            prop_assert_eq!(v.dissenters.len(), liars);
        }
    }
}
