//! What remote storage keeps in RocksDB.
//!
//! | table | side | key | value |
//! |---|---|---|---|
//! | [`REMOTE_OBJECTS`] | consumer | object id (32) | [`RemoteRecord`] (version byte ‖ postcard) |
//! | [`HELD_SHARDS`] | provider | shard root (32) ‖ consumer node id (16) | [`HeldShard`] (32 bytes LE) |
//!
//! A consumer's record is written once, in one synced commit, after every shard is stored on
//! its provider, so an object whose replication was interrupted is never listed. A provider
//! records a holder when the shard is committed (or was already stored when offered).

use serde::{Deserialize, Serialize};

use crate::store::{CF_STORAGE_HELD_SHARDS, CF_STORAGE_REMOTE_OBJECTS, CodecError, Table, Value};

/// Objects this node placed on providers.
pub const REMOTE_OBJECTS: Table<[u8; 32], RemoteRecord> = Table::new(CF_STORAGE_REMOTE_OBJECTS);
/// Shards this node holds for consumers.
pub const HELD_SHARDS: Table<Vec<u8>, HeldShard> = Table::new(CF_STORAGE_HELD_SHARDS);

/// Version 2 added [`RemoteRecord::request_id`]; version 1 records still read (without one).
const RECORD_VERSION: u8 = 2;
const RECORD_VERSION_1: u8 = 1;

/// The key of a held shard: its root, then its consumer (so every holder of one root sorts
/// together).
pub fn held_key(root: &[u8; 32], consumer: &[u8; 16]) -> Vec<u8> {
    let mut key = Vec::with_capacity(48);
    key.extend_from_slice(root);
    key.extend_from_slice(consumer);
    key
}

/// One object placed on providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    /// The encoded `ErasureManifest` (object id, length, code, shard roots).
    pub manifest: Vec<u8>,
    /// The object's label.
    pub name: String,
    /// When the replication finished, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// When the storage agreement ends, seconds since the Unix epoch.
    pub expires_unix_s: u64,
    /// The agreed price, μMHR per byte per day.
    pub price_per_byte_day_umhr: u64,
    /// Shard `i` is held by `placements[i]`.
    pub placements: Vec<Placement>,
    /// Providers given for repairs, not holding a shard of this object.
    pub spares: Vec<[u8; 16]>,
    /// The caller's idempotency key of the ReplicateObject call that placed it (empty: none):
    /// a retry with the same key answers with this placement instead of ALREADY_EXISTS.
    pub request_id: Vec<u8>,
}

/// A version 1 record: [`RemoteRecord`] before it had a request id.
#[derive(Deserialize)]
struct RemoteRecordV1 {
    manifest: Vec<u8>,
    name: String,
    created_unix_ms: u64,
    expires_unix_s: u64,
    price_per_byte_day_umhr: u64,
    placements: Vec<Placement>,
    spares: Vec<[u8; 16]>,
}

impl From<RemoteRecordV1> for RemoteRecord {
    fn from(v1: RemoteRecordV1) -> Self {
        RemoteRecord {
            manifest: v1.manifest,
            name: v1.name,
            created_unix_ms: v1.created_unix_ms,
            expires_unix_s: v1.expires_unix_s,
            price_per_byte_day_umhr: v1.price_per_byte_day_umhr,
            placements: v1.placements,
            spares: v1.spares,
            request_id: Vec::new(),
        }
    }
}

/// Where one shard is and how its challenges went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The provider's node id.
    pub provider: [u8; 16],
    /// Failed challenges since the last pass.
    pub consecutive_failures: u32,
    /// When it was last challenged, ms since the Unix epoch (0: never).
    pub last_challenge_unix_ms: u64,
    /// Challenges passed.
    pub passed: u64,
    /// Challenges failed.
    pub failed: u64,
    /// What verified storage has earned the provider so far, μMHR (bytes × days × price,
    /// counted up to the last passed challenge).
    pub owed_umhr: u64,
    /// Of what was owed, what has been paid through the ledger's channel with the provider.
    pub paid_umhr: u64,
    /// Storage is counted as owed up to this time, ms since the Unix epoch.
    pub accounted_until_unix_ms: u64,
    /// Why the last challenge failed; empty after a pass.
    pub last_error: String,
}

