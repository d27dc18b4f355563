//! Wire messages of the channel protocol, each a fixed little-endian layout behind a one-byte
//! message type.
//!
//! | type | message | layout after the type byte | total |
//! |---|---|---|---|
//! | 0x01 | [`OpenProposal`] | nonce [16], body [104], sig_a [64] | 185 |
//! | 0x02 | [`OpenAccept`] | channel_id [16], sig_b [64] | 81 |
//! | 0x03 | [`UpdateProposal`] | proposer u8, body [104], sig [64] | 170 |
//! | 0x04 | [`UpdateAck`] | channel_id [16], seq u64, signer u8, sig [64] | 90 |
//! | 0x05 | [`SettleProposal`] | kind u8, proposer u8, body [104], sig [64] | 171 |
//! | 0x06 | [`SettleAccept`] | channel_id [16], seq u64, kind u8, signer u8, sig [64] | 91 |
//! | 0x07 | [`UnilateralSettlement`] | state [232], reason u8, filed_by u8, sig [64] | 299 |
//!
//! Party codes: 0 = A (opener), 1 = B. Signatures in open, update and ack messages are
//! channel-state signatures over the body; in settle messages they are settlement signatures
//! over `body ‖ kind`; the unilateral filer signs `Blake3("mehr/unilateral-settlement/v1" ‖
//! state [232] ‖ reason ‖ filed_by)`.

use ed25519_dalek::{Signature, SigningKey};

use super::ChannelError;
use super::state::{CHANNEL_BODY_LEN, CHANNEL_STATE_LEN, ChannelBody, ChannelKeys, ChannelState};
use crate::ids::{CHANNEL_NONCE_LEN, ChannelId, ID_LEN, Party};
use crate::ledger::{SettlementKind, SettlementRecord};
use crate::signing::{RecordTag, SIGNATURE_LEN, sign_record, verify_record};
use crate::wire::{DecodeError, ReadSignature, Reader, expect_len};

const WHAT: &str = "channel message";

/// Proposal to open a channel: A's signature over the seq-0 body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenProposal {
    /// The nonce in the channel id derivation.
    pub nonce: [u8; CHANNEL_NONCE_LEN],
    /// The seq-0 body: balances are the deposits.
    pub body: ChannelBody,
    /// A's channel-state signature.
    pub sig_a: Signature,
}

/// B's countersignature of the seq-0 body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenAccept {
    /// The channel.
    pub channel_id: ChannelId,
    /// B's channel-state signature.
    pub sig_b: Signature,
}

/// A proposed next state, signed by its proposer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateProposal {
    /// Who proposes.
    pub proposer: Party,
    /// The proposed body.
    pub body: ChannelBody,
    /// The proposer's channel-state signature.
    pub signature: Signature,
}

/// The acceptor's countersignature of a proposed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateAck {
    /// The channel.
    pub channel_id: ChannelId,
    /// The seq acknowledged.
    pub seq: u64,
    /// Who signs.
    pub signer: Party,
    /// The signer's channel-state signature over the proposed body.
    pub signature: Signature,
}

/// A proposed settlement of the latest co-signed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettleProposal {
    /// Checkpoint or cooperative close.
    pub kind: SettlementKind,
    /// Who proposes.
    pub proposer: Party,
    /// The latest co-signed body.
    pub body: ChannelBody,
    /// The proposer's settlement signature.
    pub signature: Signature,
}

/// The countersignature that completes a settlement record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettleAccept {
    /// The channel.
    pub channel_id: ChannelId,
    /// The settled seq.
    pub seq: u64,
    /// The settlement kind.
    pub kind: SettlementKind,
    /// Who signs.
    pub signer: Party,
    /// The signer's settlement signature.
    pub signature: Signature,
}

/// Why a party closes a channel alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnilateralReason {
    /// Cooperative settlement failed three times.
    Unresponsive,
    /// The channel was idle for four epochs.
    Abandonment,
}

impl UnilateralReason {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            UnilateralReason::Unresponsive => 0,
            UnilateralReason::Abandonment => 1,
        }
    }

    /// Parses a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(UnilateralReason::Unresponsive),
            1 => Some(UnilateralReason::Abandonment),
            _ => None,
        }
    }
}

/// A unilateral settlement: the last co-signed state, filed and signed by one party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnilateralSettlement {
    /// The filer's latest co-signed state.
    pub state: ChannelState,
    /// Why the filer closes alone.
    pub reason: UnilateralReason,
    /// The filer.
    pub filed_by: Party,
    /// The filer's signature.
    pub signature: Signature,
}

fn unilateral_signed_bytes(
    state: &ChannelState,
    reason: UnilateralReason,
    filed_by: Party,
) -> [u8; CHANNEL_STATE_LEN + 2] {
    let mut out = [0u8; CHANNEL_STATE_LEN + 2];
    out[..CHANNEL_STATE_LEN].copy_from_slice(&state.encode());
    out[CHANNEL_STATE_LEN] = reason.code();
    out[CHANNEL_STATE_LEN + 1] = filed_by.code();
    out
}

