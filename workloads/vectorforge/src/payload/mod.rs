//! Payloads: an arbitrary JSON object per point, keyed by internal offset, with
//! the Qdrant operations (set = merge keys, overwrite, delete keys, clear).

pub mod index;
pub mod path;
pub mod persist;

use std::collections::HashMap;

use crate::types::{Offset, Payload};

/// In-memory payload storage; persisted by snapshots and rebuilt from the WAL.
#[derive(Default)]
pub struct PayloadStore {
    map: HashMap<Offset, Payload>,
}

impl PayloadStore {
    pub fn get(&self, off: Offset) -> Option<&Payload> {
        self.map.get(&off)
    }

    /// Replaces the whole payload (an empty object removes it).
    pub fn put(&mut self, off: Offset, p: Payload) {
        if p.is_empty() {
            self.map.remove(&off);
        } else {
            self.map.insert(off, p);
        }
    }

    pub fn take(&mut self, off: Offset) -> Option<Payload> {
        self.map.remove(&off)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Offset, &Payload)> {
        self.map.iter()
    }
}

/// Merges `add` into `base` (Qdrant's set_payload: top-level keys overwritten).
pub fn merge(base: &mut Payload, add: &Payload) {
    for (k, v) in add {
        base.insert(k.clone(), v.clone());
    }
}
