//! Snapshots of a collection: every engine at one sequence number (the journal trimmed
//! behind the previous one), and self-contained tar archives of them that unpack
//! into a new collection directory.

use std::fs;
use std::path::Path;

use super::files::{engine_dir, io};
use super::{PARAMS_FILE, PointsCollection};
use crate::error::{ServiceError, ServiceResult};
use crate::params::CollectionParams;

impl PointsCollection {
    /// Snapshots every engine at one sequence number and trims the journal behind the
    /// previous snapshot. Returns the sequence number. Blocks: run on a blocking thread.
    pub fn snapshot(&self) -> ServiceResult<u64> {
        let _m = self.maintenance.lock();
        self.snapshot_locked()
    }

    fn snapshot_locked(&self) -> ServiceResult<u64> {
        let seq = if self.journal.is_some() {
            let _w = self.writer.lock();
            let mut seq = 0;
            for (_, e) in &self.engines {
                seq = e.snapshot()?;
            }
            seq
        } else {
            self.primary().snapshot()?
        };
        let mut s = self.snapshotted.lock();
        if let Some(j) = &self.journal {
            j.remove_upto(s.1)?;
        }
        *s = (s.1, seq);
        Ok(seq)
    }

    /// Writes a self-contained archive of the collection (params + a fresh snapshot of
    /// every engine) to `dest` as a tar file; returns the index the snapshot holds.
    pub fn archive(&self, dest: &Path) -> ServiceResult<u64> {
        let _m = self.maintenance.lock();
        let seq = self.snapshot_locked()?;
        let file = fs::File::create(dest).map_err(|e| io(dest, e))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let add = |tar: &mut tar::Builder<_>, src: &Path, name: &str| -> ServiceResult<()> {
            tar.append_path_with_name(src, name).map_err(|e| io(src, e))
        };
        add(&mut tar, &self.dir.join(PARAMS_FILE), PARAMS_FILE)?;
        for (i, (_, e)) in self.engines.iter().enumerate() {
            let base = format!("vectors/{i}");
            add(
                &mut tar,
                &e.dir().join("config.json"),
                &format!("{base}/config.json"),
            )?;
            let snap = vectorforge::snapshot::dir_name(seq);
            let sdir = e.dir().join("snapshots").join(&snap);
            let entries = fs::read_dir(&sdir).map_err(|e| io(&sdir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io(&sdir, e))?;
                let fname = entry.file_name().to_string_lossy().into_owned();
                add(
                    &mut tar,
                    &entry.path(),
                    &format!("{base}/snapshots/{snap}/{fname}"),
                )?;
            }
        }
        let w = tar.into_inner().map_err(|e| io(dest, e))?;
        let f = w.into_inner().map_err(|e| io(dest, e.into_error()))?;
        f.sync_all().map_err(|e| io(dest, e))?;
        Ok(seq)
    }
}

/// Unpacks an archive written by [`PointsCollection::archive`] into `dir` (which must
/// not exist), checking that it holds a collection. Entries may not leave `dir`.
pub fn unpack_archive(archive: &Path, dir: &Path) -> ServiceResult<CollectionParams> {
    let file = fs::File::open(archive).map_err(|e| io(archive, e))?;
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let entries = tar
        .entries()
        .map_err(|e| ServiceError::invalid(format!("snapshot is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| ServiceError::invalid(format!("snapshot archive is corrupt: {e}")))?;
        // unpack_in refuses paths that escape `dir` (absolute, `..`).
        let ok = entry
            .unpack_in(dir)
            .map_err(|e| ServiceError::invalid(format!("snapshot archive is corrupt: {e}")))?;
        if !ok {
            return Err(ServiceError::invalid(
                "snapshot archive has an entry outside the collection",
            ));
        }
    }
    let params = PointsCollection::read_params(dir).map_err(|e| {
        ServiceError::invalid(format!("snapshot has no valid collection.json: {e}"))
    })?;
    for i in 0..params.vectors.len() {
        let snaps = vectorforge::snapshot::list(&engine_dir(dir, i).join("snapshots"))
            .map_err(|e| ServiceError::invalid(format!("snapshot archive: {e}")))?;
        let (_, sdir) = snaps.first().ok_or_else(|| {
            ServiceError::invalid(format!("snapshot archive lacks the data of vector {i}"))
        })?;
        vectorforge::snapshot::validate(sdir)
            .map_err(|e| ServiceError::invalid(format!("snapshot archive: {e}")))?;
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::params;
    use crate::store::{NamedPoint, Write};
    use serde_json::json;
    use vectorforge::PointId;

    #[test]
    fn archives_unpack_into_an_equal_collection() {
        let tmp = tempfile::tempdir().unwrap();
        let c = PointsCollection::create(
            &tmp.path().join("c"),
            "c",
            params(json!({"size": 2, "distance": "Cosine"})),
        )
        .unwrap();
        let pts = (1..=20).map(|i| NamedPoint {
            id: PointId::Num(i),
            vectors: BTreeMap::from([(String::new(), vec![1.0, i as f32])]),
            payload: None,
        });
        c.write(Write::Upsert(pts.collect())).unwrap();
        let archive = tmp.path().join("c.snapshot");
        c.archive(&archive).unwrap();
        let restored = tmp.path().join("r");
        unpack_archive(&archive, &restored).unwrap();
        let r = PointsCollection::open(&restored, "r").unwrap();
        assert_eq!(r.count(None), 20);
        let garbage = tmp.path().join("garbage");
        fs::write(&garbage, b"not a tar").unwrap();
        assert!(matches!(
            unpack_archive(&garbage, &tmp.path().join("g")).unwrap_err(),
            ServiceError::Invalid(_)
        ));
    }
}
