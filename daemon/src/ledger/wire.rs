//! The ledger's control messages (types 0x10–0x1F to a node's `mehr.node` destination).
//!
//! Packets carry no sender, so every message that needs one names it: channel messages and
//! tickets start with the sender's 64-byte public identity (X25519 ‖ Ed25519, whose hash is
//! its node id), and gossiped settlement records carry both parties' identities. Everything
//! is then authenticated by the signatures inside (the crate's co-signed states, records and
//! VRF proofs), checked against those keys; the identity only says whose key to use, and a
//! receiver checks it hashes to the node id the record names.
//!
//! | type | body |
//! |---|---|
//! | 0x10 channel | sender identity[64] ‖ `ChannelMessage` (crate encoding, type byte first) |
//! | 0x11 ticket | relay identity[64] ‖ `VrfKeyCertificate`[96] ‖ `RelayTicket`[148] |
//! | 0x12 settlements | count u16 ‖ count × (`SettlementRecord`[233] ‖ identity A[64] ‖ identity B[64]) |
//! | 0x13 digest | sender node id[16] ‖ snapshot root[32] ‖ records digest[32] ‖ record count u64 |
//! | 0x14 open refused | sender identity[64] ‖ channel id[16] ‖ reason u8 ‖ sig[64] |
//! | 0x15 epoch proposal | proposer identity[64] ‖ base snapshot root[32] ‖ `EpochSummary`[252] ‖ count u16 ‖ count × (`SettlementRecord`[233] ‖ identity A[64] ‖ identity B[64]) |
//! | 0x16 epoch ack | sender identity[64] ‖ `EpochAck`[120] |
//! | 0x17 epoch activation | proposer identity[64] ‖ `EpochSummary`[252] ‖ electorate count u16 ‖ ids[16]… ‖ ack count u16 ‖ (identity[64] ‖ `EpochAck`[120])… ‖ `Snapshot` encoding (the rest) |

use ed25519_dalek::{Signature, Signer, SigningKey};
use mehr_ledger::{
    ChannelId, NodeId,
    channel::ChannelMessage,
    ledger::{
        SETTLEMENT_RECORD_LEN, SettlementRecord,
        epoch::{EPOCH_ACK_LEN, EPOCH_SUMMARY_LEN, EpochAck, EpochSummary},
    },
    lottery::{RELAY_TICKET_LEN, RelayTicket, VRF_CERTIFICATE_LEN, VrfKeyCertificate},
};
use mehr_transport::identity::{Identity, PUBLIC_KEY_LEN};

/// Control message types owned by the ledger (0x10–0x1F).
pub(crate) mod kinds {
    use crate::transport::control_kinds::LEDGER_FIRST;

    /// A payment channel message.
    pub(crate) const CHANNEL: u8 = LEDGER_FIRST;
    /// A winning relay ticket, sent by the relay to the neighbour that pays it.
    pub(crate) const TICKET: u8 = LEDGER_FIRST + 1;
    /// Settlement records, gossiped between neighbours.
    pub(crate) const SETTLEMENTS: u8 = LEDGER_FIRST + 2;
    /// A summary of the sender's ledger, so neighbours notice when they differ.
    pub(crate) const DIGEST: u8 = LEDGER_FIRST + 3;
    /// A refused channel open, signed by the refusing node.
    pub(crate) const OPEN_REFUSED: u8 = LEDGER_FIRST + 4;
    /// A proposed epoch: the summary and the records it folds.
    pub(crate) const EPOCH_PROPOSAL: u8 = LEDGER_FIRST + 5;
    /// A signed acknowledgement of a proposed epoch, sent to its proposer.
    pub(crate) const EPOCH_ACK: u8 = LEDGER_FIRST + 6;
    /// An activated epoch: the summary, its acknowledgements and the snapshot.
    pub(crate) const EPOCH_ACTIVATION: u8 = LEDGER_FIRST + 7;
    /// Every type above.
    pub(crate) const ALL: [u8; 8] = [
        CHANNEL,
        TICKET,
        SETTLEMENTS,
        DIGEST,
        OPEN_REFUSED,
        EPOCH_PROPOSAL,
        EPOCH_ACK,
        EPOCH_ACTIVATION,
    ];
}

/// Most records in one settlements message (about 23 KB: sent over a link).
pub(crate) const MAX_RECORDS_PER_MESSAGE: usize = 64;

