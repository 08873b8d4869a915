//! Write-ahead log: segment files named by their first sequence number, each
//! starting with an 8-byte format tag and holding records framed as
//! `[len u32][crc32c u32][seq u64][prev u64][bytes]` (the CRC covers seq, prev
//! and bytes). Sequence numbers increase but may skip (a replicated log's
//! indexes do); `prev` is the sequence number of the record before, so replay
//! accepts exactly what `append` accepted and still notices a lost record or
//! segment. With `SyncPolicy::Always` writers wait in `sync_upto`, where one
//! fsync covers every record written so far (group commit); with `Interval` a
//! background thread fsyncs.
//!
//! Segments without the tag are the first format (`[len][crc][seq][bytes]`,
//! dense sequence numbers): replay reads them as written and new records go to a
//! new tagged segment, so logs of older builds open unchanged.
//!
//! Replay truncates a torn tail (an incomplete or checksum-failing last record,
//! or zero bytes to the end of the last segment) and refuses, deleting nothing,
//! when a damaged record is followed by more data, sits in an older segment, or
//! does not follow the record before it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::types::SyncPolicy;

const HEADER: usize = 24;
/// First bytes of every segment: the record format (2: records carry `prev`).
const MAGIC: &[u8; 8] = b"VFWAL\0\0\x02";

/// One replayed record.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub seq: u64,
    /// Sequence number of the record before this one (0 for the first ever).
    pub prev: u64,
    pub body: &'a [u8],
}

struct Inner {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    last_seq: u64,
    /// (first seq, path), oldest first; the last one is being written.
    segments: Vec<(u64, PathBuf)>,
}

pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    synced: AtomicU64,
    sync_lock: Mutex<()>,
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// How the records of one segment are framed.
#[derive(Clone, Copy)]
struct Format {
    /// Bytes of a record's header (len, crc, seq and, currently, prev).
    header: usize,
    /// Offset of the first record (after the format tag).
    start: usize,
    /// Untagged segments of the first format: no `prev`, dense sequence numbers.
    legacy: bool,
}

impl Format {
    const CURRENT: Format = Format {
        header: HEADER,
        start: MAGIC.len(),
        legacy: false,
    };
    const LEGACY: Format = Format {
        header: 16,
        start: 0,
        legacy: true,
    };

    /// Whether `data` starts with one whole record of this format whose checksum holds.
    fn first_record_checks(self, data: &[u8]) -> bool {
        let h = self.header;
        if data.len() < h {
            return false;
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        data.len() >= h + len
            && crc32c::crc32c_append(crc32c::crc32c(&data[8..h]), &data[h..h + len]) == crc
    }
}

/// Creates a new, empty segment (format tag written and synced) for appending.
fn create_segment(dir: &Path, path: &Path) -> Result<File> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .at(path)?;
    f.write_all(MAGIC).and_then(|()| f.sync_data()).at(path)?;
    fsync_dir(dir)?;
    Ok(f)
}

/// A last segment whose format tag never fully reached the disk (a crash right after
/// it was created): empty, a prefix of the tag, or zeros.
fn unwritten_segment(data: &[u8]) -> bool {
    (data.len() < MAGIC.len() && MAGIC.starts_with(data)) || data.iter().all(|b| *b == 0)
}

