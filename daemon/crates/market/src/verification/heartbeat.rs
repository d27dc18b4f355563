//! Heartbeats for ongoing services (seed 003): the consumer pings every N seconds, the
//! provider answers with a signed pong echoing the nonce, and M consecutive misses end the
//! agreement (N = 60 s and M = 3 by default; the spec leaves both unset).
//!
//! ```text
//! Ping: agreement_id [32], nonce u64, signer [16] (consumer), sig [64]   (120 B)
//! Pong: agreement_id [32], nonce u64, signer [16] (provider), sig [64]   (120 B)
//! ```
//!
//! A ping counts as missed when no valid pong for its nonce has arrived by the time the next
//! ping is due; a valid pong resets the count. A pong for an older nonce is refused (its miss
//! was already counted), so a slow provider cannot bank answers.

use mehr_ledger::NodeId;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::agreement::AgreementId;
use crate::identity::{NodeKey, PeerKey};
use crate::params::{HEARTBEAT_INTERVAL_MS, HEARTBEAT_MAX_MISSES};
use crate::record::{RecordError, signed_record};
use crate::signing::MarketTag;
use crate::wire::{DecodeError, Reader, Writer};

/// Encoded length of a ping or a pong.
pub const HEARTBEAT_LEN: usize = 120;

macro_rules! beat {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name {
            /// The agreement checked.
            pub agreement_id: AgreementId,
            /// The ping's random nonce (echoed in the pong).
            pub nonce: u64,
            /// The signer.
            pub signer: NodeId,
        }

        impl $name {
            /// The signer.
            pub fn signer(&self) -> NodeId {
                self.signer
            }

            pub(crate) fn write(&self, w: &mut Writer) {
                w.raw(&self.agreement_id.0);
                w.u64(self.nonce);
                w.raw(&self.signer.0);
            }

            pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(Self {
                    agreement_id: AgreementId(r.array()?),
                    nonce: r.u64()?,
                    signer: NodeId(r.array()?),
                })
            }
        }
    };
}

beat!(
    /// The consumer's ping.
    Ping
);
beat!(
    /// The provider's pong.
    Pong
);

signed_record!(
    /// A signed [`Ping`].
    SignedPing,
    Ping,
    MarketTag::Ping,
    "heartbeat ping",
    HEARTBEAT_LEN
);
signed_record!(
    /// A signed [`Pong`].
    SignedPong,
    Pong,
    MarketTag::Pong,
    "heartbeat pong",
    HEARTBEAT_LEN
);

/// Why a heartbeat message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeartbeatError {
    /// Bad signature or signer.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The message is about another agreement.
    #[error("heartbeat for agreement {got}, expected {expected}")]
    WrongAgreement {
        /// The monitored agreement.
        expected: AgreementId,
        /// The agreement named.
        got: AgreementId,
    },
    /// The pong answers no outstanding ping.
    #[error("pong nonce {got} answers no outstanding ping (outstanding: {outstanding:?})")]
    UnexpectedNonce {
        /// The nonce waited for, if any.
        outstanding: Option<u64>,
        /// The nonce received.
        got: u64,
    },
    /// The monitor already ended the agreement.
    #[error("heartbeats already failed {misses} times; the agreement is terminated")]
    Terminated {
        /// Consecutive misses counted.
        misses: u32,
    },
}

/// Heartbeat interval and tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatConfig {
    /// N: time between pings, ms (at least 1).
    pub interval_ms: u64,
    /// M: consecutive misses that end the agreement (at least 1).
    pub max_misses: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_ms: HEARTBEAT_INTERVAL_MS,
            max_misses: HEARTBEAT_MAX_MISSES,
        }
    }
}

/// What the consumer should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing until `until_ms`.
    Wait {
        /// When to poll again.
        until_ms: u64,
    },
    /// Sign and send a ping with this nonce ([`HeartbeatMonitor::ping`] does it).
    SendPing {
        /// The nonce.
        nonce: u64,
    },
    /// M pings went unanswered: terminate the agreement and stop paying.
    Terminate {
        /// Consecutive misses.
        misses: u32,
    },
}

/// The consumer's heartbeat state for one agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatMonitor {
    agreement_id: AgreementId,
    provider: NodeId,
    config: HeartbeatConfig,
    next_ping_at_ms: u64,
    outstanding: Option<u64>,
    misses: u32,
    terminated: bool,
}

