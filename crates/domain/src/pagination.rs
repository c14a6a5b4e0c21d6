//! Keyset pagination: a page size and an exclusive start key, as the CDF API's
//! `count` + `exclusiveStart*` parameters.

/// The largest page any list operation returns; also the page size when none is asked for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which page to read: at most `limit` items strictly after `exclusive_start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    pub limit: u32,
    pub exclusive_start: Option<K>,
}

impl<K> PageRequest<K> {
    /// The first page with the given limit (clamped to `1..=MAX_PAGE_SIZE`).
    pub fn first(limit: u32) -> Self {
        Self { limit: limit.clamp(1, MAX_PAGE_SIZE), exclusive_start: None }
    }

    pub fn after(limit: u32, key: K) -> Self {
        Self { limit: limit.clamp(1, MAX_PAGE_SIZE), exclusive_start: Some(key) }
    }
}

/// One page of results. `last_evaluated` is set only when more items follow, and is the
/// key to pass as the next request's `exclusive_start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub last_evaluated: Option<K>,
}

impl<T, K> Page<T, K> {
    /// Builds a page from up to `limit + 1` items read in key order: the extra item, if
    /// present, only proves that another page exists and is dropped.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, key_of: impl Fn(&T) -> K) -> Self {
        let limit = limit as usize;
        if items.len() > limit {
            items.truncate(limit);
            let last_evaluated = items.last().map(key_of);
            Self { items, last_evaluated }
        } else {
            Self { items, last_evaluated: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overfetched_item_marks_a_next_page() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |x| *x);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.last_evaluated, Some(2));
    }

    #[test]
    fn exact_fit_has_no_next_page() {
        let page = Page::from_overfetch(vec![1, 2], 2, |x| *x);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.last_evaluated, None);
    }
}
