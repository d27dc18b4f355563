//! Stochastic relay rewards (§4, decision 4, §8 items 16–18).
//!
//! A relay evaluates ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381) with a VRF key derived from (and
//! certified by, [`VrfKeyCertificate`]) its Ed25519 identity key on
//! `tag ‖ channel id ‖ period ‖ committed probability ‖ packet hash`. It wins when the first 8
//! bytes of the VRF output, read as a little-endian `u64`, fall below `p · 2^64`; a win pays
//! `cost / p` through the channel, so the expected payment per packet is exactly its cost
//! while channel updates drop to about one every ten minutes.
//!
//! `p` is committed per period in the co-signed channel state before any packet of the period
//! is seen, and it is bound into the VRF input, so the relay cannot grind it (§8 item 17).

mod certificate;
mod probability;
mod rate;
mod ticket;
mod vrf;

pub use certificate::{VRF_CERTIFICATE_DOMAIN, VRF_CERTIFICATE_LEN, VrfKeyCertificate};
pub use probability::WinProbability;
pub use rate::PacketRateEstimator;
pub use ticket::{LOTTERY_DOMAIN, RELAY_TICKET_LEN, RedeemedTickets, RelayTicket, lottery_input};
pub use vrf::{
    VRF_KEY_LABEL, VRF_OUTPUT_LEN, VRF_PROOF_LEN, VRF_PUBLIC_KEY_LEN, VrfOutput, VrfProver,
    VrfVerifier,
};

use thiserror::Error;

/// Errors from the relay lottery.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LotteryError {
    /// A win probability outside `[1/10000, 1/5]`.
    #[error("win probability {ppm} ppm is outside [{min}, {max}] ppm")]
    ProbabilityOutOfRange {
        /// The value seen, parts per million.
        ppm: u32,
        /// The lowest allowed value.
        min: u32,
        /// The highest allowed value.
        max: u32,
    },
    /// The relay's public key is not a valid VRF key (not a point, or of small order).
    #[error("relay public key is not a valid ECVRF-EDWARDS25519 key")]
    InvalidRelayKey,
    /// The relay's VRF key certificate is not signed by the relay's identity key.
    #[error("the VRF key certificate is not signed by the relay's identity key")]
    CertificateRejected,
    /// The 80-byte proof does not decode canonically (bad point, or a scalar not reduced).
    #[error("VRF proof is malformed or not canonically encoded")]
    MalformedProof,
    /// The proof does not verify for this key and input.
    #[error("VRF proof does not verify for this relay key and lottery input")]
    ProofRejected,
    /// RFC 9381 try-and-increment found no curve point (probability ~2^-256).
    #[error("VRF encode-to-curve found no point for this input")]
    EncodeToCurveFailed,
    /// `cost / p` does not fit in a u64.
    #[error("payout of cost {cost} μ at {ppm} ppm overflows a u64")]
    PayoutOverflow {
        /// The packet's cost.
        cost: u64,
        /// The win probability, ppm.
        ppm: u32,
    },
    /// A ticket whose VRF output is not below the target.
    #[error("ticket is valid but not a winning ticket")]
    NotAWin,
    /// The ticket names a probability other than the one committed for its period.
    #[error("ticket claims {claimed_ppm} ppm but the channel committed {committed_ppm} ppm")]
    ProbabilityMismatch {
        /// What the ticket says.
        claimed_ppm: u32,
        /// What the co-signed channel state says.
        committed_ppm: u32,
    },
    /// The channel has no committed terms for the ticket's period (too old or in the future).
    #[error("no committed lottery terms for period {period} on this channel")]
    UnknownPeriod {
        /// The ticket's period.
        period: u64,
    },
    /// The ticket belongs to another channel.
    #[error("ticket is for another channel")]
    WrongChannel,
    /// This packet's ticket was already redeemed in this period.
    #[error("ticket for this packet in period {period} was already redeemed")]
    AlreadyRedeemed {
        /// The ticket's period.
        period: u64,
    },
}
