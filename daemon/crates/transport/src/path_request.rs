//! Path requests: asking the network to announce a destination again.
//!
//! A path request is a DATA packet to the PLAIN destination `rnstransport.path.request`,
//! HEADER_1, broadcast. Its data is the wanted destination hash (16), then — when a transport
//! node sends it — the requester's transport id (16), then a tag of up to 16 bytes that makes
//! the request unique. Reticulum ignores tagless requests. Data of 17..=32 bytes is read as
//! destination ‖ tag; longer data as destination ‖ transport id ‖ tag (tag cut to 16 bytes).
//! The answer is the destination's announce with context PATH_RESPONSE.

use rand::{CryptoRng, RngCore};

use crate::destination::DestinationName;
use crate::hashes::{DestinationHash, IdentityHash, TRUNCATED_HASH_LEN};
use crate::packet::{Context, DestinationType, Packet, PacketType};

/// Longest tag that is kept; longer tags are cut, as Reticulum does.
pub const MAX_TAG_LEN: usize = 16;

/// Why packet data is not a usable path request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathRequestError {
    /// Shorter than a destination hash.
    #[error("path request of {len} bytes is shorter than a destination hash")]
    TooShort {
        /// Length of the data.
        len: usize,
    },
    /// No tag follows the destination hash.
    #[error("path request carries no tag")]
    Tagless,
}

/// A parsed path request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRequest {
    /// The destination a path is wanted for.
    pub destination: DestinationHash,
    /// The requesting transport node, if a transport node sent it.
    pub requesting_transport: Option<IdentityHash>,
    /// Uniqueness tag, 1 to 16 bytes.
    pub tag: Vec<u8>,
}

impl PathRequest {
    /// A request with a fresh 16-byte random tag.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        destination: DestinationHash,
        requesting_transport: Option<IdentityHash>,
        rng: &mut R,
    ) -> Self {
        let mut tag = vec![0u8; MAX_TAG_LEN];
        rng.fill_bytes(&mut tag);
        Self {
            destination,
            requesting_transport,
            tag,
        }
    }

    /// Reads path request data.
    pub fn parse(data: &[u8]) -> Result<Self, PathRequestError> {
        let (dest, rest) = data
            .split_at_checked(TRUNCATED_HASH_LEN)
            .ok_or(PathRequestError::TooShort { len: data.len() })?;
        let destination = DestinationHash::from_slice(dest)
            .ok_or(PathRequestError::TooShort { len: data.len() })?;
        let (requesting_transport, tag) = if rest.len() > TRUNCATED_HASH_LEN {
            let (id, tag) = rest.split_at(TRUNCATED_HASH_LEN);
            (IdentityHash::from_slice(id), tag)
        } else {
            (None, rest)
        };
        if tag.is_empty() {
            return Err(PathRequestError::Tagless);
        }
        Ok(Self {
            destination,
            requesting_transport,
            tag: tag[..tag.len().min(MAX_TAG_LEN)].to_vec(),
        })
    }

    /// The data field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * TRUNCATED_HASH_LEN + self.tag.len());
        out.extend_from_slice(self.destination.as_bytes());
        if let Some(id) = &self.requesting_transport {
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&self.tag);
        out
    }

    /// The broadcast packet carrying this request.
    pub fn to_packet(&self) -> Packet {
        Packet::new(
            PacketType::Data,
            DestinationType::Plain,
            path_request_destination(),
            Context::NONE,
            self.encode(),
        )
    }

    /// Destination ‖ tag: what duplicate requests share.
    pub fn unique_key(&self) -> Vec<u8> {
        let mut key = self.destination.as_bytes().to_vec();
        key.extend_from_slice(&self.tag);
        key
    }
}

/// Hash of the PLAIN destination `rnstransport.path.request`.
pub fn path_request_destination() -> DestinationHash {
    DestinationName::path_request().plain_hash()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn endpoint_and_transport_forms() {
        let endpoint = PathRequest {
            destination: DestinationHash([1; 16]),
            requesting_transport: None,
            tag: vec![2; 16],
        };
        let bytes = endpoint.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(PathRequest::parse(&bytes).unwrap(), endpoint);

        let transport = PathRequest {
            destination: DestinationHash([1; 16]),
            requesting_transport: Some(IdentityHash([3; 16])),
            tag: vec![4; 16],
        };
        let bytes = transport.encode();
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[16..32], &[3; 16]);
        assert_eq!(PathRequest::parse(&bytes).unwrap(), transport);

        let packet = transport.to_packet();
        assert_eq!(packet.destination_type, DestinationType::Plain);
        assert_eq!(
            packet.destination,
            DestinationName::path_request().plain_hash()
        );
    }

    #[test]
    fn short_tags_long_tags_and_no_tag() {
        let mut data = vec![1u8; 16];
        assert_eq!(PathRequest::parse(&data), Err(PathRequestError::Tagless));
        data.extend_from_slice(&[9; 5]);
        let short = PathRequest::parse(&data).unwrap();
        assert_eq!((short.requesting_transport, short.tag.len()), (None, 5));
        data.extend_from_slice(&[8; 40]);
        let long = PathRequest::parse(&data).unwrap();
        assert!(long.requesting_transport.is_some());
        assert_eq!(long.tag.len(), 16);
        assert_eq!(
            PathRequest::parse(&[0; 3]),
            Err(PathRequestError::TooShort { len: 3 })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = PathRequest::parse(&bytes);
        }
    }
}
