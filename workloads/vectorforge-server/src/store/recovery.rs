//! Creating and opening a collection: its params file, one engine per vector space,
//! and (with several) the journal replayed into every engine that is behind it.

use std::fs;
use std::path::Path;

use parking_lot::Mutex;
use vectorforge::wal::Wal;
use vectorforge::{Applied, Collection};

use super::files::{engine_dir, io, newest_snapshot, write_atomic};
use super::journal::decode_ops;
use super::{JOURNAL_SEGMENT_BYTES, JOURNALED_ENGINE_SYNC, PARAMS_FILE, PointsCollection};
use crate::error::{ServiceError, ServiceResult};
use crate::params::CollectionParams;

impl PointsCollection {
    /// Creates the collection's files in `dir` (which must not exist) and opens it.
    pub fn create(dir: &Path, name: &str, params: CollectionParams) -> ServiceResult<Self> {
        params.validate()?;
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let bytes = serde_json::to_vec_pretty(&params)
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        write_atomic(&dir.join(PARAMS_FILE), &bytes)?;
        Self::open(dir, name)
    }

    /// Reads the stored params of the collection in `dir`.
    pub fn read_params(dir: &Path) -> ServiceResult<CollectionParams> {
        let p = dir.join(PARAMS_FILE);
        let bytes = fs::read(&p).map_err(|e| io(&p, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", p.display())))
    }

    /// Opens the collection in `dir`, recovering every engine and replaying the journal.
    pub fn open(dir: &Path, name: &str) -> ServiceResult<Self> {
        let params = Self::read_params(dir)?;
        let journaled = params.vectors.len() > 1;
        let mut engines = Vec::with_capacity(params.vectors.len());
        for (i, vname) in params.vectors.keys().enumerate() {
            let mut cfg = params
                .engine_config(vname)
                .ok_or_else(|| ServiceError::internal("vector params vanished"))?;
            if journaled {
                cfg.sync = JOURNALED_ENGINE_SYNC;
            }
            engines.push((vname.clone(), Collection::open(engine_dir(dir, i), cfg)?));
        }
        let mut last = engines.iter().map(|(_, e)| e.last_seq()).max().unwrap_or(0);
        let journal = if journaled {
            let behind = engines.iter().map(|(_, e)| e.last_seq()).min().unwrap_or(0);
            let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
            let wal = Wal::open(
                &dir.join("journal"),
                params.sync,
                JOURNAL_SEGMENT_BYTES,
                |rec| {
                    if rec.seq > behind {
                        pending.push((rec.seq, rec.body.to_vec()));
                    }
                    Ok(())
                },
            )?;
            // engines behind the journal catch up; apply_at skips what one already has
            for (seq, bytes) in pending {
                let ops = decode_ops(&bytes)?;
                if ops.len() != engines.len() {
                    return Err(ServiceError::internal(format!(
                        "journal record {seq} has {} operations for {} vectors",
                        ops.len(),
                        engines.len()
                    )));
                }
                for ((vname, engine), op) in engines.iter().zip(ops) {
                    if engine.apply_at(seq, &op)? == Applied::Applied {
                        tracing::debug!(
                            collection = name,
                            vector = vname,
                            seq,
                            "replayed from journal"
                        );
                    }
                }
            }
            last = last.max(wal.last_seq());
            // The journal is synced before any engine applies a record, so an engine
            // ahead of it means the disk lost synced data (or an older build wrote it):
            // nothing can bring the others level. Writes go on after the newest.
            let behind: Vec<&str> = engines
                .iter()
                .filter(|(_, e)| e.last_seq() < last)
                .map(|(n, _)| n.as_str())
                .collect();
            if !behind.is_empty() {
                tracing::error!(
                    collection = name,
                    ?behind,
                    journal = wal.last_seq(),
                    last,
                    "vectors lack operations that neither the journal nor their own WAL holds"
                );
            }
            Some(wal)
        } else {
            None
        };
        let snap = engines
            .iter()
            .map(|(_, e)| newest_snapshot(e.dir()))
            .min()
            .unwrap_or(0);
        tracing::info!(
            collection = name,
            vectors = engines.len(),
            last_seq = last,
            "collection opened"
        );
        Ok(PointsCollection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            unnamed: params.is_unnamed(),
            params: parking_lot::RwLock::new(params),
            engines,
            journal,
            writer: Mutex::new(last),
            maintenance: Mutex::new(()),
            snapshotted: Mutex::new((snap, snap)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::test_support::{params, point};
    use crate::store::{Selector, Write};
    use serde_json::json;
    use vectorforge::PointId;

    #[test]
    fn an_engine_behind_the_journal_catches_up_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        c.write(Write::Upsert(vec![point(
            1,
            vec![1.0, 1.0],
            vec![1.0, 1.0, 1.0],
        )]))
        .unwrap();
        c.snapshot().unwrap();
        c.write(Write::Upsert(vec![point(
            2,
            vec![2.0, 1.0],
            vec![2.0, 1.0, 1.0],
        )]))
        .unwrap();
        drop(c);
        // simulate a crash that lost engine b's WAL tail (its snapshot holds point 1 only)
        fs::remove_dir_all(engine_dir(&dir, 1).join("wal")).unwrap();
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("b").unwrap().count(None), 2);
        assert_eq!(
            c.engine("a").unwrap().last_seq(),
            c.engine("b").unwrap().last_seq()
        );
        // it goes on from there: written to and reopened, both engines agree
        c.write(Write::Delete(Selector::Ids(vec![PointId::Num(1)])))
            .unwrap();
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        for v in ["a", "b"] {
            assert_eq!(c.engine(v).unwrap().count(None), 1, "{v}");
            assert_eq!(c.engine(v).unwrap().last_seq(), 3, "{v}");
        }
    }

    #[test]
    fn a_write_after_the_journal_lost_its_tail_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        let up = |i: u64| Write::Upsert(vec![point(i, vec![i as f32, 1.0], vec![1.0, 1.0, 1.0])]);
        c.write(up(1)).unwrap();
        c.snapshot().unwrap();
        c.write(up(2)).unwrap();
        drop(c);
        // disk lost data: engine b's WAL tail and the whole journal; a stays at 2, b at 1
        fs::remove_dir_all(engine_dir(&dir, 1).join("wal")).unwrap();
        fs::remove_dir_all(dir.join("journal")).unwrap();
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("b").unwrap().last_seq(), 1);
        // the next write skips an index in engine b and starts the journal after a gap
        assert_eq!(c.write(up(3)).unwrap(), 3);
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("a").unwrap().count(None), 3);
        assert_eq!(c.engine("b").unwrap().count(None), 2);
        assert_eq!(c.engine("b").unwrap().last_seq(), 3);
        assert_eq!(c.write(up(4)).unwrap(), 4);
    }
}
