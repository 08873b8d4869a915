//! The Raft log on disk: segment files of CRC-checked records, fsynced before an append
//! is acknowledged, with truncation of a conflicting suffix and purging of a prefix.
//!
//! Files in the log directory:
//! - `<first index, 20 digits>.seg`: an 8-byte tag `VFRLOG01`, then records
//!   `[len u32][crc32c u32][body]`, body = `[index u64][term u64][leader node u64][kind u8]
//!   [payload]` (little endian; kind 0 blank, 1 command bytes, 2 membership JSON).
//!   A segment is closed (fsynced) before the next starts; indexes run on without gaps.
//! - `purged.json`: the last purged log id (written atomically, fsynced).
//!
//! Opening reads every segment: a torn tail of the last segment (a record cut short, or a
//! bad last record with nothing but zeroes after it) is cut off; any other bad record is
//! refused as corruption. Memory holds only each entry's log id and position; reads go to
//! the segment files (`pread`, CRC checked again) through read handles, so they need not
//! hold the log's lock while they read.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload, LogId};

use crate::TypeConfig;
use crate::files::{self, FileError};

/// A Raft log entry of this crate's type configuration.
pub type Entry = openraft::Entry<TypeConfig>;

const TAG: &[u8; 8] = b"VFRLOG01";
const HEADER: usize = 8; // len + crc
const BODY_FIXED: usize = 25; // index, term, node, kind
/// Largest record accepted (a guard against a garbage length field).
const MAX_RECORD: u32 = 1 << 30;

/// Errors of the log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("corrupt Raft log segment {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("Raft log append out of order: expected index {expected}, got {got}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("encoding a membership entry: {0}")]
    Encode(#[from] serde_json::Error),
}

struct Segment {
    first: u64,
    path: PathBuf,
    len: u64,
    /// a read handle (stays valid after the file is removed by a purge)
    read: Arc<File>,
}

/// Where an entry is: its log id and its record's place.
struct Held {
    log_id: LogId<u64>,
    /// the segment's first index (positions in `segments` move when a purge removes some)
    segment: u64,
    offset: u64,
    len: u32,
}

/// Entries to read: a run of records in one segment.
pub(crate) struct Located {
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    lens: Vec<u32>,
    first_index: u64,
}

impl Located {
    /// A run small enough to read on an async thread.
    pub(crate) fn is_small(&self) -> bool {
        self.lens.iter().map(|l| *l as u64).sum::<u64>() <= 64 << 10
    }
}

