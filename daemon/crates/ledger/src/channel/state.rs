//! The channel state: the co-signed balance sheet of one bilateral channel.
//!
//! Layout (little-endian). Bytes 0..72 are the spec's 200-byte `ChannelState` fields; decision
//! 4 and §8 item 19 extend the signed body with the cumulative per-direction totals and the
//! period's committed lottery terms, and the two signatures follow the longer body:
//!
//! | off | field | type | note |
//! |---|---|---|---|
//! | 0 | channel_id | [16] | `Blake3("mehr/channel" ‖ a ‖ b ‖ nonce)[..16]` |
//! | 16 | party_a | [16] | opener |
//! | 32 | party_b | [16] | acceptor |
//! | 48 | balance_a | u64 | μ A would get if the channel closed now |
//! | 56 | balance_b | u64 | |
//! | 64 | seq | u64 | strictly grows; 0 at open |
//! | 72 | paid_a_to_b | u64 | cumulative gross paid by A to B |
//! | 80 | paid_b_to_a | u64 | cumulative gross paid by B to A |
//! | 88 | period | u64 | lottery period of the committed terms |
//! | 96 | win_ppm_a | u32 | p for tickets A wins (A relays, B pays) |
//! | 100 | win_ppm_b | u32 | p for tickets B wins |
//! | 104 | sig_a | [64] | Ed25519 over `Blake3("mehr/channel-state/v1" ‖ bytes 0..104)` |
//! | 168 | sig_b | [64] | same digest |
//!
//! Total 232 bytes. The 2% burn is taken from each direction's cumulative total
//! (`burn_of(paid)`), so `balance_a = deposit_a − paid_a_to_b + net_of(paid_b_to_a)`; the
//! deposits are fixed at open and re-derived from every later state to check conservation.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use super::ChannelError;
use crate::burn::net_of;
use crate::ids::{ChannelId, NodeId, Party};
use crate::lottery::WinProbability;
use crate::signing::{RecordTag, SIGNATURE_LEN, sign_record, verify_record};
use crate::wire::{DecodeError, ReadSignature, Reader, expect_len};

/// Length of the signed body.
pub const CHANNEL_BODY_LEN: usize = 104;

/// Length of a co-signed [`ChannelState`].
pub const CHANNEL_STATE_LEN: usize = CHANNEL_BODY_LEN + 2 * SIGNATURE_LEN;

/// The public keys of both parties, supplied by the caller (which maps node ids to keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelKeys {
    /// Party A's Ed25519 key.
    pub a: VerifyingKey,
    /// Party B's Ed25519 key.
    pub b: VerifyingKey,
}

impl ChannelKeys {
    /// The key of one party.
    pub fn of(&self, party: Party) -> &VerifyingKey {
        match party {
            Party::A => &self.a,
            Party::B => &self.b,
        }
    }
}

/// What each party locked into the channel at open, μ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Deposits {
    /// A's deposit.
    pub a: u64,
    /// B's deposit.
    pub b: u64,
}

/// The lottery terms committed for one period (decision 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LotteryTerms {
    /// The period these terms apply to.
    pub period: u64,
    /// Win probability of tickets A wins (A relayed, B pays).
    pub win_a: WinProbability,
    /// Win probability of tickets B wins (B relayed, A pays).
    pub win_b: WinProbability,
}

impl LotteryTerms {
    /// Terms for period 0 with both probabilities at the idle-link maximum.
    pub fn initial() -> Self {
        Self {
            period: 0,
            win_a: WinProbability::MAX,
            win_b: WinProbability::MAX,
        }
    }

    /// The probability for tickets won by `relay`.
    pub fn win_probability(&self, relay: Party) -> WinProbability {
        match relay {
            Party::A => self.win_a,
            Party::B => self.win_b,
        }
    }
}

/// The signed body of a channel state (bytes 0..104).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelBody {
    /// The channel.
    pub channel_id: ChannelId,
    /// The opener.
    pub party_a: NodeId,
    /// The acceptor.
    pub party_b: NodeId,
    /// A's balance, μ.
    pub balance_a: u64,
    /// B's balance, μ.
    pub balance_b: u64,
    /// State sequence number.
    pub seq: u64,
    /// Cumulative gross μ paid by A to B.
    pub paid_a_to_b: u64,
    /// Cumulative gross μ paid by B to A.
    pub paid_b_to_a: u64,
    /// The lottery terms of the current period.
    pub lottery: LotteryTerms,
}

/// Balances implied by deposits and cumulative totals, or the party that would be negative.
pub(crate) fn balances_for(
    deposits: Deposits,
    paid_a_to_b: u64,
    paid_b_to_a: u64,
) -> Result<(u64, u64), (Party, i128)> {
    let a = i128::from(deposits.a) - i128::from(paid_a_to_b) + i128::from(net_of(paid_b_to_a));
    let b = i128::from(deposits.b) - i128::from(paid_b_to_a) + i128::from(net_of(paid_a_to_b));
    let a = u64::try_from(a).map_err(|_| (Party::A, a))?;
    let b = u64::try_from(b).map_err(|_| (Party::B, b))?;
    Ok((a, b))
}

