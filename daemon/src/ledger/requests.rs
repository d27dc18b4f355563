//! Idempotency keys of the ledger's operator requests (Pay, OpenChannel): a caller names each
//! logical request with a `request_id` and sends it again on a retry; the ledger answers a
//! repeated id with what the first call started instead of paying or opening a second time.
//!
//! What is remembered for an id is written in the same synced batch as the change the first
//! call made (the payment queued on the channel, the open proposed), so a crash cannot keep one
//! without the other. An id is kept for [`REQUEST_RETENTION_MS`] and at most [`MAX_REQUESTS`]
//! ids are kept (the oldest go first); a retry later than that is a new request.
//!
//! A repeated id with other arguments (another peer or amount) is refused: the caller reused a
//! key by mistake. A first call that failed (an overdraft, an unknown peer) changed nothing and
//! is not remembered, so its retry is tried afresh.

use std::collections::{BTreeSet, HashMap};

use mehr_ledger::{ChannelId, NodeId};
use mehr_wire::{Reader, Writer};

use crate::store::{CF_LEDGER_REQUESTS, CodecError, Table, Value};

/// Requests remembered, by [`RequestKey`].
pub(crate) const REQUESTS: Table<[u8; 32], StoredRequest> = Table::new(CF_LEDGER_REQUESTS);

/// How long a request id is remembered: 24 hours.
pub const REQUEST_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// How many request ids are remembered at most; the oldest are forgotten first.
pub const MAX_REQUESTS: usize = 100_000;
/// The longest request id accepted, bytes.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Which operation a request id names (the same id may name a payment and an open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A payment over a channel.
    Pay = 1,
    /// A channel open.
    Open = 2,
}

/// The key a request is remembered under: Blake3 of the kind and the caller's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(pub(crate) [u8; 32]);

impl RequestKey {
    /// The key of `id` (1–[`MAX_REQUEST_ID_LEN`] bytes, checked by the caller) for `kind`.
    pub(crate) fn new(kind: RequestKind, id: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("mehr ledger request id v1");
        hasher.update(&[kind as u8]);
        hasher.update(id);
        RequestKey(*hasher.finalize().as_bytes())
    }

    /// The seed of the channel nonce an open with this key proposes: the same request proposes
    /// the same channel, so a retry after a lost acceptance converges on it.
    pub(crate) fn nonce_seed(&self) -> [u8; 32] {
        blake3::derive_key("mehr ledger open nonce v1", &self.0)
    }
}

/// What the first call with a request id started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredRequest {
    /// Which operation.
    pub(crate) kind: u8,
    /// When it was first seen, Unix ms.
    pub(crate) created_unix_ms: u64,
    /// Blake3 of the arguments that matter (peer, amounts), to refuse a reused key.
    pub(crate) fingerprint: [u8; 32],
    /// The channel paid over or proposed.
    pub(crate) channel: ChannelId,
    /// Payments: the cumulative total this node has paid on the channel once the payment is
    /// co-signed. Opens: 0.
    pub(crate) target: u64,
}

/// Blake3 of a request's arguments.
pub(crate) fn fingerprint(kind: RequestKind, peer: NodeId, amounts: &[u64]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[kind as u8]);
    hasher.update(&peer.0);
    for amount in amounts {
        hasher.update(&amount.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

impl Value for StoredRequest {
    fn encode_value(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.kind);
        w.u64(self.created_unix_ms);
        w.raw(&self.fingerprint);
        w.raw(&self.channel.0);
        w.u64(self.target);
        w.into_bytes()
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("stored request", bytes);
        let stored = StoredRequest {
            kind: r.u8()?,
            created_unix_ms: r.u64()?,
            fingerprint: r.array()?,
            channel: ChannelId(r.array()?),
            target: r.u64()?,
        };
        r.finish()?;
        Ok(stored)
    }
}

/// The remembered requests, with their ages for expiry.
#[derive(Default)]
pub(crate) struct RequestBook {
    by_key: HashMap<RequestKey, StoredRequest>,
    by_age: BTreeSet<(u64, [u8; 32])>,
}

impl RequestBook {
    /// The request remembered under `key`.
    pub(crate) fn get(&self, key: &RequestKey) -> Option<&StoredRequest> {
        self.by_key.get(key)
    }

    /// Remembers a request; returns the keys forgotten to stay within [`MAX_REQUESTS`].
    pub(crate) fn insert(&mut self, key: RequestKey, request: StoredRequest) -> Vec<[u8; 32]> {
        if let Some(old) = self.by_key.insert(key, request) {
            self.by_age.remove(&(old.created_unix_ms, key.0));
        }
        self.by_age.insert((request.created_unix_ms, key.0));
        let mut forgotten = Vec::new();
        while self.by_key.len() > MAX_REQUESTS {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.by_key.remove(&RequestKey(oldest));
            forgotten.push(oldest);
        }
        forgotten
    }

    /// Forgets the requests older than [`REQUEST_RETENTION_MS`]; returns their keys.
    pub(crate) fn expire(&mut self, now_unix_ms: u64) -> Vec<[u8; 32]> {
        let cutoff = now_unix_ms.saturating_sub(REQUEST_RETENTION_MS);
        let mut forgotten = Vec::new();
        while let Some(&(created, key)) = self.by_age.first() {
            if created >= cutoff {
                break;
            }
            self.by_age.pop_first();
            self.by_key.remove(&RequestKey(key));
            forgotten.push(key);
        }
        forgotten
    }

    /// How many requests are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(created_unix_ms: u64) -> StoredRequest {
        StoredRequest {
            kind: RequestKind::Pay as u8,
            created_unix_ms,
            fingerprint: [7; 32],
            channel: ChannelId([3; 16]),
            target: 42,
        }
    }

    #[test]
    fn stored_requests_round_trip() {
        let stored = request(1_700_000_000_000);
        assert_eq!(
            StoredRequest::decode_value(&stored.encode_value()).unwrap(),
            stored
        );
        assert!(StoredRequest::decode_value(&stored.encode_value()[..20]).is_err());
    }

    #[test]
    fn keys_differ_by_kind_and_id() {
        let pay = RequestKey::new(RequestKind::Pay, b"abc");
        assert_eq!(pay, RequestKey::new(RequestKind::Pay, b"abc"));
        assert_ne!(pay, RequestKey::new(RequestKind::Open, b"abc"));
        assert_ne!(pay, RequestKey::new(RequestKind::Pay, b"abd"));
    }

    #[test]
    fn old_requests_expire_and_the_book_is_bounded() {
        let mut book = RequestBook::default();
        let now = REQUEST_RETENTION_MS * 2;
        book.insert(RequestKey([1; 32]), request(now - REQUEST_RETENTION_MS - 1));
        book.insert(RequestKey([2; 32]), request(now - 5));
        assert_eq!(book.expire(now), vec![[1; 32]]);
        assert!(book.get(&RequestKey([2; 32])).is_some());
        for i in 0..MAX_REQUESTS as u64 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_le_bytes());
            key[31] = 9;
            book.insert(RequestKey(key), request(now + i));
        }
        assert_eq!(book.len(), MAX_REQUESTS);
        assert!(
            book.get(&RequestKey([2; 32])).is_none(),
            "the oldest went first"
        );
    }
}
