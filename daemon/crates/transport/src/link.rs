//! Links: Reticulum's authenticated, encrypted sessions between an initiator and a SINGLE
//! destination, as a pure state machine.
//!
//! Handshake (PROTOCOL.md decision 7):
//! 1. The initiator sends LINKREQUEST to the destination: ephemeral X25519 public (32) ‖
//!    ephemeral Ed25519 public (32) ‖ optional signalling (3: MTU and mode). The link id is
//!    the truncated hash of the request's hashable part without the signalling bytes.
//! 2. The responder answers PROOF, context LRPROOF, destination type LINK, addressed to the
//!    link id: signature (64) ‖ responder ephemeral X25519 public (32) ‖ signalling (3). The
//!    destination's identity signs `link_id ‖ responder X25519 ‖ identity Ed25519 ‖
//!    signalling`, which authenticates the responder.
//! 3. Both sides derive `HKDF-SHA256(ECDH, salt = link_id, 64 bytes)` and use it as a token
//!    key; link packets carry bare tokens (no ephemeral prefix). The initiator reports its
//!    measured RTT in an encrypted LRRTT packet (a msgpack float of seconds); the responder
//!    considers the link established when it arrives.
//!
//! After that: KEEPALIVE packets (not encrypted; 0xFF from the initiator, 0xFE reply),
//! LINKCLOSE (the encrypted link id), LINKIDENTIFY (initiator reveals an identity), and proofs
//! of link packets, signed by the initiator's ephemeral Ed25519 key or the responder's
//! identity key.

use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::clock::Timestamp;
use crate::hashes::{DestinationHash, LinkId, PacketHash, truncate};
use crate::identity::{
    Identity, IdentityError, PUBLIC_KEY_LEN, PrivateIdentity, SIGNATURE_LEN, X25519_KEY_LEN,
    derive_token, verify_with,
};
use crate::packet::{Context, DestinationType, HEADER_1_LEN, MTU, Packet, PacketType};
use crate::proof::{ProofData, ProofError};
use crate::token::{BLOCK_LEN, TOKEN_OVERHEAD, Token, TokenError};

/// Length of the keys in a link request: X25519 (32) ‖ Ed25519 (32).
pub const LINK_REQUEST_KEYS_LEN: usize = 64;
/// Length of the MTU/mode signalling bytes.
pub const SIGNALLING_LEN: usize = 3;
/// Length of a link request proof without signalling: signature ‖ X25519 public.
pub const LINK_PROOF_LEN: usize = SIGNATURE_LEN + X25519_KEY_LEN;
/// Link mode AES-256-CBC, the only one Reticulum enables.
pub const MODE_AES256_CBC: u8 = 0x01;
/// Largest MTU the signalling bytes can express.
pub const MAX_SIGNALLED_MTU: u32 = 0x1F_FFFF;
/// Establishment time allowed per hop.
pub const ESTABLISHMENT_TIMEOUT_PER_HOP: Duration = Duration::from_secs(6);
/// Longest keepalive interval (also the responder's extra establishment allowance).
pub const KEEPALIVE_MAX: Duration = Duration::from_secs(360);
/// Shortest keepalive interval.
pub const KEEPALIVE_MIN: Duration = Duration::from_secs(5);
/// RTT at which the keepalive interval reaches its maximum.
const KEEPALIVE_MAX_RTT_SECS: f64 = 1.75;
/// Stale time = this × keepalive interval.
const STALE_FACTOR: u32 = 2;
/// After going stale, a link closes after RTT × this + [`STALE_GRACE`].
const KEEPALIVE_TIMEOUT_FACTOR: u32 = 4;
/// Grace added to the stale timeout.
const STALE_GRACE: Duration = Duration::from_secs(5);
/// Keepalive request byte (initiator → responder).
const KEEPALIVE_REQUEST: u8 = 0xFF;
/// Keepalive reply byte.
const KEEPALIVE_REPLY: u8 = 0xFE;

/// Why a link packet was refused or a link operation is impossible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    /// A link request of the wrong size.
    #[error("link request data must be 64 or 67 bytes, got {found}")]
    RequestLength {
        /// Length found.
        found: usize,
    },
    /// A link request proof of the wrong size.
    #[error("link request proof must be 96 or 99 bytes, got {found}")]
    ProofLength {
        /// Length found.
        found: usize,
    },
    /// A link mode other than AES-256-CBC.
    #[error("link mode {mode} is not supported (only AES-256-CBC, mode 1)")]
    UnsupportedMode {
        /// Mode requested.
        mode: u8,
    },
    /// The packet is not for this link.
    #[error("packet for {found} arrived at link {link}")]
    WrongLink {
        /// This link.
        link: LinkId,
        /// Address in the packet.
        found: DestinationHash,
    },
    /// The operation does not fit the link's state or role.
    #[error("{operation} is not possible for a {role:?} link in state {state:?}")]
    WrongState {
        /// What was attempted.
        operation: &'static str,
        /// The link's role.
        role: Role,
        /// The link's state.
        state: LinkState,
    },
    /// The link request proof's signature does not verify.
    #[error("link request proof signature does not verify")]
    BadProofSignature,
    /// Key agreement failed.
    #[error("link key agreement: {0}")]
    Key(#[from] IdentityError),
    /// A link packet did not decrypt.
    #[error("link packet: {0}")]
    Token(#[from] TokenError),
    /// An LRRTT packet without a readable RTT.
    #[error("LRRTT packet does not hold a msgpack number")]
    BadRtt,
    /// A LINKIDENTIFY packet whose signature does not verify.
    #[error("link identification is malformed or its signature does not verify")]
    BadIdentification,
    /// A packet proof that does not verify.
    #[error("link packet proof: {0}")]
    Proof(#[from] ProofError),
    /// Payload larger than one link packet can carry.
    #[error("payload of {len} bytes exceeds the link MDU of {mdu} bytes")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Largest payload the link carries.
        mdu: usize,
    },
}

/// MTU and mode signalled in link requests and proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signalling {
    /// Path MTU in bytes (21 bits).
    pub mtu: u32,
    /// Link mode (3 bits).
    pub mode: u8,
}

