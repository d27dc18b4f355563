//! Paging for List methods (and Discover), one token format for all of them.
//!
//! A page token is opaque to callers: base64url (no padding) of a version byte, an 8-byte
//! digest of the list's name and the request's filter fields, and a cursor — the key of the
//! last item sent, or the part's own position for lists that a part pages itself. A token is
//! only valid for the list and filters it was issued for: another list or other filters
//! answer PAGE_TOKEN_MISMATCH, a token that does not decode PAGE_TOKEN_INVALID. The page size
//! is not bound; a caller may change it between pages. Lists are sorted by their key, so pages
//! stay consistent while the list changes underneath: an item added behind the cursor is
//! skipped, none is sent twice.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::Status;

use super::status::{Reason, bad_request};

/// Items per page when the request says 0.
pub(crate) const DEFAULT_PAGE: usize = 100;
/// The largest page; larger requests are capped.
pub(crate) const MAX_PAGE: usize = 1000;
/// The token format; a token of another version is refused as invalid.
const VERSION: u8 = 1;
/// Bytes of the filter digest in a token.
const DIGEST_LEN: usize = 8;
/// Longest token accepted, in characters (Discover's cursor holds up to 64 node ids).
const MAX_TOKEN_CHARS: usize = 4096;

/// What a page token is bound to: the list and the request's filter fields.
pub(crate) struct Filters(blake3::Hasher);

impl Filters {
    /// The filters of list `list` (its RPC name); add each filter field with [`Filters::field`].
    pub(crate) fn new(list: &str) -> Filters {
        let mut hasher = blake3::Hasher::new_derive_key("mehr.v1 page token filters");
        Self::put(&mut hasher, list.as_bytes());
        Filters(hasher)
    }

    /// Adds filter field `name` with its `value` (in any encoding that tells values apart).
    pub(crate) fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Filters {
        Self::put(&mut self.0, name.as_bytes());
        Self::put(&mut self.0, value.as_ref());
        self
    }

    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    fn put(hasher: &mut blake3::Hasher, bytes: &[u8]) {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }

    fn digest(&self) -> [u8; DIGEST_LEN] {
        let mut digest = [0; DIGEST_LEN];
        digest.copy_from_slice(&self.0.finalize().as_bytes()[..DIGEST_LEN]);
        digest
    }
}

/// A request for one page: its size, where the previous page ended, and what the next
/// page's token is bound to.
pub(crate) struct PageRequest {
    /// Items on this page (1 to [`MAX_PAGE`]).
    pub(crate) size: usize,
    /// The cursor of the previous page; `None` for the first page.
    pub(crate) after: Option<Vec<u8>>,
    digest: [u8; DIGEST_LEN],
}

impl PageRequest {
    /// Reads `page_size` and `page_token` of a request with `filters`.
    pub(crate) fn parse(filters: Filters, page_size: u32, token: &str) -> Result<Self, Status> {
        let digest = filters.digest();
        let size = match page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let after = if token.is_empty() {
            None
        } else {
            Some(decode(token, &digest)?)
        };
        Ok(PageRequest {
            size,
            after,
            digest,
        })
    }

    /// The token of the page after the one that ended at `cursor`.
    pub(crate) fn token(&self, cursor: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(1 + DIGEST_LEN + cursor.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.digest);
        bytes.extend_from_slice(cursor);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor as text, for parts that page themselves with text tokens.
    pub(crate) fn after_text(&self) -> Result<String, Status> {
        match &self.after {
            None => Ok(String::new()),
            Some(cursor) => String::from_utf8(cursor.clone()).map_err(|_| invalid_token()),
        }
    }

    /// This page of `items` (sorted here by `key`), and the next page's token (empty when
    /// this page is the last).
    pub(crate) fn page<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> Vec<u8>,
    ) -> (Vec<T>, String) {
        items.sort_by_cached_key(|item| key(item));
        let start = match &self.after {
            None => 0,
            Some(after) => items.partition_point(|item| key(item) <= *after),
        };
        let more = items.len() - start > self.size;
        let page: Vec<T> = items.into_iter().skip(start).take(self.size).collect();
        let next = match page.last() {
            Some(last) if more => self.token(&key(last)),
            _ => String::new(),
        };
        (page, next)
    }
}

/// PAGE_TOKEN_INVALID: the token decoded, but its cursor is not one this list issues.
pub(crate) fn invalid_token() -> Status {
    bad_request(
        Reason::PageTokenInvalid,
        "page_token",
        "page_token is not a token this server issued; pass a next_page_token unchanged",
    )
}

fn decode(token: &str, digest: &[u8; DIGEST_LEN]) -> Result<Vec<u8>, Status> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(invalid_token());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
    match bytes.split_first() {
        Some((&VERSION, rest)) if rest.len() >= DIGEST_LEN => {
            let (bound, cursor) = rest.split_at(DIGEST_LEN);
            if bound != digest {
                return Err(bad_request(
                    Reason::PageTokenMismatch,
                    "page_token",
                    "page_token was issued for another list or other filters; repeat the \
                     request's filter fields unchanged, or start again without a token",
                ));
            }
            Ok(cursor.to_vec())
        }
        _ => Err(invalid_token()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn reason(status: &Status) -> String {
        status
            .get_error_details()
            .error_info()
            .unwrap()
            .reason
            .clone()
    }

    fn request(filters: Filters, size: u32, token: &str) -> Result<PageRequest, Status> {
        PageRequest::parse(filters, size, token)
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let items: Vec<u32> = (0..250).rev().collect();
        let key = |n: &u32| n.to_be_bytes().to_vec();
        let filters = || Filters::new("ListThings").field("kind", "a");
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = request(filters(), 100, &token).unwrap();
            let (items, next) = page.page(items.clone(), key);
            seen.extend(items);
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn a_token_is_bound_to_its_list_and_filters() {
        let items: Vec<u32> = (0..10).collect();
        let key = |n: &u32| n.to_be_bytes().to_vec();
        let first = request(Filters::new("ListThings").field("kind", "a"), 3, "").unwrap();
        let (_, token) = first.page(items, key);
        assert!(!token.is_empty());
        for other in [
            Filters::new("ListThings").field("kind", "b"),
            Filters::new("ListOthers").field("kind", "a"),
            Filters::new("ListThings"),
        ] {
            let error = request(other, 3, &token).err().unwrap();
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            assert_eq!(reason(&error), "PAGE_TOKEN_MISMATCH");
        }
        // The page size is not a filter.
        request(Filters::new("ListThings").field("kind", "a"), 7, &token).unwrap();
    }

    #[test]
    fn garbled_tokens_are_invalid() {
        let filters = || Filters::new("ListThings");
        let good = request(filters(), 1, "").unwrap().token(b"cursor");
        let mut wrong_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        wrong_version[0] = 2;
        for bad in [
            "not base64!".to_string(),
            "AA".to_string(),
            good[..6].to_string(),
            URL_SAFE_NO_PAD.encode(wrong_version),
            "A".repeat(MAX_TOKEN_CHARS + 4),
        ] {
            let error = request(filters(), 1, &bad).err().unwrap();
            assert_eq!(reason(&error), "PAGE_TOKEN_INVALID", "{bad}");
            let details = error.get_error_details();
            assert_eq!(
                details.bad_request().unwrap().field_violations[0].field,
                "page_token"
            );
        }
        assert_eq!(
            request(filters(), 1, &good).unwrap().after.as_deref(),
            Some(&b"cursor"[..])
        );
    }
}
