//! Identifiers shared by every record: node ids, channel ids and the two sides of a channel.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Length of a node id and of a channel id, in bytes.
pub const ID_LEN: usize = 16;

/// A node's 16-byte identity hash (the caller maps it to the node's Ed25519 key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; ID_LEN]);

/// A payment channel's 16-byte id: `Blake3("mehr/channel" ‖ a ‖ b ‖ nonce)[..16]` (decision 3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChannelId(pub [u8; ID_LEN]);

/// Domain string of the channel id derivation, fixed by decision 3.
pub const CHANNEL_ID_DOMAIN: &[u8] = b"mehr/channel";

/// Length of the caller-chosen nonce that makes channel ids between one pair unique.
pub const CHANNEL_NONCE_LEN: usize = 16;

impl ChannelId {
    /// Derives the id of a channel opened by `a` towards `b` with a random `nonce`.
    ///
    /// The opener is always party A, so the derivation is not symmetric on purpose: two
    /// simultaneous opens between one pair yield two distinct channels instead of a clash.
    pub fn derive(a: &NodeId, b: &NodeId, nonce: &[u8; CHANNEL_NONCE_LEN]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(CHANNEL_ID_DOMAIN);
        hasher.update(&a.0);
        hasher.update(&b.0);
        hasher.update(nonce);
        let digest = hasher.finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest.as_bytes()[..ID_LEN]);
        Self(id)
    }
}

/// One side of a bilateral channel. A is the opener, B the acceptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Party {
    /// The party that opened the channel (`party_a` in the state).
    A,
    /// The party that accepted the channel (`party_b` in the state).
    B,
}

impl Party {
    /// The other side of the channel.
    pub fn other(self) -> Self {
        match self {
            Party::A => Party::B,
            Party::B => Party::A,
        }
    }

    /// Wire code: 0 for A, 1 for B.
    pub fn code(self) -> u8 {
        match self {
            Party::A => 0,
            Party::B => 1,
        }
    }

    /// Parses a wire code; `None` for anything but 0 or 1.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Party::A),
            1 => Some(Party::B),
            _ => None,
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::A => f.write_str("party A"),
            Party::B => f.write_str("party B"),
        }
    }
}

macro_rules! hex_id {
    ($name:ident, $what:literal) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl From<[u8; ID_LEN]> for $name {
            fn from(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }
        }

        // Human-readable formats (JSON, TOML) get lowercase hex so ids can be map keys;
        // binary formats get the raw 16 bytes.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&hex::encode(self.0))
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct IdVisitor;
                impl<'de> Visitor<'de> for IdVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} as 32 hex characters or 16 bytes", $what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        let mut out = [0u8; ID_LEN];
                        hex::decode_to_slice(v, &mut out).map_err(|e| {
                            E::custom(format!("{}: expected 32 hex characters: {e}", $what))
                        })?;
                        Ok($name(out))
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        let out: [u8; ID_LEN] = v.try_into().map_err(|_| {
                            E::custom(format!(
                                "{}: expected {} bytes, got {}",
                                $what,
                                ID_LEN,
                                v.len()
                            ))
                        })?;
                        Ok($name(out))
                    }
                    fn visit_seq<A: de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<$name, A::Error> {
                        let mut out = [0u8; ID_LEN];
                        for (i, slot) in out.iter_mut().enumerate() {
                            *slot = seq
                                .next_element()?
                                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                        }
                        if seq.next_element::<u8>()?.is_some() {
                            return Err(de::Error::invalid_length(ID_LEN + 1, &self));
                        }
                        Ok($name(out))
                    }
                }
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(IdVisitor)
                } else {
                    deserializer.deserialize_bytes(IdVisitor)
                }
            }
        }
    };
}

hex_id!(NodeId, "node id");
hex_id!(ChannelId, "channel id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_depends_on_every_input() {
        let a = NodeId([1; 16]);
        let b = NodeId([2; 16]);
        let base = ChannelId::derive(&a, &b, &[0; 16]);
        assert_ne!(base, ChannelId::derive(&b, &a, &[0; 16]));
        assert_ne!(base, ChannelId::derive(&a, &b, &[1; 16]));
        let mut preimage = Vec::new();
        preimage.extend_from_slice(b"mehr/channel");
        preimage.extend_from_slice(&[1; 16]);
        preimage.extend_from_slice(&[2; 16]);
        preimage.extend_from_slice(&[0; 16]);
        assert_eq!(base.0, blake3::hash(&preimage).as_bytes()[..16]);
    }

    #[test]
    fn ids_round_trip_through_json_as_hex() {
        let id = NodeId([0xab; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"abcd\"").is_err());
    }

    #[test]
    fn party_codes_round_trip() {
        for p in [Party::A, Party::B] {
            assert_eq!(Party::from_code(p.code()), Some(p));
            assert_eq!(p.other().other(), p);
        }
        assert_eq!(Party::from_code(2), None);
    }
}