impl Placement {
    /// A fresh placement on `provider` from `now_unix_ms`.
    pub fn new(provider: [u8; 16], now_unix_ms: u64) -> Self {
        Placement {
            provider,
            consecutive_failures: 0,
            last_challenge_unix_ms: 0,
            passed: 0,
            failed: 0,
            owed_umhr: 0,
            paid_umhr: 0,
            accounted_until_unix_ms: now_unix_ms,
            last_error: String::new(),
        }
    }
}

impl Value for RemoteRecord {
    fn encode_value(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        // Serialising owned, plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest)
                .map_err(|e| CodecError::new("remote object record", e.to_string())),
            Some((&RECORD_VERSION_1, rest)) => postcard::from_bytes::<RemoteRecordV1>(rest)
                .map(RemoteRecord::from)
                .map_err(|e| CodecError::new("remote object record", e.to_string())),
            Some((version, _)) => Err(CodecError::new(
                "remote object record",
                format!("version {version}, expected {RECORD_VERSION}"),
            )),
            None => Err(CodecError::new("remote object record", "empty")),
        }
    }
}

/// A shard held for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldShard {
    /// The shard's length.
    pub length: u64,
    /// When the agreement ends, seconds since the Unix epoch.
    pub expires_unix_s: u64,
    /// The agreed price, μMHR per byte per day.
    pub price_per_byte_day_umhr: u64,
    /// When it was stored, ms since the Unix epoch.
    pub stored_unix_ms: u64,
}

impl Value for HeldShard {
    fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.expires_unix_s.to_le_bytes());
        out.extend_from_slice(&self.price_per_byte_day_umhr.to_le_bytes());
        out.extend_from_slice(&self.stored_unix_ms.to_le_bytes());
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let fields: &[u8; 32] = bytes.try_into().map_err(|_| {
            CodecError::new(
                "held shard",
                format!("expected 32 bytes, got {}", bytes.len()),
            )
        })?;
        let field = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&fields[i * 8..i * 8 + 8]);
            u64::from_le_bytes(word)
        };
        Ok(HeldShard {
            length: field(0),
            expires_unix_s: field(1),
            price_per_byte_day_umhr: field(2),
            stored_unix_ms: field(3),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let record = RemoteRecord {
            manifest: vec![1, 2, 3],
            name: "photo".into(),
            created_unix_ms: 5,
            expires_unix_s: 6,
            price_per_byte_day_umhr: 7,
            placements: vec![Placement::new([9; 16], 10)],
            spares: vec![[8; 16]],
            request_id: b"retry-me".to_vec(),
        };
        assert_eq!(
            RemoteRecord::decode_value(&record.encode_value()).unwrap(),
            record
        );
        // A record written before request ids (version 1) reads without one.
        #[derive(Serialize)]
        struct V1<'a> {
            manifest: &'a [u8],
            name: &'a str,
            created_unix_ms: u64,
            expires_unix_s: u64,
            price_per_byte_day_umhr: u64,
            placements: &'a [Placement],
            spares: &'a [[u8; 16]],
        }
        let mut v1 = vec![RECORD_VERSION_1];
        v1.extend(
            postcard::to_allocvec(&V1 {
                manifest: &record.manifest,
                name: &record.name,
                created_unix_ms: 5,
                expires_unix_s: 6,
                price_per_byte_day_umhr: 7,
                placements: &record.placements,
                spares: &record.spares,
            })
            .unwrap(),
        );
        let old = RemoteRecord::decode_value(&v1).unwrap();
        assert!(old.request_id.is_empty());
        assert_eq!(old.placements, record.placements);
        assert!(RemoteRecord::decode_value(&[]).is_err());
        assert!(RemoteRecord::decode_value(&[3, 0]).is_err());
        let held = HeldShard {
            length: 1,
            expires_unix_s: 2,
            price_per_byte_day_umhr: 3,
            stored_unix_ms: 4,
        };
        assert_eq!(HeldShard::decode_value(&held.encode_value()).unwrap(), held);
        assert!(HeldShard::decode_value(&[0; 31]).is_err());
    }
}