impl ChannelBody {
    /// The body of a new channel at seq 0: balances equal deposits, nothing paid.
    pub fn opening(
        channel_id: ChannelId,
        party_a: NodeId,
        party_b: NodeId,
        deposits: Deposits,
        lottery: LotteryTerms,
    ) -> Self {
        Self {
            channel_id,
            party_a,
            party_b,
            balance_a: deposits.a,
            balance_b: deposits.b,
            seq: 0,
            paid_a_to_b: 0,
            paid_b_to_a: 0,
            lottery,
        }
    }

    /// The node id of one party.
    pub fn party(&self, party: Party) -> NodeId {
        match party {
            Party::A => self.party_a,
            Party::B => self.party_b,
        }
    }

    /// The balance of one party.
    pub fn balance(&self, party: Party) -> u64 {
        match party {
            Party::A => self.balance_a,
            Party::B => self.balance_b,
        }
    }

    /// The cumulative gross amount `payer` has paid the other party.
    pub fn paid_by(&self, payer: Party) -> u64 {
        match payer {
            Party::A => self.paid_a_to_b,
            Party::B => self.paid_b_to_a,
        }
    }

    /// The deposits this body implies; `None` if its balances and totals are inconsistent
    /// (a deposit would be negative or beyond a u64).
    pub fn deposits(&self) -> Option<Deposits> {
        let a = i128::from(self.balance_a) + i128::from(self.paid_a_to_b)
            - i128::from(net_of(self.paid_b_to_a));
        let b = i128::from(self.balance_b) + i128::from(self.paid_b_to_a)
            - i128::from(net_of(self.paid_a_to_b));
        Some(Deposits {
            a: u64::try_from(a).ok()?,
            b: u64::try_from(b).ok()?,
        })
    }

    /// The next body after `payer` pays `amount` more to the other party (seq + 1).
    pub fn pay(&self, payer: Party, amount: u64) -> Result<ChannelBody, ChannelError> {
        let deposits = self.deposits().ok_or(ChannelError::InconsistentBody)?;
        let mut next = *self;
        let paid = match payer {
            Party::A => &mut next.paid_a_to_b,
            Party::B => &mut next.paid_b_to_a,
        };
        *paid = paid
            .checked_add(amount)
            .ok_or(ChannelError::AmountOverflow)?;
        let (a, b) =
            balances_for(deposits, next.paid_a_to_b, next.paid_b_to_a).map_err(|(party, _)| {
                ChannelError::Overdraft {
                    party,
                    available: self.balance(party),
                    requested: amount,
                }
            })?;
        next.balance_a = a;
        next.balance_b = b;
        next.seq = self
            .seq
            .checked_add(1)
            .ok_or(ChannelError::AmountOverflow)?;
        Ok(next)
    }

    /// The canonical 104-byte encoding that is signed.
    pub fn encode(&self) -> [u8; CHANNEL_BODY_LEN] {
        let mut out = [0u8; CHANNEL_BODY_LEN];
        let parts: [&[u8]; 11] = [
            &self.channel_id.0,
            &self.party_a.0,
            &self.party_b.0,
            &self.balance_a.to_le_bytes(),
            &self.balance_b.to_le_bytes(),
            &self.seq.to_le_bytes(),
            &self.paid_a_to_b.to_le_bytes(),
            &self.paid_b_to_a.to_le_bytes(),
            &self.lottery.period.to_le_bytes(),
            &self.lottery.win_a.ppm().to_le_bytes(),
            &self.lottery.win_b.ppm().to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    pub(crate) fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self, DecodeError> {
        let channel_id = ChannelId(r.array()?);
        let party_a = NodeId(r.array()?);
        let party_b = NodeId(r.array()?);
        let balance_a = r.u64()?;
        let balance_b = r.u64()?;
        let seq = r.u64()?;
        let paid_a_to_b = r.u64()?;
        let paid_b_to_a = r.u64()?;
        let period = r.u64()?;
        let probability = |ppm: u32, field: &'static str| {
            WinProbability::from_ppm(ppm).map_err(|_| DecodeError::Invalid {
                what,
                field,
                reason: "outside [100, 200000] ppm",
            })
        };
        let win_a = probability(r.u32()?, "win_ppm_a")?;
        let win_b = probability(r.u32()?, "win_ppm_b")?;
        if party_a == party_b {
            return Err(DecodeError::Invalid {
                what,
                field: "party_b",
                reason: "equals party_a",
            });
        }
        let body = Self {
            channel_id,
            party_a,
            party_b,
            balance_a,
            balance_b,
            seq,
            paid_a_to_b,
            paid_b_to_a,
            lottery: LotteryTerms {
                period,
                win_a,
                win_b,
            },
        };
        if body.deposits().is_none() {
            return Err(DecodeError::Invalid {
                what,
                field: "balances",
                reason: "balances and cumulative totals imply a negative deposit",
            });
        }
        Ok(body)
    }

    /// Decodes a 104-byte body.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "channel body";
        expect_len(WHAT, bytes, CHANNEL_BODY_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let body = Self::read(&mut r, WHAT)?;
        r.finish()?;
        Ok(body)
    }

    /// Signs this body as a channel state.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        sign_record(key, RecordTag::ChannelState, &self.encode())
    }

