//! Settlement records: the co-signed channel snapshots the CRDT ledger merges.
//!
//! Layout (233 bytes, little-endian):
//!
//! | off | field | type |
//! |---|---|---|
//! | 0 | channel body (see [`crate::channel::ChannelBody`]) | [104] |
//! | 104 | kind: 0 checkpoint, 1 cooperative close, 2 unilateral close | u8 |
//! | 105 | sig_a | [64] |
//! | 169 | sig_b | [64] |
//!
//! Checkpoints and cooperative closes are signed by both parties over
//! `Blake3("mehr/settlement/v1" ‖ bytes 0..105)`. A unilateral close carries the two
//! channel-state signatures of the body instead (`Blake3("mehr/channel-state/v1" ‖ bytes
//! 0..104)`): it is the last co-signed state, published by one party after the dispute.
//! The record id, the GSet key, is `Blake3("mehr/settlement-id/v1" ‖ bytes 0..105)`: it
//! names the content, not the signature bytes.

use ed25519_dalek::{Signature, SigningKey};

use crate::channel::{CHANNEL_BODY_LEN, ChannelBody, ChannelKeys, ChannelState};
use crate::ids::{ChannelId, Party};
use crate::signing::{RecordTag, SIGNATURE_LEN, sign_record, verify_record};
use crate::wire::{DecodeError, ReadSignature, Reader, expect_len};

/// Encoded length of a [`SettlementRecord`].
pub const SETTLEMENT_RECORD_LEN: usize = CHANNEL_BODY_LEN + 1 + 2 * SIGNATURE_LEN;

const SIGNED_LEN: usize = CHANNEL_BODY_LEN + 1;

/// Domain of the record id.
pub const SETTLEMENT_ID_DOMAIN: &[u8] = b"mehr/settlement-id/v1";

/// What a settlement record does to its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SettlementKind {
    /// Periodic settlement; the channel stays open.
    Checkpoint,
    /// Both parties closed the channel; funds are released at once.
    CooperativeClose,
    /// One party closed the channel with the last co-signed state; funds stay escrowed for
    /// the ledger-side dispute window.
    UnilateralClose,
}

impl SettlementKind {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            SettlementKind::Checkpoint => 0,
            SettlementKind::CooperativeClose => 1,
            SettlementKind::UnilateralClose => 2,
        }
    }

    /// Parses a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SettlementKind::Checkpoint),
            1 => Some(SettlementKind::CooperativeClose),
            2 => Some(SettlementKind::UnilateralClose),
            _ => None,
        }
    }

    /// Whether the record closes the channel.
    pub fn closes(self) -> bool {
        self != SettlementKind::Checkpoint
    }

    /// Rank used when two records share a seq: a close supersedes a checkpoint of the same
    /// state, and a cooperative close supersedes a unilateral one.
    pub(crate) fn rank(self) -> u8 {
        match self {
            SettlementKind::Checkpoint => 0,
            SettlementKind::UnilateralClose => 1,
            SettlementKind::CooperativeClose => 2,
        }
    }
}

/// Why a settlement record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A signature that does not verify under the named party's key.
    #[error("settlement record for channel {channel}: bad signature from {party}")]
    BadSignature {
        /// The channel.
        channel: ChannelId,
        /// Whose signature failed.
        party: Party,
    },
    /// The record could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A co-signed settlement of one channel (§4 `SettlementRecord`, decision 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlementRecord {
    /// The settled channel state: deposits, cumulative per-direction totals, seq.
    pub body: ChannelBody,
    /// What the record does to the channel.
    pub kind: SettlementKind,
    /// A's signature.
    pub sig_a: Signature,
    /// B's signature.
    pub sig_b: Signature,
}

fn signed_bytes(body: &ChannelBody, kind: SettlementKind) -> [u8; SIGNED_LEN] {
    let mut out = [0u8; SIGNED_LEN];
    out[..CHANNEL_BODY_LEN].copy_from_slice(&body.encode());
    out[CHANNEL_BODY_LEN] = kind.code();
    out
}

/// One party's settlement signature over `body ‖ kind` (checkpoint or cooperative close).
pub fn sign_settlement(body: &ChannelBody, kind: SettlementKind, key: &SigningKey) -> Signature {
    sign_record(key, RecordTag::Settlement, &signed_bytes(body, kind))
}

/// Checks one party's settlement signature over `body ‖ kind`.
pub(crate) fn verify_settlement_signature(
    body: &ChannelBody,
    kind: SettlementKind,
    key: &ed25519_dalek::VerifyingKey,
    signature: &Signature,
) -> bool {
    verify_record(
        key,
        RecordTag::Settlement,
        &signed_bytes(body, kind),
        signature,
    )
}

impl SettlementRecord {
    /// The record a unilateral close publishes: the last co-signed state as it is.
    pub fn unilateral(state: &ChannelState) -> Self {
        Self {
            body: state.body,
            kind: SettlementKind::UnilateralClose,
            sig_a: state.sig_a,
            sig_b: state.sig_b,
        }
    }

    /// The channel.
    pub fn channel_id(&self) -> ChannelId {
        self.body.channel_id
    }

    /// The record id: `Blake3("mehr/settlement-id/v1" ‖ body ‖ kind)`.
    pub fn id(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(SETTLEMENT_ID_DOMAIN);
        hasher.update(&signed_bytes(&self.body, self.kind));
        *hasher.finalize().as_bytes()
    }

    /// Checks both signatures under the keys of the channel's parties.
    pub fn verify(&self, keys: &ChannelKeys) -> Result<(), RecordError> {
        let channel = self.channel_id();
        for (party, sig) in [(Party::A, &self.sig_a), (Party::B, &self.sig_b)] {
            let key = keys.of(party);
            let ok = match self.kind {
                SettlementKind::UnilateralClose => self.body.verify(key, sig),
                kind => verify_settlement_signature(&self.body, kind, key, sig),
            };
            if !ok {
                return Err(RecordError::BadSignature { channel, party });
            }
        }
        Ok(())
    }

    /// The 233-byte encoding.
    pub fn encode(&self) -> [u8; SETTLEMENT_RECORD_LEN] {
        let mut out = [0u8; SETTLEMENT_RECORD_LEN];
        out[..SIGNED_LEN].copy_from_slice(&signed_bytes(&self.body, self.kind));
        out[SIGNED_LEN..SIGNED_LEN + SIGNATURE_LEN].copy_from_slice(&self.sig_a.to_bytes());
        out[SIGNED_LEN + SIGNATURE_LEN..].copy_from_slice(&self.sig_b.to_bytes());
        out
    }

    /// Decodes the 233-byte encoding (signatures are checked by [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "settlement record";
        expect_len(WHAT, bytes, SETTLEMENT_RECORD_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let body = ChannelBody::read(&mut r, WHAT)?;
        let code = r.u8()?;
        let kind = SettlementKind::from_code(code).ok_or(DecodeError::UnknownCode {
            what: WHAT,
            field: "kind",
            code,
        })?;
        let sig_a = r.signature()?;
        let sig_b = r.signature()?;
        r.finish()?;
        Ok(Self {
            body,
            kind,
            sig_a,
            sig_b,
        })
    }
}
