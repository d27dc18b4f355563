//! The storage part's tables and the binary form of its records.
//!
//! Chunks are keyed by the upload that wrote them, not by the object id: an object's id is only
//! known once its last byte has arrived, and rewriting gigabytes under a new key at commit would
//! double the I/O. The object record names its upload, so committing a Put is one small write.
//!
//! | table | key | value |
//! |---|---|---|
//! | [`OBJECTS`] | object id (32) | [`ObjectRecord`] |
//! | [`OBJECTS_BY_CREATED`] | `created_unix_ms` (u64 BE) ‖ object id | empty |
//! | [`CHUNKS`] | upload id (u64 BE) ‖ chunk index (u64 BE) | chunk bytes (1..=4096) |
//! | [`CHUNK_HASHES`] | upload id (u64 BE) ‖ chunk index (u64 BE) | chunk hash (32) |
//!
//! There is no table of uploads in progress: chunks whose upload id no object record names are
//! orphans, found at start-up by seeking from one upload id to the next in the chunk tables.

use mehr_storage::{ObjectId, chunk_count};

use crate::store::{
    CF_STORAGE_CHUNK_HASHES, CF_STORAGE_CHUNKS, CF_STORAGE_OBJECTS, CF_STORAGE_OBJECTS_BY_CREATED,
    CodecError, Key, Table, Value,
};

/// Committed objects.
pub const OBJECTS: Table<ObjectKey, ObjectRecord> = Table::new(CF_STORAGE_OBJECTS);
/// Committed objects in creation order.
pub const OBJECTS_BY_CREATED: Table<CreatedKey, IndexEntry> =
    Table::new(CF_STORAGE_OBJECTS_BY_CREATED);
/// Chunk bytes.
pub const CHUNKS: Table<ChunkKey, Vec<u8>> = Table::new(CF_STORAGE_CHUNKS);
/// Chunk hashes.
pub const CHUNK_HASHES: Table<ChunkKey, [u8; 32]> = Table::new(CF_STORAGE_CHUNK_HASHES);

/// Format version of [`ObjectRecord`]; a record with another version is reported as damaged
/// rather than misread.
const RECORD_VERSION: u8 = 1;

/// The longest object name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// The id of one upload: the chunks it writes are keyed by it. Allocated in increasing order,
/// above every upload id found in the store at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UploadId(pub u64);

/// The key of an object record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey(pub ObjectId);

impl Key for ObjectKey {
    fn encode_key(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        <[u8; 32]>::decode_key(bytes).map(|b| ObjectKey(ObjectId::from_bytes(b)))
    }
}

/// The key of one chunk (or chunk hash): its upload, then its index, both big-endian so an
/// upload's chunks sort together in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkKey {
    /// The upload that wrote the chunk.
    pub upload: UploadId,
    /// The chunk's index in its object.
    pub index: u64,
}

impl ChunkKey {
    /// The first key of `upload`; every key of the upload is in `first(u)..first(u + 1)`.
    pub fn first(upload: UploadId) -> Self {
        ChunkKey { upload, index: 0 }
    }

    /// The first key after every key of `upload`.
    pub fn end(upload: UploadId) -> Self {
        // Upload ids are allocated far below u64::MAX; saturating keeps the range non-empty.
        ChunkKey {
            upload: UploadId(upload.0.saturating_add(1)),
            index: 0,
        }
    }
}

impl Key for ChunkKey {
    fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.upload.0.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        let (upload, index) = bytes
            .split_first_chunk::<8>()
            .and_then(|(upload, rest)| Some((*upload, *rest.first_chunk::<8>()?)))
            .filter(|_| bytes.len() == 16)
            .ok_or_else(|| {
                CodecError::new(
                    "chunk key",
                    format!("expected 16 bytes, found {}", bytes.len()),
                )
            })?;
        Ok(ChunkKey {
            upload: UploadId(u64::from_be_bytes(upload)),
            index: u64::from_be_bytes(index),
        })
    }
}

/// The key of the creation-order index: creation time, then id for objects created in the same
/// millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedKey {
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The object.
    pub id: ObjectId,
}

impl Key for CreatedKey {
    fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.created_unix_ms.to_be_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        let (created, id) = bytes
            .split_first_chunk::<8>()
            .and_then(|(created, rest)| Some((*created, *rest.first_chunk::<32>()?)))
            .filter(|_| bytes.len() == 40)
            .ok_or_else(|| {
                CodecError::new(
                    "creation index key",
                    format!("expected 40 bytes, found {}", bytes.len()),
                )
            })?;
        Ok(CreatedKey {
            created_unix_ms: u64::from_be_bytes(created),
            id: ObjectId::from_bytes(id),
        })
    }
}

/// The (empty) value of an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry;

impl Value for IndexEntry {
    fn encode_value(&self) -> Vec<u8> {
        Vec::new()
    }
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.is_empty() {
            Ok(IndexEntry)
        } else {
            Err(CodecError::new(
                "index entry",
                format!("expected 0 bytes, found {}", bytes.len()),
            ))
        }
    }
}

