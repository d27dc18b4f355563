//! The Reticulum packet: header flags, hop count, optional transport id, destination,
//! context byte and data.
//!
//! ```text
//! byte 0  flags: ifac(b7) header_type(b6) context_flag(b5) transport_type(b4)
//!                destination_type(b3-2) packet_type(b1-0)
//! byte 1  hops
//! HEADER_1: destination(16) context(1) data
//! HEADER_2: transport_id(16) destination(16) context(1) data
//! ```
//!
//! The packet hash is SHA-256 over `(flags & 0x0F) ‖ destination ‖ context ‖ data`: hops,
//! transport id and the propagation bits are left out so the hash is the same on every hop.

use sha2::{Digest, Sha256};

use crate::hashes::{DestinationHash, IdentityHash, PacketHash, TRUNCATED_HASH_LEN};
use crate::token::{BLOCK_LEN, TOKEN_OVERHEAD};

/// Reticulum's network-wide packet MTU.
pub const MTU: usize = 500;
/// Header length without a transport id: flags, hops, destination, context.
pub const HEADER_1_LEN: usize = 2 + TRUNCATED_HASH_LEN + 1;
/// Header length with a transport id.
pub const HEADER_2_LEN: usize = 2 + 2 * TRUNCATED_HASH_LEN + 1;
/// Hop count at which a packet is no longer accepted or transported.
pub const MAX_HOPS: u8 = 128;
/// Largest data field of a packet that may be transported (room for a HEADER_2 and one IFAC
/// byte): 464.
pub const MDU: usize = MTU - HEADER_2_LEN - 1;
/// Largest plaintext that fits one packet encrypted to a SINGLE destination: 383.
pub const ENCRYPTED_MDU: usize = (MDU - TOKEN_OVERHEAD - 32) / BLOCK_LEN * BLOCK_LEN - 1;
/// Largest plaintext that fits one link packet at the default MTU: 431.
pub const LINK_MDU: usize = (MTU - 1 - HEADER_1_LEN - TOKEN_OVERHEAD) / BLOCK_LEN * BLOCK_LEN - 1;

/// What a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Payload for a destination or link.
    Data = 0,
    /// A destination announcing its identity.
    Announce = 1,
    /// The first packet of a link handshake.
    LinkRequest = 2,
    /// A delivery proof or a link request proof.
    Proof = 3,
}

/// Kind of the addressed destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DestinationType {
    /// Bound to an identity; data is encrypted to it.
    Single = 0,
    /// Shares a pre-shared symmetric key.
    Group = 1,
    /// Unencrypted and not bound to an identity.
    Plain = 2,
    /// An established link (the address is the link id).
    Link = 3,
}

/// Propagation bit: broadcast, or in transport towards the node named by the transport id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TransportType {
    /// Broadcast on the receiving medium.
    Broadcast = 0,
    /// In transport via a named transport node.
    Transport = 1,
}

/// The context byte: what the data of a packet means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Context(pub u8);

impl Context {
    /// Plain payload.
    pub const NONE: Context = Context(0x00);
    /// Part of a resource.
    pub const RESOURCE: Context = Context(0x01);
    /// Resource advertisement.
    pub const RESOURCE_ADV: Context = Context(0x02);
    /// Resource part request.
    pub const RESOURCE_REQ: Context = Context(0x03);
    /// Resource hashmap update.
    pub const RESOURCE_HMU: Context = Context(0x04);
    /// Resource proof.
    pub const RESOURCE_PRF: Context = Context(0x05);
    /// Resource initiator cancel.
    pub const RESOURCE_ICL: Context = Context(0x06);
    /// Resource receiver cancel.
    pub const RESOURCE_RCL: Context = Context(0x07);
    /// Cache request.
    pub const CACHE_REQUEST: Context = Context(0x08);
    /// Request over a link.
    pub const REQUEST: Context = Context(0x09);
    /// Response over a link.
    pub const RESPONSE: Context = Context(0x0A);
    /// Announce sent in answer to a path request.
    pub const PATH_RESPONSE: Context = Context(0x0B);
    /// Command.
    pub const COMMAND: Context = Context(0x0C);
    /// Command status.
    pub const COMMAND_STATUS: Context = Context(0x0D);
    /// Link channel data.
    pub const CHANNEL: Context = Context(0x0E);
    /// Link keepalive (0xFF request, 0xFE reply; not encrypted).
    pub const KEEPALIVE: Context = Context(0xFA);
    /// Link initiator identification.
    pub const LINKIDENTIFY: Context = Context(0xFB);
    /// Link close (encrypted link id).
    pub const LINKCLOSE: Context = Context(0xFC);
    /// Proof of a link packet.
    pub const LINKPROOF: Context = Context(0xFD);
    /// Link round-trip time report.
    pub const LRRTT: Context = Context(0xFE);
    /// Link request proof.
    pub const LRPROOF: Context = Context(0xFF);
}