impl HeartbeatMonitor {
    /// Starts monitoring an agreement with `provider`; the first ping is due at `now_ms`.
    pub fn new(
        agreement_id: AgreementId,
        provider: NodeId,
        config: HeartbeatConfig,
        now_ms: u64,
    ) -> Self {
        Self {
            agreement_id,
            provider,
            config: HeartbeatConfig {
                interval_ms: config.interval_ms.max(1),
                max_misses: config.max_misses.max(1),
            },
            next_ping_at_ms: now_ms,
            outstanding: None,
            misses: 0,
            terminated: false,
        }
    }

    /// Advances to `now_ms`: counts an unanswered ping as a miss when the next one is due,
    /// and says whether to ping, wait or terminate.
    pub fn poll(&mut self, now_ms: u64, rng: &mut impl RngCore) -> HeartbeatAction {
        if self.terminated {
            return HeartbeatAction::Terminate {
                misses: self.misses,
            };
        }
        if now_ms < self.next_ping_at_ms {
            return HeartbeatAction::Wait {
                until_ms: self.next_ping_at_ms,
            };
        }
        if self.outstanding.take().is_some() {
            self.misses += 1;
            if self.misses >= self.config.max_misses {
                self.terminated = true;
                return HeartbeatAction::Terminate {
                    misses: self.misses,
                };
            }
        }
        let nonce = rng.next_u64();
        self.outstanding = Some(nonce);
        self.next_ping_at_ms = now_ms.saturating_add(self.config.interval_ms);
        HeartbeatAction::SendPing { nonce }
    }

    /// Signs the ping for `nonce` (as returned by [`Self::poll`]).
    pub fn ping(&self, key: &NodeKey, nonce: u64) -> Result<SignedPing, RecordError> {
        SignedPing::sign(
            Ping {
                agreement_id: self.agreement_id,
                nonce,
                signer: key.node_id(),
            },
            key,
        )
    }

    /// Takes the provider's pong: it must be signed by the provider, name this agreement and
    /// echo the outstanding nonce. Resets the miss count.
    pub fn on_pong(&mut self, pong: &SignedPong, provider: &PeerKey) -> Result<(), HeartbeatError> {
        if self.terminated {
            return Err(HeartbeatError::Terminated {
                misses: self.misses,
            });
        }
        if pong.body().signer != self.provider {
            return Err(RecordError::WrongSigner {
                what: "heartbeat pong",
                expected: self.provider,
                actual: pong.body().signer,
            }
            .into());
        }
        pong.verify(provider)?;
        if pong.body().agreement_id != self.agreement_id {
            return Err(HeartbeatError::WrongAgreement {
                expected: self.agreement_id,
                got: pong.body().agreement_id,
            });
        }
        if self.outstanding != Some(pong.body().nonce) {
            return Err(HeartbeatError::UnexpectedNonce {
                outstanding: self.outstanding,
                got: pong.body().nonce,
            });
        }
        self.outstanding = None;
        self.misses = 0;
        Ok(())
    }

    /// Consecutive misses so far.
    pub fn misses(&self) -> u32 {
        self.misses
    }

    /// Whether the monitor has ended the agreement.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }
}

