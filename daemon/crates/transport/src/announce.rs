//! Announces: a SINGLE destination telling the network its public key.
//!
//! ```text
//! data = public_key(64) ‖ name_hash(10) ‖ random_hash(10) ‖ [ratchet(32) iff context_flag]
//!        ‖ signature(64) ‖ app_data
//! signed = destination_hash ‖ public_key ‖ name_hash ‖ random_hash ‖ ratchet ‖ app_data
//! random_hash = 5 random bytes ‖ emission time, unix seconds, 5 bytes big-endian
//! ```
//!
//! A valid announce has a good signature and a destination hash equal to
//! `SHA-256(name_hash ‖ identity_hash)[..16]`. Announces travel unencrypted, are signed over
//! their app_data and are therefore never edited in flight (PROTOCOL.md decision 2).

use rand::{CryptoRng, RngCore};

use crate::destination::{DestinationName, destination_hash};
use crate::extension::{ExtensionError, MehrExtension};
use crate::hashes::{DestinationHash, NAME_HASH_LEN, NameHash};
use crate::identity::{
    Identity, IdentityError, PUBLIC_KEY_LEN, PrivateIdentity, SIGNATURE_LEN, X25519_KEY_LEN,
};
use crate::packet::{Context, DestinationType, Packet, PacketType};

/// Length of the random hash.
pub const RANDOM_HASH_LEN: usize = 10;
/// Shortest announce data: key, name hash, random hash and signature.
pub const MIN_ANNOUNCE_LEN: usize =
    PUBLIC_KEY_LEN + NAME_HASH_LEN + RANDOM_HASH_LEN + SIGNATURE_LEN;

/// Why a packet is not a valid announce.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    /// The packet is not of type ANNOUNCE.
    #[error("packet type {0:?} is not an announce")]
    NotAnnounce(PacketType),
    /// Only SINGLE destinations announce.
    #[error("announce for a {0:?} destination; only SINGLE destinations announce")]
    NotSingle(DestinationType),
    /// The data field is too short for its fields.
    #[error("announce data of {len} bytes is too short: {needed} bytes needed")]
    TooShort {
        /// Length of the data field.
        len: usize,
        /// Length its fields need.
        needed: usize,
    },
    /// The announced public key is not a valid key.
    #[error("announced public key: {0}")]
    Key(IdentityError),
    /// The signature does not verify over the announced fields.
    #[error("announce signature does not verify")]
    BadSignature,
    /// The destination hash does not follow from the name hash and identity.
    #[error("announce for {found} but its name hash and identity give {expected}")]
    DestinationMismatch {
        /// Hash derived from the announced name hash and key.
        expected: DestinationHash,
        /// Hash in the packet header.
        found: DestinationHash,
    },
}

/// A parsed announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The announced destination.
    pub destination: DestinationHash,
    /// The destination's identity.
    pub identity: Identity,
    /// Hash of the destination's name.
    pub name_hash: NameHash,
    /// 5 random bytes ‖ emission time (unix seconds, 5 bytes big-endian).
    pub random_hash: [u8; RANDOM_HASH_LEN],
    /// The destination's current ratchet public key, if it uses ratchets.
    pub ratchet: Option<[u8; X25519_KEY_LEN]>,
    /// Ed25519 signature by the identity.
    pub signature: [u8; SIGNATURE_LEN],
    /// Application data (empty if none). For `mehr.node` it carries the MehrExtension.
    pub app_data: Vec<u8>,
}

impl Announce {
    /// Builds and signs an announce for `name` bound to `identity`.
    pub fn create(
        identity: &PrivateIdentity,
        name: &DestinationName,
        app_data: &[u8],
        ratchet: Option<[u8; X25519_KEY_LEN]>,
        random: [u8; 5],
        emitted_unix_secs: u64,
    ) -> Self {
        let mut random_hash = [0u8; RANDOM_HASH_LEN];
        random_hash[..5].copy_from_slice(&random);
        random_hash[5..].copy_from_slice(&emitted_unix_secs.to_be_bytes()[3..]);
        let mut announce = Self {
            destination: name.single_hash(identity.public()),
            identity: identity.public().clone(),
            name_hash: name.name_hash(),
            random_hash,
            ratchet,
            signature: [0; SIGNATURE_LEN],
            app_data: app_data.to_vec(),
        };
        announce.signature = identity.sign(&announce.signed_bytes());
        announce
    }