impl Signalling {
    /// The three bytes: `(mode << 5) << 16 | mtu`, big-endian, 24 bits.
    pub fn encode(&self) -> [u8; SIGNALLING_LEN] {
        let value = (self.mtu & MAX_SIGNALLED_MTU) | (u32::from((self.mode << 5) & 0xE0) << 16);
        let b = value.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// Reads three signalling bytes.
    pub fn decode(bytes: &[u8; SIGNALLING_LEN]) -> Self {
        let value = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        Self {
            mtu: value & MAX_SIGNALLED_MTU,
            mode: (bytes[0] & 0xE0) >> 5,
        }
    }
}

/// The data of a LINKREQUEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    /// Initiator's ephemeral X25519 public key.
    pub x25519: [u8; 32],
    /// Initiator's ephemeral Ed25519 public key.
    pub ed25519: [u8; 32],
    /// MTU and mode, absent in requests from old Reticulum versions.
    pub signalling: Option<Signalling>,
}

impl LinkRequest {
    /// Reads link request data.
    pub fn parse(data: &[u8]) -> Result<Self, LinkError> {
        if data.len() != LINK_REQUEST_KEYS_LEN
            && data.len() != LINK_REQUEST_KEYS_LEN + SIGNALLING_LEN
        {
            return Err(LinkError::RequestLength { found: data.len() });
        }
        let mut x25519 = [0u8; 32];
        let mut ed25519 = [0u8; 32];
        x25519.copy_from_slice(&data[..32]);
        ed25519.copy_from_slice(&data[32..64]);
        let signalling = data
            .get(64..67)
            .and_then(|s| <&[u8; 3]>::try_from(s).ok())
            .map(Signalling::decode);
        Ok(Self {
            x25519,
            ed25519,
            signalling,
        })
    }

    /// The data field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINK_REQUEST_KEYS_LEN + SIGNALLING_LEN);
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.ed25519);
        if let Some(s) = &self.signalling {
            out.extend_from_slice(&s.encode());
        }
        out
    }
}

/// The data of an LRPROOF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkProof {
    /// Signature by the destination's identity.
    pub signature: [u8; SIGNATURE_LEN],
    /// Responder's ephemeral X25519 public key.
    pub x25519: [u8; 32],
    /// Confirmed MTU and mode.
    pub signalling: Option<Signalling>,
}

impl LinkProof {
    /// Reads link request proof data.
    pub fn parse(data: &[u8]) -> Result<Self, LinkError> {
        if data.len() != LINK_PROOF_LEN && data.len() != LINK_PROOF_LEN + SIGNALLING_LEN {
            return Err(LinkError::ProofLength { found: data.len() });
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        let mut x25519 = [0u8; 32];
        signature.copy_from_slice(&data[..SIGNATURE_LEN]);
        x25519.copy_from_slice(&data[SIGNATURE_LEN..LINK_PROOF_LEN]);
        let signalling = data
            .get(LINK_PROOF_LEN..)
            .and_then(|s| <&[u8; 3]>::try_from(s).ok())
            .map(Signalling::decode);
        Ok(Self {
            signature,
            x25519,
            signalling,
        })
    }

    /// The data field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINK_PROOF_LEN + SIGNALLING_LEN);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.x25519);
        if let Some(s) = &self.signalling {
            out.extend_from_slice(&s.encode());
        }
        out
    }

    /// Checks the responder's signature for `link_id` against the destination's identity.
    /// Transport nodes use this before forwarding a proof.
    pub fn verify(&self, link_id: &LinkId, destination: &Identity) -> Result<(), LinkError> {
        let signed = proof_signed_bytes(
            link_id,
            &self.x25519,
            destination.signing_key(),
            self.signalling.as_ref(),
        );
        destination
            .verify(&signed, &self.signature)
            .map_err(|_| LinkError::BadProofSignature)
    }
}

fn proof_signed_bytes(
    link_id: &LinkId,
    x25519: &[u8; 32],
    signer: &VerifyingKey,
    signalling: Option<&Signalling>,
) -> Vec<u8> {
    let mut signed = Vec::with_capacity(16 + 64 + SIGNALLING_LEN);
    signed.extend_from_slice(link_id.as_bytes());
    signed.extend_from_slice(x25519);
    signed.extend_from_slice(signer.as_bytes());
    if let Some(s) = signalling {
        signed.extend_from_slice(&s.encode());
    }
    signed
}

/// The link id of a LINKREQUEST packet: truncated hash of its hashable part, signalling bytes
/// excluded (so MTU clamping on the way does not change it).
pub fn link_id(request: &Packet) -> LinkId {
    let keep = request.data.len().min(LINK_REQUEST_KEYS_LEN);
    let digest: [u8; 32] = Sha256::new()
        .chain_update([request.flags() & 0x0F])
        .chain_update(request.destination.as_bytes())
        .chain_update([request.context.0])
        .chain_update(&request.data[..keep])
        .finalize()
        .into();
    LinkId(truncate(&digest))
}

