//! Exact read caches keyed by a data state (see [`DataState`]): a value read at a state is
//! answered from memory while the state is unchanged; any commit empties the cache (decision 65).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ports::DataState;

/// Values by key, all read at one data state; emptied when the state moves. Bounded: past
/// `max` keys a state keeps what it has and reads the rest through.
#[derive(Debug)]
pub struct KeyedReadCache<T, S = DataState> {
    max: usize,
    slot: Mutex<Option<(S, HashMap<String, T>)>>,
}

impl<T: Clone, S: PartialEq> KeyedReadCache<T, S> {
    pub fn new(max: usize) -> Self {
        Self { max, slot: Mutex::new(None) }
    }

    /// The value of `key` as read at the state `now`, if known.
    pub fn get(&self, now: Option<S>, key: &str) -> Option<T> {
        let now = now?;
        let slot = self.slot.lock().expect("read cache lock");
        slot.as_ref().filter(|(at, _)| *at == now).and_then(|(_, map)| map.get(key).cloned())
    }

    /// Remembers a value read at the state `at` (taken *before* the read: a commit during the
    /// read makes it stale at once).
    pub fn put(&self, at: Option<S>, key: &str, value: T) {
        let Some(at) = at else { return };
        let mut slot = self.slot.lock().expect("read cache lock");
        match slot.as_mut() {
            Some((state, map)) if *state == at => {
                if map.len() < self.max {
                    map.insert(key.to_owned(), value);
                }
            }
            _ => *slot = Some((at, HashMap::from([(key.to_owned(), value)]))),
        }
    }
}
