//! The in-memory view of a shard (vectors, graph, ids, payloads, payload index)
//! and how operations change it. `Core::apply` is deterministic: the same
//! operations in the same order give the same points, payloads and index.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use serde_json::Value;

use crate::error::Result;
use crate::hnsw::Hnsw;
use crate::ops::Operation;
use crate::payload::index::PayloadIndex;
use crate::payload::{PayloadStore, merge};
use crate::quantization::QuantStore;
use crate::storage::{MmapVectors, VectorSource};
use crate::types::{Offset, Payload, PointId};

/// Point bookkeeping guarded by one lock.
#[derive(Default)]
pub(crate) struct State {
    pub offsets: HashMap<PointId, Offset>,
    /// Point id of every stored vector, by offset (deleted ones included).
    pub ids: Vec<PointId>,
    pub live: RoaringBitmap,
    pub deleted: RoaringBitmap,
    pub payloads: PayloadStore,
    pub index: PayloadIndex,
}

impl State {
    fn kill(&mut self, off: Offset) {
        self.live.remove(off);
        self.deleted.insert(off);
        if let Some(p) = self.payloads.take(off) {
            self.index.remove(off, &p);
        }
    }

    fn update_payload(&mut self, off: Offset, f: impl FnOnce(&mut Payload)) {
        let mut p = self.payloads.take(off).unwrap_or_default();
        self.index.remove(off, &p);
        f(&mut p);
        self.index.add(off, &p);
        self.payloads.put(off, p);
    }
}

pub(crate) struct Core {
    pub vectors: MmapVectors,
    /// Quantized codes of the vectors (same offsets), when the collection has them.
    pub quant: Option<QuantStore>,
    pub graph: Hnsw,
    /// Offsets below this are in the graph.
    pub indexed: AtomicUsize,
    /// Held while the graph changes (indexing) or must stay still (snapshots).
    pub index_lock: Mutex<()>,
    pub state: RwLock<State>,
}

/// Merges `add` into the object at the dotted path `key`, creating objects on the way.
fn merge_at(p: &mut Payload, key: &str, add: &Payload) {
    let mut cur = p;
    for k in key.split('.') {
        let slot = cur
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Payload::new()));
        if !slot.is_object() {
            *slot = Value::Object(Payload::new());
        }
        match slot {
            Value::Object(o) => cur = o,
            _ => return,
        }
    }
    merge(cur, add);
}

fn remove_path(p: &mut Payload, key: &str) {
    let mut parts = key.split('.').peekable();
    let mut cur = p;
    while let Some(k) = parts.next() {
        if parts.peek().is_none() {
            cur.remove(k);
            return;
        }
        match cur.get_mut(k) {
            Some(Value::Object(o)) => cur = o,
            _ => return,
        }
    }
}

impl Core {
    /// Applies a validated operation.
    pub fn apply(&self, op: &Operation) -> Result<()> {
        match op {
            Operation::Upsert(points) => {
                let refs: Vec<&[f32]> = points.iter().map(|p| p.vector.as_slice()).collect();
                let first = self.vectors.append(&refs)?;
                if let Some(q) = &self.quant {
                    q.sync(&self.vectors)?;
                }
                let mut st = self.state.write();
                for (i, p) in points.iter().enumerate() {
                    let off = first + i as Offset;
                    if let Some(old) = st.offsets.insert(p.id, off) {
                        st.kill(old);
                    }
                    st.ids.push(p.id);
                    st.live.insert(off);
                    if let Some(pl) = &p.payload {
                        st.index.add(off, pl);
                        st.payloads.put(off, pl.clone());
                    }
                }
            }
            Operation::Delete(ids) => {
                let mut st = self.state.write();
                for id in ids {
                    if let Some(off) = st.offsets.remove(id) {
                        st.kill(off);
                    }
                }
            }
            Operation::SetPayload { ids, payload } => self.each_point(ids, |st, off| {
                st.update_payload(off, |p| merge(p, payload));
            }),
            Operation::SetPayloadAt { ids, key, payload } => self.each_point(ids, |st, off| {
                st.update_payload(off, |p| merge_at(p, key, payload));
            }),
            Operation::OverwritePayload { ids, payload } => self.each_point(ids, |st, off| {
                st.update_payload(off, |p| *p = payload.clone());
            }),
            Operation::DeletePayloadKeys { ids, keys } => self.each_point(ids, |st, off| {
                st.update_payload(off, |p| keys.iter().for_each(|k| remove_path(p, k)));
            }),
            Operation::ClearPayload { ids } => self.each_point(ids, |st, off| {
                st.update_payload(off, |p| p.clear());
            }),
            Operation::CreateIndex { key, kind } => {
                let mut st = self.state.write();
                let State {
                    index, payloads, ..
                } = &mut *st;
                index.create(key, *kind, payloads.iter().map(|(o, p)| (*o, p)))?;
            }
            Operation::DropIndex { key } => {
                self.state.write().index.drop_field(key);
            }
        }
        Ok(())
    }

    fn each_point(&self, ids: &[PointId], mut f: impl FnMut(&mut State, Offset)) {
        let mut st = self.state.write();
        for id in ids {
            if let Some(&off) = st.offsets.get(id) {
                f(&mut st, off);
            }
        }
    }

    /// Inserts stored-but-unindexed vectors into the graph, at most `batch` per
    /// step (in parallel for large steps) and at most `steps` steps. Returns how
    /// many were indexed.
    pub fn index_pending(&self, batch: usize, steps: usize) -> usize {
        let mut done = 0;
        for _ in 0..steps {
            let _g = self.index_lock.lock();
            let from = self.indexed.load(Ordering::Acquire);
            let n = self.vectors.len();
            if from >= n {
                return done;
            }
            let to = n.min(from + batch);
            let skip = |o: u32| self.state.read().deleted.contains(o);
            if to - from >= 64 {
                (from as u32..to as u32)
                    .into_par_iter()
                    .filter(|&o| !skip(o))
                    .for_each(|o| {
                        self.graph.insert(&self.vectors, o);
                    });
            } else {
                for o in from as u32..to as u32 {
                    if !skip(o) {
                        self.graph.insert(&self.vectors, o);
                    }
                }
            }
            self.indexed.store(to, Ordering::Release);
            done += to - from;
        }
        done
    }
}