    /// [`Announce::create`] with the random bytes drawn from `rng`.
    pub fn create_random<R: RngCore + CryptoRng + ?Sized>(
        identity: &PrivateIdentity,
        name: &DestinationName,
        app_data: &[u8],
        ratchet: Option<[u8; X25519_KEY_LEN]>,
        emitted_unix_secs: u64,
        rng: &mut R,
    ) -> Self {
        let mut random = [0u8; 5];
        rng.fill_bytes(&mut random);
        Self::create(identity, name, app_data, ratchet, random, emitted_unix_secs)
    }

    /// Parses an announce packet and validates its signature and destination hash.
    pub fn from_packet(packet: &Packet) -> Result<Self, AnnounceError> {
        if packet.packet_type != PacketType::Announce {
            return Err(AnnounceError::NotAnnounce(packet.packet_type));
        }
        if packet.destination_type != DestinationType::Single {
            return Err(AnnounceError::NotSingle(packet.destination_type));
        }
        let announce =
            Self::parse_unverified(packet.destination, packet.context_flag, &packet.data)?;
        announce.verify()?;
        Ok(announce)
    }

    /// Splits announce data into its fields without checking the signature.
    pub fn parse_unverified(
        destination: DestinationHash,
        has_ratchet: bool,
        data: &[u8],
    ) -> Result<Self, AnnounceError> {
        let needed = MIN_ANNOUNCE_LEN + if has_ratchet { X25519_KEY_LEN } else { 0 };
        if data.len() < needed {
            return Err(AnnounceError::TooShort {
                len: data.len(),
                needed,
            });
        }
        let (key, rest) = data.split_at(PUBLIC_KEY_LEN);
        let identity = Identity::from_slice(key).map_err(AnnounceError::Key)?;
        let (name_hash, rest) = rest.split_at(NAME_HASH_LEN);
        let (random_hash, rest) = rest.split_at(RANDOM_HASH_LEN);
        let (ratchet, rest) = if has_ratchet {
            let (r, rest) = rest.split_at(X25519_KEY_LEN);
            (Some(to_array(r)), rest)
        } else {
            (None, rest)
        };
        let (signature, app_data) = rest.split_at(SIGNATURE_LEN);
        Ok(Self {
            destination,
            identity,
            name_hash: NameHash(to_array(name_hash)),
            random_hash: to_array(random_hash),
            ratchet,
            signature: to_array(signature),
            app_data: app_data.to_vec(),
        })
    }

    /// Checks the signature, then that the destination hash follows from name and identity.
    pub fn verify(&self) -> Result<(), AnnounceError> {
        self.identity
            .verify(&self.signed_bytes(), &self.signature)
            .map_err(|_| AnnounceError::BadSignature)?;
        let expected = destination_hash(&self.name_hash, Some(&self.identity.hash()));
        if expected != self.destination {
            return Err(AnnounceError::DestinationMismatch {
                expected,
                found: self.destination,
            });
        }
        Ok(())
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(16 + MIN_ANNOUNCE_LEN + X25519_KEY_LEN + self.app_data.len());
        out.extend_from_slice(self.destination.as_bytes());
        out.extend_from_slice(&self.identity.public_key());
        out.extend_from_slice(self.name_hash.as_bytes());
        out.extend_from_slice(&self.random_hash);
        if let Some(r) = &self.ratchet {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&self.app_data);
        out
    }

    /// The packet data field.
    pub fn data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_ANNOUNCE_LEN + X25519_KEY_LEN + self.app_data.len());
        out.extend_from_slice(&self.identity.public_key());
        out.extend_from_slice(self.name_hash.as_bytes());
        out.extend_from_slice(&self.random_hash);
        if let Some(r) = &self.ratchet {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.app_data);
        out
    }

    /// A HEADER_1 announce packet with zero hops; context PATH_RESPONSE if it answers a path
    /// request.
    pub fn to_packet(&self, path_response: bool) -> Packet {
        let context = if path_response {
            Context::PATH_RESPONSE
        } else {
            Context::NONE
        };
        let mut packet = Packet::new(
            PacketType::Announce,
            DestinationType::Single,
            self.destination,
            context,
            self.data(),
        );
        packet.context_flag = self.ratchet.is_some();
        packet
    }

    /// Emission time the origin wrote into the random hash, in unix seconds.
    pub fn emitted_at(&self) -> u64 {
        emitted_at(&self.random_hash)
    }

    /// The MehrExtension in app_data, if this announces a `mehr.node` destination and its
    /// app_data starts with the extension magic byte. Other apps' app_data is never parsed.
    pub fn mehr_extension(&self) -> Option<Result<MehrExtension, ExtensionError>> {
        if self.name_hash != DestinationName::mehr_node().name_hash() {
            return None;
        }
        MehrExtension::from_app_data(&self.app_data).transpose()
    }
}

