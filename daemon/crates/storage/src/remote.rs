//! The remote-storage control messages (types 0x40–0x4F) and their signed envelope.
//!
//! Every message, request or reply, is one control message whose body is
//!
//! ```text
//! version u8 = 1 ‖ sender node id [16] ‖ request id u64 ‖ payload ‖ signature [64]
//! ```
//!
//! The signature is Ed25519, by the sender's node identity, over
//! `BLAKE3-derive_key("mehr storage v1 control", kind ‖ recipient [16] ‖ version ‖ sender ‖
//! request id ‖ payload)`. The recipient is signed but not sent (it is the node receiving), so a
//! request cannot be replayed to another node. Packets carry no sender; the envelope names it and
//! the receiver checks the signature with the key from the sender's `mehr.node` announce.
//!
//! Integers are little-endian. Payloads by kind:
//!
//! | kind | message | payload |
//! |---|---|---|
//! | 0x40 | offer | `shard root [32] ‖ length u64 ‖ expires_unix_s u64 ‖ price_per_byte_day_umhr u64` |
//! | 0x41 | chunks | `shard root [32] ‖ first index u64 ‖ count u16 ‖ chunk bytes` (lengths implied by the shard length) |
//! | 0x42 | challenge | `challenge [64]` (object ‖ nonce) |
//! | 0x43 | fetch | `shard root [32] ‖ first index u64 ‖ count u16` |
//! | 0x44 | fetch hashes | `shard root [32] ‖ first index u64 ‖ count u32` |
//! | 0x45 | delete | `shard root [32]` |
//! | 0x4F | reply | `status u8 ‖ rest`: status 0 = ok, `rest` as below; otherwise an error code and a UTF-8 reason |
//!
//! Ok replies: offer `held u8` (1: the provider holds the shard already, send no chunks);
//! chunks `missing u64` (0: the shard is complete and committed); challenge a `StorageProof`;
//! fetch the chunk bytes; fetch hashes `count × 32`; delete nothing.

use mehr_transport::{hashes::IdentityHash, identity::Identity};
use mehr_wire::{ErrorKind, Reader, utf8_prefix};

use crate::{CHUNK_SIZE, Challenge, ObjectId};

/// The first control message type of remote storage: the node gives the range 0x40–0x4F of
/// its `mehr.node` control messages to this protocol (the daemon checks that its own
/// table agrees).
pub const STORAGE_FIRST: u8 = 0x40;

/// Envelope format version.
const VERSION: u8 = 1;
/// Envelope bytes before the payload.
const HEADER_LEN: usize = 1 + 16 + 8;
/// Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// The signing context.
const SIGNING_CONTEXT: &str = "mehr storage v1 control";

/// Most chunks in one `chunks` or `fetch` message (256 KiB of data).
pub const MAX_CHUNKS_PER_MESSAGE: u16 = 64;
/// Most hashes in one `fetch hashes` reply (256 KiB).
pub const MAX_HASHES_PER_MESSAGE: u32 = 8192;
/// Longest error reason carried in a reply.
pub const MAX_REASON: usize = 512;