impl Wal {
    /// Opens (or creates) the log in `dir`, calling `apply` for every valid record in
    /// order. Returns the log ready for appends after the last record.
    pub fn open(
        dir: &Path,
        policy: SyncPolicy,
        segment_bytes: u64,
        mut apply: impl FnMut(Record<'_>) -> Result<()>,
    ) -> Result<Arc<Wal>> {
        fs::create_dir_all(dir).at(dir)?;
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir).at(dir)? {
            let p = e.at(dir)?.path();
            let first = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                segments.push((first, p));
            }
        }
        segments.sort();
        let mut last_seq = 0u64;
        let mut first_record = true;
        let mut tail_size = 0u64;
        let mut legacy_tail = false;
        for (i, (_, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let data = fs::read(path).at(path)?;
            let corrupt = |offset: usize, reason: String| Error::WalCorrupted {
                path: path.clone(),
                offset: offset as u64,
                reason,
            };
            let format = if data.starts_with(MAGIC) {
                Format::CURRENT
            } else if is_last && unwritten_segment(&data) {
                tracing::warn!(path = %path.display(), "rewriting a WAL segment whose header was never written");
                let mut f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(0)
                    .and_then(|()| f.write_all(MAGIC))
                    .and_then(|()| f.sync_all())
                    .at(path)?;
                tail_size = MAGIC.len() as u64;
                continue;
            } else if Format::LEGACY.first_record_checks(&data) {
                // Written before records carried `prev`: read as it was written (dense
                // sequence numbers); appends go to a new segment of the current format.
                tracing::info!(path = %path.display(), "reading a WAL segment of the format before format tags");
                if is_last {
                    legacy_tail = true;
                }
                Format::LEGACY
            } else {
                return Err(corrupt(
                    0,
                    "not a WAL segment of a known format (no format tag, and its first record does not check out as the untagged format)".into(),
                ));
            };
            let header = format.header;
            let mut pos = format.start;
            while pos < data.len() {
                let rest = &data[pos..];
                let torn_ok = is_last;
                if rest.len() < header {
                    if torn_ok {
                        break;
                    }
                    return Err(corrupt(pos, "incomplete record header".into()));
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                let mut sb = [0u8; 8];
                sb.copy_from_slice(&rest[8..16]);
                let seq = u64::from_le_bytes(sb);
                let prev = if format.legacy {
                    // dense: the record before is the one read last (or seq - 1)
                    if first_record {
                        seq.saturating_sub(1)
                    } else {
                        last_seq
                    }
                } else {
                    sb.copy_from_slice(&rest[16..24]);
                    u64::from_le_bytes(sb)
                };
                if header + len > rest.len() {
                    if torn_ok {
                        break;
                    }
                    return Err(corrupt(
                        pos,
                        "record extends past the end of the segment".into(),
                    ));
                }
                let body = &rest[header..header + len];
                let ok = crc32c::crc32c_append(crc32c::crc32c(&rest[8..header]), body) == crc;
                if !ok {
                    let at_end = header + len == rest.len() || rest.iter().all(|b| *b == 0);
                    if torn_ok && at_end {
                        break;
                    }
                    return Err(corrupt(
                        pos,
                        "checksum mismatch with more records after it".into(),
                    ));
                }
                // the first record kept may follow trimmed ones; every later one must
                // follow the record before it
                let chained = if first_record {
                    prev < seq
                } else if format.legacy {
                    seq == last_seq + 1
                } else {
                    prev == last_seq
                };
                if !chained || seq <= last_seq {
                    return Err(corrupt(
                        pos,
                        format!(
                            "record {seq} follows {prev}, but the record before it is {last_seq}"
                        ),
                    ));
                }
                first_record = false;
                apply(Record { seq, prev, body })?;
                last_seq = seq;
                pos += header + len;
            }
            if is_last && pos < data.len() {
                tracing::warn!(path = %path.display(), at = pos, dropped = data.len() - pos, "truncating torn WAL tail");
                let f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(pos as u64).at(path)?;
                f.sync_all().at(path)?;
            }
            if is_last {
                tail_size = pos as u64;
            }
        }
        let (file, path, size) = match segments.last() {
            // Records of the current format never go into an untagged segment.
            Some(_) if legacy_tail => {
                let p = dir.join(segment_name(last_seq + 1));
                let f = create_segment(dir, &p)?;
                segments.push((last_seq + 1, p.clone()));
                (f, p, MAGIC.len() as u64)
            }
            Some((_, p)) => (
                OpenOptions::new().append(true).open(p).at(p)?,
                p.clone(),
                tail_size,
            ),
            None => {
                let p = dir.join(segment_name(1));
                let f = create_segment(dir, &p)?;
                segments.push((1, p.clone()));
                (f, p, MAGIC.len() as u64)
            }
        };
        let wal = Arc::new(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(Inner {
                file: Arc::new(file),
                path,
                size,
                last_seq,
                segments,
            }),
            synced: AtomicU64::new(last_seq),
            sync_lock: Mutex::new(()),
        });
        if let SyncPolicy::Interval { millis } = policy {
            let weak = Arc::downgrade(&wal);
            std::thread::Builder::new()
                .name("vf-wal-sync".into())
                .spawn(move || interval_sync(weak, Duration::from_millis(millis.max(1))))
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(wal)
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.lock().last_seq
    }

    /// Appends one record; `seq` must be after the last one (gaps are allowed and
    /// replay accepts them).
    pub fn append(&self, seq: u64, body: &[u8]) -> Result<()> {
        let mut g = self.inner.lock();
        if seq <= g.last_seq {
            return Err(Error::StaleSequence {
                last: g.last_seq,
                got: seq,
            });
        }
        if g.size >= self.segment_bytes {
            g.file.sync_data().at(&g.path)?;
            let p = self.dir.join(segment_name(seq));
            let f = create_segment(&self.dir, &p)?;
            g.file = Arc::new(f);
            g.path = p.clone();
            g.size = MAGIC.len() as u64;
            g.segments.push((seq, p));
        }
        let len = u32::try_from(body.len())
            .map_err(|_| Error::InvalidPayload("operation larger than 4 GiB".into()))?;
        let mut frame = Vec::with_capacity(HEADER + body.len());
        let mut sb = [0u8; 16];
        sb[..8].copy_from_slice(&seq.to_le_bytes());
        sb[8..].copy_from_slice(&g.last_seq.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&sb), body);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(&sb);
        frame.extend_from_slice(body);
        if let Err(e) = (&*g.file).write_all(&frame) {
            // take back a partial write so that later records do not follow garbage
            let _ = g.file.set_len(g.size);
            return Err(Error::io(&g.path, e));
        }
        g.size += frame.len() as u64;
        g.last_seq = seq;
        Ok(())
    }