/// Largest payload of one link packet for a link MTU.
pub fn link_mdu(mtu: u32) -> usize {
    let mtu = usize::try_from(mtu).unwrap_or(usize::MAX);
    (mtu.saturating_sub(1 + HEADER_1_LEN + TOKEN_OVERHEAD) / BLOCK_LEN * BLOCK_LEN)
        .saturating_sub(1)
}

/// Which end of the link this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sent the link request.
    Initiator,
    /// Owns the destination and answered it.
    Responder,
}

/// Why a link closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Establishment or keepalive timed out.
    Timeout,
    /// The initiator closed it.
    InitiatorClosed,
    /// The destination closed it.
    DestinationClosed,
}

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Initiator: request sent, waiting for the proof.
    Pending,
    /// Responder: proof sent, waiting for the RTT packet.
    Handshake,
    /// Established.
    Active,
    /// Nothing heard for the stale time; closes unless traffic arrives.
    Stale,
    /// Closed; keys are gone.
    Closed(CloseReason),
}

/// What a received packet meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake completed (initiator: proof verified; responder: RTT received).
    Established {
        /// Measured round-trip time.
        rtt: Duration,
    },
    /// Payload. For `Context::RESOURCE` the data is passed through undecrypted, since
    /// resources encrypt their parts themselves.
    Data {
        /// Context byte of the packet.
        context: Context,
        /// Decrypted payload.
        plaintext: Vec<u8>,
    },
    /// The initiator proved it holds this identity.
    Identified(Box<Identity>),
    /// A keepalive arrived.
    Keepalive,
    /// A valid proof of a packet sent over this link.
    Proof {
        /// Hash of the proved packet.
        packet_hash: PacketHash,
    },
    /// The peer closed the link.
    Closed(CloseReason),
}

/// The result of [`Link::receive`]: an event and possibly a packet to send back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOutcome {
    /// What happened.
    pub event: LinkEvent,
    /// A packet to transmit in reply (RTT report, keepalive reply).
    pub reply: Option<Packet>,
}

/// What a timer check decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkPoll {
    /// A packet to transmit (keepalive or close).
    pub send: Option<Packet>,
    /// Set when the link closed during this check.
    pub closed: Option<CloseReason>,
}

/// One end of a link.
///
/// A clone is the same end in the same state, keys included: the fuzz targets establish a
/// link once and replay each input on a fresh copy.
#[derive(Clone)]
pub struct Link {
    id: LinkId,
    role: Role,
    state: LinkState,
    destination: DestinationHash,
    ephemeral: Option<StaticSecret>,
    own_signing: SigningKey,
    peer_signing: VerifyingKey,
    token: Option<Token>,
    mtu: u32,
    rtt: Option<Duration>,
    request_time: Timestamp,
    establishment_timeout: Duration,
    last_inbound: Timestamp,
    last_outbound: Timestamp,
    last_keepalive: Timestamp,
    stale_since: Option<Timestamp>,
    keepalive: Duration,
    remote_identity: Option<Identity>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("destination", &self.destination)
            .field("mtu", &self.mtu)
            .field("rtt", &self.rtt)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Starts a link to `destination` (a SINGLE destination of `identity`). Returns the link
    /// and the LINKREQUEST packet to send. `signalled_mtu` is the first hop's MTU to signal
    /// (`None` sends an old-style request without signalling); `expected_hops` scales the
    /// establishment timeout.
    pub fn initiate<R: RngCore + CryptoRng + ?Sized>(
        identity: &Identity,
        destination: DestinationHash,
        signalled_mtu: Option<u32>,
        expected_hops: u8,
        now: Timestamp,
        rng: &mut R,
    ) -> (Self, Packet) {
        let ephemeral = random_x25519(rng);
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let own_signing = SigningKey::from_bytes(&seed);
        let request = LinkRequest {
            x25519: *X25519Public::from(&ephemeral).as_bytes(),
            ed25519: own_signing.verifying_key().to_bytes(),
            signalling: signalled_mtu.map(|mtu| Signalling {
                mtu: mtu.min(MAX_SIGNALLED_MTU),
                mode: MODE_AES256_CBC,
            }),
        };
        let packet = Packet::new(
            PacketType::LinkRequest,
            DestinationType::Single,
            destination,
            Context::NONE,
            request.encode(),
        );
        let link = Self {
            id: link_id(&packet),
            role: Role::Initiator,
            state: LinkState::Pending,
            destination,
            ephemeral: Some(ephemeral),
            own_signing,
            peer_signing: *identity.signing_key(),
            token: None,
            mtu: MTU as u32,
            rtt: None,
            request_time: now,
            establishment_timeout: ESTABLISHMENT_TIMEOUT_PER_HOP * u32::from(expected_hops.max(1)),
            last_inbound: now,
            last_outbound: now,
            last_keepalive: now,
            stale_since: None,
            keepalive: KEEPALIVE_MAX,
            remote_identity: Some(identity.clone()),
        };
        (link, packet)
    }