/// Control message types.
pub mod kinds {
    use super::STORAGE_FIRST;
    /// Consumer → provider: will you hold this shard?
    pub const OFFER: u8 = STORAGE_FIRST;
    /// Consumer → provider: a batch of shard chunks.
    pub const CHUNKS: u8 = STORAGE_FIRST + 1;
    /// Consumer → provider: prove you hold a shard.
    pub const CHALLENGE: u8 = STORAGE_FIRST + 2;
    /// Consumer → provider: send chunks of a shard.
    pub const FETCH: u8 = STORAGE_FIRST + 3;
    /// Consumer → provider: send chunk hashes of a shard.
    pub const FETCH_HASHES: u8 = STORAGE_FIRST + 4;
    /// Consumer → provider: drop a shard.
    pub const DELETE: u8 = STORAGE_FIRST + 5;
    /// Provider → consumer: the answer to any of the above.
    pub const REPLY: u8 = STORAGE_FIRST + 0x0F;
    /// Every type a provider receives.
    pub const REQUESTS: [u8; 6] = [OFFER, CHUNKS, CHALLENGE, FETCH, FETCH_HASHES, DELETE];
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is shorter than its fixed fields.
    #[error("{what}: {need} bytes needed, {got} present")]
    Truncated {
        /// The field or message.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// Unknown envelope version.
    #[error("envelope version {0} (this node speaks 1)")]
    Version(u8),
    /// Bytes after the last field.
    #[error("{what}: {extra} bytes after the last field")]
    Trailing {
        /// The message.
        what: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// A count over its limit.
    #[error("{what}: {got} is over the limit of {limit}")]
    TooMany {
        /// The field.
        what: &'static str,
        /// Value seen.
        got: u64,
        /// Limit.
        limit: u64,
    },
    /// The signature does not verify with the sender's key.
    #[error("the signature does not match the sender's key")]
    BadSignature,
    /// Unknown message type.
    #[error("unknown storage message type {0:#04x}")]
    UnknownKind(u8),
    /// Unknown reply status.
    #[error("unknown reply status {0}")]
    UnknownStatus(u8),
    /// An error reason that is not UTF-8.
    #[error("the reply's reason is not UTF-8")]
    ReasonNotUtf8,
    /// Any other reader error.
    #[error(transparent)]
    Malformed(mehr_wire::WireError),
}

/// A parsed, not yet authenticated envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that says it sent the message.
    pub sender: IdentityHash,
    /// Pairs a reply with its request.
    pub request_id: u64,
    /// The message itself.
    pub payload: &'a [u8],
    signature: &'a [u8],
}

fn signed_digest(
    kind: u8,
    recipient: &IdentityHash,
    sender: &IdentityHash,
    request_id: u64,
    payload: &[u8],
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(SIGNING_CONTEXT);
    hasher.update(&[kind]);
    hasher.update(&recipient.0);
    hasher.update(&[VERSION]);
    hasher.update(&sender.0);
    hasher.update(&request_id.to_le_bytes());
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// Builds the body of a message of type `kind` from `sender` to `recipient`; `sign` signs a
/// 32-byte digest with the sender's identity.
pub fn seal(
    kind: u8,
    recipient: &IdentityHash,
    sender: &IdentityHash,
    request_id: u64,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Vec<u8> {
    let digest = signed_digest(kind, recipient, sender, request_id, payload);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + SIGNATURE_LEN);
    out.push(VERSION);
    out.extend_from_slice(&sender.0);
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&sign(&digest));
    out
}

/// Splits a body into its envelope fields (nothing is verified yet).
pub fn open(body: &[u8]) -> Result<Envelope<'_>, WireError> {
    let need = HEADER_LEN + SIGNATURE_LEN;
    if body.len() < need {
        return Err(WireError::Truncated {
            what: "envelope",
            need,
            got: body.len(),
        });
    }
    let (header, rest) = body.split_at(HEADER_LEN);
    let (payload, signature) = rest.split_at(rest.len() - SIGNATURE_LEN);
    let mut reader = Reader::new("envelope", header);
    let version = reader.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let sender = IdentityHash(reader.array::<16>()?);
    let request_id = reader.u64()?;
    Ok(Envelope {
        sender,
        request_id,
        payload,
        signature,
    })
}

impl Envelope<'_> {
    /// Checks the signature with the sender's identity, for a message of type `kind` received
    /// by `recipient`. The caller checks that `sender_identity` is the sender's.
    pub fn verify(
        &self,
        kind: u8,
        recipient: &IdentityHash,
        sender_identity: &Identity,
    ) -> Result<(), WireError> {
        let digest = signed_digest(kind, recipient, &self.sender, self.request_id, self.payload);
        sender_identity
            .verify(&digest, self.signature)
            .map_err(|_| WireError::BadSignature)
    }
}

