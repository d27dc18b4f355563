//! Where the market and storage meet. The market's advert needs of the object store how much
//! more it can take and the largest object: the storage part implements [`StorageRoom`]. A
//! provider serves shards only on the terms the market advertises: the market publishes them
//! as [`StorageTerms`] and remote storage checks every offer against them.

/// The room left in this node's object store.
pub trait StorageRoom: Send + Sync + 'static {
    /// Bytes the store can still accept under its quota (neither used nor reserved by an
    /// upload in progress).
    fn quota_left_bytes(&self) -> u64;

    /// The largest object it accepts.
    fn max_object_size(&self) -> u64;
}

/// The terms on which this node stores shards for others, as its advert states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageTerms {
    /// Whether it stores for others at all (`market.offer_storage`, or `UpdateOffer`).
    pub offered: bool,
    /// The least a consumer must pay, μMHR per byte-day.
    pub price_per_byte_day_umhr: u64,
}

/// The current [`StorageTerms`], kept up to date by the market.
pub type StorageOffer = tokio::sync::watch::Receiver<StorageTerms>;
