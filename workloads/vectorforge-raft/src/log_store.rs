//! openraft's `RaftLogStorage` over [`LogFiles`]: appends are fsynced before openraft's
//! `LogFlushed` callback fires, the vote is an fsynced file (`vote.json`), the committed
//! log id a best-effort file (`committed.json`, not fsynced: after a crash a lower value
//! only means more entries are re-applied once a leader commits again).
//!
//! File work runs on blocking threads; reads are served from the in-memory copy.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError,
    StorageIOError, Vote,
};

use crate::TypeConfig;
use crate::files;
use crate::log::{Entry, LogError, LogFiles, read_located};

pub(crate) fn storage_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

/// The durable Raft log and vote of one node (cheap to clone: one shared state).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFiles>>,
    dir: PathBuf,
}

impl LogStore {
    /// Opens the log under `dir` (created if missing).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, LogError> {
        let files = LogFiles::open(dir, segment_bytes)?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(files)),
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LogFiles> {
        // a panic while holding the lock leaves the files as the last completed call did
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The term of the entry at `index`, if the log holds it.
    pub(crate) fn log_id_at(&self, index: u64) -> Option<LogId<u64>> {
        self.lock().log_id_at(index)
    }

    async fn blocking<T, F>(&self, subject: ErrorSubject<u64>, f: F) -> Result<T, StorageError<u64>>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogFiles) -> Result<T, LogError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let s2 = subject.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
        .map_err(|e| storage_err(s2, ErrorVerb::Write, &e))?;
        r.map_err(|e| {
            tracing::error!(error = %e, "Raft log write failed");
            storage_err(subject, ErrorVerb::Write, &e)
        })
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let (start, end) = bounds(&range);
        let runs = self.lock().locate(start, end);
        let r = if runs.len() <= 1 && runs.iter().all(|r| r.is_small()) {
            // one small read from the page cache: not worth a thread hop
            read_located(runs)
        } else {
            tokio::task::spawn_blocking(move || read_located(runs))
                .await
                .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?
        };
        r.map_err(|e| {
            tracing::error!(error = %e, "Raft log read failed");
            storage_err(ErrorSubject::Logs, ErrorVerb::Read, &e)
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let g = self.lock();
        Ok(LogState {
            last_purged_log_id: g.purged(),
            last_log_id: g.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let path = self.dir.join("vote.json");
        let vote = *vote;
        tokio::task::spawn_blocking(move || files::write_json_synced(&path, &vote))
            .await
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, &e))?
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        files::read_json(&self.dir.join("vote.json"))
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let path = self.dir.join("committed.json");
        tokio::task::spawn_blocking(move || files::write_json(&path, &committed, false))
            .await
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, &e))?
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        match files::read_json::<Option<LogId<u64>>>(&self.dir.join("committed.json")) {
            Ok(c) => {
                let c = c.flatten();
                // never claim more than the log holds (the file is not fsynced)
                let last = self.lock().last_log_id();
                Ok(c.filter(|c| last.is_some_and(|l| c.index <= l.index)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable committed.json");
                Ok(None)
            }
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let r = self
            .blocking(ErrorSubject::Logs, move |log| log.append(entries))
            .await;
        match &r {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        r
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(ErrorSubject::Log(log_id), move |log| {
            log.truncate(log_id.index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(ErrorSubject::Log(log_id), move |log| log.purge(log_id))
            .await
    }
}