impl UnilateralSettlement {
    /// Files `state` as `filed_by`, signing with the filer's key.
    pub fn file(
        state: ChannelState,
        reason: UnilateralReason,
        filed_by: Party,
        key: &SigningKey,
    ) -> Self {
        let signature = sign_record(
            key,
            RecordTag::UnilateralSettlement,
            &unilateral_signed_bytes(&state, reason, filed_by),
        );
        Self {
            state,
            reason,
            filed_by,
            signature,
        }
    }

    /// Checks the co-signed state and the filer's signature.
    pub fn verify(&self, keys: &ChannelKeys) -> Result<(), ChannelError> {
        self.state.verify(keys)?;
        let bytes = unilateral_signed_bytes(&self.state, self.reason, self.filed_by);
        if verify_record(
            keys.of(self.filed_by),
            RecordTag::UnilateralSettlement,
            &bytes,
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(ChannelError::BadSignature {
                party: self.filed_by,
            })
        }
    }

    /// The ledger record of this filing (kind unilateral close).
    pub fn record(&self) -> SettlementRecord {
        SettlementRecord::unilateral(&self.state)
    }
}

/// Any channel protocol message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMessage {
    /// 0x01
    OpenProposal(OpenProposal),
    /// 0x02
    OpenAccept(OpenAccept),
    /// 0x03
    Update(UpdateProposal),
    /// 0x04
    Ack(UpdateAck),
    /// 0x05
    SettleProposal(SettleProposal),
    /// 0x06
    SettleAccept(SettleAccept),
    /// 0x07
    Unilateral(UnilateralSettlement),
}

const TYPE_OPEN: u8 = 0x01;
const TYPE_OPEN_ACCEPT: u8 = 0x02;
const TYPE_UPDATE: u8 = 0x03;
const TYPE_ACK: u8 = 0x04;
const TYPE_SETTLE: u8 = 0x05;
const TYPE_SETTLE_ACCEPT: u8 = 0x06;
const TYPE_UNILATERAL: u8 = 0x07;

/// Encoded length of each message type, including the type byte.
pub const OPEN_PROPOSAL_LEN: usize = 1 + CHANNEL_NONCE_LEN + CHANNEL_BODY_LEN + SIGNATURE_LEN;
/// Encoded length of [`OpenAccept`].
pub const OPEN_ACCEPT_LEN: usize = 1 + ID_LEN + SIGNATURE_LEN;
/// Encoded length of [`UpdateProposal`].
pub const UPDATE_PROPOSAL_LEN: usize = 1 + 1 + CHANNEL_BODY_LEN + SIGNATURE_LEN;
/// Encoded length of [`UpdateAck`].
pub const UPDATE_ACK_LEN: usize = 1 + ID_LEN + 8 + 1 + SIGNATURE_LEN;
/// Encoded length of [`SettleProposal`].
pub const SETTLE_PROPOSAL_LEN: usize = 1 + 1 + 1 + CHANNEL_BODY_LEN + SIGNATURE_LEN;
/// Encoded length of [`SettleAccept`].
pub const SETTLE_ACCEPT_LEN: usize = 1 + ID_LEN + 8 + 1 + 1 + SIGNATURE_LEN;
/// Encoded length of [`UnilateralSettlement`].
pub const UNILATERAL_LEN: usize = 1 + CHANNEL_STATE_LEN + 1 + 1 + SIGNATURE_LEN;

fn read_party(r: &mut Reader<'_>, field: &'static str) -> Result<Party, DecodeError> {
    let code = r.u8()?;
    Party::from_code(code).ok_or(DecodeError::UnknownCode {
        what: WHAT,
        field,
        code,
    })
}

fn read_kind(r: &mut Reader<'_>) -> Result<SettlementKind, DecodeError> {
    let code = r.u8()?;
    SettlementKind::from_code(code).ok_or(DecodeError::UnknownCode {
        what: WHAT,
        field: "settlement kind",
        code,
    })
}

impl ChannelMessage {
    /// The channel the message is about.
    pub fn channel_id(&self) -> ChannelId {
        match self {
            ChannelMessage::OpenProposal(m) => m.body.channel_id,
            ChannelMessage::OpenAccept(m) => m.channel_id,
            ChannelMessage::Update(m) => m.body.channel_id,
            ChannelMessage::Ack(m) => m.channel_id,
            ChannelMessage::SettleProposal(m) => m.body.channel_id,
            ChannelMessage::SettleAccept(m) => m.channel_id,
            ChannelMessage::Unilateral(m) => m.state.body.channel_id,
        }
    }

