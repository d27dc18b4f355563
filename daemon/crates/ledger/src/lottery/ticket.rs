//! Relay tickets: a winning VRF proof anyone can check with the relay's public key.

use std::collections::HashSet;

use super::vrf::{VRF_PROOF_LEN, VrfProver, VrfVerifier};
use super::{LotteryError, WinProbability};
use crate::ids::{ChannelId, ID_LEN};
use crate::wire::{DecodeError, Reader, expect_len};

/// Domain tag at the front of every lottery VRF input (decision 4).
pub const LOTTERY_DOMAIN: &[u8] = b"mehr/relay-lottery/v1";

const LOTTERY_INPUT_LEN: usize = LOTTERY_DOMAIN.len() + ID_LEN + 8 + 4 + 32;

/// Encoded length of a [`RelayTicket`].
pub const RELAY_TICKET_LEN: usize = ID_LEN + 8 + 4 + 32 + 8 + VRF_PROOF_LEN;

/// The VRF input `alpha`: `"mehr/relay-lottery/v1" ‖ channel_id ‖ period u64 LE ‖ p (ppm)
/// u32 LE ‖ packet_hash`, where `packet_hash = Blake3(destination ‖ context ‖ data)` is
/// computed by the caller and is the same at every hop (decision 4, §8 item 16).
pub fn lottery_input(
    channel_id: &ChannelId,
    period: u64,
    probability: WinProbability,
    packet_hash: &[u8; 32],
) -> [u8; LOTTERY_INPUT_LEN] {
    let mut out = [0u8; LOTTERY_INPUT_LEN];
    let parts: [&[u8]; 5] = [
        LOTTERY_DOMAIN,
        &channel_id.0,
        &period.to_le_bytes(),
        &probability.ppm().to_le_bytes(),
        packet_hash,
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

/// A winning lottery draw for one relayed packet. Fixed 148-byte encoding:
///
/// | off | field | type |
/// |---|---|---|
/// | 0 | channel_id | [16] |
/// | 16 | period | u64 |
/// | 24 | win_probability (ppm) | u32 |
/// | 28 | packet_hash | [32] |
/// | 60 | cost (μ, the packet's price) | u64 |
/// | 68 | proof `pi` | [80] |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTicket {
    /// The channel the payout moves through (relay ← upstream payer).
    pub channel_id: ChannelId,
    /// The lottery period whose committed probability applies.
    pub period: u64,
    /// The committed probability the relay drew against.
    pub win_probability: WinProbability,
    /// `Blake3(destination ‖ context ‖ data)` of the relayed packet.
    pub packet_hash: [u8; 32],
    /// The packet's relay price, μ; the payout is `cost / p`.
    pub cost: u64,
    /// The RFC 9381 proof.
    pub proof: [u8; VRF_PROOF_LEN],
}

impl RelayTicket {
    /// Runs the relay's draw for one packet. Returns the ticket if it wins, `None` if not.
    pub fn draw(
        prover: &VrfProver,
        channel_id: ChannelId,
        period: u64,
        win_probability: WinProbability,
        packet_hash: [u8; 32],
        cost: u64,
    ) -> Result<Option<RelayTicket>, LotteryError> {
        let alpha = lottery_input(&channel_id, period, win_probability, &packet_hash);
        let (proof, output) = prover.prove(&alpha)?;
        if !win_probability.wins(output.draw()) {
            return Ok(None);
        }
        Ok(Some(RelayTicket {
            channel_id,
            period,
            win_probability,
            packet_hash,
            cost,
            proof,
        }))
    }

    /// Verifies the ticket against the relay's key and returns the gross payout
    /// `ceil(cost / p)`. Fails with [`LotteryError::NotAWin`] for a valid losing draw.
    ///
    /// The caller must still check that `win_probability` is the one committed for `period`
    /// on this channel, that it sent a packet with this hash and priced it at `cost`, and
    /// that the ticket was not redeemed before ([`RedeemedTickets`]).
    pub fn verify(&self, relay: &VrfVerifier) -> Result<u64, LotteryError> {
        let alpha = lottery_input(
            &self.channel_id,
            self.period,
            self.win_probability,
            &self.packet_hash,
        );
        let output = relay.verify(&alpha, &self.proof)?;
        if !self.win_probability.wins(output.draw()) {
            return Err(LotteryError::NotAWin);
        }
        self.win_probability.payout(self.cost)
    }

    /// The fixed little-endian encoding.
    pub fn encode(&self) -> [u8; RELAY_TICKET_LEN] {
        let mut out = [0u8; RELAY_TICKET_LEN];
        let parts: [&[u8]; 6] = [
            &self.channel_id.0,
            &self.period.to_le_bytes(),
            &self.win_probability.ppm().to_le_bytes(),
            &self.packet_hash,
            &self.cost.to_le_bytes(),
            &self.proof,
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

    /// Decodes the fixed encoding; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "relay ticket";
        expect_len(WHAT, bytes, RELAY_TICKET_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let channel_id = ChannelId(r.array()?);
        let period = r.u64()?;
        let win_probability =
            WinProbability::from_ppm(r.u32()?).map_err(|_| DecodeError::Invalid {
                what: WHAT,
                field: "win_probability",
                reason: "outside [100, 200000] ppm",
            })?;
        let packet_hash = r.array()?;
        let cost = r.u64()?;
        let proof = r.array()?;
        r.finish()?;
        Ok(Self {
            channel_id,
            period,
            win_probability,
            packet_hash,
            cost,
            proof,
        })
    }
}

/// The payer's record of redeemed tickets on one channel, for the current and previous
/// period (the periods whose terms the channel still accepts). A packet can be paid once.
#[derive(Clone, Debug, Default)]
pub struct RedeemedTickets {
    current_period: u64,
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

impl RedeemedTickets {
    /// An empty record starting at `period`.
    pub fn new(period: u64) -> Self {
        Self {
            current_period: period,
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// Marks the ticket for `packet_hash` in `period` as redeemed. Fails if it already was,
    /// or if the period is older than the previous one. A newer period rotates the record.
    pub fn redeem(&mut self, period: u64, packet_hash: [u8; 32]) -> Result<(), LotteryError> {
        if period > self.current_period {
            self.previous = if period == self.current_period.saturating_add(1) {
                std::mem::take(&mut self.current)
            } else {
                HashSet::new()
            };
            self.current.clear();
            self.current_period = period;
        }
        let set = if period == self.current_period {
            &mut self.current
        } else if period.checked_add(1) == Some(self.current_period) {
            &mut self.previous
        } else {
            return Err(LotteryError::UnknownPeriod { period });
        };
        if set.insert(packet_hash) {
            Ok(())
        } else {
            Err(LotteryError::AlreadyRedeemed { period })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn keys() -> (VrfProver, VrfVerifier) {
        let prover = VrfProver::for_identity(&SigningKey::from_bytes(&[42; 32])).unwrap();
        let verifier = VrfVerifier::new(&prover.public_key()).unwrap();
        (prover, verifier)
    }

    fn first_win(prover: &VrfProver, p: WinProbability) -> RelayTicket {
        (0u32..)
            .find_map(|i| {
                let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
                RelayTicket::draw(prover, ChannelId([7; 16]), 3, p, hash, 5).unwrap()
            })
            .unwrap()
    }

    #[test]
    fn winning_ticket_verifies_and_pays_cost_over_p() {
        let (prover, verifier) = keys();
        let p = WinProbability::MAX;
        let ticket = first_win(&prover, p);
        assert_eq!(ticket.verify(&verifier).unwrap(), 25);
        let decoded = RelayTicket::decode(&ticket.encode()).unwrap();
        assert_eq!(decoded, ticket);
    }

    #[test]
    fn altering_any_bound_field_breaks_the_ticket() {
        let (prover, verifier) = keys();
        let ticket = first_win(&prover, WinProbability::MAX);
        let mut t = ticket.clone();
        t.period += 1;
        assert!(t.verify(&verifier).is_err());
        let mut t = ticket.clone();
        t.channel_id.0[0] ^= 1;
        assert!(t.verify(&verifier).is_err());
        let mut t = ticket.clone();
        t.packet_hash[31] ^= 1;
        assert!(t.verify(&verifier).is_err());
        // Claiming a different probability (grinding after the fact) fails: p is in alpha.
        let mut t = ticket.clone();
        t.win_probability = WinProbability::from_ppm(199_999).unwrap();
        assert!(t.verify(&verifier).is_err());
    }

    #[test]
    fn losing_draws_are_not_tickets_and_win_rate_matches_p() {
        let (prover, verifier) = keys();
        let p = WinProbability::from_ppm(100_000).unwrap();
        let mut wins = 0;
        let n = 2_000u32;
        for i in 0..n {
            let hash = *blake3::hash(&i.to_be_bytes()).as_bytes();
            let alpha = lottery_input(&ChannelId([1; 16]), 0, p, &hash);
            let (proof, output) = prover.prove(&alpha).unwrap();
            let ticket = RelayTicket {
                channel_id: ChannelId([1; 16]),
                period: 0,
                win_probability: p,
                packet_hash: hash,
                cost: 1,
                proof,
            };
            let drawn = RelayTicket::draw(&prover, ChannelId([1; 16]), 0, p, hash, 1).unwrap();
            if p.wins(output.draw()) {
                wins += 1;
                assert_eq!(drawn, Some(ticket.clone()));
                assert_eq!(ticket.verify(&verifier), Ok(10));
            } else {
                assert_eq!(drawn, None);
                assert_eq!(ticket.verify(&verifier), Err(LotteryError::NotAWin));
            }
        }
        // Binomial(2000, 0.1): mean 200, sd ~13.4; 5 sd either side.
        assert!((133..=267).contains(&wins), "{wins} wins out of {n}");
    }

    #[test]
    fn redeemed_tickets_block_replays_across_period_rotation() {
        let mut r = RedeemedTickets::new(5);
        r.redeem(5, [1; 32]).unwrap();
        assert_eq!(
            r.redeem(5, [1; 32]),
            Err(LotteryError::AlreadyRedeemed { period: 5 })
        );
        r.redeem(6, [1; 32]).unwrap();
        assert_eq!(
            r.redeem(5, [1; 32]),
            Err(LotteryError::AlreadyRedeemed { period: 5 })
        );
        r.redeem(5, [2; 32]).unwrap();
        assert_eq!(
            r.redeem(4, [3; 32]),
            Err(LotteryError::UnknownPeriod { period: 4 })
        );
        r.redeem(9, [9; 32]).unwrap();
        assert_eq!(r.redeem(8, [9; 32]), Ok(()));
        assert_eq!(
            r.redeem(6, [7; 32]),
            Err(LotteryError::UnknownPeriod { period: 6 })
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RelayTicket::decode(&bytes);
        }

        #[test]
        fn decode_of_exact_length_round_trips_when_valid(bytes in proptest::collection::vec(any::<u8>(), RELAY_TICKET_LEN)) {
            if let Ok(t) = RelayTicket::decode(&bytes) {
                prop_assert_eq!(t.encode().to_vec(), bytes);
            }
        }
    }
}