/// The log files of one node, opened for appending.
pub struct LogFiles {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<Segment>,
    entries: VecDeque<Held>,
    purged: Option<LogId<u64>>,
    active: Option<File>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn encode(e: &Entry, out: &mut Vec<u8>) -> Result<(), LogError> {
    let mut body = Vec::with_capacity(BODY_FIXED + 64);
    body.extend_from_slice(&e.log_id.index.to_le_bytes());
    body.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
    body.extend_from_slice(&e.log_id.leader_id.node_id.to_le_bytes());
    match &e.payload {
        EntryPayload::Blank => body.push(0),
        EntryPayload::Normal(cmd) => {
            body.push(1);
            body.extend_from_slice(cmd);
        }
        EntryPayload::Membership(m) => {
            body.push(2);
            body.extend_from_slice(&serde_json::to_vec(m)?);
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

fn decode(body: &[u8]) -> Result<Entry, String> {
    if body.len() < BODY_FIXED {
        return Err(format!("record body of {} bytes is too short", body.len()));
    }
    let u = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let log_id = LogId::new(CommittedLeaderId::new(u(8), u(16)), u(0));
    let rest = &body[BODY_FIXED..];
    let payload = match body[24] {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(rest.to_vec()),
        2 => EntryPayload::Membership(
            serde_json::from_slice(rest).map_err(|e| format!("membership entry: {e}"))?,
        ),
        k => return Err(format!("unknown entry kind {k}")),
    };
    Ok(Entry { log_id, payload })
}

impl LogFiles {
    /// Opens (or creates) the log in `dir`; `segment_bytes` is the size after which a new
    /// segment starts.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, LogError> {
        files::create_dir(dir)?;
        let purged: Option<LogId<u64>> = files::read_json(&dir.join("purged.json"))?;
        let mut firsts = Vec::new();
        for name in files::list_dir(dir)? {
            if let Some(n) = name.strip_suffix(".seg")
                && let Ok(first) = n.parse::<u64>()
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut log = LogFiles {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            segments: Vec::new(),
            entries: VecDeque::new(),
            purged,
            active: None,
        };
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            log.load_segment(first, i + 1 == count)?;
        }
        if let Some(last) = log.segments.last() {
            let f = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(|e| FileError::io("open for append", &last.path, e))?;
            log.active = Some(f);
        }
        tracing::info!(
            dir = %dir.display(),
            segments = log.segments.len(),
            entries = log.entries.len(),
            purged = ?log.purged.map(|p| p.index),
            "Raft log opened"
        );
        Ok(log)
    }

    fn load_segment(&mut self, first: u64, last: bool) -> Result<(), LogError> {
        let path = segment_path(&self.dir, first);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| FileError::io("read", &path, e))?;
        let corrupt = |offset: usize, reason: String| LogError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        if data.len() < TAG.len() {
            if last {
                // created but its tag never reached the disk: nothing was acknowledged in it
                tracing::warn!(path = %path.display(), "removing a torn, empty last Raft log segment");
                files::remove_file(&path)?;
                files::sync_dir(&self.dir)?;
                return Ok(());
            }
            return Err(corrupt(0, "segment shorter than its tag".into()));
        }
        if &data[..TAG.len()] != TAG {
            return Err(corrupt(
                0,
                "not a vectorforge Raft log segment (bad tag)".into(),
            ));
        }
        let mut off = TAG.len();
        let mut expect = first;
        while off < data.len() {
            let problem = if data.len() - off < HEADER {
                Some((true, "record header cut short".to_string()))
            } else {
                let len =
                    u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
                let crc = u32::from_le_bytes([
                    data[off + 4],
                    data[off + 5],
                    data[off + 6],
                    data[off + 7],
                ]);
                let end = off + HEADER + len as usize;
                if len > MAX_RECORD || end > data.len() {
                    Some((true, format!("record of {len} bytes runs past the end")))
                } else if crc32c::crc32c(&data[off + HEADER..end]) != crc {
                    let zero_after = data[end..].iter().all(|b| *b == 0);
                    Some((zero_after, "record CRC mismatch".to_string()))
                } else {
                    match decode(&data[off + HEADER..end]) {
                        Err(reason) => Some((false, reason)),
                        Ok(entry) => {
                            if entry.log_id.index != expect {
                                return Err(corrupt(
                                    off,
                                    format!(
                                        "index {} where {expect} was expected",
                                        entry.log_id.index
                                    ),
                                ));
                            }
                            expect += 1;
                            if self.purged.is_none_or(|p| entry.log_id.index > p.index) {
                                if let Err(LogError::OutOfOrder { expected, got }) =
                                    self.check_next(entry.log_id.index)
                                {
                                    return Err(corrupt(
                                        off,
                                        format!(
                                            "index {got} where {expected} was expected (a lost segment?)"
                                        ),
                                    ));
                                }
                                self.entries.push_back(Held {
                                    log_id: entry.log_id,
                                    segment: first,
                                    offset: off as u64,
                                    len: (end - off) as u32,
                                });
                            }
                            off = end;
                            None
                        }
                    }
                }
            };
            if let Some((torn, reason)) = problem {
                if last && torn {
                    tracing::warn!(path = %path.display(), offset = off, %reason, "cutting a torn tail off the Raft log");
                    files::set_len(&path, off as u64)?;
                    data.truncate(off);
                    break;
                }
                return Err(corrupt(off, reason));
            }
        }
        let read = File::open(&path).map_err(|e| FileError::io("open", &path, e))?;
        self.segments.push(Segment {
            first,
            path,
            len: data.len() as u64,
            read: Arc::new(read),
        });
        Ok(())
    }

    fn check_next(&self, index: u64) -> Result<(), LogError> {
        let expected = match (self.entries.back(), self.purged) {
            (Some(h), _) => Some(h.log_id.index + 1),
            (None, Some(p)) => Some(p.index + 1),
            (None, None) => None,
        };
        match expected {
            Some(expected) if expected != index => Err(LogError::OutOfOrder {
                expected,
                got: index,
            }),
            _ => Ok(()),
        }
    }

    /// The last purged log id, if any.
    pub fn purged(&self) -> Option<LogId<u64>> {
        self.purged
    }

    /// The last log id held (or the purge point when nothing is held after it).
    pub fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries.back().map(|h| h.log_id).or(self.purged)
    }

    /// The index of the first entry held, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|h| h.log_id.index)
    }

