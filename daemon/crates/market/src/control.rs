//! What the market puts in control messages (the `0x20–0x2F` range of `mehr.node`).
//!
//! The records themselves are `mehr-market`'s (adverts, summaries, pulls, agreement records,
//! heartbeats, compute results), framed by its `MarketMessage` envelope. The daemon adds what
//! travelling over Reticulum packets needs: a packet names no sender, so gossip (whose
//! summaries and pulls are unsigned) carries the neighbour's node id in front; remote jobs are
//! records of their own, signed by the consumer.
//!
//! | kind | body |
//! |---|---|
//! | `0x20` record | `MarketMessage` of a signed agreement or heartbeat record |
//! | `0x21` gossip | sender node id `[16]` ‖ `MarketMessage` (advert, summaries, pull, pull answer) |
//! | `0x22` beacon | `PresenceBeacon` (20 B) |
//! | `0x23` job | [`SignedJob`] |
//! | `0x24` job result | [`JobResult`] |
//! | `0x25` streamed job | [`SignedJob`], the provider to send its output in parts |
//! | `0x26` job partial | [`JobPartial`] |

use ed25519_dalek::{Signature, Signer, SigningKey};
use mehr_wire::{ErrorKind, Reader, Writer, utf8_prefix};

use crate::{NodeId, PeerKey, agreement::AgreementId, message::MarketMessage};

/// The first control message type of the market: the node gives the range 0x20–0x2F of its
/// `mehr.node` control messages to the market (the daemon checks that its own table agrees).
pub const MARKET_FIRST: u8 = 0x20;

/// A trace position carried inside a mesh message (docs/PROTOCOL.md, "Trace context in
/// jobs"): the W3C trace id, the sending span's id and the trace flags, 25 bytes on the wire.
/// The daemon's telemetry makes one from a span and continues one in a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The W3C trace id.
    pub trace_id: [u8; 16],
    /// The id of the span that sent the message (the receiver's parent).
    pub span_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Bytes on the wire.
    pub const LEN: usize = 16 + 8 + 1;

    /// `trace_id ‖ span_id ‖ flags`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..16].copy_from_slice(&self.trace_id);
        out[16..24].copy_from_slice(&self.span_id);
        out[24] = self.flags;
        out
    }

    /// The inverse of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Self {
        let mut trace_id = [0; 16];
        let mut span_id = [0; 8];
        trace_id.copy_from_slice(&bytes[..16]);
        span_id.copy_from_slice(&bytes[16..24]);
        TraceContext {
            trace_id,
            span_id,
            flags: bytes[24],
        }
    }
}

/// Control message kinds of the market.
pub mod kinds {
    use super::MARKET_FIRST;

    /// A signed agreement or verification record (request, offer, rejection, acceptance,
    /// cancel, ping, pong, delivery receipt).
    pub const RECORD: u8 = MARKET_FIRST;
    /// Neighbour gossip: sender id, then an advert, summaries, a pull or a pull answer.
    pub const GOSSIP: u8 = MARKET_FIRST + 1;
    /// A presence beacon.
    pub const BEACON: u8 = MARKET_FIRST + 2;
    /// A job to run under an agreement.
    pub const JOB: u8 = MARKET_FIRST + 3;
    /// The answer to a job.
    pub const JOB_RESULT: u8 = MARKET_FIRST + 4;
    /// A job (the same body as [`JOB`]) whose consumer wants its output as it is produced:
    /// the provider sends [`JOB_PARTIAL`]s before the result.
    pub const JOB_STREAMED: u8 = MARKET_FIRST + 5;
    /// Part of a streamed job's output, ahead of the result that covers all of it.
    pub const JOB_PARTIAL: u8 = MARKET_FIRST + 6;
    /// Every kind the market registers.
    pub const ALL: [u8; 7] = [
        RECORD,
        GOSSIP,
        BEACON,
        JOB,
        JOB_RESULT,
        JOB_STREAMED,
        JOB_PARTIAL,
    ];
}