/// A committed object.
///
/// Encoding: `version u8 = 1 ‖ length u64 ‖ created_unix_ms u64 ‖ upload u64 ‖ name_len u16 ‖
/// name` (little-endian, name in UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Size in bytes.
    pub length: u64,
    /// When it was committed, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The upload whose chunks hold the bytes.
    pub upload: UploadId,
    /// The label given at Put; empty for none.
    pub name: String,
}

impl ObjectRecord {
    /// Number of chunks.
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.length)
    }
}

impl Value for ObjectRecord {
    fn encode_value(&self) -> Vec<u8> {
        // Names are checked against MAX_NAME_BYTES before a record is made.
        let name = self.name.as_bytes();
        let mut out = Vec::with_capacity(27 + name.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.upload.0.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut reader = RecordReader::new("object record", bytes);
        reader.version()?;
        let length = reader.u64("length")?;
        let created_unix_ms = reader.u64("created_unix_ms")?;
        let upload = UploadId(reader.u64("upload")?);
        let name_len = usize::from(reader.u16("name length")?);
        if name_len > MAX_NAME_BYTES {
            return Err(reader.error(format!(
                "name length {name_len} exceeds {MAX_NAME_BYTES} bytes"
            )));
        }
        let name = String::from_utf8(reader.bytes("name", name_len)?.to_vec())
            .map_err(|_| reader.error("name is not UTF-8".into()))?;
        reader.finish()?;
        Ok(ObjectRecord {
            length,
            created_unix_ms,
            upload,
            name,
        })
    }
}

/// Bounds-checked little-endian reading of one record.
struct RecordReader<'a> {
    what: &'static str,
    bytes: &'a [u8],
}

impl<'a> RecordReader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        RecordReader { what, bytes }
    }

    fn error(&self, reason: String) -> CodecError {
        CodecError::new(self.what, reason)
    }

    fn bytes(&mut self, field: &str, len: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < len {
            return Err(self.error(format!(
                "truncated {field}: needs {len} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], CodecError> {
        let bytes = self.bytes(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn version(&mut self) -> Result<(), CodecError> {
        let [version] = self.array::<1>("version")?;
        if version != RECORD_VERSION {
            return Err(self.error(format!(
                "version {version}, this daemon reads version {RECORD_VERSION}"
            )));
        }
        Ok(())
    }

    fn u16(&mut self, field: &str) -> Result<u16, CodecError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, CodecError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn finish(self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} unexpected trailing bytes", self.bytes.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn object_record_round_trips_and_has_a_fixed_layout() {
        let record = ObjectRecord {
            length: 4097,
            created_unix_ms: 1_700_000_000_123,
            upload: UploadId(7),
            name: "photo.jpg".into(),
        };
        let bytes = record.encode_value();
        assert_eq!(bytes.len(), 27 + 9);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &4097u64.to_le_bytes());
        assert_eq!(&bytes[25..27], &9u16.to_le_bytes());
        assert_eq!(ObjectRecord::decode_value(&bytes).unwrap(), record);
        assert_eq!(record.chunk_count(), 2);
    }

    #[test]
    fn damaged_records_are_refused_with_the_reason() {
        let record = ObjectRecord {
            length: 1,
            created_unix_ms: 2,
            upload: UploadId(3),
            name: String::new(),
        };
        let mut bytes = record.encode_value();
        bytes.push(0);
        let err = ObjectRecord::decode_value(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("1 unexpected trailing bytes"),
            "{err}"
        );
        let err = ObjectRecord::decode_value(&bytes[..10]).unwrap_err();
        assert!(
            err.to_string().contains("truncated created_unix_ms"),
            "{err}"
        );
        bytes[0] = 9;
        let err = ObjectRecord::decode_value(&bytes).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn keys_sort_by_upload_then_index_and_by_time_then_id() {
        let a = ChunkKey {
            upload: UploadId(1),
            index: u64::MAX,
        };
        let b = ChunkKey {
            upload: UploadId(2),
            index: 0,
        };
        assert!(a.encode_key() < b.encode_key());
        assert_eq!(ChunkKey::end(UploadId(1)).encode_key(), b.encode_key());
        assert_eq!(ChunkKey::decode_key(&a.encode_key()).unwrap(), a);
        let early = CreatedKey {
            created_unix_ms: 5,
            id: ObjectId::from_bytes([0xff; 32]),
        };
        let late = CreatedKey {
            created_unix_ms: 6,
            id: ObjectId::from_bytes([0; 32]),
        };
        assert!(early.encode_key() < late.encode_key());
        assert_eq!(CreatedKey::decode_key(&late.encode_key()).unwrap(), late);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ObjectRecord::decode_value(&bytes);
            let _ = IndexEntry::decode_value(&bytes);
            let _ = ChunkKey::decode_key(&bytes);
            let _ = CreatedKey::decode_key(&bytes);
            let _ = ObjectKey::decode_key(&bytes);
        }

        #[test]
        fn records_round_trip(
            length in any::<u64>(),
            created in any::<u64>(),
            upload in any::<u64>(),
            name in "[a-zé ]{0,80}",
        ) {
            let record = ObjectRecord { length, created_unix_ms: created, upload: UploadId(upload), name };
            prop_assert_eq!(ObjectRecord::decode_value(&record.encode_value()).unwrap(), record);
        }
    }
}