    fn pos(&self, index: u64) -> Option<usize> {
        let first = self.first_index()?;
        let i = index.checked_sub(first)? as usize;
        (i < self.entries.len()).then_some(i)
    }

    /// The log id of the entry at `index`, if held.
    pub fn log_id_at(&self, index: u64) -> Option<LogId<u64>> {
        self.pos(index).map(|i| self.entries[i].log_id)
    }

    /// Entries with `start <= index < end` that are held, read from the files.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<Entry>, LogError> {
        read_located(self.locate(start, end))
    }

    /// Where the entries `start <= index < end` are (read them with [`read_located`]
    /// without holding the log).
    pub(crate) fn locate(&self, start: u64, end: u64) -> Vec<Located> {
        let mut out: Vec<Located> = Vec::new();
        let Some(first) = self.first_index() else {
            return out;
        };
        let Some(mut i) = self.pos(start.max(first)) else {
            return out;
        };
        while i < self.entries.len() && self.entries[i].log_id.index < end {
            let h = &self.entries[i];
            let Some(seg) = self.segment_of(h) else {
                break;
            };
            match out.last_mut() {
                Some(run)
                    if Arc::ptr_eq(&seg.read, &run.file)
                        && run.first_index + run.lens.len() as u64 == h.log_id.index =>
                {
                    run.lens.push(h.len);
                }
                _ => out.push(Located {
                    file: seg.read.clone(),
                    path: seg.path.clone(),
                    offset: h.offset,
                    lens: vec![h.len],
                    first_index: h.log_id.index,
                }),
            }
            i += 1;
        }
        out
    }

    fn segment_of(&self, h: &Held) -> Option<&Segment> {
        self.segments
            .binary_search_by_key(&h.segment, |s| s.first)
            .ok()
            .map(|i| &self.segments[i])
    }

    /// Appends entries (indexes must follow on) and fsyncs before returning.
    pub fn append(&mut self, entries: Vec<Entry>) -> Result<(), LogError> {
        let mut buf = Vec::new();
        for e in entries {
            let log_id = e.log_id;
            self.check_next(e.log_id.index)?;
            buf.clear();
            encode(&e, &mut buf)?;
            let rotate = match self.segments.last() {
                None => true,
                Some(s) => {
                    s.len + buf.len() as u64 > self.segment_bytes && s.len > TAG.len() as u64
                }
            };
            if rotate {
                self.start_segment(e.log_id.index)?;
            }
            let (Some(seg), Some(f)) = (self.segments.last_mut(), self.active.as_mut()) else {
                return Err(FileError::io(
                    "append",
                    &self.dir,
                    std::io::Error::other("no active segment"),
                )
                .into());
            };
            f.write_all(&buf)
                .map_err(|err| FileError::io("write", &seg.path, err))?;
            self.entries.push_back(Held {
                log_id,
                segment: seg.first,
                offset: seg.len,
                len: buf.len() as u32,
            });
            seg.len += buf.len() as u64;
        }
        if let (Some(seg), Some(f)) = (self.segments.last(), self.active.as_ref()) {
            f.sync_data()
                .map_err(|e| FileError::io("fsync", &seg.path, e))?;
        }
        Ok(())
    }

    fn start_segment(&mut self, first: u64) -> Result<(), LogError> {
        if let (Some(seg), Some(f)) = (self.segments.last(), self.active.as_ref()) {
            f.sync_all()
                .map_err(|e| FileError::io("fsync", &seg.path, e))?;
        }
        let path = segment_path(&self.dir, first);
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| FileError::io("create", &path, e))?;
        f.write_all(TAG)
            .map_err(|e| FileError::io("write", &path, e))?;
        f.sync_all().map_err(|e| FileError::io("fsync", &path, e))?;
        files::sync_dir(&self.dir)?;
        let read = File::open(&path).map_err(|e| FileError::io("open", &path, e))?;
        self.segments.push(Segment {
            first,
            path,
            len: TAG.len() as u64,
            read: Arc::new(read),
        });
        self.active = Some(f);
        Ok(())
    }

    /// Removes every entry with index >= `from` (a conflicting suffix), durably.
    pub fn truncate(&mut self, from: u64) -> Result<(), LogError> {
        let Some(i) = self.pos(from).or_else(|| {
            // `from` before the first held entry: everything goes
            self.first_index().filter(|f| from < *f).map(|_| 0)
        }) else {
            return Ok(());
        };
        let (seg_first, offset) = (self.entries[i].segment, self.entries[i].offset);
        self.entries.truncate(i);
        while let Some(s) = self.segments.last() {
            if s.first <= seg_first {
                break;
            }
            files::remove_file(&s.path)?;
            self.segments.pop();
        }
        let Some(seg) = self.segments.last_mut() else {
            self.active = None;
            return Ok(());
        };
        files::set_len(&seg.path, offset)?;
        seg.len = offset;
        let f = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| FileError::io("open for append", &seg.path, e))?;
        self.active = Some(f);
        files::sync_dir(&self.dir)?;
        tracing::debug!(from, "Raft log truncated");
        Ok(())
    }

    /// Drops every entry up to and including `upto` (covered by a snapshot): the purge
    /// point is made durable first, then whole segments behind it are deleted.
    pub fn purge(&mut self, upto: LogId<u64>) -> Result<(), LogError> {
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        files::write_json_synced(&self.dir.join("purged.json"), &Some(upto))?;
        self.purged = Some(upto);
        while self
            .entries
            .front()
            .is_some_and(|h| h.log_id.index <= upto.index)
        {
            self.entries.pop_front();
        }
        let everything = self.entries.is_empty();
        let mut removed = 0;
        while !self.segments.is_empty() {
            let whole = if everything {
                true
            } else {
                self.segments
                    .get(1)
                    .is_some_and(|next| next.first <= upto.index + 1)
            };
            if !whole {
                break;
            }
            files::remove_file(&self.segments[0].path)?;
            self.segments.remove(0);
            removed += 1;
        }
        if self.segments.is_empty() {
            self.active = None;
        }
        if removed > 0 {
            files::sync_dir(&self.dir)?;
        }
        tracing::debug!(upto = upto.index, removed, "Raft log purged");
        Ok(())
    }
}

/// Reads located runs of records (CRC checked again).
pub(crate) fn read_located(runs: Vec<Located>) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    for run in runs {
        let total: usize = run.lens.iter().map(|l| *l as usize).sum();
        let mut buf = vec![0u8; total];
        run.file
            .read_exact_at(&mut buf, run.offset)
            .map_err(|e| FileError::io("read", &run.path, e))?;
        let mut off = 0usize;
        for (k, len) in run.lens.iter().enumerate() {
            let rec = &buf[off..off + *len as usize];
            let corrupt = |reason: String| LogError::Corrupt {
                path: run.path.clone(),
                offset: run.offset + off as u64,
                reason,
            };
            if rec.len() < HEADER {
                return Err(corrupt("record shorter than its header".into()));
            }
            let crc = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
            if crc32c::crc32c(&rec[HEADER..]) != crc {
                return Err(corrupt("record CRC mismatch on read".into()));
            }
            let e = decode(&rec[HEADER..]).map_err(corrupt)?;
            let want = run.first_index + k as u64;
            if e.log_id.index != want {
                return Err(corrupt(format!(
                    "index {} where {want} was expected",
                    e.log_id.index
                )));
            }
            out.push(e);
            off += *len as usize;
        }
    }
    Ok(out)
}