/// Signing tag of jobs: `Blake3(tag ‖ body)` is signed, as for `mehr-market`'s records. No
/// tag of the market or ledger crates is a prefix of it, nor it of them.
pub const JOB_TAG: &[u8] = b"mehr/market/job/v1";
/// Longest function id a job may name (the compute part's limit for served names).
pub const MAX_FUNCTION_LEN: usize = 256;
/// Largest job input or output (the transport's default message limit).
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;
/// Longest error message in a failed job result.
pub const MAX_ERROR_LEN: usize = 1024;

/// Why a market control message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body ended early.
    #[error("{what}: the field at byte {offset} needs {needed} bytes, {left} left")]
    Truncated {
        /// The message.
        what: &'static str,
        /// Where the field being read starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// Bytes were left after the last field.
    #[error("{what}: {extra} bytes after the last field")]
    Trailing {
        /// The message.
        what: &'static str,
        /// How many.
        extra: usize,
    },
    /// A field broke a rule.
    #[error("{what}: {field} {reason}")]
    Invalid {
        /// The message.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The embedded market record did not parse.
    #[error("{what}: {source}")]
    Record {
        /// The message.
        what: &'static str,
        /// The crate's error.
        source: crate::DecodeError,
    },
    /// The message type is not allowed here.
    #[error("{what}: a {found} does not travel in this kind of message")]
    Misplaced {
        /// The message.
        what: &'static str,
        /// The record type found.
        found: &'static str,
    },
    /// The signature does not verify with the signer's key.
    #[error("{what}: signature of {signer} does not verify")]
    BadSignature {
        /// The message.
        what: &'static str,
        /// The signer named.
        signer: NodeId,
    },
}

impl From<mehr_wire::WireError> for WireError {
    /// Reader errors in this module's terms: a body that ends early or late keeps its own
    /// variant; a field over its limit or not UTF-8 is an invalid field.
    fn from(e: mehr_wire::WireError) -> Self {
        let what = e.what;
        match e.kind {
            ErrorKind::Truncated {
                offset,
                needed,
                left,
            } => WireError::Truncated {
                what,
                offset,
                needed,
                left,
            },
            ErrorKind::Trailing { extra, .. } => WireError::Trailing { what, extra },
            ErrorKind::OverLimit {
                field,
                limit,
                actual,
            } => WireError::Invalid {
                what,
                field,
                reason: format!("is {actual} bytes, at most {limit} allowed"),
            },
            ErrorKind::NotUtf8 { field } => WireError::Invalid {
                what,
                field,
                reason: "is not UTF-8".into(),
            },
            ErrorKind::NotBool { field, value } => WireError::Invalid {
                what,
                field,
                reason: format!("is {value}, not 0 or 1"),
            },
            kind @ (ErrorKind::Length { .. } | ErrorKind::TooLarge { .. }) => WireError::Invalid {
                what,
                field: "body",
                reason: kind.to_string(),
            },
        }
    }
}

/// The name of a market message's record type, for errors and counters.
pub fn message_name(message: &MarketMessage) -> &'static str {
    match message {
        MarketMessage::Advert(_) => "advert",
        MarketMessage::Summaries(_) => "summary batch",
        MarketMessage::Pull(_) => "pull request",
        MarketMessage::PullAnswer(_) => "pull answer",
        MarketMessage::Request(_) => "request",
        MarketMessage::Offer(_) => "offer",
        MarketMessage::Rejection(_) => "rejection",
        MarketMessage::Acceptance(_) => "acceptance",
        MarketMessage::Cancel(_) => "cancel",
        MarketMessage::Ping(_) => "ping",
        MarketMessage::Pong(_) => "pong",
        MarketMessage::Receipt(_) => "delivery receipt",
        MarketMessage::ComputeResult(_) => "compute result",
    }
}