    /// The fixed encoding, type byte first.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UNILATERAL_LEN);
        match self {
            ChannelMessage::OpenProposal(m) => {
                out.push(TYPE_OPEN);
                out.extend_from_slice(&m.nonce);
                out.extend_from_slice(&m.body.encode());
                out.extend_from_slice(&m.sig_a.to_bytes());
            }
            ChannelMessage::OpenAccept(m) => {
                out.push(TYPE_OPEN_ACCEPT);
                out.extend_from_slice(&m.channel_id.0);
                out.extend_from_slice(&m.sig_b.to_bytes());
            }
            ChannelMessage::Update(m) => {
                out.push(TYPE_UPDATE);
                out.push(m.proposer.code());
                out.extend_from_slice(&m.body.encode());
                out.extend_from_slice(&m.signature.to_bytes());
            }
            ChannelMessage::Ack(m) => {
                out.push(TYPE_ACK);
                out.extend_from_slice(&m.channel_id.0);
                out.extend_from_slice(&m.seq.to_le_bytes());
                out.push(m.signer.code());
                out.extend_from_slice(&m.signature.to_bytes());
            }
            ChannelMessage::SettleProposal(m) => {
                out.push(TYPE_SETTLE);
                out.push(m.kind.code());
                out.push(m.proposer.code());
                out.extend_from_slice(&m.body.encode());
                out.extend_from_slice(&m.signature.to_bytes());
            }
            ChannelMessage::SettleAccept(m) => {
                out.push(TYPE_SETTLE_ACCEPT);
                out.extend_from_slice(&m.channel_id.0);
                out.extend_from_slice(&m.seq.to_le_bytes());
                out.push(m.kind.code());
                out.push(m.signer.code());
                out.extend_from_slice(&m.signature.to_bytes());
            }
            ChannelMessage::Unilateral(m) => {
                out.push(TYPE_UNILATERAL);
                out.extend_from_slice(&m.state.encode());
                out.push(m.reason.code());
                out.push(m.filed_by.code());
                out.extend_from_slice(&m.signature.to_bytes());
            }
        }
        out
    }

    /// Decodes one message; checks layout and codes, not signatures. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&kind, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let expected = match kind {
            TYPE_OPEN => OPEN_PROPOSAL_LEN,
            TYPE_OPEN_ACCEPT => OPEN_ACCEPT_LEN,
            TYPE_UPDATE => UPDATE_PROPOSAL_LEN,
            TYPE_ACK => UPDATE_ACK_LEN,
            TYPE_SETTLE => SETTLE_PROPOSAL_LEN,
            TYPE_SETTLE_ACCEPT => SETTLE_ACCEPT_LEN,
            TYPE_UNILATERAL => UNILATERAL_LEN,
            code => {
                return Err(DecodeError::UnknownCode {
                    what: WHAT,
                    field: "type",
                    code,
                });
            }
        };
        expect_len(WHAT, bytes, expected)?;
        let mut r = Reader::new(WHAT, bytes);
        r.u8()?;
        let message = match kind {
            TYPE_OPEN => ChannelMessage::OpenProposal(OpenProposal {
                nonce: r.array()?,
                body: ChannelBody::read(&mut r, WHAT)?,
                sig_a: r.signature()?,
            }),
            TYPE_OPEN_ACCEPT => ChannelMessage::OpenAccept(OpenAccept {
                channel_id: ChannelId(r.array()?),
                sig_b: r.signature()?,
            }),
            TYPE_UPDATE => ChannelMessage::Update(UpdateProposal {
                proposer: read_party(&mut r, "proposer")?,
                body: ChannelBody::read(&mut r, WHAT)?,
                signature: r.signature()?,
            }),
            TYPE_ACK => ChannelMessage::Ack(UpdateAck {
                channel_id: ChannelId(r.array()?),
                seq: r.u64()?,
                signer: read_party(&mut r, "signer")?,
                signature: r.signature()?,
            }),
            TYPE_SETTLE => ChannelMessage::SettleProposal(SettleProposal {
                kind: read_kind(&mut r)?,
                proposer: read_party(&mut r, "proposer")?,
                body: ChannelBody::read(&mut r, WHAT)?,
                signature: r.signature()?,
            }),
            TYPE_SETTLE_ACCEPT => ChannelMessage::SettleAccept(SettleAccept {
                channel_id: ChannelId(r.array()?),
                seq: r.u64()?,
                kind: read_kind(&mut r)?,
                signer: read_party(&mut r, "signer")?,
                signature: r.signature()?,
            }),
            _ => {
                let state = ChannelState::read(&mut r, WHAT)?;
                let code = r.u8()?;
                let reason = UnilateralReason::from_code(code).ok_or(DecodeError::UnknownCode {
                    what: WHAT,
                    field: "reason",
                    code,
                })?;
                ChannelMessage::Unilateral(UnilateralSettlement {
                    state,
                    reason,
                    filed_by: read_party(&mut r, "filed_by")?,
                    signature: r.signature()?,
                })
            }
        };
        let settle_kind = match &message {
            ChannelMessage::SettleProposal(p) => Some(p.kind),
            ChannelMessage::SettleAccept(a) => Some(a.kind),
            _ => None,
        };
        if settle_kind == Some(SettlementKind::UnilateralClose) {
            return Err(DecodeError::Invalid {
                what: WHAT,
                field: "settlement kind",
                reason: "a unilateral close is filed, not proposed",
            });
        }
        r.finish()?;
        Ok(message)
    }
}