/// A consumer's request to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Will you hold shard `root` of `length` bytes until `expires_unix_s`?
    Offer {
        /// The shard's object id.
        root: ObjectId,
        /// Its length.
        length: u64,
        /// When the agreement ends, seconds since the Unix epoch.
        expires_unix_s: u64,
        /// The price the consumer agreed to, μMHR per byte per day.
        price_per_byte_day_umhr: u64,
    },
    /// Chunks `first ..` of shard `root`, concatenated.
    Chunks {
        /// The shard.
        root: ObjectId,
        /// Index of the first chunk.
        first: u64,
        /// Number of chunks.
        count: u16,
        /// Their bytes.
        bytes: Vec<u8>,
    },
    /// Prove that you hold the challenged shard.
    Challenge(Challenge),
    /// Send chunks `first .. first + count` of shard `root`.
    Fetch {
        /// The shard.
        root: ObjectId,
        /// First chunk.
        first: u64,
        /// Number of chunks.
        count: u16,
    },
    /// Send the chunk hashes `first .. first + count` of shard `root`.
    FetchHashes {
        /// The shard.
        root: ObjectId,
        /// First hash.
        first: u64,
        /// Number of hashes.
        count: u32,
    },
    /// Drop shard `root`.
    Delete {
        /// The shard.
        root: ObjectId,
    },
}

impl Request {
    /// The message type.
    pub fn kind(&self) -> u8 {
        match self {
            Request::Offer { .. } => kinds::OFFER,
            Request::Chunks { .. } => kinds::CHUNKS,
            Request::Challenge(_) => kinds::CHALLENGE,
            Request::Fetch { .. } => kinds::FETCH,
            Request::FetchHashes { .. } => kinds::FETCH_HASHES,
            Request::Delete { .. } => kinds::DELETE,
        }
    }

    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Offer {
                root,
                length,
                expires_unix_s,
                price_per_byte_day_umhr,
            } => {
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(&length.to_le_bytes());
                out.extend_from_slice(&expires_unix_s.to_le_bytes());
                out.extend_from_slice(&price_per_byte_day_umhr.to_le_bytes());
            }
            Request::Chunks {
                root,
                first,
                count,
                bytes,
            } => {
                out.reserve(42 + bytes.len());
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Request::Challenge(challenge) => out.extend_from_slice(&challenge.encode()),
            Request::Fetch { root, first, count } => {
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            Request::FetchHashes { root, first, count } => {
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            Request::Delete { root } => out.extend_from_slice(root.as_bytes()),
        }
        out
    }

    /// Parses the payload of a message of type `kind`.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Request, WireError> {
        let request = match kind {
            kinds::OFFER => {
                let mut r = Reader::new("offer", payload);
                let request = Request::Offer {
                    root: object_id(&mut r)?,
                    length: r.u64()?,
                    expires_unix_s: r.u64()?,
                    price_per_byte_day_umhr: r.u64()?,
                };
                r.finish()?;
                request
            }
            kinds::CHUNKS => {
                let mut r = Reader::new("chunks", payload);
                let root = object_id(&mut r)?;
                let first = r.u64()?;
                let count = r.u16()?;
                check_count("chunks.count", count.into(), MAX_CHUNKS_PER_MESSAGE.into())?;
                let bytes = r.rest();
                let most = usize::from(count) * CHUNK_SIZE;
                if bytes.len() > most {
                    return Err(WireError::Trailing {
                        what: "chunks",
                        extra: bytes.len() - most,
                    });
                }
                Request::Chunks {
                    root,
                    first,
                    count,
                    bytes: bytes.to_vec(),
                }
            }
            kinds::CHALLENGE => {
                let mut r = Reader::new("challenge", payload);
                let bytes = r.take(Challenge::ENCODED_LEN)?;
                r.finish()?;
                let challenge = Challenge::decode(bytes).map_err(|_| WireError::Truncated {
                    what: "challenge",
                    need: Challenge::ENCODED_LEN,
                    got: bytes.len(),
                })?;
                Request::Challenge(challenge)
            }
            kinds::FETCH => {
                let mut r = Reader::new("fetch", payload);
                let request = Request::Fetch {
                    root: object_id(&mut r)?,
                    first: r.u64()?,
                    count: r.u16()?,
                };
                r.finish()?;
                if let Request::Fetch { count, .. } = request {
                    check_count("fetch.count", count.into(), MAX_CHUNKS_PER_MESSAGE.into())?;
                }
                request
            }
            kinds::FETCH_HASHES => {
                let mut r = Reader::new("fetch hashes", payload);
                let root = object_id(&mut r)?;
                let first = r.u64()?;
                let count = r.u32()?;
                r.finish()?;
                check_count(
                    "fetch_hashes.count",
                    count.into(),
                    MAX_HASHES_PER_MESSAGE.into(),
                )?;
                Request::FetchHashes { root, first, count }
            }
            kinds::DELETE => {
                let mut r = Reader::new("delete", payload);
                let root = object_id(&mut r)?;
                r.finish()?;
                Request::Delete { root }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(request)
    }
}

fn check_count(what: &'static str, got: u64, limit: u64) -> Result<(), WireError> {
    if got > limit {
        return Err(WireError::TooMany { what, got, limit });
    }
    Ok(())
}

/// Why a provider refused a request (the reply's status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not enough space, or the shard is over the provider's size limit.
    Refused = 1,
    /// The provider does not hold the shard for this consumer (or no upload is in progress).
    NotHeld = 2,
    /// The request is malformed or inconsistent (wrong chunk length, index out of range).
    BadRequest = 3,
    /// The provider's copy is damaged or its store failed.
    Failed = 4,
    /// The provider could not verify the sender (no announce heard, bad signature).
    Unauthenticated = 5,
}

impl ErrorCode {
    fn from_byte(byte: u8) -> Option<ErrorCode> {
        Some(match byte {
            1 => ErrorCode::Refused,
            2 => ErrorCode::NotHeld,
            3 => ErrorCode::BadRequest,
            4 => ErrorCode::Failed,
            5 => ErrorCode::Unauthenticated,
            _ => return None,
        })
    }