/// Parses the body of a `record` control message: a signed agreement or heartbeat record.
pub fn decode_record(body: &[u8]) -> Result<MarketMessage, WireError> {
    const WHAT: &str = "market record";
    let message =
        MarketMessage::decode(body).map_err(|source| WireError::Record { what: WHAT, source })?;
    match message {
        MarketMessage::Request(_)
        | MarketMessage::Offer(_)
        | MarketMessage::Rejection(_)
        | MarketMessage::Acceptance(_)
        | MarketMessage::Cancel(_)
        | MarketMessage::Ping(_)
        | MarketMessage::Pong(_)
        | MarketMessage::Receipt(_) => Ok(message),
        other => Err(WireError::Misplaced {
            what: WHAT,
            found: message_name(&other),
        }),
    }
}

/// A gossip message from a neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipFrame {
    /// The neighbour that sent it (a claim: only a hint where the record is unsigned; the
    /// receiver accepts it only from a current neighbour).
    pub from: NodeId,
    /// An advert, summaries, a pull request or a pull answer.
    pub message: MarketMessage,
}

impl GossipFrame {
    /// `from ‖ message` (the message's own encoding, type byte first).
    pub fn encode(from: NodeId, message_bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + message_bytes.len());
        out.extend_from_slice(&from.0);
        out.extend_from_slice(message_bytes);
        out
    }

    /// Parses a gossip body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "gossip";
        let mut r = Reader::new(WHAT, body);
        let from = NodeId(r.array()?);
        let message = MarketMessage::decode(r.rest())
            .map_err(|source| WireError::Record { what: WHAT, source })?;
        match message {
            MarketMessage::Advert(_)
            | MarketMessage::Summaries(_)
            | MarketMessage::Pull(_)
            | MarketMessage::PullAnswer(_) => Ok(GossipFrame { from, message }),
            other => Err(WireError::Misplaced {
                what: WHAT,
                found: message_name(&other),
            }),
        }
    }
}

/// What a consumer asks a provider to run under an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The agreement it runs (and is paid) under.
    pub agreement_id: AgreementId,
    /// The consumer, who signs.
    pub consumer: NodeId,
    /// Random, so that two runs of the same input are two jobs.
    pub nonce: u64,
    /// How long the provider may take, milliseconds.
    pub deadline_ms: u32,
    /// The function id (its Blake3 is the agreement's function).
    pub function: String,
    /// The input.
    pub input: Vec<u8>,
    /// The consumer's trace position, when its caller opted in to carry its trace into the
    /// mesh (docs/PROTOCOL.md, "Trace context in jobs"); the provider's spans continue it.
    pub trace: Option<TraceContext>,
}

impl Job {
    /// The bytes the consumer signs: the job's encoding without the signature.
    pub fn signed_body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(
            32 + 16
                + 8
                + 4
                + 2
                + self.function.len()
                + 4
                + self.input.len()
                + 1
                + TraceContext::LEN
                + 64,
        );
        w.raw(&self.agreement_id.0);
        w.raw(&self.consumer.0);
        w.u64(self.nonce);
        w.u32(self.deadline_ms);
        w.str16(&self.function);
        w.bytes32(&self.input);
        if let Some(trace) = &self.trace {
            w.u8(JOB_TRACE_TAG);
            w.raw(&trace.to_bytes());
        }
        w.into_bytes()
    }
}

/// Tag of the optional trace field of a job.
const JOB_TRACE_TAG: u8 = 1;

/// A [`Job`] signed by its consumer: `body ‖ sig[64]` over `Blake3(JOB_TAG ‖ body)`.
///
/// ```text
/// agreement_id [32] ‖ consumer [16] ‖ nonce u64 ‖ deadline_ms u32 ‖ function str16 (1–256)
/// ‖ input u32 length + bytes (≤ 16 MiB)
/// ‖ [0x01 ‖ trace_id [16] ‖ span_id [8] ‖ trace_flags u8]   only when the caller opted in
/// ‖ sig [64]
/// ```
///
/// A job without a trace is byte for byte the job of before the field existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedJob {
    job: Job,
    bytes: Vec<u8>,
    signature: Signature,
}

