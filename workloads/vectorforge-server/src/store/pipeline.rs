//! The write and read pipeline of a collection: a write is resolved (filters to ids),
//! split into one validated engine operation per vector space and applied to every
//! engine (through the journal when there are several); reads go to the engine of
//! the vector space asked for and attach other vectors by id.

use std::collections::BTreeMap;

use vectorforge::{
    Collection, Filter, Operation, PointId, PointStruct, QuantizationSearchParams, Record,
    ScrollRequest, SearchRequest,
};

use super::journal::{decode_ops, encode_ops};
use super::{PointOut, PointsCollection, Selector, VectorOut, VectorSelection, Write};
use crate::error::{ServiceError, ServiceResult};

/// A write checked by every engine of a collection and ready for its log: one
/// validated engine operation per vector space.
#[derive(Debug)]
pub struct Prepared {
    ops: Vec<Operation>,
}

impl PointsCollection {
    /// Ids a selector stands for (a filter is resolved against the current state).
    fn resolve(&self, sel: Selector) -> Vec<PointId> {
        match sel {
            Selector::Ids(ids) => ids,
            Selector::Filter(f) => self
                .primary()
                .scroll(&ScrollRequest {
                    filter: Some(f),
                    limit: usize::MAX,
                    offset: None,
                    with_payload: false,
                    with_vector: false,
                })
                .points
                .into_iter()
                .map(|r| r.id)
                .collect(),
        }
    }

    /// One engine operation per vector space, validated by its engine.
    fn split(&self, w: Write) -> ServiceResult<Vec<Operation>> {
        let common = |op: Operation| -> ServiceResult<Vec<Operation>> {
            let mut out = Vec::with_capacity(self.engines.len());
            for (_, e) in &self.engines {
                out.push(e.validate(op.clone())?);
            }
            Ok(out)
        };
        match w {
            Write::Upsert(points) => {
                let mut per: Vec<Vec<PointStruct>> =
                    vec![Vec::with_capacity(points.len()); self.engines.len()];
                for p in points {
                    if let Some(extra) = p
                        .vectors
                        .keys()
                        .find(|k| !self.engines.iter().any(|(n, _)| n == *k))
                    {
                        return Err(ServiceError::invalid(format!(
                            "Wrong input: Not existing vector name error: {extra} (point {})",
                            p.id
                        )));
                    }
                    let mut vectors = p.vectors;
                    for (i, (vname, _)) in self.engines.iter().enumerate() {
                        let v = vectors.remove(vname).ok_or_else(|| {
                            ServiceError::invalid(if vname.is_empty() {
                                format!("Wrong input: point {} has no vector", p.id)
                            } else {
                                format!("Wrong input: point {} has no vector {vname:?} (vectorforge needs every named vector of the collection)", p.id)
                            })
                        })?;
                        per[i].push(PointStruct {
                            id: p.id,
                            vector: v,
                            payload: p.payload.clone(),
                        });
                    }
                }
                let mut out = Vec::with_capacity(per.len());
                for ((_, e), pts) in self.engines.iter().zip(per) {
                    out.push(e.validate(Operation::Upsert(pts))?);
                }
                Ok(out)
            }
            Write::Delete(sel) => common(Operation::Delete(self.resolve(sel))),
            Write::SetPayload {
                sel,
                payload,
                key: None,
            } => common(Operation::SetPayload {
                ids: self.resolve(sel),
                payload,
            }),
            Write::SetPayload {
                sel,
                payload,
                key: Some(key),
            } => common(Operation::SetPayloadAt {
                ids: self.resolve(sel),
                key,
                payload,
            }),
            Write::OverwritePayload { sel, payload } => common(Operation::OverwritePayload {
                ids: self.resolve(sel),
                payload,
            }),
            Write::DeletePayload { sel, keys } => common(Operation::DeletePayloadKeys {
                ids: self.resolve(sel),
                keys,
            }),
            Write::ClearPayload(sel) => common(Operation::ClearPayload {
                ids: self.resolve(sel),
            }),
            Write::CreateIndex { key, kind } => common(Operation::CreateIndex { key, kind }),
            Write::DropIndex { key } => common(Operation::DropIndex { key }),
        }
    }