/// Emission time in a random hash: bytes 5..10, big-endian unix seconds.
pub fn emitted_at(random_hash: &[u8; RANDOM_HASH_LEN]) -> u64 {
    random_hash[5..]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn to_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::MEHR_EXTENSION_MAGIC;
    use proptest::prelude::*;

    fn origin() -> PrivateIdentity {
        PrivateIdentity::from_private_key(&[0x21; 64])
    }

    fn sample(ratchet: Option<[u8; 32]>) -> Announce {
        Announce::create(
            &origin(),
            &DestinationName::mehr_node(),
            b"app",
            ratchet,
            [1, 2, 3, 4, 5],
            1_700_000_000,
        )
    }

    #[test]
    fn layout_and_round_trip() {
        let a = sample(None);
        let p = a.to_packet(false);
        assert!(!p.context_flag);
        assert_eq!(p.data.len(), MIN_ANNOUNCE_LEN + 3);
        assert_eq!(&p.data[..64], &origin().public().public_key());
        assert_eq!(&p.data[74..79], &[1, 2, 3, 4, 5]);
        assert_eq!(&p.data[79..84], &1_700_000_000u64.to_be_bytes()[3..]);
        assert_eq!(&p.data[148..], b"app");
        let parsed = Announce::from_packet(&Packet::parse(&p.encode()).unwrap()).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.emitted_at(), 1_700_000_000);
    }

    #[test]
    fn ratchet_sets_context_flag_and_is_signed() {
        let a = sample(Some([9; 32]));
        let p = a.to_packet(true);
        assert!(p.context_flag);
        assert_eq!(p.context, Context::PATH_RESPONSE);
        assert_eq!(&p.data[84..116], &[9; 32]);
        assert_eq!(Announce::from_packet(&p).unwrap().ratchet, Some([9; 32]));
        let mut tampered = p.clone();
        tampered.data[90] ^= 1;
        assert_eq!(
            Announce::from_packet(&tampered),
            Err(AnnounceError::BadSignature)
        );
        // Without the flag the ratchet bytes are read as signature: invalid.
        let mut unflagged = p;
        unflagged.context_flag = false;
        assert_eq!(
            Announce::from_packet(&unflagged),
            Err(AnnounceError::BadSignature)
        );
    }

    #[test]
    fn tampered_app_data_and_wrong_destination_are_rejected() {
        let mut p = sample(None).to_packet(false);
        let last = p.data.len() - 1;
        p.data[last] ^= 1;
        assert_eq!(Announce::from_packet(&p), Err(AnnounceError::BadSignature));

        // A correctly signed announce whose destination is not derived from its identity.
        let id = origin();
        let mut a = sample(None);
        a.destination = DestinationHash([0; 16]);
        a.signature = id.sign(&a.signed_bytes());
        let expected = DestinationName::mehr_node().single_hash(id.public());
        assert_eq!(
            Announce::from_packet(&a.to_packet(false)),
            Err(AnnounceError::DestinationMismatch {
                expected,
                found: DestinationHash([0; 16])
            })
        );
    }

    #[test]
    fn mehr_extension_only_for_mehr_node() {
        let mut app_data = vec![MEHR_EXTENSION_MAGIC, 0x10];
        app_data.extend_from_slice(&[0; 7]);
        let a = Announce::create(
            &origin(),
            &DestinationName::mehr_node(),
            &app_data,
            None,
            [0; 5],
            1,
        );
        assert!(a.mehr_extension().unwrap().is_ok());
        let other = DestinationName::new("lxmf", &["delivery"]).unwrap();
        let b = Announce::create(&origin(), &other, &app_data, None, [0; 5], 1);
        assert!(b.mehr_extension().is_none());
    }

    #[test]
    fn short_data_is_rejected() {
        let mut p = sample(None).to_packet(false);
        p.data.truncate(100);
        assert_eq!(
            Announce::from_packet(&p),
            Err(AnnounceError::TooShort {
                len: 100,
                needed: MIN_ANNOUNCE_LEN
            })
        );
        p.packet_type = PacketType::Data;
        assert_eq!(
            Announce::from_packet(&p),
            Err(AnnounceError::NotAnnounce(PacketType::Data))
        );
    }

    proptest! {
        #[test]
        fn random_data_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), flag in any::<bool>()) {
            let mut p = Packet::new(PacketType::Announce, DestinationType::Single, DestinationHash([1; 16]), Context::NONE, data);
            p.context_flag = flag;
            prop_assert!(Announce::from_packet(&p).is_err());
        }
    }
}