    /// Words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::Refused => "refused",
            ErrorCode::NotHeld => "not held",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::Failed => "failed",
            ErrorCode::Unauthenticated => "unauthenticated",
        }
    }
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success; the bytes depend on the request (see the module docs).
    Ok(Vec<u8>),
    /// Failure with a reason for people.
    Error(ErrorCode, String),
}

impl Reply {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok(bytes) => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(0);
                out.extend_from_slice(bytes);
                out
            }
            Reply::Error(code, reason) => {
                let reason = utf8_prefix(reason, MAX_REASON);
                let mut out = Vec::with_capacity(1 + reason.len());
                out.push(*code as u8);
                out.extend_from_slice(reason.as_bytes());
                out
            }
        }
    }

    /// Parses a reply payload.
    pub fn decode(payload: &[u8]) -> Result<Reply, WireError> {
        let Some((&status, rest)) = payload.split_first() else {
            return Err(WireError::Truncated {
                what: "reply",
                need: 1,
                got: 0,
            });
        };
        if status == 0 {
            return Ok(Reply::Ok(rest.to_vec()));
        }
        let code = ErrorCode::from_byte(status).ok_or(WireError::UnknownStatus(status))?;
        if rest.len() > MAX_REASON {
            return Err(WireError::TooMany {
                what: "reply reason",
                got: rest.len() as u64,
                limit: MAX_REASON as u64,
            });
        }
        // Refused rather than repaired: a repaired reason would be a second encoding of the
        // same reply (the encoder only ever writes UTF-8).
        let reason = std::str::from_utf8(rest).map_err(|_| WireError::ReasonNotUtf8)?;
        Ok(Reply::Error(code, reason.to_owned()))
    }
}

impl From<mehr_wire::WireError> for WireError {
    /// Reader errors in this module's terms; the layouts here read no flags, strings or
    /// length-prefixed fields, so the remaining kinds pass through as they are.
    fn from(e: mehr_wire::WireError) -> Self {
        let what = e.what;
        match e.kind {
            ErrorKind::Truncated { needed, left, .. } => WireError::Truncated {
                what,
                need: needed,
                got: left,
            },
            ErrorKind::Trailing { extra, .. } => WireError::Trailing { what, extra },
            ErrorKind::OverLimit {
                field,
                limit,
                actual,
            } => WireError::TooMany {
                what: field,
                got: actual as u64,
                limit: limit as u64,
            },
            _ => WireError::Malformed(e),
        }
    }
}

fn object_id(r: &mut Reader<'_>) -> Result<ObjectId, WireError> {
    Ok(ObjectId::from_bytes(r.array()?))
}

#[cfg(test)]
mod tests {
    use mehr_transport::identity::PrivateIdentity;
    use proptest::prelude::*;

    use super::*;

    fn root(byte: u8) -> ObjectId {
        ObjectId::from_bytes([byte; 32])
    }