    /// Answers a LINKREQUEST addressed to a destination of `owner`. Returns the link (in
    /// [`LinkState::Handshake`]) and the LRPROOF packet to send back on the interface the
    /// request came from. The request's signalled MTU is taken as the link MTU; a router
    /// clamps it to its interfaces before calling this.
    pub fn accept<R: RngCore + CryptoRng + ?Sized>(
        owner: &PrivateIdentity,
        request_packet: &Packet,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<(Self, Packet), LinkError> {
        let request = LinkRequest::parse(&request_packet.data)?;
        let mode = request.signalling.map_or(MODE_AES256_CBC, |s| s.mode);
        if mode != MODE_AES256_CBC {
            return Err(LinkError::UnsupportedMode { mode });
        }
        let peer_signing = VerifyingKey::from_bytes(&request.ed25519)
            .map_err(|_| IdentityError::InvalidSigningKey)?;
        let id = link_id(request_packet);
        let ephemeral = random_x25519(rng);
        let token = derive_token(
            &ephemeral,
            &X25519Public::from(request.x25519),
            id.as_bytes(),
        )?;
        let mtu = request.signalling.map_or(MTU as u32, |s| s.mtu);
        let own_x25519 = *X25519Public::from(&ephemeral).as_bytes();
        let signalling = Signalling { mtu, mode };
        let signed = proof_signed_bytes(
            &id,
            &own_x25519,
            owner.public().signing_key(),
            Some(&signalling),
        );
        let proof = LinkProof {
            signature: owner.sign(&signed),
            x25519: own_x25519,
            signalling: Some(signalling),
        };
        let packet = Packet::new(
            PacketType::Proof,
            DestinationType::Link,
            id.into(),
            Context::LRPROOF,
            proof.encode(),
        );
        let link = Self {
            id,
            role: Role::Responder,
            state: LinkState::Handshake,
            destination: request_packet.destination,
            ephemeral: Some(ephemeral),
            own_signing: owner.signing_key().clone(),
            peer_signing,
            token: Some(token),
            mtu,
            rtt: None,
            request_time: now,
            establishment_timeout: ESTABLISHMENT_TIMEOUT_PER_HOP
                * u32::from(request_packet.hops.max(1))
                + KEEPALIVE_MAX,
            last_inbound: now,
            last_outbound: now,
            last_keepalive: now,
            stale_since: None,
            keepalive: KEEPALIVE_MAX,
            remote_identity: None,
        };
        Ok((link, packet))
    }

    /// The link id.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// Initiator or responder.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The destination the link leads to (initiator) or serves (responder).
    pub fn destination(&self) -> DestinationHash {
        self.destination
    }

    /// Link MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Largest payload of one packet on this link.
    pub fn mdu(&self) -> usize {
        link_mdu(self.mtu)
    }

    /// Round-trip time, once known.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Initiator: the destination's identity. Responder: the identity the initiator
    /// revealed with LINKIDENTIFY, if it did.
    pub fn remote_identity(&self) -> Option<&Identity> {
        self.remote_identity.as_ref()
    }

    /// Current keepalive interval.
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive
    }

    /// Initiator: processes the LRPROOF. On success the link is active and the returned LRRTT
    /// packet must be sent.
    pub fn handle_proof<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        packet: &Packet,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Packet, LinkError> {
        self.check_address(packet)?;
        if self.role != Role::Initiator || self.state != LinkState::Pending {
            return Err(self.wrong_state("handling a link request proof"));
        }
        let proof = LinkProof::parse(&packet.data)?;
        let mode = proof.signalling.map_or(MODE_AES256_CBC, |s| s.mode);
        if mode != MODE_AES256_CBC {
            return Err(LinkError::UnsupportedMode { mode });
        }
        let signed = proof_signed_bytes(
            &self.id,
            &proof.x25519,
            &self.peer_signing,
            proof.signalling.as_ref(),
        );
        verify_with(&self.peer_signing, &signed, &proof.signature)
            .map_err(|_| LinkError::BadProofSignature)?;
        let ephemeral = self
            .ephemeral
            .as_ref()
            .ok_or_else(|| self.wrong_state("handling a link request proof"))?;
        self.token = Some(derive_token(
            ephemeral,
            &X25519Public::from(proof.x25519),
            self.id.as_bytes(),
        )?);
        let rtt = now.since(self.request_time);
        self.rtt = Some(rtt);
        self.mtu = proof.signalling.map_or(MTU as u32, |s| s.mtu);
        self.activate(now, rtt);
        let rtt_packet = self.encrypt(
            Context::LRRTT,
            &encode_msgpack_f64(rtt.as_secs_f64()),
            now,
            rng,
        )?;
        Ok(rtt_packet)
    }

