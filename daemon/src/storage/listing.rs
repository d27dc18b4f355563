//! Paged listings: the objects stored here (by creation or by id) and the objects placed on
//! providers (by id).
//!
//! A page token is the last key of the page before, tagged with the listing it belongs to:
//! `c` + hex(created_unix_ms BE ‖ id), `i` + hex(id) or `p` + hex(id) for placed objects.
//! Listing resumes strictly after it, so objects added or removed between pages neither repeat
//! nor shift the rest.

use super::{
    ObjectInfo, ObjectStore, StorageError,
    records::{OBJECTS, OBJECTS_BY_CREATED, ObjectKey},
};
use crate::store::{Key, Store, Table, Value};

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

/// A listing with its own page tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// Stored objects, oldest first.
    Created,
    /// Stored objects, by id.
    Id,
    /// Objects placed on providers, by id.
    Placed,
}

impl Listing {
    const TAGS: [char; 3] = ['c', 'i', 'p'];

    fn tag(self) -> char {
        match self {
            Listing::Created => 'c',
            Listing::Id => 'i',
            Listing::Placed => 'p',
        }
    }

    fn key_len(self) -> usize {
        match self {
            Listing::Created => 40,
            Listing::Id | Listing::Placed => 32,
        }
    }
}

impl From<ListOrder> for Listing {
    fn from(order: ListOrder) -> Listing {
        match order {
            ListOrder::Created => Listing::Created,
            ListOrder::Id => Listing::Id,
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

fn decode_token(listing: Listing, token: &str) -> Result<Vec<u8>, StorageError> {
    let mut chars = token.chars();
    match chars.next() {
        Some(tag) if tag == listing.tag() => {}
        Some(tag) if Listing::TAGS.contains(&tag) => {
            return Err(invalid(
                "it belongs to a listing in another order or of other objects",
            ));
        }
        _ => return Err(invalid("it was not issued by List")),
    }
    let key = hex::decode(chars.as_str()).map_err(|_| invalid("it was not issued by List"))?;
    if key.len() != listing.key_len() {
        return Err(invalid("it was not issued by List"));
    }
    Ok(key)
}

fn encode_token(listing: Listing, key: &[u8]) -> String {
    format!("{}{}", listing.tag(), hex::encode(key))
}

/// One page of at most `page_size` entries of `table` (0 means [`DEFAULT_PAGE_SIZE`]; more
/// than [`MAX_PAGE_SIZE`] is capped) after `page_token` (empty for the first page), each
/// described by `describe`.
pub(crate) fn page<K: Key, V: Value>(
    store: &Store,
    table: Table<K, V>,
    listing: Listing,
    page_token: &str,
    page_size: usize,
    mut describe: impl FnMut(K, V) -> Result<ObjectInfo, StorageError>,
) -> Result<ObjectPage, StorageError> {
    let page_size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        Some(decode_token(listing, page_token)?)
    };
    let start = after.clone().unwrap_or_default();
    let mut objects = Vec::new();
    let mut last_key = Vec::new();
    let mut more = false;
    for item in store.scan_from(table, &start) {
        let (key, value) = item?;
        let encoded = key.encode_key();
        if after.as_deref() == Some(encoded.as_slice()) {
            continue;
        }
        if objects.len() == page_size {
            more = true;
            break;
        }
        objects.push(describe(key, value)?);
        last_key = encoded;
    }
    Ok(ObjectPage {
        objects,
        next_page_token: more.then(|| encode_token(listing, &last_key)),
    })
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
        let store = self.store();
        match order {
            ListOrder::Id => page(
                store,
                OBJECTS,
                order.into(),
                page_token,
                page_size,
                |key, record| Ok(ObjectInfo::from_record(key.0, &record)),
            ),
            ListOrder::Created => page(
                store,
                OBJECTS_BY_CREATED,
                order.into(),
                page_token,
                page_size,
                |key, _| {
                    let record = store.get(OBJECTS, &ObjectKey(key.id))?.ok_or_else(|| {
                        StorageError::Corrupt {
                            id: key.id,
                            detail: "listed in the creation index but has no record".into(),
                        }
                    })?;
                    Ok(ObjectInfo::from_record(key.id, &record))
                },
            ),
        }
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
        let token = encode_token(Listing::Created, &key);
        assert_eq!(decode_token(Listing::Created, &token).unwrap(), key);
        for other in [Listing::Id, Listing::Placed] {
            let err = decode_token(other, &token).unwrap_err();
            assert!(err.to_string().contains("another order"), "{err}");
        }
        for bad in ["x00", "c", "czz", "i0011", "é"] {
            assert!(
                matches!(
                    decode_token(Listing::Id, bad),
                    Err(StorageError::InvalidPageToken { .. })
                ),
                "{bad}"
            );
        }
    }
}