    /// Resolves a write's selectors against the current state and checks it with every
    /// engine: nothing is applied, and a write that prepares is one that the engines
    /// take. A filter is resolved here, before the log, as it will be with Raft: a
    /// concurrent write may land between this and [`PointsCollection::commit`].
    /// Blocks: call it from a blocking thread.
    pub fn prepare(&self, w: Write) -> ServiceResult<Prepared> {
        Ok(Prepared {
            ops: self.split(w)?,
        })
    }

    /// Logs a prepared write and applies it to every engine; returns its index
    /// (Qdrant's operation_id). Blocks on disk I/O: call it from a blocking thread.
    pub fn commit(&self, p: Prepared) -> ServiceResult<u64> {
        let Some(journal) = &self.journal else {
            let mut seq = 0;
            for op in p.ops {
                seq = self.primary().submit(op)?;
            }
            return Ok(seq);
        };
        // Several engines: journal and apply under one lock so that every engine sees
        // the same operations in the same order. The journal record is the commit
        // point: it is on disk before any engine applies it (whatever the sync
        // policy), so no engine can get ahead of it.
        let mut last = self.writer.lock();
        let seq = *last + 1;
        journal.append(seq, &encode_ops(&p.ops)?)?;
        journal.sync_upto(seq)?;
        *last = seq;
        for ((_, e), op) in self.engines.iter().zip(p.ops) {
            e.apply_at(seq, &op)?;
        }
        Ok(seq)
    }

    /// The prepared write as a replicated log command (the journal's record codec:
    /// one engine operation per vector space).
    pub fn encode(&self, p: &Prepared) -> ServiceResult<Vec<u8>> {
        encode_ops(&p.ops)
    }

    /// Applies a committed log command at `index` to every engine (the Raft state
    /// machine's entry point: no journal, the replicated log is the commit point). A
    /// re-delivered index changes nothing. Blocks on disk I/O.
    pub fn apply_committed(&self, index: u64, command: &[u8]) -> ServiceResult<()> {
        let ops = decode_ops(command)?;
        if ops.len() != self.engines.len() {
            return Err(ServiceError::internal(format!(
                "Service internal error: a log command for {} vector spaces reached collection {} with {}",
                ops.len(),
                self.name,
                self.engines.len()
            )));
        }
        let _w = self.writer.lock();
        for ((_, e), op) in self.engines.iter().zip(&ops) {
            e.apply_at(index, op)?;
        }
        Ok(())
    }

    /// The highest log index every engine holds (what a restart resumes from).
    pub fn applied_index(&self) -> u64 {
        self.engines
            .iter()
            .map(|(_, e)| e.last_seq())
            .min()
            .unwrap_or(0)
    }

    /// [`PointsCollection::prepare`] then [`PointsCollection::commit`]. Blocks.
    pub fn write(&self, w: Write) -> ServiceResult<u64> {
        self.commit(self.prepare(w)?)
    }

    /// Nearest neighbours in one vector space.
    pub fn search(
        &self,
        using: &str,
        mut req: SearchRequest,
        vectors: &VectorSelection,
        quantization: &QuantizationSearchParams,
    ) -> ServiceResult<Vec<PointOut>> {
        let engine = self.engine(using)?;
        let only_own = matches!(vectors, VectorSelection::Names(n) if n.len() == 1 && n[0] == using)
            || (matches!(vectors, VectorSelection::All) && self.engines.len() == 1);
        req.with_vector = only_own;
        let hits = engine.search_with(&req, quantization)?;
        let mut out: Vec<PointOut> = hits
            .into_iter()
            .map(|h| PointOut {
                id: h.id,
                score: Some(h.score),
                payload: h.payload,
                vector: h
                    .vector
                    .map(|v| self.wrap_vectors(BTreeMap::from([(using.to_string(), v)]))),
            })
            .collect();
        if !only_own && *vectors != VectorSelection::None {
            self.attach_vectors(&mut out, vectors)?;
        }
        Ok(out)
    }

    fn wrap_vectors(&self, mut m: BTreeMap<String, Vec<f32>>) -> VectorOut {
        if self.unnamed {
            VectorOut::Single(m.remove("").unwrap_or_default())
        } else {
            VectorOut::Named(m)
        }
    }