/// Why bytes are not a packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the header its flags announce plus one data byte.
    #[error("packet of {len} bytes is too short: its header needs {needed} bytes plus data")]
    TooShort {
        /// Length of the input.
        len: usize,
        /// Header length the flags call for.
        needed: usize,
    },
    /// The interface access code flag is set; this node runs no IFAC-protected interfaces.
    #[error("packet has the IFAC flag set, but interface access codes are not supported")]
    IfacFlag,
    /// The hop count has reached the transport limit.
    #[error("packet hop count {hops} is at or above the limit of {MAX_HOPS}")]
    HopLimit {
        /// Hop count read from the packet.
        hops: u8,
    },
    /// The encoded packet is larger than the MTU.
    #[error("packet of {len} bytes exceeds the MTU of {mtu} bytes")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// MTU it was checked against.
        mtu: usize,
    },
}

/// A parsed packet. The header type follows from `transport_id`: `Some` is HEADER_2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// What the packet is.
    pub packet_type: PacketType,
    /// Kind of the addressed destination.
    pub destination_type: DestinationType,
    /// Propagation bit.
    pub transport_type: TransportType,
    /// Context flag (b5): set on announces that carry a ratchet key.
    pub context_flag: bool,
    /// Hops travelled so far.
    pub hops: u8,
    /// Transport node that should forward this packet (HEADER_2).
    pub transport_id: Option<IdentityHash>,
    /// Destination hash, link id, or truncated hash of a proved packet.
    pub destination: DestinationHash,
    /// Context byte.
    pub context: Context,
    /// Data field (ciphertext for encrypted packets).
    pub data: Vec<u8>,
}

impl Packet {
    /// A HEADER_1 broadcast packet with zero hops and the context flag clear.
    pub fn new(
        packet_type: PacketType,
        destination_type: DestinationType,
        destination: DestinationHash,
        context: Context,
        data: Vec<u8>,
    ) -> Self {
        Self {
            packet_type,
            destination_type,
            transport_type: TransportType::Broadcast,
            context_flag: false,
            hops: 0,
            transport_id: None,
            destination,
            context,
            data,
        }
    }

    /// Parses a packet, checking lengths, the IFAC flag and the hop limit. An empty data
    /// field is malformed, as in Reticulum.
    pub fn parse(bytes: &[u8]) -> Result<Self, PacketError> {
        let (&flags, rest) = bytes.split_first().ok_or(PacketError::TooShort {
            len: 0,
            needed: HEADER_1_LEN,
        })?;
        if flags & 0x80 != 0 {
            return Err(PacketError::IfacFlag);
        }
        let header_2 = flags & 0x40 != 0;
        let needed = if header_2 { HEADER_2_LEN } else { HEADER_1_LEN };
        if bytes.len() <= needed {
            return Err(PacketError::TooShort {
                len: bytes.len(),
                needed,
            });
        }
        let (&hops, rest) = rest.split_first().ok_or(PacketError::TooShort {
            len: bytes.len(),
            needed,
        })?;
        if hops >= MAX_HOPS {
            return Err(PacketError::HopLimit { hops });
        }
        let (transport_id, rest) = if header_2 {
            let (id, rest) = rest.split_at(TRUNCATED_HASH_LEN);
            (IdentityHash::from_slice(id), rest)
        } else {
            (None, rest)
        };
        let (dest, rest) = rest.split_at(TRUNCATED_HASH_LEN);
        let destination = DestinationHash::from_slice(dest).ok_or(PacketError::TooShort {
            len: bytes.len(),
            needed,
        })?;
        let (&context, data) = rest.split_first().ok_or(PacketError::TooShort {
            len: bytes.len(),
            needed,
        })?;
        Ok(Self {
            packet_type: match flags & 0b11 {
                0 => PacketType::Data,
                1 => PacketType::Announce,
                2 => PacketType::LinkRequest,
                _ => PacketType::Proof,
            },
            destination_type: match (flags >> 2) & 0b11 {
                0 => DestinationType::Single,
                1 => DestinationType::Group,
                2 => DestinationType::Plain,
                _ => DestinationType::Link,
            },
            transport_type: if flags & 0x10 != 0 {
                TransportType::Transport
            } else {
                TransportType::Broadcast
            },
            context_flag: flags & 0x20 != 0,
            hops,
            transport_id,
            destination,
            context: Context(context),
            data: data.to_vec(),
        })
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        (u8::from(self.transport_id.is_some()) << 6)
            | (u8::from(self.context_flag) << 5)
            | ((self.transport_type as u8) << 4)
            | ((self.destination_type as u8) << 2)
            | self.packet_type as u8
    }

    /// Length of the header.
    pub fn header_len(&self) -> usize {
        if self.transport_id.is_some() {
            HEADER_2_LEN
        } else {
            HEADER_1_LEN
        }
    }

