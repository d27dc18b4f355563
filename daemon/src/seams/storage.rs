//! What the market's advert needs of the object store: how much more it can take and the
//! largest object. The storage part implements [`StorageRoom`].

/// The room left in this node's object store.
pub trait StorageRoom: Send + Sync + 'static {
    /// Bytes the store can still accept under its quota (neither used nor reserved by an
    /// upload in progress).
    fn quota_left_bytes(&self) -> u64;

    /// The largest object it accepts.
    fn max_object_size(&self) -> u64;
}
