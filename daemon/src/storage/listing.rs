//! Paged listing of the stored objects.
//!
//! A page token is the last key of the page before, tagged with the order it belongs to:
//! `c` + hex(created_unix_ms BE ‖ id) or `i` + hex(id). Listing resumes strictly after it, so
//! objects added or removed between pages neither repeat nor shift the rest.

use super::{
    ObjectInfo, ObjectStore, StorageError,
    records::{OBJECTS, OBJECTS_BY_CREATED, ObjectKey},
};
use crate::store::Key;

/// Objects per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most objects one page holds.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Oldest first; objects of the same millisecond by id.
    #[default]
    Created,
    /// By id, in byte order.
    Id,
}

impl ListOrder {
    fn tag(self) -> char {
        match self {
            ListOrder::Created => 'c',
            ListOrder::Id => 'i',
        }
    }

    fn key_len(self) -> usize {
        match self {
            ListOrder::Created => 40,
            ListOrder::Id => 32,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    /// The objects, in the listing's order.
    pub objects: Vec<ObjectInfo>,
    /// The token of the next page; `None` when this page is the last.
    pub next_page_token: Option<String>,
}

fn invalid(reason: impl Into<String>) -> StorageError {
    StorageError::InvalidPageToken {
        reason: reason.into(),
    }
}

fn decode_token(order: ListOrder, token: &str) -> Result<Vec<u8>, StorageError> {
    let mut chars = token.chars();
    match chars.next() {
        Some(tag) if tag == order.tag() => {}
        Some('c' | 'i') => return Err(invalid("it belongs to a listing in another order")),
        _ => return Err(invalid("it was not issued by List")),
    }
    let key = hex::decode(chars.as_str()).map_err(|_| invalid("it was not issued by List"))?;
    if key.len() != order.key_len() {
        return Err(invalid("it was not issued by List"));
    }
    Ok(key)
}

fn encode_token(order: ListOrder, key: &[u8]) -> String {
    format!("{}{}", order.tag(), hex::encode(key))
}

impl ObjectStore {
    /// One page of at most `page_size` objects (0 means [`DEFAULT_PAGE_SIZE`]; more than
    /// [`MAX_PAGE_SIZE`] is capped), after `page_token` (empty for the first page).
    pub fn list(
        &self,
        order: ListOrder,
        page_token: &str,
        page_size: usize,
    ) -> Result<ObjectPage, StorageError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(order, page_token)?)
        };
        let start = after.clone().unwrap_or_default();
        let store = self.store();
        let mut objects = Vec::new();
        let mut last_key = Vec::new();
        let mut more = false;
        match order {
            ListOrder::Id => {
                for item in store.scan_from(OBJECTS, &start) {
                    let (key, record) = item?;
                    let encoded = key.encode_key();
                    if after.as_deref() == Some(encoded.as_slice()) {
                        continue;
                    }
                    if objects.len() == page_size {
                        more = true;
                        break;
                    }
                    objects.push(ObjectInfo::from_record(key.0, &record));
                    last_key = encoded;
                }
            }
            ListOrder::Created => {
                for item in store.scan_from(OBJECTS_BY_CREATED, &start) {
                    let (key, _) = item?;
                    let encoded = key.encode_key();
                    if after.as_deref() == Some(encoded.as_slice()) {
                        continue;
                    }
                    if objects.len() == page_size {
                        more = true;
                        break;
                    }
                    let record = store.get(OBJECTS, &ObjectKey(key.id))?.ok_or_else(|| {
                        StorageError::Corrupt {
                            id: key.id,
                            detail: "listed in the creation index but has no record".into(),
                        }
                    })?;
                    objects.push(ObjectInfo::from_record(key.id, &record));
                    last_key = encoded;
                }
            }
        }
        Ok(ObjectPage {
            objects,
            next_page_token: more.then(|| encode_token(order, &last_key)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::CreatedKey;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_order() {
        let key = CreatedKey {
            created_unix_ms: 12,
            id: mehr_storage::ObjectId::from_bytes([7; 32]),
        }
        .encode_key();
        let token = encode_token(ListOrder::Created, &key);
        assert_eq!(decode_token(ListOrder::Created, &token).unwrap(), key);
        let err = decode_token(ListOrder::Id, &token).unwrap_err();
        assert!(err.to_string().contains("another order"), "{err}");
        for bad in ["x00", "c", "czz", "i0011", "é"] {
            assert!(
                matches!(
                    decode_token(ListOrder::Id, bad),
                    Err(StorageError::InvalidPageToken { .. })
                ),
                "{bad}"
            );
        }
    }
}
