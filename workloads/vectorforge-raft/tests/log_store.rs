//! The log files alone: append, truncate, purge, reopen, a torn tail cut off, a corrupt
//! record refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use vectorforge_raft::log::Entry;
use vectorforge_raft::{LogError, LogFiles};

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
        payload: EntryPayload::Normal(format!("cmd-{term}-{index}").into_bytes()),
    }
}

fn indexes(log: &LogFiles) -> Vec<(u64, u64)> {
    log.range(0, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn append_truncate_purge_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let mut log = LogFiles::open(&dir, 256).unwrap();
    let mut first = vec![Entry {
        log_id: LogId::new(CommittedLeaderId::new(0, 0), 0),
        payload: EntryPayload::Membership(Membership::new(
            vec![[0u64, 1, 2].into_iter().collect()],
            (),
        )),
    }];
    first.extend((1..=20).map(|i| entry(1, i)));
    log.append(first).unwrap();
    assert!(segments(&dir).len() > 2, "small segments rotate");
    assert_eq!(log.last_log_id().unwrap().index, 20);
    assert!(matches!(
        log.range(0, 1).unwrap()[0].payload,
        EntryPayload::Membership(_)
    ));
    assert_eq!(log.range(5, 8).unwrap().len(), 3);
    // a gap is refused
    assert!(matches!(
        log.append(vec![entry(1, 22)]),
        Err(LogError::OutOfOrder {
            expected: 21,
            got: 22
        })
    ));

    // a conflicting suffix from index 15 is replaced by term 2
    log.truncate(15).unwrap();
    assert_eq!(log.last_log_id().unwrap().index, 14);
    log.append((15..=25).map(|i| entry(2, i)).collect())
        .unwrap();
    drop(log);

    let mut log = LogFiles::open(&dir, 256).unwrap();
    let want: Vec<(u64, u64)> = [(0, 0)]
        .into_iter()
        .chain((1..=14).map(|i| (1, i)))
        .chain((15..=25).map(|i| (2, i)))
        .collect();
    assert_eq!(indexes(&log), want);

    let before = segments(&dir).len();
    log.purge(LogId::new(CommittedLeaderId::new(1, 0), 12))
        .unwrap();
    assert!(
        segments(&dir).len() < before,
        "whole segments behind the purge point go"
    );
    assert_eq!(log.first_index(), Some(13));
    assert_eq!(log.purged().unwrap().index, 12);
    drop(log);

    let mut log = LogFiles::open(&dir, 256).unwrap();
    assert_eq!(log.first_index(), Some(13));
    assert_eq!(log.purged().unwrap().index, 12);
    assert_eq!(log.last_log_id().unwrap().index, 25);
    assert_eq!(log.range(0, u64::MAX).unwrap().len(), 13);

    // a purge past the end (a snapshot installed ahead of the log) empties it
    log.purge(LogId::new(CommittedLeaderId::new(3, 0), 40))
        .unwrap();
    assert!(log.range(0, u64::MAX).unwrap().is_empty());
    assert_eq!(log.last_log_id().unwrap().index, 40);
    log.append(vec![entry(3, 41)]).unwrap();
    drop(log);
    let log = LogFiles::open(&dir, 256).unwrap();
    assert_eq!(indexes(&log), vec![(3, 41)]);
}

#[test]
fn a_torn_tail_is_cut_off() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let mut log = LogFiles::open(&dir, 1 << 20).unwrap();
    log.append((1..=10).map(|i| entry(1, i)).collect()).unwrap();
    drop(log);
    let seg = dir.join(&segments(&dir)[0]);
    let len = std::fs::metadata(&seg).unwrap().len();

    // half a record at the end (a crash mid-write)
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);
    let mut log = LogFiles::open(&dir, 1 << 20).unwrap();
    assert_eq!(log.last_log_id().unwrap().index, 10);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "tail cut");
    log.append(vec![entry(1, 11)]).unwrap();
    drop(log);

    // the last record's bytes garbled, zeroes after it (a partly written page)
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = LogFiles::open(&dir, 1 << 20).unwrap();
    assert_eq!(log.last_log_id().unwrap().index, 10);
    assert!(std::fs::metadata(&seg).unwrap().len() < len);
}

#[test]
fn a_corrupt_record_in_the_middle_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let mut log = LogFiles::open(&dir, 1 << 20).unwrap();
    log.append((1..=10).map(|i| entry(1, i)).collect()).unwrap();
    drop(log);
    let seg = dir.join(&segments(&dir)[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    // flip a byte inside the third record's command
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    match LogFiles::open(&dir, 1 << 20) {
        Err(LogError::Corrupt { .. }) => {}
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a corrupt log opened"),
    }
    // and nothing was cut
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);

    // a corrupt record in a segment that is not the last is refused as well
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let mut log = LogFiles::open(&dir, 128).unwrap();
    log.append((1..=10).map(|i| entry(1, i)).collect()).unwrap();
    drop(log);
    let segs = segments(&dir);
    assert!(segs.len() > 1);
    let seg = dir.join(&segs[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        LogFiles::open(&dir, 128),
        Err(LogError::Corrupt { .. })
    ));
}

#[test]
fn a_segment_of_another_format_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{:020}.seg", 1)), b"NOTALOGxxxxxxxxxxxxxx").unwrap();
    assert!(matches!(
        LogFiles::open(&dir, 1 << 20),
        Err(LogError::Corrupt { .. })
    ));
}

#[test]
fn a_lost_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let mut log = LogFiles::open(&dir, 128).unwrap();
    log.append((1..=10).map(|i| entry(1, i)).collect()).unwrap();
    drop(log);
    let segs = segments(&dir);
    assert!(segs.len() > 2);
    std::fs::remove_file(dir.join(&segs[1])).unwrap();
    match LogFiles::open(&dir, 128) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("expected"), "{reason}"),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a log with a lost segment opened"),
    }
}