/// Most records one epoch folds: all of them travel in its proposal (about 46 KB). A ledger
/// with more unfolded channels folds the first ones in channel order and the rest in the
/// following epochs.
pub(crate) const MAX_FOLDED_PER_EPOCH: usize = 128;

/// Largest electorate an activation may name.
pub(crate) const MAX_ELECTORATE: usize = 4_096;

/// Largest snapshot an activation may carry (16 MiB: about 200 000 accounts and channels).
pub(crate) const MAX_SNAPSHOT_BYTES: usize = 16 << 20;

/// Length of one gossiped record: the record and both parties' identities.
const GOSSIP_ENTRY_LEN: usize = SETTLEMENT_RECORD_LEN + 2 * PUBLIC_KEY_LEN;
const DIGEST_LEN: usize = 16 + 32 + 32 + 8;
const OPEN_REFUSED_LEN: usize = PUBLIC_KEY_LEN + 16 + 1 + 64;
/// Domain of the signature on a refused open.
const OPEN_REFUSED_DOMAIN: &[u8] = b"mehr/channel-open-refused/v1";

/// Why a ledger control message was not understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The body is shorter or longer than its layout.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// The message.
        what: &'static str,
        /// The length its layout needs.
        expected: usize,
        /// The length seen.
        actual: usize,
    },
    /// The type byte is not a ledger message.
    #[error("control message type {0:#04x} is not a ledger message")]
    UnknownKind(u8),
    /// The 64-byte identity is not a valid key pair.
    #[error("{what}: the sender identity is not a valid public key")]
    BadIdentity {
        /// The message.
        what: &'static str,
    },
    /// A settlements message with no record, or more than allowed.
    #[error("settlements: {0} records, expected 1 to {MAX_RECORDS_PER_MESSAGE}")]
    RecordCount(usize),
    /// A list longer than its bound.
    #[error("{what}: {count} entries, at most {max}")]
    TooMany {
        /// The message.
        what: &'static str,
        /// Entries announced.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// An unknown refusal reason.
    #[error("open refused: unknown reason code {0}")]
    UnknownReason(u8),
    /// The crate's decoder refused the inner record.
    #[error(transparent)]
    Inner(#[from] mehr_ledger::DecodeError),
}

/// A settlement record as gossiped: with both parties' public identities so any node can
/// verify it, whether or not it ever heard the parties' announces.
#[derive(Clone, Debug)]
pub(crate) struct GossipedRecord {
    /// The record.
    pub(crate) record: SettlementRecord,
    /// Party A's identity (hashes to `record.body.party_a`).
    pub(crate) identity_a: Identity,
    /// Party B's identity.
    pub(crate) identity_b: Identity,
}

/// What a node says about its ledger to its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LedgerDigest {
    /// The node that sent it (a hint: replies go only to current neighbours).
    pub(crate) sender: NodeId,
    /// Root of the adopted epoch snapshot.
    pub(crate) snapshot_root: [u8; 32],
    /// Digest of the records held since the snapshot.
    pub(crate) records_digest: [u8; 32],
    /// Number of records held.
    pub(crate) record_count: u64,
}

/// Why a node refused a channel open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusalReason {
    /// The deposit asked of the refusing node is above its limit or its free balance.
    DepositTooLarge = 0,
    /// The opener's deposit is above its free balance in the refusing node's ledger.
    OpenerUnderfunded = 1,
    /// The pair already has an open channel.
    ChannelExists = 2,
    /// Both nodes proposed at once; the other proposal wins.
    ConcurrentOpen = 3,
}

impl RefusalReason {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => RefusalReason::DepositTooLarge,
            1 => RefusalReason::OpenerUnderfunded,
            2 => RefusalReason::ChannelExists,
            3 => RefusalReason::ConcurrentOpen,
            _ => return None,
        })
    }

    /// In words, for the opener's error message.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            RefusalReason::DepositTooLarge => {
                "the deposit asked of it is above its limit or its free balance"
            }
            RefusalReason::OpenerUnderfunded => {
                "this node's deposit is above its free balance in the peer's ledger"
            }
            RefusalReason::ChannelExists => "the peer already has an open channel with this node",
            RefusalReason::ConcurrentOpen => {
                "the peer proposed a channel at the same time and its proposal wins"
            }
        }
    }
}

/// A signed refusal of a channel open.
#[derive(Clone, Debug)]
pub(crate) struct OpenRefusal {
    /// The refusing node.
    pub(crate) sender: Identity,
    /// The refused channel.
    pub(crate) channel_id: ChannelId,
    /// Why.
    pub(crate) reason: RefusalReason,
    signature: Signature,
}