    /// Blocks until every record up to `seq` is on disk. Concurrent callers share fsyncs.
    pub fn sync_upto(&self, seq: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _leader = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let (file, path, target) = {
            let g = self.inner.lock();
            (g.file.clone(), g.path.clone(), g.last_seq)
        };
        file.sync_data().at(&path)?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Removes whole segments whose records are all `<= seq` (never the live one).
    pub fn remove_upto(&self, seq: u64) -> Result<usize> {
        let mut g = self.inner.lock();
        let mut removed = 0;
        while g.segments.len() > 1 && g.segments[1].0 <= seq + 1 {
            let (_, p) = g.segments.remove(0);
            fs::remove_file(&p).at(&p)?;
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    pub fn segment_count(&self) -> usize {
        self.inner.lock().segments.len()
    }
}

fn interval_sync(wal: Weak<Wal>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(w) = wal.upgrade() else { return };
        let last = w.last_seq();
        if let Err(e) = w.sync_upto(last) {
            tracing::error!(error = %e, "periodic WAL fsync failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut v = Vec::new();
        Wal::open(dir, SyncPolicy::Always, 1 << 20, |r| {
            v.push((r.seq, r.body.to_vec()));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn append_replay_rotate_and_trim() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("wal");
        let w = Wal::open(&d, SyncPolicy::Always, 4096, |_| Ok(())).unwrap();
        for s in 1..=100u64 {
            w.append(s, &[s as u8; 100]).unwrap();
        }
        w.sync_upto(100).unwrap();
        assert!(w.segment_count() > 1);
        assert!(matches!(
            w.append(100, b"x"),
            Err(Error::StaleSequence { .. })
        ));
        drop(w);
        let got = read_all(&d).unwrap();
        assert_eq!(got.len(), 100);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (s, b))| *s == i as u64 + 1 && b[0] == *s as u8)
        );
        let w = Wal::open(&d, SyncPolicy::Always, 4096, |_| Ok(())).unwrap();
        let before = w.segment_count();
        assert!(w.remove_upto(60).unwrap() > 0);
        assert!(w.segment_count() < before);
        drop(w);
        let got = read_all(&d).unwrap();
        assert!(got[0].0 <= 61 && got.last().unwrap().0 == 100);
    }

    fn one_segment(d: &Path) -> PathBuf {
        let w = Wal::open(d, SyncPolicy::Always, 1 << 20, |_| Ok(())).unwrap();
        for s in 1..=10u64 {
            w.append(s, &[7u8; 50]).unwrap();
        }
        w.sync_upto(10).unwrap();
        w.inner.lock().path.clone()
    }

    #[test]
    fn torn_tail_is_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let p = one_segment(tmp.path());
        let full = fs::read(&p).unwrap();
        // cut the last record in half
        fs::write(&p, &full[..full.len() - 20]).unwrap();
        assert_eq!(read_all(tmp.path()).unwrap().len(), 9);
        assert_eq!(fs::metadata(&p).unwrap().len() as usize, full.len() - 74);
        // zeros appended (size grew, data never written)
        let mut z = fs::read(&p).unwrap();
        z.extend_from_slice(&[0u8; 300]);
        fs::write(&p, &z).unwrap();
        assert_eq!(read_all(tmp.path()).unwrap().len(), 9);
        // a garbled last record
        let mut g = fs::read(&p).unwrap();
        let n = g.len();
        g[n - 3] ^= 0x55;
        fs::write(&p, &g).unwrap();
        assert_eq!(read_all(tmp.path()).unwrap().len(), 8);
        // appends continue after the truncation point
        let w = Wal::open(tmp.path(), SyncPolicy::Always, 1 << 20, |_| Ok(())).unwrap();
        w.append(9, b"again").unwrap();
        drop(w);
        assert_eq!(read_all(tmp.path()).unwrap().last().unwrap().1, b"again");
    }

    #[test]
    fn corruption_in_the_middle_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let p = one_segment(tmp.path());
        let mut data = fs::read(&p).unwrap();
        data[8 + 74 * 3 + 28] ^= 0xff;
        fs::write(&p, &data).unwrap();
        let err = read_all(tmp.path()).unwrap_err();
        assert!(
            matches!(err, Error::WalCorrupted { offset: 230, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"));
        assert_eq!(fs::read(&p).unwrap(), data, "nothing may be deleted");
    }

    #[test]
    fn gaps_replay_as_appended_and_a_lost_segment_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let seqs: Vec<u64> = (1..=60u64).map(|i| i * 3 + i % 2).collect();
        let w = Wal::open(tmp.path(), SyncPolicy::Always, 4096, |_| Ok(())).unwrap();
        for s in &seqs {
            w.append(*s, &[*s as u8; 200]).unwrap();
        }
        drop(w);
        let got: Vec<u64> = read_all(tmp.path()).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(
            got, seqs,
            "replay returns exactly the appended sequence numbers"
        );
        // appends continue after the gap-y tail and reopen again
        let w = Wal::open(tmp.path(), SyncPolicy::Always, 4096, |_| Ok(())).unwrap();
        assert_eq!(w.last_seq(), *seqs.last().unwrap());
        w.append(1000, b"later").unwrap();
        let segs = w.inner.lock().segments.clone();
        drop(w);
        assert_eq!(read_all(tmp.path()).unwrap().last().unwrap().0, 1000);
        // losing a middle segment breaks the prev chain: refused, nothing deleted
        assert!(segs.len() > 2);
        fs::remove_file(&segs[1].1).unwrap();
        let err = read_all(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::WalCorrupted { .. }), "{err}");
        assert!(segs[2].1.exists());
    }

    #[test]
    fn a_segment_of_another_format_is_refused_and_an_unwritten_one_reset() {
        let tmp = tempfile::tempdir().unwrap();
        let p = one_segment(tmp.path());
        let mut data = fs::read(&p).unwrap();
        data[..8].copy_from_slice(&[16, 0, 0, 0, 1, 2, 3, 4]);
        fs::write(&p, &data).unwrap();
        let err = read_all(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), data, "nothing may be deleted");
        // a last segment created but never written (crash before its header hit the disk)
        fs::write(&p, [0u8; 5]).unwrap();
        assert!(read_all(tmp.path()).unwrap().is_empty());
        let w = Wal::open(tmp.path(), SyncPolicy::Always, 1 << 20, |_| Ok(())).unwrap();
        w.append(4, b"x").unwrap();
        drop(w);
        assert_eq!(read_all(tmp.path()).unwrap(), vec![(4, b"x".to_vec())]);
    }

    /// A record as the first, untagged format framed it: `[len][crc][seq][bytes]`.
    fn legacy_record(seq: u64, body: &[u8]) -> Vec<u8> {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), body);
        let mut r = Vec::new();
        r.extend_from_slice(&(body.len() as u32).to_le_bytes());
        r.extend_from_slice(&crc.to_le_bytes());
        r.extend_from_slice(&seq.to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn a_log_written_before_format_tags_replays_and_grows_in_a_new_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let older: Vec<u8> = (1..=3u64)
            .flat_map(|s| legacy_record(s, &[s as u8; 10]))
            .collect();
        let newer: Vec<u8> = (4..=5u64)
            .flat_map(|s| legacy_record(s, &[s as u8; 10]))
            .collect();
        fs::write(d.join(segment_name(1)), &older).unwrap();
        fs::write(d.join(segment_name(4)), &newer).unwrap();
        let expected: Vec<(u64, Vec<u8>)> = (1..=5u64).map(|s| (s, vec![s as u8; 10])).collect();
        assert_eq!(read_all(d).unwrap(), expected);
        // Appends (gaps allowed now) go to a tagged segment; the old ones stay as written.
        let w = Wal::open(d, SyncPolicy::Always, 1 << 20, |_| Ok(())).unwrap();
        w.append(9, b"after").unwrap();
        drop(w);
        assert_eq!(fs::read(d.join(segment_name(4))).unwrap(), newer);
        let mut all = expected.clone();
        all.push((9, b"after".to_vec()));
        assert_eq!(read_all(d).unwrap(), all);
        // A gap inside an untagged segment is corruption, as it always was there.
        let gapped: Vec<u8> = [legacy_record(1, b"a"), legacy_record(3, b"c")].concat();
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join(segment_name(1)), &gapped).unwrap();
        let err = read_all(other.path()).unwrap_err();
        assert!(err.to_string().contains("record 3"), "{err}");
    }

    #[test]
    fn group_commit_from_many_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let w = Wal::open(tmp.path(), SyncPolicy::Always, 1 << 20, |_| Ok(())).unwrap();
        let next = Mutex::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let seq = {
                            let mut n = next.lock();
                            *n += 1;
                            w.append(*n, b"rec").unwrap();
                            *n
                        };
                        w.sync_upto(seq).unwrap();
                        assert!(w.synced.load(Ordering::Acquire) >= seq);
                    }
                });
            }
        });
        drop(w);
        assert_eq!(read_all(tmp.path()).unwrap().len(), 400);
    }
}
