//! Challenge scheduling: how often to challenge, and when a holder counts as lost.

use std::collections::HashMap;
use std::hash::Hash;

/// Consecutive failed challenges after which a holder is [`Health::Lost`] (the spec's 3).
pub const FAILURES_BEFORE_LOST: u32 = 3;

/// An object's challenge priority (MHR-Store `priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Challenged every round.
    Critical,
    /// Challenged every 10 rounds.
    Normal,
    /// Challenged every 100 rounds.
    Lazy,
}

impl Priority {
    /// Rounds between two challenges of one holder.
    pub fn interval_rounds(self) -> u64 {
        match self {
            Self::Critical => 1,
            Self::Normal => 10,
            Self::Lazy => 100,
        }
    }
}

/// Result of one challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// A proof arrived and verified.
    Passed,
    /// No proof in time, or a proof that did not verify.
    Failed,
}

/// State of one holder of one object or shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last challenge passed, or none was sent yet.
    Healthy,
    /// Some of the latest challenges failed, fewer than [`FAILURES_BEFORE_LOST`] in a row.
    Suspect {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// [`FAILURES_BEFORE_LOST`] failures in a row: repair and end the agreement. Final: later
    /// outcomes do not revive the holder; [`FailureTracker::forget`] it after repair.
    Lost,
}

/// Consecutive-failure counts per key, typically `(object or shard id, provider)`.
#[derive(Debug, Clone)]
pub struct FailureTracker<K> {
    failures: HashMap<K, u32>,
}

impl<K> Default for FailureTracker<K> {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> FailureTracker<K> {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a challenge outcome for `key` and returns the key's new health.
    pub fn record(&mut self, key: K, outcome: ChallengeOutcome) -> Health {
        let failures = self.failures.entry(key).or_insert(0);
        if *failures < FAILURES_BEFORE_LOST {
            *failures = match outcome {
                ChallengeOutcome::Passed => 0,
                ChallengeOutcome::Failed => *failures + 1,
            };
        }
        health_of(*failures)
    }

    /// Current health of `key` (healthy if never recorded).
    pub fn health(&self, key: &K) -> Health {
        health_of(self.failures.get(key).copied().unwrap_or(0))
    }

    /// Drops `key`, e.g. once its agreement ended or its shard was repaired elsewhere.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Keys currently [`Health::Lost`].
    pub fn lost(&self) -> impl Iterator<Item = &K> {
        self.failures
            .iter()
            .filter(|(_, failures)| **failures >= FAILURES_BEFORE_LOST)
            .map(|(key, _)| key)
    }
}

fn health_of(failures: u32) -> Health {
    match failures {
        0 => Health::Healthy,
        n if n >= FAILURES_BEFORE_LOST => Health::Lost,
        n => Health::Suspect {
            consecutive_failures: n,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChallengeOutcome::{Failed, Passed};

    #[test]
    fn three_failures_in_a_row_lose_the_holder() {
        let mut t = FailureTracker::new();
        assert_eq!(t.health(&"a"), Health::Healthy);
        assert_eq!(
            t.record("a", Failed),
            Health::Suspect {
                consecutive_failures: 1
            }
        );
        assert_eq!(
            t.record("a", Failed),
            Health::Suspect {
                consecutive_failures: 2
            }
        );
        assert_eq!(t.record("a", Failed), Health::Lost);
        assert_eq!(t.lost().collect::<Vec<_>>(), vec![&"a"]);
    }

    #[test]
    fn success_resets_and_lost_is_final_until_forgotten() {
        let mut t = FailureTracker::new();
        t.record(("obj", 1), Failed);
        t.record(("obj", 1), Failed);
        assert_eq!(t.record(("obj", 1), Passed), Health::Healthy);
        assert_eq!(
            t.record(("obj", 1), Failed),
            Health::Suspect {
                consecutive_failures: 1
            }
        );
        // Keys are independent.
        assert_eq!(
            t.record(("obj", 2), Failed),
            Health::Suspect {
                consecutive_failures: 1
            }
        );
        t.record(("obj", 1), Failed);
        assert_eq!(t.record(("obj", 1), Failed), Health::Lost);
        assert_eq!(t.record(("obj", 1), Passed), Health::Lost);
        t.forget(&("obj", 1));
        assert_eq!(t.health(&("obj", 1)), Health::Healthy);
        assert_eq!(t.lost().count(), 0);
    }

    #[test]
    fn intervals_follow_the_spec() {
        assert_eq!(Priority::Critical.interval_rounds(), 1);
        assert_eq!(Priority::Normal.interval_rounds(), 10);
        assert_eq!(Priority::Lazy.interval_rounds(), 100);
    }
}
