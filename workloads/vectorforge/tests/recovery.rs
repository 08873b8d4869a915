//! Documented behaviour on damaged files:
//! - a torn WAL tail is truncated and the collection opens with every complete record;
//! - a damaged record followed by more data makes `open` fail with `WalCorrupted`,
//!   and no file is changed or deleted;
//! - an invalid newest snapshot is skipped: recovery uses the previous one plus the
//!   WAL after it (two snapshots, and the WAL since the older one, are kept); a damaged
//!   stored payload index makes its snapshot invalid the same way;
//! - when no valid snapshot plus WAL covers every operation, `open` fails with `Recovery`.

use std::fs;
use std::path::{Path, PathBuf};

use vectorforge::*;

fn cfg() -> CollectionConfig {
    let mut c = CollectionConfig::new(4, Distance::Euclid);
    c.wal_segment_bytes = 4096;
    c
}

fn point(i: u64) -> PointStruct {
    PointStruct {
        id: i.into(),
        vector: vec![i as f32, 1.0, 2.0, 3.0],
        payload: None,
    }
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

fn snapshot_of_everything(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["wal", "snapshots"] {
        let mut stack: Vec<PathBuf> = Some(dir.join(sub))
            .filter(|d| d.exists())
            .into_iter()
            .collect();
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn torn_wal_tail_is_dropped_and_the_rest_kept() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let c = Collection::open(tmp.path(), cfg()).unwrap();
        for i in 0..20 {
            c.upsert(vec![point(i)]).unwrap();
        }
    }
    let seg = files_under(&tmp.path().join("wal"), ".wal").pop().unwrap();
    let data = fs::read(&seg).unwrap();
    fs::write(&seg, &data[..data.len() - 7]).unwrap();
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    assert_eq!(c.count(None), 19);
    assert_eq!(c.last_seq(), 19);
    c.upsert(vec![point(100)]).unwrap();
    drop(c);
    assert_eq!(Collection::open(tmp.path(), cfg()).unwrap().count(None), 20);
}

#[test]
fn wal_corruption_in_the_middle_refuses_to_open_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let c = Collection::open(tmp.path(), cfg()).unwrap();
        for i in 0..200 {
            c.upsert(vec![point(i)]).unwrap();
        }
    }
    let segs = files_under(&tmp.path().join("wal"), ".wal");
    assert!(segs.len() > 1);
    let mut data = fs::read(&segs[0]).unwrap();
    data[100] ^= 0x40;
    fs::write(&segs[0], &data).unwrap();
    let before = snapshot_of_everything(tmp.path());
    match Collection::open(tmp.path(), cfg()) {
        Err(Error::WalCorrupted { path, .. }) => assert_eq!(path, segs[0]),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a corrupted WAL"),
    }
    assert_eq!(
        snapshot_of_everything(tmp.path()),
        before,
        "files changed after a refused open"
    );
}

#[test]
fn invalid_newest_snapshot_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let c = Collection::open(tmp.path(), cfg()).unwrap();
        for i in 0..100 {
            c.upsert(vec![point(i)]).unwrap();
        }
        c.snapshot().unwrap();
        for i in 100..200 {
            c.upsert(vec![point(i)]).unwrap();
        }
        c.snapshot().unwrap();
        for i in 200..250 {
            c.upsert(vec![point(i)]).unwrap();
        }
    }
    let snaps = files_under(&tmp.path().join("snapshots"), "");
    assert_eq!(snaps.len(), 2);
    let newest = snaps.last().unwrap();
    let v = newest.join("vectors.bin");
    let mut data = fs::read(&v).unwrap();
    data[10] ^= 1;
    fs::write(&v, &data).unwrap();
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    assert_eq!(c.count(None), 250);
    assert_eq!(
        c.retrieve(&[150.into()], false, true)[0]
            .vector
            .as_ref()
            .unwrap()[0],
        150.0
    );
}