impl OpenRefusal {
    fn signed_bytes(channel_id: &ChannelId, reason: RefusalReason) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(OPEN_REFUSED_DOMAIN);
        hasher.update(&channel_id.0);
        hasher.update(&[reason as u8]);
        *hasher.finalize().as_bytes()
    }

    /// Signs a refusal.
    pub(crate) fn sign(
        sender: Identity,
        key: &SigningKey,
        channel_id: ChannelId,
        reason: RefusalReason,
    ) -> Self {
        let signature = key.sign(&Self::signed_bytes(&channel_id, reason));
        OpenRefusal {
            sender,
            channel_id,
            reason,
            signature,
        }
    }

    /// Whether the sender's key signed it.
    pub(crate) fn verify(&self) -> bool {
        self.sender
            .signing_key()
            .verify_strict(
                &Self::signed_bytes(&self.channel_id, self.reason),
                &self.signature,
            )
            .is_ok()
    }
}

/// A decoded ledger control message.
#[derive(Clone, Debug)]
pub(crate) enum LedgerMessage {
    /// A payment channel message and who sent it.
    Channel {
        /// The sender.
        sender: Identity,
        /// The message.
        message: ChannelMessage,
    },
    /// A winning ticket and the relay that won it.
    Ticket {
        /// The relay.
        relay: Identity,
        /// The relay's VRF public key, signed by its identity.
        certificate: VrfKeyCertificate,
        /// The ticket.
        ticket: RelayTicket,
    },
    /// Gossiped settlement records.
    Settlements(Vec<GossipedRecord>),
    /// A neighbour's ledger digest.
    Digest(LedgerDigest),
    /// A refused open.
    OpenRefused(OpenRefusal),
    /// A proposed epoch.
    EpochProposal(EpochProposal),
    /// An acknowledgement of a proposed epoch.
    EpochAck {
        /// The acknowledging node.
        sender: Identity,
        /// Its signed ACK.
        ack: EpochAck,
    },
    /// An activated epoch.
    EpochActivation(Box<EpochActivation>),
}

/// A proposed epoch as sent to the electorate.
#[derive(Clone, Debug)]
pub(crate) struct EpochProposal {
    /// The proposer (hashes to `summary.proposer`).
    pub(crate) proposer: Identity,
    /// Root of the snapshot the proposal builds on (unsigned: a wrong one only makes the
    /// rebuilt snapshot differ from the signed summary).
    pub(crate) base_root: [u8; 32],
    /// The signed summary of the proposed snapshot.
    pub(crate) summary: EpochSummary,
    /// Every record the epoch folds.
    pub(crate) records: Vec<GossipedRecord>,
}

/// An activated epoch: enough for any node to check and adopt it.
#[derive(Clone, Debug)]
pub(crate) struct EpochActivation {
    /// The proposer.
    pub(crate) proposer: Identity,
    /// The signed summary.
    pub(crate) summary: EpochSummary,
    /// The electorate the ACKs were counted against (the base snapshot's), sorted.
    pub(crate) electorate: Vec<NodeId>,
    /// The ACKs, with their signers' identities.
    pub(crate) acks: Vec<(Identity, EpochAck)>,
    /// The snapshot, encoded.
    pub(crate) snapshot: Vec<u8>,
}

fn gossip_entry(entry: &[u8]) -> Result<GossipedRecord, WireError> {
    let (record, keys) = entry.split_at(SETTLEMENT_RECORD_LEN);
    let (a, b) = keys.split_at(PUBLIC_KEY_LEN);
    Ok(GossipedRecord {
        record: SettlementRecord::decode(record)?,
        identity_a: identity("settlements", a)?,
        identity_b: identity("settlements", b)?,
    })
}

fn encode_gossip_entry(body: &mut Vec<u8>, r: &GossipedRecord) {
    body.extend_from_slice(&r.record.encode());
    body.extend_from_slice(&r.identity_a.public_key());
    body.extend_from_slice(&r.identity_b.public_key());
}