    fn every_request() -> Vec<Request> {
        vec![
            Request::Offer {
                root: root(1),
                length: 12345,
                expires_unix_s: 99,
                price_per_byte_day_umhr: 7,
            },
            Request::Chunks {
                root: root(2),
                first: 3,
                count: 2,
                bytes: vec![5; 5000],
            },
            Request::Challenge(Challenge {
                object: root(3),
                nonce: [9; 32],
            }),
            Request::Fetch {
                root: root(4),
                first: 8,
                count: 64,
            },
            Request::FetchHashes {
                root: root(5),
                first: 0,
                count: 8192,
            },
            Request::Delete { root: root(6) },
        ]
    }

    #[test]
    fn requests_round_trip() {
        for request in every_request() {
            let decoded = Request::decode(request.kind(), &request.encode()).unwrap();
            assert_eq!(decoded, request);
        }
    }

    #[test]
    fn counts_over_the_limits_are_refused() {
        let fetch = Request::Fetch {
            root: root(1),
            first: 0,
            count: MAX_CHUNKS_PER_MESSAGE + 1,
        };
        assert!(matches!(
            Request::decode(kinds::FETCH, &fetch.encode()),
            Err(WireError::TooMany { .. })
        ));
        let chunks = Request::Chunks {
            root: root(1),
            first: 0,
            count: 1,
            bytes: vec![0; CHUNK_SIZE + 1],
        };
        assert!(matches!(
            Request::decode(kinds::CHUNKS, &chunks.encode()),
            Err(WireError::Trailing { .. })
        ));
    }

    #[test]
    fn replies_round_trip_and_long_reasons_are_cut_on_a_char_boundary() {
        for reply in [
            Reply::Ok(vec![1, 2, 3]),
            Reply::Ok(Vec::new()),
            Reply::Error(ErrorCode::NotHeld, "no such shard".into()),
        ] {
            assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        }
        let long = Reply::Error(ErrorCode::Failed, "é".repeat(400));
        match Reply::decode(&long.encode()).unwrap() {
            Reply::Error(ErrorCode::Failed, reason) => assert_eq!(reason.len(), 512),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn envelopes_verify_only_for_their_kind_recipient_and_bytes() {
        let consumer = PrivateIdentity::generate(&mut rand::rngs::OsRng);
        let provider = PrivateIdentity::generate(&mut rand::rngs::OsRng);
        let payload = Request::Delete { root: root(7) }.encode();
        let body = seal(
            kinds::DELETE,
            &provider.hash(),
            &consumer.hash(),
            42,
            &payload,
            |digest| consumer.sign(digest),
        );
        let envelope = open(&body).unwrap();
        assert_eq!(envelope.sender, consumer.hash());
        assert_eq!(envelope.request_id, 42);
        assert_eq!(envelope.payload, &payload[..]);
        envelope
            .verify(kinds::DELETE, &provider.hash(), consumer.public())
            .unwrap();
        // Another kind, another recipient or another key: refused.
        assert_eq!(
            envelope.verify(kinds::FETCH, &provider.hash(), consumer.public()),
            Err(WireError::BadSignature)
        );
        assert_eq!(
            envelope.verify(kinds::DELETE, &consumer.hash(), consumer.public()),
            Err(WireError::BadSignature)
        );
        assert_eq!(
            envelope.verify(kinds::DELETE, &provider.hash(), provider.public()),
            Err(WireError::BadSignature)
        );
        // A flipped payload bit: refused.
        let mut tampered = body.clone();
        tampered[HEADER_LEN] ^= 1;
        assert_eq!(
            open(&tampered)
                .unwrap()
                .verify(kinds::DELETE, &provider.hash(), consumer.public()),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn a_reason_that_is_not_utf8_is_refused() {
        // A lossy repair would turn these bytes into U+FFFD: a reply that re-encodes to other
        // bytes than it was read from.
        assert_eq!(
            Reply::decode(&[ErrorCode::Failed as u8, b'a', 0xFF]),
            Err(WireError::ReasonNotUtf8)
        );
        assert_eq!(
            Reply::decode(&[ErrorCode::Failed as u8, b'o', b'k']),
            Ok(Reply::Error(ErrorCode::Failed, "ok".into()))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(kind in 0x40u8..=0x4F, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(kind, &bytes);
            let _ = Reply::decode(&bytes);
            let _ = open(&bytes);
        }
    }
}