    /// Processes a DATA or PROOF packet addressed to this link (not the LRPROOF; see
    /// [`Link::handle_proof`]).
    pub fn receive(&mut self, packet: &Packet, now: Timestamp) -> Result<LinkOutcome, LinkError> {
        self.check_address(packet)?;
        if matches!(self.state, LinkState::Closed(_) | LinkState::Pending) {
            return Err(self.wrong_state("receiving a link packet"));
        }
        self.last_inbound = now;
        if self.state == LinkState::Stale {
            self.state = LinkState::Active;
            self.stale_since = None;
        }
        let event = match (packet.packet_type, packet.context) {
            (PacketType::Proof, Context::NONE) => {
                let proof = ProofData::parse(&packet.data)?;
                let packet_hash = match &proof {
                    ProofData::Explicit { packet_hash, .. } => *packet_hash,
                    ProofData::Implicit { .. } => {
                        return Err(ProofError::Length {
                            found: packet.data.len(),
                        }
                        .into());
                    }
                };
                proof.verify(&packet_hash, &self.peer_signing)?;
                LinkEvent::Proof { packet_hash }
            }
            (PacketType::Data, Context::KEEPALIVE) => {
                let reply = if self.role == Role::Responder
                    && packet.data == [KEEPALIVE_REQUEST]
                    && now >= self.last_outbound.saturating_add(self.keepalive)
                {
                    Some(self.keepalive_packet(KEEPALIVE_REPLY, now))
                } else {
                    None
                };
                return Ok(LinkOutcome {
                    event: LinkEvent::Keepalive,
                    reply,
                });
            }
            (PacketType::Data, Context::LRRTT) => {
                if self.role != Role::Responder {
                    return Err(self.wrong_state("receiving an RTT report"));
                }
                let plaintext = self.decrypt(&packet.data)?;
                let reported = decode_msgpack_number(&plaintext).ok_or(LinkError::BadRtt)?;
                let measured = now.since(self.request_time);
                // The initiator's figure is untrusted: it cannot exceed the time the
                // handshake was allowed to take.
                let reported = Duration::try_from_secs_f64(reported)
                    .unwrap_or(Duration::ZERO)
                    .min(self.establishment_timeout);
                let rtt = measured.max(reported);
                self.rtt = Some(rtt);
                self.activate(now, rtt);
                LinkEvent::Established { rtt }
            }
            (PacketType::Data, Context::LINKCLOSE) => {
                let plaintext = self.decrypt(&packet.data)?;
                if plaintext != self.id.as_bytes() {
                    return Err(LinkError::Token(TokenError::BadMac));
                }
                let reason = match self.role {
                    Role::Initiator => CloseReason::DestinationClosed,
                    Role::Responder => CloseReason::InitiatorClosed,
                };
                self.shut(reason);
                LinkEvent::Closed(reason)
            }
            (PacketType::Data, Context::LINKIDENTIFY) => {
                let plaintext = self.decrypt(&packet.data)?;
                if self.role != Role::Responder || plaintext.len() != PUBLIC_KEY_LEN + SIGNATURE_LEN
                {
                    return Err(LinkError::BadIdentification);
                }
                let (key, signature) = plaintext.split_at(PUBLIC_KEY_LEN);
                let identity =
                    Identity::from_slice(key).map_err(|_| LinkError::BadIdentification)?;
                let mut signed = self.id.as_bytes().to_vec();
                signed.extend_from_slice(key);
                identity
                    .verify(&signed, signature)
                    .map_err(|_| LinkError::BadIdentification)?;
                self.remote_identity = Some(identity.clone());
                LinkEvent::Identified(Box::new(identity))
            }
            (PacketType::Data, Context::RESOURCE) => LinkEvent::Data {
                context: packet.context,
                plaintext: packet.data.clone(),
            },
            (PacketType::Data, context) => LinkEvent::Data {
                context,
                plaintext: self.decrypt(&packet.data)?,
            },
            _ => return Err(self.wrong_state("receiving this packet type")),
        };
        Ok(LinkOutcome { event, reply: None })
    }

    /// Encrypts `plaintext` into a link DATA packet with `context`.
    pub fn encrypt<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        context: Context,
        plaintext: &[u8],
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Packet, LinkError> {
        let mdu = self.mdu();
        if plaintext.len() > mdu {
            return Err(LinkError::PayloadTooLarge {
                len: plaintext.len(),
                mdu,
            });
        }
        let usable = match self.role {
            Role::Initiator => self.state == LinkState::Active || self.state == LinkState::Stale,
            Role::Responder => {
                matches!(
                    self.state,
                    LinkState::Handshake | LinkState::Active | LinkState::Stale
                )
            }
        };
        let token = match (&self.token, usable) {
            (Some(token), true) => token,
            _ => return Err(self.wrong_state("sending on the link")),
        };
        let data = token.encrypt(plaintext, rng);
        self.last_outbound = now;
        Ok(Packet::new(
            PacketType::Data,
            DestinationType::Link,
            self.id.into(),
            context,
            data,
        ))
    }

    /// Initiator: the LINKIDENTIFY packet revealing `identity` to the responder.
    pub fn identify<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        identity: &PrivateIdentity,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Packet, LinkError> {
        if self.role != Role::Initiator {
            return Err(self.wrong_state("identifying"));
        }
        let key = identity.public().public_key();
        let mut signed = self.id.as_bytes().to_vec();
        signed.extend_from_slice(&key);
        let mut payload = key.to_vec();
        payload.extend_from_slice(&identity.sign(&signed));
        self.encrypt(Context::LINKIDENTIFY, &payload, now, rng)
    }

    /// The explicit proof of a packet received over this link.
    pub fn prove(&self, packet: &Packet) -> Packet {
        self.prove_hash(&packet.hash())
    }

    /// The explicit proof of the packet with hash `packet_hash`, received over this link.
    pub fn prove_hash(&self, packet_hash: &PacketHash) -> Packet {
        let proof = ProofData::sign_with(&self.own_signing, packet_hash, true);
        Packet::new(
            PacketType::Proof,
            DestinationType::Link,
            self.id.into(),
            Context::NONE,
            proof.encode(),
        )
    }

