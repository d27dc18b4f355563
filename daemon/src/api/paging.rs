//! Paging for List methods: every list is sorted by a key, the page token is the last key of
//! the previous page, so pages stay consistent while the list changes underneath.

use tonic::Status;

/// Default and largest page sizes.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// One page of `items` (already sorted by `key`) after `token`, and the next token.
pub(crate) fn page<T>(
    items: Vec<T>,
    page_size: u32,
    token: &str,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, String), Status> {
    let size = match page_size {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    };
    let start = if token.is_empty() {
        0
    } else {
        if token.len() > 128 {
            return Err(Status::invalid_argument(
                "page_token is not a token this server issued",
            ));
        }
        items
            .iter()
            .position(|item| key(item).as_str() > token)
            .unwrap_or(items.len())
    };
    let rest: Vec<T> = items.into_iter().skip(start).collect();
    let more = rest.len() > size;
    let page: Vec<T> = rest.into_iter().take(size).collect();
    let next = if more {
        page.last().map(&key).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let items: Vec<u32> = (0..250).collect();
        let key = |n: &u32| format!("{n:08}");
        let (first, token) = page(items.clone(), 100, "", key).unwrap();
        assert_eq!(first.len(), 100);
        let (second, token) = page(items.clone(), 100, &token, key).unwrap();
        assert_eq!(second[0], 100);
        let (third, token) = page(items, 100, &token, key).unwrap();
        assert_eq!(third.len(), 50);
        assert!(token.is_empty());
    }
}