fn job_digest(body: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(JOB_TAG);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

impl SignedJob {
    /// Signs `job` with the consumer's key.
    pub fn sign(job: Job, key: &SigningKey) -> Self {
        let mut body = job.signed_body();
        let signature = key.sign(&job_digest(&body));
        body.extend_from_slice(&signature.to_bytes());
        SignedJob {
            job,
            bytes: body,
            signature,
        }
    }

    /// Parses (does not verify) a job.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "job";
        let mut r = Reader::new(WHAT, bytes);
        let agreement_id = AgreementId(r.array()?);
        let consumer = NodeId(r.array()?);
        let nonce = r.u64()?;
        let deadline_ms = r.u32()?;
        let function = r.str16("function", MAX_FUNCTION_LEN)?.to_owned();
        if function.is_empty() {
            return Err(WireError::Invalid {
                what: WHAT,
                field: "function",
                reason: "is empty".into(),
            });
        }
        let input = r.bytes32("input", MAX_PAYLOAD_LEN)?.to_vec();
        // The optional trace field is there when exactly its bytes stand before the signature
        // (any other length is left to fail as trailing bytes, as before the field existed).
        let trace = if r.remaining() == 1 + TraceContext::LEN + 64 {
            if r.u8()? != JOB_TRACE_TAG {
                return Err(WireError::Invalid {
                    what: WHAT,
                    field: "trace",
                    reason: "unknown tag".into(),
                });
            }
            Some(TraceContext::from_bytes(&r.array()?))
        } else {
            None
        };
        let signature = Signature::from_bytes(&r.array()?);
        r.finish()?;
        Ok(SignedJob {
            job: Job {
                agreement_id,
                consumer,
                nonce,
                deadline_ms,
                function,
                input,
                trace,
            },
            bytes: bytes.to_vec(),
            signature,
        })
    }

    /// Checks that `key` is the consumer's and that the signature verifies.
    pub fn verify(&self, key: &PeerKey) -> Result<(), WireError> {
        let signer = self.job.consumer;
        let body = self
            .bytes
            .get(..self.bytes.len().saturating_sub(64))
            .unwrap_or_default();
        if key.node_id() != signer
            || key
                .verifying_key()
                .verify_strict(&job_digest(body), &self.signature)
                .is_err()
        {
            return Err(WireError::BadSignature {
                what: "job",
                signer,
            });
        }
        Ok(())
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `Blake3` of the encoding: the `job_hash` of the compute result.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }
}

/// A provider's answer to a job.
///
/// ```text
/// job_hash [32] ‖ status u8
///   0 done:   compute result (u16 length + SignedComputeResult) ‖ output (u32 length + bytes)
///   1 failed: reason str16 (≤ 1024 B)
/// ```
/// A failure is unsigned: it only tells the consumer not to wait; it is never evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "decoded and consumed at once; the output dwarfs the variant anyway"
)]
pub enum JobResult {
    /// The job ran; the provider signed the hash of its output.
    Done {
        /// The job answered.
        job_hash: [u8; 32],
        /// The provider's signed result (`output_hash` = Blake3 of `output`).
        result: crate::verification::SignedComputeResult,
        /// The output.
        output: Vec<u8>,
    },
    /// The job did not run.
    Failed {
        /// The job answered.
        job_hash: [u8; 32],
        /// Why, in words.
        reason: String,
    },
}

impl JobResult {
    /// The job answered.
    pub fn job_hash(&self) -> [u8; 32] {
        match self {
            JobResult::Done { job_hash, .. } | JobResult::Failed { job_hash, .. } => *job_hash,
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.job_hash());
        match self {
            JobResult::Done { result, output, .. } => {
                w.u8(0);
                w.bytes16(result.as_bytes());
                w.bytes32(output);
            }
            JobResult::Failed { reason, .. } => {
                w.u8(1);
                w.str16(utf8_prefix(reason, MAX_ERROR_LEN));
            }
        }
        w.into_bytes()
    }

