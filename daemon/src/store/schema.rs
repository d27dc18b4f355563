//! Every column family the daemon uses. A part that needs a new kind of record adds its column
//! family here and declares its typed [`Table`] next to the code that owns the records.

use super::Table;

/// Small node-wide facts: the identity hash the data dir belongs to, the schema version.
pub(super) const CF_META: &str = "meta";

/// Every column family, opened (and created if missing) by [`super::Store::open`].
pub const COLUMN_FAMILIES: &[&str] = &[
    CF_META,
    // Deployed WASM modules: `compute::MODULES`.
    "compute_modules",
];

/// Node-wide facts, keyed by name.
pub const META: Table<String, Vec<u8>> = Table::new(CF_META);