    /// Closes the link. Returns the LINKCLOSE packet to send if the peer knows the link.
    pub fn close<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut R,
    ) -> Option<Packet> {
        let packet = match self.state {
            LinkState::Closed(_) => return None,
            LinkState::Pending => None,
            _ => self.token.as_ref().map(|t| {
                Packet::new(
                    PacketType::Data,
                    DestinationType::Link,
                    self.id.into(),
                    Context::LINKCLOSE,
                    t.encrypt(self.id.as_bytes(), rng),
                )
            }),
        };
        self.last_outbound = now;
        self.shut(match self.role {
            Role::Initiator => CloseReason::InitiatorClosed,
            Role::Responder => CloseReason::DestinationClosed,
        });
        packet
    }

    /// Runs the link's timers: establishment timeout, keepalives (sent by the initiator),
    /// staleness and the stale timeout.
    pub fn poll<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut R,
    ) -> LinkPoll {
        match self.state {
            LinkState::Closed(_) => LinkPoll::default(),
            LinkState::Pending | LinkState::Handshake => {
                if now >= self.request_time.saturating_add(self.establishment_timeout) {
                    self.shut(CloseReason::Timeout);
                    LinkPoll {
                        send: None,
                        closed: Some(CloseReason::Timeout),
                    }
                } else {
                    LinkPoll::default()
                }
            }
            LinkState::Active => {
                let mut poll = LinkPoll::default();
                let quiet_in = now >= self.last_inbound.saturating_add(self.keepalive);
                let quiet_out = now >= self.last_outbound.saturating_add(self.keepalive);
                if (quiet_in || quiet_out)
                    && self.role == Role::Initiator
                    && now >= self.last_keepalive.saturating_add(self.keepalive)
                {
                    poll.send = Some(self.keepalive_packet(KEEPALIVE_REQUEST, now));
                }
                if now
                    >= self
                        .last_inbound
                        .saturating_add(self.keepalive * STALE_FACTOR)
                {
                    self.state = LinkState::Stale;
                    self.stale_since = Some(now);
                }
                poll
            }
            LinkState::Stale => {
                let since = self.stale_since.unwrap_or(now);
                let grace = self
                    .rtt
                    .unwrap_or(Duration::ZERO)
                    .saturating_mul(KEEPALIVE_TIMEOUT_FACTOR)
                    .saturating_add(STALE_GRACE);
                if now >= since.saturating_add(grace) {
                    let send = self.close(now, rng);
                    self.state = LinkState::Closed(CloseReason::Timeout);
                    LinkPoll {
                        send,
                        closed: Some(CloseReason::Timeout),
                    }
                } else {
                    LinkPoll::default()
                }
            }
        }
    }

    fn keepalive_packet(&mut self, byte: u8, now: Timestamp) -> Packet {
        self.last_outbound = now;
        self.last_keepalive = now;
        Packet::new(
            PacketType::Data,
            DestinationType::Link,
            self.id.into(),
            Context::KEEPALIVE,
            vec![byte],
        )
    }

    fn activate(&mut self, now: Timestamp, rtt: Duration) {
        self.state = LinkState::Active;
        self.last_inbound = now;
        let scaled = rtt.as_secs_f64() * (KEEPALIVE_MAX.as_secs_f64() / KEEPALIVE_MAX_RTT_SECS);
        self.keepalive = Duration::try_from_secs_f64(scaled)
            .unwrap_or(KEEPALIVE_MAX)
            .clamp(KEEPALIVE_MIN, KEEPALIVE_MAX);
    }

    fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, LinkError> {
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| self.wrong_state("decrypting"))?;
        Ok(token.decrypt(data)?)
    }

    fn shut(&mut self, reason: CloseReason) {
        self.state = LinkState::Closed(reason);
        self.token = None;
        self.ephemeral = None;
    }

    fn check_address(&self, packet: &Packet) -> Result<(), LinkError> {
        if packet.destination != DestinationHash::from(self.id) {
            return Err(LinkError::WrongLink {
                link: self.id,
                found: packet.destination,
            });
        }
        Ok(())
    }

    fn wrong_state(&self, operation: &'static str) -> LinkError {
        LinkError::WrongState {
            operation,
            role: self.role,
            state: self.state,
        }
    }
}

fn random_x25519<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    StaticSecret::from(*bytes)
}