    /// Parses a job result (the compute result is parsed, not verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "job result";
        let mut r = Reader::new(WHAT, bytes);
        let job_hash = r.array()?;
        let result = match r.u8()? {
            0 => {
                let record = r.bytes16(
                    "compute result",
                    crate::verification::tiers::MAX_COMPUTE_RESULT_LEN,
                )?;
                let result = crate::verification::SignedComputeResult::decode(record)
                    .map_err(|source| WireError::Record { what: WHAT, source })?;
                let output = r.bytes32("output", MAX_PAYLOAD_LEN)?.to_vec();
                JobResult::Done {
                    job_hash,
                    result,
                    output,
                }
            }
            1 => JobResult::Failed {
                job_hash,
                reason: r.str16("reason", MAX_ERROR_LEN)?.to_owned(),
            },
            code => {
                return Err(WireError::Invalid {
                    what: WHAT,
                    field: "status",
                    reason: format!("{code} is not 0 (done) or 1 (failed)"),
                });
            }
        };
        r.finish()?;
        Ok(result)
    }
}

/// Part of a streamed job's output: `job_hash [32] ‖ seq u32 ‖ bytes u32 length + bytes`.
///
/// Unsigned: it is a preview. The consumer passes the parts on in `seq` order as they come,
/// and the job's signed result, which carries the whole output, must begin with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPartial {
    /// The job it belongs to.
    pub job_hash: [u8; 32],
    /// Its place among the job's parts, from 0.
    pub seq: u32,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl JobPartial {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32 + 4 + 4 + self.bytes.len());
        w.raw(&self.job_hash);
        w.u32(self.seq);
        w.bytes32(&self.bytes);
        w.into_bytes()
    }

    /// Parses a part.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("job partial", bytes);
        let partial = JobPartial {
            job_hash: r.array()?,
            seq: r.u32()?,
            bytes: r.bytes32("bytes", MAX_PAYLOAD_LEN)?.to_vec(),
        };
        r.finish()?;
        Ok(partial)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        NodeKey,
        verification::{ComputeResult, ProofSystem, SignedComputeResult, output_hash},
    };
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> (SigningKey, NodeKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let node = NodeKey::new(signing.clone(), [seed ^ 0xff; 32]);
        (signing, node)
    }

    fn job(consumer: NodeId) -> Job {
        Job {
            agreement_id: AgreementId([7; 32]),
            consumer,
            nonce: 99,
            deadline_ms: 5_000,
            function: "embed".into(),
            input: b"hello".to_vec(),
            trace: None,
        }
    }

    #[test]
    fn a_job_carries_a_trace_only_when_given_one_and_signs_it() {
        let (signing, node) = key(1);
        let plain = SignedJob::sign(job(node.node_id()), &signing);
        let traced = SignedJob::sign(
            Job {
                trace: Some(TraceContext {
                    trace_id: [3; 16],
                    span_id: [4; 8],
                    flags: 1,
                }),
                ..job(node.node_id())
            },
            &signing,
        );
        // The untraced layout is unchanged; the trace adds its tag and 25 bytes.
        assert_eq!(traced.as_bytes().len(), plain.as_bytes().len() + 26);
        let decoded = SignedJob::decode(traced.as_bytes()).unwrap();
        assert_eq!(decoded, traced);
        assert_eq!(decoded.job().trace, traced.job().trace);
        decoded.verify(&node.peer_key()).unwrap();
        // The trace is signed: changing it breaks the signature.
        let mut bytes = traced.as_bytes().to_vec();
        let at = plain.as_bytes().len() - 64 + 5;
        bytes[at] ^= 1;
        assert!(
            SignedJob::decode(&bytes)
                .unwrap()
                .verify(&node.peer_key())
                .is_err()
        );
        // An unknown tag is refused.
        let mut bytes = traced.as_bytes().to_vec();
        bytes[plain.as_bytes().len() - 64] = 9;
        assert!(SignedJob::decode(&bytes).is_err());
    }

    #[test]
    fn jobs_round_trip_and_verify_only_with_the_consumer_key() {
        let (signing, node) = key(1);
        let signed = SignedJob::sign(job(node.node_id()), &signing);
        let decoded = SignedJob::decode(signed.as_bytes()).unwrap();
        assert_eq!(decoded, signed);
        decoded.verify(&node.peer_key()).unwrap();
        let (_, other) = key(2);
        assert!(decoded.verify(&other.peer_key()).is_err());
        // Flip a bit inside the signed input, so the frame still parses but the signature fails.
        let mut tampered = signed.as_bytes().to_vec();
        let at = tampered
            .windows(5)
            .position(|w| w == b"hello")
            .expect("input is in the frame");
        tampered[at] ^= 1;
        let tampered = SignedJob::decode(&tampered).unwrap();
        assert!(matches!(
            tampered.verify(&node.peer_key()),
            Err(WireError::BadSignature { .. })
        ));
        let mut long = signed.as_bytes().to_vec();
        long.push(0);
        assert!(matches!(
            SignedJob::decode(&long),
            Err(WireError::Trailing { .. })
        ));
    }

    #[test]
    fn job_partials_round_trip_and_refuse_garbage() {
        let partial = JobPartial {
            job_hash: [3; 32],
            seq: 7,
            bytes: b"tok".to_vec(),
        };
        let bytes = partial.encode();
        assert_eq!(JobPartial::decode(&bytes).unwrap(), partial);
        assert!(JobPartial::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(JobPartial::decode(&longer).is_err());
    }

    #[test]
    fn job_results_round_trip() {
        let (_, provider) = key(3);
        let output = b"HELLO".to_vec();
        let result = SignedComputeResult::sign(
            ComputeResult {
                agreement_id: AgreementId([7; 32]),
                job_hash: [1; 32],
                output_hash: output_hash(&output),
                proof_system: ProofSystem::None,
                proof: Vec::new(),
                signer: provider.node_id(),
            },
            &provider,
        )
        .unwrap();
        let done = JobResult::Done {
            job_hash: [1; 32],
            result,
            output,
        };
        assert_eq!(JobResult::decode(&done.encode()).unwrap(), done);
        let failed = JobResult::Failed {
            job_hash: [2; 32],
            reason: "é".repeat(600),
        };
        match JobResult::decode(&failed.encode()).unwrap() {
            JobResult::Failed { reason, .. } => assert!(reason.len() <= MAX_ERROR_LEN),
            other => panic!("{other:?}"),
        }
        let mut bad = failed.encode();
        bad[32] = 7;
        assert!(JobResult::decode(&bad).is_err());
    }

    #[test]
    fn gossip_and_records_refuse_misplaced_messages() {
        let (_, node) = key(4);
        let ping = crate::verification::SignedPing::sign(
            crate::verification::Ping {
                agreement_id: AgreementId([1; 32]),
                nonce: 1,
                signer: node.node_id(),
            },
            &node,
        )
        .unwrap();
        let bytes = MarketMessage::Ping(ping).encode();
        assert!(decode_record(&bytes).is_ok());
        assert!(matches!(
            GossipFrame::decode(&GossipFrame::encode(node.node_id(), &bytes)),
            Err(WireError::Misplaced { .. })
        ));
        let summaries = MarketMessage::Summaries(Vec::new()).encode();
        let frame = GossipFrame::decode(&GossipFrame::encode(node.node_id(), &summaries)).unwrap();
        assert_eq!(frame.from, node.node_id());
        assert!(matches!(
            decode_record(&summaries),
            Err(WireError::Misplaced { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedJob::decode(&bytes);
            let _ = JobResult::decode(&bytes);
            let _ = GossipFrame::decode(&bytes);
            let _ = decode_record(&bytes);
        }

        #[test]
        fn random_job_prefixes_never_panic(cut in 0usize..200, flip in any::<u8>()) {
            let (signing, node) = key(5);
            let mut bytes = SignedJob::sign(job(node.node_id()), &signing).as_bytes().to_vec();
            bytes.truncate(cut.min(bytes.len()));
            if let Some(first) = bytes.get_mut(cut / 2) {
                *first ^= flip;
            }
            let _ = SignedJob::decode(&bytes);
        }
    }
}