    /// Length of the encoded packet.
    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.data.len()
    }

    /// Serializes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.flags());
        out.push(self.hops);
        if let Some(id) = &self.transport_id {
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(self.destination.as_bytes());
        out.push(self.context.0);
        out.extend_from_slice(&self.data);
        out
    }

    /// Fails if the encoded packet would exceed `mtu`.
    pub fn check_mtu(&self, mtu: usize) -> Result<(), PacketError> {
        let len = self.encoded_len();
        if len > mtu {
            Err(PacketError::TooLarge { len, mtu })
        } else {
            Ok(())
        }
    }

    /// The bytes the packet hash covers: `(flags & 0x0F) ‖ destination ‖ context ‖ data`.
    pub fn hashable_part(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + TRUNCATED_HASH_LEN + 1 + self.data.len());
        out.push(self.flags() & 0x0F);
        out.extend_from_slice(self.destination.as_bytes());
        out.push(self.context.0);
        out.extend_from_slice(&self.data);
        out
    }

    /// `Blake3(destination ‖ context ‖ data)`: a hash that is the same at every hop (the
    /// header's hop count and transport id are left out), so the relays of one packet and its
    /// sender name it alike — the key of relay receipts and of the relay lottery (decision 4).
    pub fn relay_hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.destination.as_bytes());
        hasher.update(&[self.context.0]);
        hasher.update(&self.data);
        *hasher.finalize().as_bytes()
    }

    /// SHA-256 of the hashable part.
    pub fn hash(&self) -> PacketHash {
        let digest = Sha256::new()
            .chain_update([self.flags() & 0x0F])
            .chain_update(self.destination.as_bytes())
            .chain_update([self.context.0])
            .chain_update(&self.data)
            .finalize();
        PacketHash(digest.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashes::sha256;
    use proptest::prelude::*;

    fn sample() -> Packet {
        Packet::new(
            PacketType::Data,
            DestinationType::Single,
            DestinationHash([0xAB; 16]),
            Context::REQUEST,
            b"payload".to_vec(),
        )
    }

    #[test]
    fn derived_sizes_match_reticulum() {
        assert_eq!(HEADER_1_LEN, 19);
        assert_eq!(HEADER_2_LEN, 35);
        assert_eq!(MDU, 464);
        assert_eq!(ENCRYPTED_MDU, 383);
        assert_eq!(LINK_MDU, 431);
    }

    #[test]
    fn header_1_layout() {
        let p = sample();
        let bytes = p.encode();
        assert_eq!(bytes[0], 0b0000_0000);
        assert_eq!(bytes[1], 0);
        assert_eq!(&bytes[2..18], &[0xAB; 16]);
        assert_eq!(bytes[18], 0x09);
        assert_eq!(&bytes[19..], b"payload");
        assert_eq!(Packet::parse(&bytes).unwrap(), p);
    }

    #[test]
    fn header_2_layout_and_flag_bits() {
        let mut p = sample();
        p.packet_type = PacketType::Proof;
        p.destination_type = DestinationType::Link;
        p.transport_type = TransportType::Transport;
        p.context_flag = true;
        p.hops = 5;
        p.transport_id = Some(IdentityHash([0x11; 16]));
        let bytes = p.encode();
        assert_eq!(bytes[0], 0b0111_1111);
        assert_eq!(bytes[1], 5);
        assert_eq!(&bytes[2..18], &[0x11; 16]);
        assert_eq!(&bytes[18..34], &[0xAB; 16]);
        assert_eq!(Packet::parse(&bytes).unwrap(), p);
    }

    #[test]
    fn hash_ignores_hops_transport_id_and_propagation_bits() {
        let p = sample();
        let mut moved = p.clone();
        moved.hops = 9;
        moved.transport_id = Some(IdentityHash([3; 16]));
        moved.transport_type = TransportType::Transport;
        moved.context_flag = true;
        assert_eq!(p.hash(), moved.hash());
        assert_eq!(p.hash().0, sha256(&p.hashable_part()));
        let mut other = p.clone();
        other.destination_type = DestinationType::Plain;
        assert_ne!(p.hash(), other.hash());
    }

    #[test]
    fn rejects_malformed_input() {
        let bytes = sample().encode();
        assert_eq!(
            Packet::parse(&bytes[..19]),
            Err(PacketError::TooShort {
                len: 19,
                needed: 19
            })
        );
        let mut ifac = bytes.clone();
        ifac[0] |= 0x80;
        assert_eq!(Packet::parse(&ifac), Err(PacketError::IfacFlag));
        let mut hops = bytes.clone();
        hops[1] = 128;
        assert_eq!(
            Packet::parse(&hops),
            Err(PacketError::HopLimit { hops: 128 })
        );
        let mut h2 = bytes;
        h2[0] |= 0x40;
        assert_eq!(
            Packet::parse(&h2),
            Err(PacketError::TooShort {
                len: 26,
                needed: 35
            })
        );
        assert!(Packet::parse(&[]).is_err());
    }

    #[test]
    fn mtu_check() {
        let mut p = sample();
        p.data = vec![0; MTU - HEADER_1_LEN];
        assert!(p.check_mtu(MTU).is_ok());
        p.data.push(0);
        assert_eq!(
            p.check_mtu(MTU),
            Err(PacketError::TooLarge { len: 501, mtu: 500 })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_valid_packets_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Packet::parse(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
            }
        }
    }
}