    /// Checks one party's channel-state signature on this body.
    pub fn verify(&self, key: &VerifyingKey, signature: &Signature) -> bool {
        verify_record(key, RecordTag::ChannelState, &self.encode(), signature)
    }
}

/// A channel body with both parties' signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// The signed body.
    pub body: ChannelBody,
    /// A's signature.
    pub sig_a: Signature,
    /// B's signature.
    pub sig_b: Signature,
}

impl ChannelState {
    /// Checks both signatures; names the first party whose signature fails.
    pub fn verify(&self, keys: &ChannelKeys) -> Result<(), ChannelError> {
        if !self.body.verify(&keys.a, &self.sig_a) {
            return Err(ChannelError::BadSignature { party: Party::A });
        }
        if !self.body.verify(&keys.b, &self.sig_b) {
            return Err(ChannelError::BadSignature { party: Party::B });
        }
        Ok(())
    }

    /// The 232-byte encoding.
    pub fn encode(&self) -> [u8; CHANNEL_STATE_LEN] {
        let mut out = [0u8; CHANNEL_STATE_LEN];
        out[..CHANNEL_BODY_LEN].copy_from_slice(&self.body.encode());
        out[CHANNEL_BODY_LEN..CHANNEL_BODY_LEN + SIGNATURE_LEN]
            .copy_from_slice(&self.sig_a.to_bytes());
        out[CHANNEL_BODY_LEN + SIGNATURE_LEN..].copy_from_slice(&self.sig_b.to_bytes());
        out
    }

    pub(crate) fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self, DecodeError> {
        let body = ChannelBody::read(r, what)?;
        let sig_a = r.signature()?;
        let sig_b = r.signature()?;
        Ok(Self { body, sig_a, sig_b })
    }

    /// Decodes a 232-byte state (signatures are not checked here).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "channel state";
        expect_len(WHAT, bytes, CHANNEL_STATE_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let state = Self::read(&mut r, WHAT)?;
        r.finish()?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body() -> ChannelBody {
        ChannelBody::opening(
            ChannelId([9; 16]),
            NodeId([1; 16]),
            NodeId([2; 16]),
            Deposits { a: 10_000, b: 500 },
            LotteryTerms::initial(),
        )
    }

    #[test]
    fn payments_shift_balances_with_burn_on_totals() {
        let b1 = body().pay(Party::A, 500).unwrap();
        assert_eq!((b1.balance_a, b1.balance_b, b1.seq), (9_500, 990, 1));
        let b2 = b1.pay(Party::B, 100).unwrap();
        assert_eq!((b2.balance_a, b2.balance_b, b2.seq), (9_598, 890, 2));
        assert_eq!(b2.deposits(), Some(Deposits { a: 10_000, b: 500 }));
        assert_eq!(
            body().pay(Party::B, 501),
            Err(ChannelError::Overdraft {
                party: Party::B,
                available: 500,
                requested: 501
            })
        );
    }

    #[test]
    fn layout_offsets_match_the_table() {
        let mut b = body().pay(Party::A, 7).unwrap();
        b.lottery = LotteryTerms {
            period: 0x0102,
            win_a: WinProbability::from_ppm(1_000).unwrap(),
            win_b: WinProbability::from_ppm(2_000).unwrap(),
        };
        let bytes = b.encode();
        assert_eq!(&bytes[0..16], &[9; 16]);
        assert_eq!(&bytes[16..32], &[1; 16]);
        assert_eq!(&bytes[32..48], &[2; 16]);
        assert_eq!(bytes[48..56], 9_993u64.to_le_bytes());
        assert_eq!(bytes[64..72], 1u64.to_le_bytes());
        assert_eq!(bytes[72..80], 7u64.to_le_bytes());
        assert_eq!(bytes[88..96], 0x0102u64.to_le_bytes());
        assert_eq!(bytes[96..100], 1_000u32.to_le_bytes());
        assert_eq!(bytes[100..104], 2_000u32.to_le_bytes());
        assert_eq!(ChannelBody::decode(&bytes).unwrap(), b);
    }

    proptest! {
        #[test]
        fn state_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ChannelState::decode(&bytes);
            let _ = ChannelBody::decode(&bytes);
        }

        #[test]
        fn random_payments_conserve_deposits(steps in proptest::collection::vec((any::<bool>(), 0u64..3_000), 0..50)) {
            let mut b = body();
            for (a_pays, amount) in steps {
                let payer = if a_pays { Party::A } else { Party::B };
                match b.pay(payer, amount) {
                    Ok(next) => {
                        prop_assert_eq!(next.deposits(), Some(Deposits { a: 10_000, b: 500 }));
                        prop_assert_eq!(next.seq, b.seq + 1);
                        let round = ChannelBody::decode(&next.encode()).unwrap();
                        prop_assert_eq!(round, next);
                        b = next;
                    }
                    Err(ChannelError::Overdraft { party, .. }) => prop_assert_eq!(party, payer),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }
    }
}
