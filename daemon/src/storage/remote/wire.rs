//! The remote-storage control messages (types 0x40–0x4F) and their signed envelope: defined in
//! the pure `mehr-storage` crate (`mehr_storage::remote`), where they are fuzzed without the
//! daemon's storage; the provider and consumer use them through these names.

pub use mehr_storage::remote::*;

// The crate's range must be the one the transport gives storage.
const _: () = assert!(STORAGE_FIRST == crate::transport::control_kinds::STORAGE_FIRST);