/// msgpack float64: 0xCB followed by the big-endian IEEE-754 double.
fn encode_msgpack_f64(v: f64) -> Vec<u8> {
    let mut out = vec![0xCB];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

/// Reads a msgpack float or unsigned integer as f64.
fn decode_msgpack_number(bytes: &[u8]) -> Option<f64> {
    let (&tag, body) = bytes.split_first()?;
    let be = |n: usize| -> Option<u64> {
        (body.len() == n).then(|| body.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let value = match tag {
        0x00..=0x7F if body.is_empty() => f64::from(tag),
        0xCA => f64::from(f32::from_bits(u32::try_from(be(4)?).ok()?)),
        0xCB => f64::from_bits(be(8)?),
        0xCC => be(1)? as f64,
        0xCD => be(2)? as f64,
        0xCE => be(4)? as f64,
        0xCF => be(8)? as f64,
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::DestinationName;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    struct Pair {
        initiator: Link,
        responder: Link,
        rng: StdRng,
        owner: PrivateIdentity,
    }

    fn handshake(signalled_mtu: Option<u32>) -> Pair {
        let mut rng = StdRng::seed_from_u64(7);
        let owner = PrivateIdentity::generate(&mut rng);
        let dest = DestinationName::mehr_node().single_hash(owner.public());
        let t0 = Timestamp::from_secs(100);
        let (mut initiator, request) =
            Link::initiate(owner.public(), dest, signalled_mtu, 1, t0, &mut rng);
        let request = Packet::parse(&request.encode()).unwrap();
        let (mut responder, proof) = Link::accept(
            &owner,
            &request,
            t0.saturating_add(Duration::from_millis(10)),
            &mut rng,
        )
        .unwrap();
        assert_eq!(responder.id(), initiator.id());
        let rtt_packet = initiator
            .handle_proof(&proof, Timestamp::from_millis(100_200), &mut rng)
            .unwrap();
        assert_eq!(initiator.state(), LinkState::Active);
        assert_eq!(initiator.rtt(), Some(Duration::from_millis(200)));
        let outcome = responder
            .receive(&rtt_packet, Timestamp::from_millis(100_300))
            .unwrap();
        assert_eq!(
            outcome.event,
            LinkEvent::Established {
                rtt: Duration::from_millis(290)
            }
        );
        assert_eq!(responder.state(), LinkState::Active);
        Pair {
            initiator,
            responder,
            rng,
            owner,
        }
    }

    #[test]
    fn signalling_layout() {
        let s = Signalling {
            mtu: 500,
            mode: MODE_AES256_CBC,
        };
        assert_eq!(s.encode(), [0x20, 0x01, 0xF4]);
        assert_eq!(Signalling::decode(&s.encode()), s);
        let big = Signalling {
            mtu: MAX_SIGNALLED_MTU,
            mode: 7,
        };
        assert_eq!(Signalling::decode(&big.encode()), big);
    }

    #[test]
    fn link_id_excludes_signalling_and_hops() {
        let mut rng = StdRng::seed_from_u64(1);
        let owner = PrivateIdentity::generate(&mut rng);
        let dest = DestinationName::mehr_node().single_hash(owner.public());
        let (link, mut request) = Link::initiate(
            owner.public(),
            dest,
            Some(500),
            1,
            Timestamp::ZERO,
            &mut rng,
        );
        assert_eq!(request.data.len(), 67);
        let with = link_id(&request);
        assert_eq!(with, link.id());
        request.data.truncate(64);
        request.hops = 3;
        assert_eq!(link_id(&request), with);
        assert_eq!(
            with.0,
            crate::hashes::truncated_hash(&request.hashable_part())
        );
    }

    #[test]
    fn full_handshake_and_data_both_ways() {
        let mut p = handshake(Some(500));
        let now = Timestamp::from_secs(101);
        let to_responder = p
            .initiator
            .encrypt(Context::NONE, b"ping", now, &mut p.rng)
            .unwrap();
        assert_eq!(to_responder.destination_type, DestinationType::Link);
        let got = p.responder.receive(&to_responder, now).unwrap();
        assert_eq!(
            got.event,
            LinkEvent::Data {
                context: Context::NONE,
                plaintext: b"ping".to_vec()
            }
        );
        let back = p
            .responder
            .encrypt(Context::REQUEST, b"pong", now, &mut p.rng)
            .unwrap();
        let got = p.initiator.receive(&back, now).unwrap();
        assert_eq!(
            got.event,
            LinkEvent::Data {
                context: Context::REQUEST,
                plaintext: b"pong".to_vec()
            }
        );
    }

    #[test]
    fn old_style_request_without_signalling() {
        let p = handshake(None);
        assert_eq!(p.initiator.mtu(), 500);
        assert_eq!(p.responder.mtu(), 500);
    }

    #[test]
    fn forged_proof_is_rejected() {
        let mut rng = StdRng::seed_from_u64(3);
        let owner = PrivateIdentity::generate(&mut rng);
        let impostor = PrivateIdentity::generate(&mut rng);
        let dest = DestinationName::mehr_node().single_hash(owner.public());
        let (mut initiator, request) = Link::initiate(
            owner.public(),
            dest,
            Some(500),
            1,
            Timestamp::ZERO,
            &mut rng,
        );
        let (_, forged) = Link::accept(&impostor, &request, Timestamp::ZERO, &mut rng).unwrap();
        assert_eq!(
            initiator.handle_proof(&forged, Timestamp::ZERO, &mut rng),
            Err(LinkError::BadProofSignature)
        );
        assert_eq!(initiator.state(), LinkState::Pending);
        // Transport nodes run the same check.
        let proof = LinkProof::parse(&forged.data).unwrap();
        assert_eq!(
            proof.verify(&initiator.id(), owner.public()),
            Err(LinkError::BadProofSignature)
        );
        assert!(proof.verify(&initiator.id(), impostor.public()).is_ok());
    }

    #[test]
    fn proofs_of_link_packets() {
        let mut p = handshake(Some(500));
        let now = Timestamp::from_secs(101);
        let data = p
            .initiator
            .encrypt(Context::NONE, b"prove me", now, &mut p.rng)
            .unwrap();
        let proof = p.responder.prove(&data);
        assert_eq!(proof.destination, DestinationHash::from(p.responder.id()));
        assert_eq!(proof.data.len(), 96);
        let outcome = p.initiator.receive(&proof, now).unwrap();
        assert_eq!(
            outcome.event,
            LinkEvent::Proof {
                packet_hash: data.hash()
            }
        );
        // The responder signs with the destination's identity key.
        ProofData::parse(&proof.data)
            .unwrap()
            .verify(&data.hash(), p.owner.public().signing_key())
            .unwrap();
        // The initiator's proofs verify at the responder.
        let back = p
            .responder
            .encrypt(Context::NONE, b"x", now, &mut p.rng)
            .unwrap();
        let proof = p.initiator.prove(&back);
        assert_eq!(
            p.responder.receive(&proof, now).unwrap().event,
            LinkEvent::Proof {
                packet_hash: back.hash()
            }
        );
    }

    #[test]
    fn identify_close_and_keepalive() {
        let mut p = handshake(Some(500));
        let now = Timestamp::from_secs(101);
        let me = PrivateIdentity::from_private_key(&[8; 64]);
        let ident = p.initiator.identify(&me, now, &mut p.rng).unwrap();
        assert_eq!(
            p.responder.receive(&ident, now).unwrap().event,
            LinkEvent::Identified(Box::new(me.public().clone()))
        );
        assert_eq!(p.responder.remote_identity(), Some(me.public()));

        // Keepalive: the initiator sends 0xFF once quiet; the responder answers 0xFE.
        // The responder answers only once it has itself been quiet for its (longer) interval.
        let quiet = now.saturating_add(p.responder.keepalive_interval());
        assert!(p.responder.keepalive_interval() >= p.initiator.keepalive_interval());
        let poll = p.initiator.poll(quiet, &mut p.rng);
        let ka = poll.send.expect("keepalive");
        assert_eq!(
            (ka.context, ka.data.clone()),
            (Context::KEEPALIVE, vec![0xFF])
        );
        let reply = p
            .responder
            .receive(&ka, quiet)
            .unwrap()
            .reply
            .expect("reply");
        assert_eq!(reply.data, vec![0xFE]);
        assert_eq!(
            p.initiator.receive(&reply, quiet).unwrap().event,
            LinkEvent::Keepalive
        );

        let close = p.initiator.close(quiet, &mut p.rng).unwrap();
        assert_eq!(
            p.initiator.state(),
            LinkState::Closed(CloseReason::InitiatorClosed)
        );
        assert_eq!(
            p.responder.receive(&close, quiet).unwrap().event,
            LinkEvent::Closed(CloseReason::InitiatorClosed)
        );
        assert!(
            p.responder
                .encrypt(Context::NONE, b"x", quiet, &mut p.rng)
                .is_err()
        );
    }

    #[test]
    fn timers_close_unanswered_and_silent_links() {
        let mut rng = StdRng::seed_from_u64(4);
        let owner = PrivateIdentity::generate(&mut rng);
        let dest = DestinationName::mehr_node().single_hash(owner.public());
        let (mut pending, _) =
            Link::initiate(owner.public(), dest, None, 2, Timestamp::ZERO, &mut rng);
        assert_eq!(
            pending.poll(Timestamp::from_secs(11), &mut rng),
            LinkPoll::default()
        );
        assert_eq!(
            pending.poll(Timestamp::from_secs(12), &mut rng).closed,
            Some(CloseReason::Timeout)
        );

        let mut p = handshake(Some(500));
        let start = Timestamp::from_millis(100_300);
        let stale_at = start.saturating_add(p.responder.keepalive_interval() * 2);
        let _ = p.responder.poll(stale_at, &mut p.rng);
        assert_eq!(p.responder.state(), LinkState::Stale);
        let closed = p
            .responder
            .poll(stale_at.saturating_add(Duration::from_secs(7)), &mut p.rng);
        assert_eq!(closed.closed, Some(CloseReason::Timeout));
        assert_eq!(closed.send.map(|s| s.context), Some(Context::LINKCLOSE));
    }

    #[test]
    fn payload_limits_and_wrong_addresses() {
        let mut p = handshake(Some(500));
        let now = Timestamp::from_secs(101);
        assert_eq!(p.initiator.mdu(), 431);
        assert!(
            p.initiator
                .encrypt(Context::NONE, &[0; 431], now, &mut p.rng)
                .is_ok()
        );
        assert_eq!(
            p.initiator
                .encrypt(Context::NONE, &[0; 432], now, &mut p.rng),
            Err(LinkError::PayloadTooLarge { len: 432, mdu: 431 })
        );
        let mut stray = p
            .initiator
            .encrypt(Context::NONE, b"x", now, &mut p.rng)
            .unwrap();
        stray.destination = DestinationHash([0; 16]);
        assert!(matches!(
            p.responder.receive(&stray, now),
            Err(LinkError::WrongLink { .. })
        ));
    }

    #[test]
    fn absurd_reported_rtt_is_capped() {
        let mut rng = StdRng::seed_from_u64(11);
        let owner = PrivateIdentity::generate(&mut rng);
        let dest = DestinationName::mehr_node().single_hash(owner.public());
        let (mut initiator, request) =
            Link::initiate(owner.public(), dest, None, 1, Timestamp::ZERO, &mut rng);
        let (mut responder, proof) =
            Link::accept(&owner, &request, Timestamp::ZERO, &mut rng).unwrap();
        initiator
            .handle_proof(&proof, Timestamp::ZERO, &mut rng)
            .unwrap();
        let lie = initiator
            .encrypt(
                Context::LRRTT,
                &encode_msgpack_f64(1e300),
                Timestamp::ZERO,
                &mut rng,
            )
            .unwrap();
        responder.receive(&lie, Timestamp::from_secs(1)).unwrap();
        assert!(responder.rtt().unwrap() <= ESTABLISHMENT_TIMEOUT_PER_HOP + KEEPALIVE_MAX);
        // Staleness and the stale timeout still work without overflow.
        let far = Timestamp::from_secs(10_000);
        let _ = responder.poll(far, &mut rng);
        let closed = responder.poll(Timestamp::from_secs(20_000), &mut rng);
        assert_eq!(closed.closed, Some(CloseReason::Timeout));
    }

    #[test]
    fn msgpack_numbers() {
        assert_eq!(decode_msgpack_number(&encode_msgpack_f64(0.25)), Some(0.25));
        assert_eq!(decode_msgpack_number(&[0xCA, 0x3E, 0x80, 0, 0]), Some(0.25));
        assert_eq!(decode_msgpack_number(&[0x05]), Some(5.0));
        assert_eq!(decode_msgpack_number(&[0xCD, 1, 0]), Some(256.0));
        assert_eq!(decode_msgpack_number(&[0xCB, 0]), None);
        assert_eq!(decode_msgpack_number(&[0xC0]), None);
    }

    proptest! {
        #[test]
        fn random_link_packets_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120), ctx in any::<u8>(), proof in any::<bool>()) {
            let mut p = handshake(Some(500));
            let id = p.responder.id();
            let kind = if proof { PacketType::Proof } else { PacketType::Data };
            let packet = Packet::new(kind, DestinationType::Link, id.into(), Context(ctx), data.clone());
            let _ = p.responder.receive(&packet, Timestamp::from_secs(200));
            let _ = p.initiator.receive(&packet, Timestamp::from_secs(200));
            let _ = LinkRequest::parse(&data);
            let _ = LinkProof::parse(&data);
        }
    }
}