/// Reads a u16 count and that many fixed-size entries, at most `max`.
fn counted<'a>(
    what: &'static str,
    body: &'a [u8],
    entry_len: usize,
    max: usize,
) -> Result<(Vec<&'a [u8]>, &'a [u8]), WireError> {
    let Some((count, rest)) = body.split_first_chunk::<2>() else {
        return Err(WireError::Length {
            what,
            expected: 2,
            actual: body.len(),
        });
    };
    let count = usize::from(u16::from_le_bytes(*count));
    if count > max {
        return Err(WireError::TooMany { what, count, max });
    }
    let need = count * entry_len;
    if rest.len() < need {
        return Err(WireError::Length {
            what,
            expected: need,
            actual: rest.len(),
        });
    }
    let (entries, rest) = rest.split_at(need);
    Ok((entries.chunks_exact(entry_len).collect(), rest))
}

fn identity(what: &'static str, bytes: &[u8]) -> Result<Identity, WireError> {
    Identity::from_slice(bytes).map_err(|_| WireError::BadIdentity { what })
}

fn split_identity<'a>(
    what: &'static str,
    body: &'a [u8],
    rest_min: usize,
) -> Result<(Identity, &'a [u8]), WireError> {
    if body.len() < PUBLIC_KEY_LEN + rest_min {
        return Err(WireError::Length {
            what,
            expected: PUBLIC_KEY_LEN + rest_min,
            actual: body.len(),
        });
    }
    let (head, rest) = body.split_at(PUBLIC_KEY_LEN);
    Ok((identity(what, head)?, rest))
}

fn exact(what: &'static str, body: &[u8], expected: usize) -> Result<(), WireError> {
    if body.len() == expected {
        Ok(())
    } else {
        Err(WireError::Length {
            what,
            expected,
            actual: body.len(),
        })
    }
}