/// Provider side: checks a consumer's ping for `agreement_id` and signs the pong.
pub fn answer_ping(
    ping: &SignedPing,
    consumer: &PeerKey,
    agreement_id: AgreementId,
    key: &NodeKey,
) -> Result<SignedPong, HeartbeatError> {
    ping.verify(consumer)?;
    if ping.body().agreement_id != agreement_id {
        return Err(HeartbeatError::WrongAgreement {
            expected: agreement_id,
            got: ping.body().agreement_id,
        });
    }
    Ok(SignedPong::sign(
        Pong {
            agreement_id,
            nonce: ping.body().nonce,
            signer: key.node_id(),
        },
        key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const ID: AgreementId = AgreementId([4; 32]);

    fn setup() -> (HeartbeatMonitor, NodeKey, NodeKey, StdRng) {
        let (c, p) = (node_key(1), node_key(2));
        let m = HeartbeatMonitor::new(ID, p.node_id(), HeartbeatConfig::default(), 0);
        (m, c, p, StdRng::seed_from_u64(1))
    }

    fn pong_for(m: &HeartbeatMonitor, c: &NodeKey, p: &NodeKey, nonce: u64) -> SignedPong {
        let ping = m.ping(c, nonce).unwrap();
        assert_eq!(ping.as_bytes().len(), HEARTBEAT_LEN);
        answer_ping(
            &SignedPing::decode(ping.as_bytes()).unwrap(),
            &c.peer_key(),
            ID,
            p,
        )
        .unwrap()
    }

    #[test]
    fn answered_pings_keep_the_agreement_alive() {
        let (mut m, c, p, mut rng) = setup();
        for round in 0..10u64 {
            let now = round * 60_000;
            let HeartbeatAction::SendPing { nonce } = m.poll(now, &mut rng) else {
                panic!("expected a ping at {now}");
            };
            assert_eq!(
                m.poll(now + 1, &mut rng),
                HeartbeatAction::Wait {
                    until_ms: now + 60_000
                }
            );
            let pong = pong_for(&m, &c, &p, nonce);
            m.on_pong(&SignedPong::decode(pong.as_bytes()).unwrap(), &p.peer_key())
                .unwrap();
            assert_eq!(m.misses(), 0);
        }
    }

    #[test]
    fn three_missed_heartbeats_terminate() {
        let (mut m, c, p, mut rng) = setup();
        let mut nonces = Vec::new();
        for (t, misses) in [(0u64, 0u32), (60_000, 1), (120_000, 2)] {
            let HeartbeatAction::SendPing { nonce } = m.poll(t, &mut rng) else {
                panic!("expected a ping at {t}");
            };
            assert_eq!(m.misses(), misses);
            nonces.push(nonce);
        }
        assert_eq!(
            m.poll(180_000, &mut rng),
            HeartbeatAction::Terminate { misses: 3 }
        );
        assert!(m.is_terminated());
        assert_eq!(
            m.poll(999_999, &mut rng),
            HeartbeatAction::Terminate { misses: 3 }
        );
        let late = pong_for(&m, &c, &p, nonces[2]);
        assert!(matches!(
            m.on_pong(&late, &p.peer_key()),
            Err(HeartbeatError::Terminated { misses: 3 })
        ));
    }

    #[test]
    fn a_pong_resets_the_miss_count_and_stale_pongs_are_refused() {
        let (mut m, c, p, mut rng) = setup();
        let HeartbeatAction::SendPing { nonce: first } = m.poll(0, &mut rng) else {
            panic!()
        };
        let HeartbeatAction::SendPing { nonce: second } = m.poll(60_000, &mut rng) else {
            panic!()
        };
        assert_eq!(m.misses(), 1);
        // The answer to the first ping comes too late.
        let stale = pong_for(&m, &c, &p, first);
        assert!(matches!(
            m.on_pong(&stale, &p.peer_key()),
            Err(HeartbeatError::UnexpectedNonce { .. })
        ));
        m.on_pong(&pong_for(&m, &c, &p, second), &p.peer_key())
            .unwrap();
        assert_eq!(m.misses(), 0);
        // Replaying the same pong does not count twice.
        assert!(
            m.on_pong(&pong_for(&m, &c, &p, second), &p.peer_key())
                .is_err()
        );
    }

    #[test]
    fn forged_pongs_are_refused() {
        let (mut m, c, p, mut rng) = setup();
        let HeartbeatAction::SendPing { nonce } = m.poll(0, &mut rng) else {
            panic!()
        };
        // Signed by a stranger for the right nonce.
        let stranger = node_key(9);
        let fake = SignedPong::sign(
            Pong {
                agreement_id: ID,
                nonce,
                signer: stranger.node_id(),
            },
            &stranger,
        )
        .unwrap();
        assert!(matches!(
            m.on_pong(&fake, &stranger.peer_key()),
            Err(HeartbeatError::Record(RecordError::WrongSigner { .. }))
        ));
        // The provider's pong for another agreement.
        let other = SignedPong::sign(
            Pong {
                agreement_id: AgreementId([5; 32]),
                nonce,
                signer: p.node_id(),
            },
            &p,
        )
        .unwrap();
        assert!(matches!(
            m.on_pong(&other, &p.peer_key()),
            Err(HeartbeatError::WrongAgreement { .. })
        ));
        // A provider refuses a ping not signed by the consumer.
        let ping = m.ping(&c, nonce).unwrap();
        assert!(answer_ping(&ping, &stranger.peer_key(), ID, &p).is_err());
        assert!(answer_ping(&ping, &c.peer_key(), AgreementId([5; 32]), &p).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SignedPing::decode(&bytes);
            let _ = SignedPong::decode(&bytes);
        }
    }
}
