//! Every column family the daemon uses. A part that needs a new kind of record adds its column
//! family here and declares its typed [`Table`] next to the code that owns the records: the
//! store owns the names (it opens them all), the parts own what is in them, and the store
//! never imports a part.

use rocksdb::{DBCompressionType, Options};

use super::Table;

/// Small node-wide facts: the identity hash the data dir belongs to, the schema version.
pub(super) const CF_META: &str = "meta";

// The storage part's records (`crate::storage::records`).
/// Committed objects by id.
pub(crate) const CF_STORAGE_OBJECTS: &str = "storage_objects";
/// The objects in creation order (an index of `storage_objects`).
pub(crate) const CF_STORAGE_OBJECTS_BY_CREATED: &str = "storage_objects_by_created";
/// Chunk bytes by (upload id, chunk index).
pub(crate) const CF_STORAGE_CHUNKS: &str = "storage_chunks";
/// Chunk hashes by (upload id, chunk index): apart from the bytes, so that proofs and
/// verification read 32 bytes per chunk, not 4 KiB.
pub(crate) const CF_STORAGE_CHUNK_HASHES: &str = "storage_chunk_hashes";
/// Objects placed on providers, by id (`crate::storage::remote::records`).
pub(crate) const CF_STORAGE_REMOTE_OBJECTS: &str = "storage_remote_objects";
/// Shards held for other nodes, by (shard root, consumer).
pub(crate) const CF_STORAGE_HELD_SHARDS: &str = "storage_held_shards";

// The ledger part's records (`crate::ledger::records`).
/// Payment channels this node is a party of.
pub(crate) const CF_LEDGER_CHANNELS: &str = "ledger_channels";
/// Channel opens this node proposed, not answered yet.
pub(crate) const CF_LEDGER_OPENS: &str = "ledger_opens";
/// Settlement records of the CRDT ledger.
pub(crate) const CF_LEDGER_RECORDS: &str = "ledger_records";
/// Relay tickets this node paid.
pub(crate) const CF_LEDGER_REDEEMED: &str = "ledger_redeemed";
/// Peers this node trusts.
pub(crate) const CF_LEDGER_TRUST: &str = "ledger_trust";
/// The adopted epoch snapshot and the activation that carried it.
pub(crate) const CF_LEDGER_EPOCHS: &str = "ledger_epochs";
/// Idempotency keys of Pay and OpenChannel (`crate::ledger::requests`).
pub(crate) const CF_LEDGER_REQUESTS: &str = "ledger_requests";
/// What this node owes under market agreements, paid in the background (`crate::ledger::payments`).
pub(crate) const CF_LEDGER_DUES: &str = "ledger_dues";

// The market's records (`crate::market::records`).
/// Agreements by the hash of their signed request.
pub(crate) const CF_MARKET_AGREEMENTS: &str = "market_agreements";
/// The market's named values (settings, reputation, the advert's sequence).
pub(crate) const CF_MARKET_STATE: &str = "market_state";

// The compute part's records (`crate::compute::modules`).
/// Deployed WASM modules by id.
pub(crate) const CF_COMPUTE_MODULES: &str = "compute_modules";

/// Every column family, opened (and created if missing) by [`super::Store::open`].
pub const COLUMN_FAMILIES: &[&str] = &[
    CF_META,
    CF_COMPUTE_MODULES,
    CF_STORAGE_OBJECTS,
    CF_STORAGE_OBJECTS_BY_CREATED,
    CF_STORAGE_CHUNKS,
    CF_STORAGE_CHUNK_HASHES,
    CF_STORAGE_REMOTE_OBJECTS,
    CF_STORAGE_HELD_SHARDS,
    CF_LEDGER_CHANNELS,
    CF_LEDGER_OPENS,
    CF_LEDGER_RECORDS,
    CF_LEDGER_REDEEMED,
    CF_LEDGER_TRUST,
    CF_LEDGER_EPOCHS,
    CF_LEDGER_REQUESTS,
    CF_LEDGER_DUES,
    CF_MARKET_AGREEMENTS,
    CF_MARKET_STATE,
];

/// Node-wide facts, keyed by name.
pub const META: Table<String, Vec<u8>> = Table::new(CF_META);

/// The RocksDB options of column family `name`. Most use the defaults; bulk data gets its own.
pub(super) fn column_family_options(name: &str) -> Options {
    let mut options = Options::default();
    if name == CF_STORAGE_CHUNKS {
        // Chunk bytes are written once, read whole and are often incompressible: keep them in
        // blob files, so compactions move 16-byte keys instead of rewriting the data, and
        // do not spend CPU compressing them.
        options.set_enable_blob_files(true);
        options.set_min_blob_size(0);
        options.set_blob_compression_type(DBCompressionType::None);
        options.set_compression_type(DBCompressionType::None);
        // Blob files whose chunks were deleted are reclaimed by compaction.
        options.set_enable_blob_gc(true);
    }
    options
}