impl LedgerMessage {
    /// Decodes the body of a control message of type `kind`; never panics.
    pub(crate) fn decode(kind: u8, body: &[u8]) -> Result<Self, WireError> {
        match kind {
            kinds::CHANNEL => {
                let (sender, rest) = split_identity("channel message", body, 1)?;
                Ok(LedgerMessage::Channel {
                    sender,
                    message: ChannelMessage::decode(rest)?,
                })
            }
            kinds::TICKET => {
                exact(
                    "ticket",
                    body,
                    PUBLIC_KEY_LEN + VRF_CERTIFICATE_LEN + RELAY_TICKET_LEN,
                )?;
                let (relay, rest) =
                    split_identity("ticket", body, VRF_CERTIFICATE_LEN + RELAY_TICKET_LEN)?;
                let (certificate, ticket) = rest.split_at(VRF_CERTIFICATE_LEN);
                Ok(LedgerMessage::Ticket {
                    relay,
                    certificate: VrfKeyCertificate::decode(certificate).ok_or(
                        WireError::Length {
                            what: "VRF key certificate",
                            expected: VRF_CERTIFICATE_LEN,
                            actual: certificate.len(),
                        },
                    )?,
                    ticket: RelayTicket::decode(ticket)?,
                })
            }
            kinds::SETTLEMENTS => {
                let Some((count, entries)) = body.split_first_chunk::<2>() else {
                    return Err(WireError::Length {
                        what: "settlements",
                        expected: 2,
                        actual: body.len(),
                    });
                };
                let count = usize::from(u16::from_le_bytes(*count));
                if count == 0 || count > MAX_RECORDS_PER_MESSAGE {
                    return Err(WireError::RecordCount(count));
                }
                exact("settlements", entries, count * GOSSIP_ENTRY_LEN)?;
                entries
                    .chunks_exact(GOSSIP_ENTRY_LEN)
                    .map(gossip_entry)
                    .collect::<Result<_, WireError>>()
                    .map(LedgerMessage::Settlements)
            }
            kinds::DIGEST => {
                exact("digest", body, DIGEST_LEN)?;
                let mut sender = [0u8; 16];
                let mut snapshot_root = [0u8; 32];
                let mut records_digest = [0u8; 32];
                let mut count = [0u8; 8];
                sender.copy_from_slice(&body[..16]);
                snapshot_root.copy_from_slice(&body[16..48]);
                records_digest.copy_from_slice(&body[48..80]);
                count.copy_from_slice(&body[80..88]);
                Ok(LedgerMessage::Digest(LedgerDigest {
                    sender: NodeId(sender),
                    snapshot_root,
                    records_digest,
                    record_count: u64::from_le_bytes(count),
                }))
            }
            kinds::OPEN_REFUSED => {
                exact("open refused", body, OPEN_REFUSED_LEN)?;
                let (sender, rest) = split_identity("open refused", body, 16 + 1 + 64)?;
                let mut channel = [0u8; 16];
                channel.copy_from_slice(&rest[..16]);
                let reason =
                    RefusalReason::from_code(rest[16]).ok_or(WireError::UnknownReason(rest[16]))?;
                let mut signature = [0u8; 64];
                signature.copy_from_slice(&rest[17..81]);
                Ok(LedgerMessage::OpenRefused(OpenRefusal {
                    sender,
                    channel_id: ChannelId(channel),
                    reason,
                    signature: Signature::from_bytes(&signature),
                }))
            }
            kinds::EPOCH_PROPOSAL => {
                const WHAT: &str = "epoch proposal";
                let (proposer, rest) = split_identity(WHAT, body, 32 + EPOCH_SUMMARY_LEN + 2)?;
                let (base, rest) = rest.split_at(32);
                let (summary, rest) = rest.split_at(EPOCH_SUMMARY_LEN);
                let (entries, rest) = counted(WHAT, rest, GOSSIP_ENTRY_LEN, MAX_FOLDED_PER_EPOCH)?;
                exact(WHAT, rest, 0)?;
                let mut base_root = [0u8; 32];
                base_root.copy_from_slice(base);
                Ok(LedgerMessage::EpochProposal(EpochProposal {
                    proposer,
                    base_root,
                    summary: EpochSummary::decode(summary)?,
                    records: entries
                        .into_iter()
                        .map(gossip_entry)
                        .collect::<Result<_, WireError>>()?,
                }))
            }
            kinds::EPOCH_ACK => {
                exact("epoch ack", body, PUBLIC_KEY_LEN + EPOCH_ACK_LEN)?;
                let (sender, rest) = split_identity("epoch ack", body, EPOCH_ACK_LEN)?;
                Ok(LedgerMessage::EpochAck {
                    sender,
                    ack: EpochAck::decode(rest)?,
                })
            }
            kinds::EPOCH_ACTIVATION => {
                const WHAT: &str = "epoch activation";
                let (proposer, rest) = split_identity(WHAT, body, EPOCH_SUMMARY_LEN + 4)?;
                let (summary, rest) = rest.split_at(EPOCH_SUMMARY_LEN);
                let (ids, rest) = counted(WHAT, rest, 16, MAX_ELECTORATE)?;
                let (acks, rest) =
                    counted(WHAT, rest, PUBLIC_KEY_LEN + EPOCH_ACK_LEN, MAX_ELECTORATE)?;
                if rest.len() > MAX_SNAPSHOT_BYTES {
                    return Err(WireError::TooMany {
                        what: WHAT,
                        count: rest.len(),
                        max: MAX_SNAPSHOT_BYTES,
                    });
                }
                let electorate = ids
                    .into_iter()
                    .map(|id| {
                        let mut out = [0u8; 16];
                        out.copy_from_slice(id);
                        NodeId(out)
                    })
                    .collect();
                let acks = acks
                    .into_iter()
                    .map(|entry| {
                        let (who, ack) = entry.split_at(PUBLIC_KEY_LEN);
                        Ok((identity(WHAT, who)?, EpochAck::decode(ack)?))
                    })
                    .collect::<Result<_, WireError>>()?;
                Ok(LedgerMessage::EpochActivation(Box::new(EpochActivation {
                    proposer,
                    summary: EpochSummary::decode(summary)?,
                    electorate,
                    acks,
                    snapshot: rest.to_vec(),
                })))
            }
            other => Err(WireError::UnknownKind(other)),
        }
    }