    fn selected<'a>(
        &'a self,
        vectors: &VectorSelection,
    ) -> ServiceResult<Vec<&'a (String, Collection)>> {
        Ok(match vectors {
            VectorSelection::None => Vec::new(),
            VectorSelection::All => self.engines.iter().collect(),
            VectorSelection::Names(names) => {
                let mut v = Vec::new();
                for n in names {
                    self.engine(n)?;
                    v.extend(self.engines.iter().filter(|(en, _)| en == n));
                }
                v
            }
        })
    }

    fn attach_vectors(
        &self,
        points: &mut [PointOut],
        vectors: &VectorSelection,
    ) -> ServiceResult<()> {
        let engines = self.selected(vectors)?;
        let ids: Vec<PointId> = points.iter().map(|p| p.id).collect();
        let mut by_id: BTreeMap<PointId, BTreeMap<String, Vec<f32>>> = BTreeMap::new();
        for (name, e) in engines {
            for r in e.retrieve(&ids, false, true) {
                if let Some(v) = r.vector {
                    by_id.entry(r.id).or_default().insert(name.clone(), v);
                }
            }
        }
        for p in points {
            let m = by_id.remove(&p.id).unwrap_or_default();
            p.vector = Some(self.wrap_vectors(m));
        }
        Ok(())
    }

    /// Points by id, in the order asked (missing ids are skipped).
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: bool,
        vectors: &VectorSelection,
    ) -> ServiceResult<Vec<PointOut>> {
        let records = self.primary().retrieve(ids, with_payload, false);
        self.points_out(records, vectors)
    }

    /// A page of points ordered by id, and where the next page starts.
    pub fn scroll(
        &self,
        filter: Option<Filter>,
        limit: usize,
        offset: Option<PointId>,
        with_payload: bool,
        vectors: &VectorSelection,
    ) -> ServiceResult<(Vec<PointOut>, Option<PointId>)> {
        let r = self.primary().scroll(&ScrollRequest {
            filter,
            limit,
            offset,
            with_payload,
            with_vector: false,
        });
        let out = self.points_out(r.points, vectors)?;
        Ok((out, r.next_page_offset))
    }

    /// Stored records as returned points (no score), with the selected vectors of
    /// every vector space attached.
    fn points_out(
        &self,
        records: Vec<Record>,
        vectors: &VectorSelection,
    ) -> ServiceResult<Vec<PointOut>> {
        let mut out: Vec<PointOut> = records
            .into_iter()
            .map(|r| PointOut {
                id: r.id,
                score: None,
                payload: r.payload,
                vector: None,
            })
            .collect();
        if *vectors != VectorSelection::None {
            self.attach_vectors(&mut out, vectors)?;
        }
        Ok(out)
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.primary().count(filter)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::NamedPoint;
    use crate::store::test_support::{params, point};
    use serde_json::json;

    #[test]
    fn named_vectors_write_search_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        let pts = (0..50)
            .map(|i| point(i, vec![i as f32, 0.0], vec![1.0, i as f32, 0.5]))
            .collect();
        c.write(Write::Upsert(pts)).unwrap();
        let near = |c: &PointsCollection| {
            let req = SearchRequest {
                vector: vec![10.2, 0.0],
                limit: 1,
                with_payload: true,
                ..Default::default()
            };
            c.search("a", req, &VectorSelection::All, &Default::default())
                .unwrap()
        };
        let hit = &near(&c)[0];
        assert_eq!(hit.id, PointId::Num(10));
        match &hit.vector {
            Some(VectorOut::Named(m)) => assert_eq!(m["b"], vec![1.0, 10.0, 0.5]),
            other => panic!("expected both named vectors, got {other:?}"),
        }
        // a point missing one vector is refused and nothing is applied
        let bad = NamedPoint {
            vectors: BTreeMap::from([("a".to_string(), vec![1.0, 1.0])]),
            ..point(99, vec![], vec![])
        };
        assert!(c.write(Write::Upsert(vec![bad])).is_err());
        assert_eq!(c.count(None), 50);
        // a wrong dimension in the second vector space rejects the whole batch
        let bad = point(98, vec![1.0, 1.0], vec![1.0]);
        assert!(matches!(
            c.write(Write::Upsert(vec![bad])).unwrap_err(),
            ServiceError::Invalid(_)
        ));
        assert_eq!(c.count(None), 50);
        let f = Filter::from_json(&json!({"must": [{"key": "n", "range": {"lt": 5}}]})).unwrap();
        c.write(Write::Delete(Selector::Filter(f))).unwrap();
        assert_eq!(c.count(None), 45);
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.count(None), 45);
        assert_eq!(near(&c)[0].id, PointId::Num(10));
        assert_eq!(c.engine("b").unwrap().count(None), 45);
    }
}