#[test]
fn a_damaged_payload_index_invalidates_its_snapshot_and_the_index_is_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let with_tag = |i: u64| PointStruct {
        payload: serde_json::json!({"tag": format!("t{}", i % 4)})
            .as_object()
            .cloned(),
        ..point(i)
    };
    {
        let c = Collection::open(tmp.path(), cfg()).unwrap();
        c.create_payload_index("tag", PayloadSchemaType::Keyword)
            .unwrap();
        c.upsert((0..100).map(with_tag).collect()).unwrap();
        c.snapshot().unwrap();
        c.upsert((100..200).map(with_tag).collect()).unwrap();
        c.snapshot().unwrap();
    }
    let t1 =
        Filter::from_json(&serde_json::json!({"must": [{"key": "tag", "match": {"value": "t1"}}]}))
            .unwrap();
    // the stored index of the newest snapshot answers after a clean reopen
    assert_eq!(
        Collection::open(tmp.path(), cfg())
            .unwrap()
            .count(Some(&t1)),
        50
    );
    let newest = files_under(&tmp.path().join("snapshots"), "")
        .pop()
        .unwrap();
    let idx = newest.join("payload_index.bin");
    let mut data = fs::read(&idx).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&idx, &data).unwrap();
    // damaged: the older snapshot plus the WAL after it give the same answers
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    assert_eq!(c.count(None), 200);
    assert_eq!(c.count(Some(&t1)), 50);
}

#[test]
fn missing_history_is_a_recovery_error() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let c = Collection::open(tmp.path(), cfg()).unwrap();
        for round in 0..3 {
            for i in 0..100 {
                c.upsert(vec![point(round * 100 + i)]).unwrap();
            }
            c.snapshot().unwrap();
        }
        for i in 300..310 {
            c.upsert(vec![point(i)]).unwrap();
        }
    }
    // both kept snapshots damaged: the WAL alone does not start at 1
    for s in files_under(&tmp.path().join("snapshots"), "") {
        fs::write(s.join("meta.json"), b"{").unwrap();
    }
    match Collection::open(tmp.path(), cfg()) {
        Err(Error::Recovery(msg)) => assert!(msg.contains("missing"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened without the history"),
    }
}

/// The state a collection answers with: (id, first component) of every point.
fn points_of(c: &Collection) -> Vec<(PointId, f32)> {
    let r = c.scroll(&ScrollRequest {
        filter: None,
        limit: usize::MAX,
        offset: None,
        with_payload: false,
        with_vector: true,
    });
    r.points
        .into_iter()
        .map(|p| (p.id, p.vector.map_or(f32::NAN, |v| v[0])))
        .collect()
}

#[test]
fn indexes_with_gaps_from_every_write_entry_point_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    let up = |c: &Collection, i: u64| c.validate(Operation::Upsert(vec![point(i)])).unwrap();
    // a log's indexes skip (blank and membership entries)
    assert_eq!(c.apply_at(3, &up(&c, 1)).unwrap(), Applied::Applied);
    assert_eq!(c.apply_at(7, &up(&c, 2)).unwrap(), Applied::Applied);
    // submit continues after the last applied index
    assert_eq!(c.upsert(vec![point(3)]).unwrap(), 8);
    c.snapshot().unwrap();
    assert_eq!(c.apply_at(40, &up(&c, 4)).unwrap(), Applied::Applied);
    for i in 0..60 {
        // enough records to rotate WAL segments, every one after a gap
        let op = up(&c, 100 + i);
        assert_eq!(c.apply_at(50 + 2 * i, &op).unwrap(), Applied::Applied);
    }
    c.delete(vec![PointId::Num(100)]).unwrap();
    let last = c.last_seq();
    let before = points_of(&c);
    drop(c);
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    assert_eq!(c.last_seq(), last);
    assert_eq!(points_of(&c), before);
    assert_eq!(c.count(None), 4 + 59);
}

#[test]
fn a_redelivered_index_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    let op = c.validate(Operation::Upsert(vec![point(1)])).unwrap();
    assert_eq!(c.apply_at(5, &op).unwrap(), Applied::Applied);
    let del = c
        .validate(Operation::Delete(vec![PointId::Num(1)]))
        .unwrap();
    // the same index again, and an older one, change nothing (not even with another op)
    for index in [5, 4, 1] {
        assert_eq!(
            c.apply_at(index, &del).unwrap(),
            Applied::AlreadyApplied { last: 5 }
        );
    }
    assert_eq!(c.count(None), 1);
    assert_eq!(c.last_seq(), 5);
    drop(c);
    // a replay after reopen (the log delivering its tail again) is a no-op as well
    let c = Collection::open(tmp.path(), cfg()).unwrap();
    assert_eq!(
        c.apply_at(5, &del).unwrap(),
        Applied::AlreadyApplied { last: 5 }
    );
    assert_eq!(c.count(None), 1);
}