    /// The control message type and body.
    pub(crate) fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            LedgerMessage::Channel { sender, message } => {
                let mut body = sender.public_key().to_vec();
                body.extend_from_slice(&message.encode());
                (kinds::CHANNEL, body)
            }
            LedgerMessage::Ticket {
                relay,
                certificate,
                ticket,
            } => {
                let mut body = relay.public_key().to_vec();
                body.extend_from_slice(&certificate.encode());
                body.extend_from_slice(&ticket.encode());
                (kinds::TICKET, body)
            }
            LedgerMessage::Settlements(records) => {
                let mut body = Vec::with_capacity(2 + records.len() * GOSSIP_ENTRY_LEN);
                body.extend_from_slice(&(records.len() as u16).to_le_bytes());
                for r in records {
                    encode_gossip_entry(&mut body, r);
                }
                (kinds::SETTLEMENTS, body)
            }
            LedgerMessage::Digest(d) => {
                let mut body = Vec::with_capacity(DIGEST_LEN);
                body.extend_from_slice(&d.sender.0);
                body.extend_from_slice(&d.snapshot_root);
                body.extend_from_slice(&d.records_digest);
                body.extend_from_slice(&d.record_count.to_le_bytes());
                (kinds::DIGEST, body)
            }
            LedgerMessage::OpenRefused(r) => {
                let mut body = r.sender.public_key().to_vec();
                body.extend_from_slice(&r.channel_id.0);
                body.push(r.reason as u8);
                body.extend_from_slice(&r.signature.to_bytes());
                (kinds::OPEN_REFUSED, body)
            }
            LedgerMessage::EpochProposal(p) => {
                let mut body = p.proposer.public_key().to_vec();
                body.extend_from_slice(&p.base_root);
                body.extend_from_slice(&p.summary.encode());
                body.extend_from_slice(&(p.records.len() as u16).to_le_bytes());
                for r in &p.records {
                    encode_gossip_entry(&mut body, r);
                }
                (kinds::EPOCH_PROPOSAL, body)
            }
            LedgerMessage::EpochAck { sender, ack } => {
                let mut body = sender.public_key().to_vec();
                body.extend_from_slice(&ack.encode());
                (kinds::EPOCH_ACK, body)
            }
            LedgerMessage::EpochActivation(a) => {
                let mut body = a.proposer.public_key().to_vec();
                body.extend_from_slice(&a.summary.encode());
                body.extend_from_slice(&(a.electorate.len() as u16).to_le_bytes());
                for id in &a.electorate {
                    body.extend_from_slice(&id.0);
                }
                body.extend_from_slice(&(a.acks.len() as u16).to_le_bytes());
                for (who, ack) in &a.acks {
                    body.extend_from_slice(&who.public_key());
                    body.extend_from_slice(&ack.encode());
                }
                body.extend_from_slice(&a.snapshot);
                (kinds::EPOCH_ACTIVATION, body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mehr_transport::identity::PrivateIdentity;
    use proptest::prelude::*;

    use super::*;

    fn private(seed: u8) -> PrivateIdentity {
        PrivateIdentity::from_private_key(&[seed; 64])
    }

    #[test]
    fn digest_and_refusal_round_trip_and_refusals_are_signed() {
        let digest = LedgerMessage::Digest(LedgerDigest {
            sender: NodeId([1; 16]),
            snapshot_root: [2; 32],
            records_digest: [3; 32],
            record_count: 7,
        });
        let (kind, body) = digest.encode();
        match LedgerMessage::decode(kind, &body).unwrap() {
            LedgerMessage::Digest(d) => assert_eq!(d.record_count, 7),
            other => panic!("{other:?}"),
        }

        let me = private(4);
        let key = SigningKey::from_bytes(&me.to_private_key()[32..].try_into().unwrap());
        let refusal = OpenRefusal::sign(
            me.public().clone(),
            &key,
            ChannelId([5; 16]),
            RefusalReason::DepositTooLarge,
        );
        assert!(refusal.verify());
        let (kind, mut body) = LedgerMessage::OpenRefused(refusal).encode();
        match LedgerMessage::decode(kind, &body).unwrap() {
            LedgerMessage::OpenRefused(r) => assert!(r.verify()),
            other => panic!("{other:?}"),
        }
        // Another reason under the same signature is a forgery.
        body[PUBLIC_KEY_LEN + 16] = RefusalReason::ChannelExists as u8;
        match LedgerMessage::decode(kind, &body).unwrap() {
            LedgerMessage::OpenRefused(r) => assert!(!r.verify()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_and_kinds_are_checked() {
        assert!(matches!(
            LedgerMessage::decode(kinds::TICKET, &[0; 10]),
            Err(WireError::Length { .. })
        ));
        assert!(matches!(
            LedgerMessage::decode(kinds::SETTLEMENTS, &[0, 0]),
            Err(WireError::RecordCount(0))
        ));
        assert!(matches!(
            LedgerMessage::decode(0x1f, &[]),
            Err(WireError::UnknownKind(0x1f))
        ));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(
            kind in 0x10u8..0x19,
            body in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let _ = LedgerMessage::decode(kind, &body);
        }

        #[test]
        fn decoding_random_bodies_behind_a_valid_identity_never_panics(
            kind in 0x10u8..0x18,
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut body = private(9).public().public_key().to_vec();
            body.extend_from_slice(&tail);
            let _ = LedgerMessage::decode(kind, &body);
        }
    }
}
