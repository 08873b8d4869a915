//! The state machine the server implements ([`StateMachine`]) and its adapter to
//! openraft's `RaftStateMachine` ([`SmStore`]): committed commands go to
//! `StateMachine::apply` in log order on blocking threads; snapshots are files the state
//! machine writes and reads under `<data dir>/snapshots/`.
//!
//! Beside the state machine the adapter keeps `sm_meta.json` (fsynced): the last few
//! applied memberships with their log ids, the current snapshot's metadata, and a snapshot
//! being installed. openraft's applied log id is derived at start from the state
//! machine's *durable* `applied_index()`: its term comes from the log (applied entries are
//! committed and never truncated, and only entries covered by a snapshot are purged) or
//! from the snapshot metadata, so whatever the state machine lost in a crash is re-applied
//! from the log.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::log::Entry;
use crate::log_store::{LogStore, storage_err};
use crate::{Node, Response, TypeConfig, files};

/// The replicated state machine (the vectorforge engine in the server). Methods block;
/// the adapter calls them on blocking threads, never two at once.
pub trait StateMachine: Send + Sync + 'static {
    /// The state machine's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies the committed command at `index`. Called in log order (indexes may skip:
    /// blank and membership entries are not passed on); must be a no-op returning an empty
    /// response for an index it already holds (after a restart entries are re-delivered).
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, Self::Error>;

    /// The highest index whose effects are durable (0 = none). May lag what was applied
    /// (the rest is re-applied from the log after a crash); never below the index of a
    /// snapshot built or installed.
    fn applied_index(&self) -> u64;

    /// Writes a snapshot of the current state to the file `path` and returns the index it
    /// holds (its applied index: no apply runs meanwhile). When it returns, that state is
    /// durable (`applied_index()` is at least the returned index).
    fn build_snapshot(&self, path: &Path) -> Result<u64, Self::Error>;

    /// Replaces the whole state with the snapshot file at `path` (one `build_snapshot`
    /// wrote, possibly on another node) as the state at log index `index` (which may be
    /// later than the last command in the file: blank and membership entries follow);
    /// durable when it returns, with `applied_index()` = `index`.
    fn install_snapshot(&self, path: &Path, index: u64) -> Result<(), Self::Error>;
}

type Membership = StoredMembership<u64, Node>;
type Meta = SnapshotMeta<u64, Node>;

/// The adapter's durable metadata (`sm_meta.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmMeta {
    /// applied memberships, oldest first (the last few)
    memberships: Vec<Membership>,
    snapshot: Option<Meta>,
    /// the state machine's own index for `snapshot` (its last command; the snapshot's log
    /// id may be later when blank or membership entries followed that command)
    #[serde(default)]
    snapshot_sm_index: u64,
    installing: Option<Meta>,
}

const KEEP_MEMBERSHIPS: usize = 4;

struct State {
    /// what this process applied last (None until `applied_state` read it at start)
    last_applied: Option<LogId<u64>>,
    /// the state machine's index as of `last_applied` (its last command)
    last_command: u64,
    meta: SmMeta,
    receiving: Vec<PathBuf>,
}

struct Shared<S> {
    sm: Arc<S>,
    log: LogStore,
    dir: PathBuf,
    state: Mutex<State>,
    seq: AtomicU64,
}

/// openraft's state machine over a [`StateMachine`] (cheap to clone).
pub struct SmStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for SmStore<S> {
    fn clone(&self) -> Self {
        SmStore {
            shared: self.shared.clone(),
        }
    }
}

fn sm_err(e: &(impl std::error::Error + 'static)) -> StorageError<u64> {
    storage_err(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

fn snap_err(e: &(impl std::error::Error + 'static)) -> StorageError<u64> {
    storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Inconsistent(String);

impl<S: StateMachine> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("sm_meta.json")
    }

    fn snapshots(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.snapshots().join(format!("{id}.snap"))
    }

    fn save(&self, meta: &SmMeta) -> Result<(), StorageError<u64>> {
        files::write_json_synced(&self.meta_path(), meta).map_err(|e| sm_err(&e))
    }

    /// The log id of `index` as this node knows it (applied, snapshot, installing, log).
    fn log_id_of(&self, st: &State, index: u64) -> Option<LogId<u64>> {
        let metas = [&st.meta.snapshot, &st.meta.installing];
        st.last_applied
            .filter(|l| l.index == index)
            .or_else(|| {
                metas
                    .iter()
                    .filter_map(|m| m.as_ref().and_then(|m| m.last_log_id))
                    .find(|l| l.index == index)
            })
            .or_else(|| self.log.log_id_at(index))
    }

    /// The newest membership applied at or before `index`.
    fn membership_at(&self, st: &State, index: u64) -> Membership {
        let snap = st.meta.snapshot.iter().map(|m| &m.last_membership);
        st.meta
            .memberships
            .iter()
            .chain(snap)
            .filter(|m| m.log_id().is_some_and(|l| l.index <= index))
            .max_by_key(|m| m.log_id().map(|l| l.index))
            .cloned()
            .unwrap_or_default()
    }

    fn remove_snapshots_except(&self, keep: &str) {
        let Ok(names) = files::list_dir(&self.snapshots()) else {
            return;
        };
        let st = self.lock();
        for n in names {
            let p = self.snapshots().join(&n);
            if (n != format!("{keep}.snap") && n.ends_with(".snap")) || n.ends_with(".tmp") {
                if let Err(e) = files::remove_file(&p) {
                    tracing::warn!(error = %e, "removing an old snapshot file");
                }
            } else if n.ends_with(".part") && !st.receiving.contains(&p) {
                let _ = files::remove_file(&p);
            }
        }
    }
}

impl<S: StateMachine> SmStore<S> {
    /// Opens the adapter's files under `dir` (the node's data directory) over `log`.
    /// [`crate::RaftNode::start`] does this; it is public for using openraft directly
    /// (e.g. openraft's storage test suite).
    pub fn open(dir: &Path, sm: Arc<S>, log: LogStore) -> Result<Self, files::FileError> {
        let snapshots = dir.join("snapshots");
        files::create_dir(&snapshots)?;
        let meta: SmMeta = files::read_json(&dir.join("sm_meta.json"))?.unwrap_or_default();
        // leftovers of a snapshot being built or received when the node stopped
        for n in files::list_dir(&snapshots)? {
            if n.ends_with(".part") || n.ends_with(".tmp") {
                files::remove_file(&snapshots.join(&n))?;
            }
        }
        Ok(SmStore {
            shared: Arc::new(Shared {
                sm,
                log,
                dir: dir.to_path_buf(),
                state: Mutex::new(State {
                    last_applied: None,
                    last_command: 0,
                    meta,
                    receiving: Vec::new(),
                }),
                seq: AtomicU64::new(0),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared<S>) -> Result<T, StorageError<u64>> + Send + 'static,
    ) -> Result<T, StorageError<u64>> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| sm_err(&e))?
    }
}

/// Builds snapshots through the state machine (holds the apply lock while it runs).
pub struct SmSnapshotBuilder<S> {
    store: SmStore<S>,
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SmSnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, path) = self
            .store
            .blocking(|sh| {
                let mut st = sh.lock();
                let n = sh.seq.fetch_add(1, Ordering::Relaxed);
                let tmp = sh.snapshots().join(format!("building-{n}.tmp"));
                let index = sh.sm.build_snapshot(&tmp).map_err(|e| snap_err(&e))?;
                // the state at the last command is also the state at the blank and
                // membership entries applied after it
                let log_id = match st.last_applied {
                    Some(l) if index == st.last_command => Some(l),
                    // nothing applied yet: an empty snapshot
                    None if index == 0 => None,
                    _ => Some(sh.log_id_of(&st, index).ok_or_else(|| {
                        snap_err(&Inconsistent(format!(
                            "snapshot at index {index}: no log id known for it"
                        )))
                    })?),
                };
                let (at, term) = log_id.map_or((0, 0), |l| (l.index, l.leader_id.term));
                let id = format!("{at}-{term}-{n}-{}", std::process::id());
                let meta = Meta {
                    last_log_id: log_id,
                    last_membership: match log_id {
                        Some(l) => sh.membership_at(&st, l.index),
                        None => Membership::default(),
                    },
                    snapshot_id: id.clone(),
                };
                let path = sh.snapshot_path(&id);
                std::fs::rename(&tmp, &path).map_err(|e| snap_err(&e))?;
                files::sync_dir(&sh.snapshots()).map_err(|e| snap_err(&e))?;
                let mut m = st.meta.clone();
                m.snapshot = Some(meta.clone());
                m.snapshot_sm_index = index;
                sh.save(&m)?;
                st.meta = m;
                drop(st);
                sh.remove_snapshots_except(&id);
                tracing::info!(index = at, snapshot = %id, "snapshot built");
                Ok((meta, path))
            })
            .await?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmStore<S> {
    type SnapshotBuilder = SmSnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        self.blocking(|sh| {
            let mut st = sh.lock();
            if let Some(a) = st.last_applied {
                return Ok((Some(a), sh.membership_at(&st, a.index)));
            }
            // at start: derive the applied log id from what the state machine made durable
            let n = sh.sm.applied_index();
            st.last_command = n;
            // a snapshot install that finished in the state machine but not in sm_meta
            if let Some(inst) = st.meta.installing.clone() {
                let mut m = st.meta.clone();
                m.installing = None;
                if let Some(l) = inst.last_log_id.filter(|l| l.index == n) {
                    m.memberships = vec![inst.last_membership.clone()];
                    m.snapshot = Some(inst);
                    m.snapshot_sm_index = l.index;
                }
                sh.save(&m)?;
                st.meta = m;
            }
            let snap = st.meta.snapshot.as_ref().and_then(|s| s.last_log_id);
            let applied = match snap {
                Some(_) if n < st.meta.snapshot_sm_index => {
                    return Err(sm_err(&Inconsistent(format!(
                        "state machine's durable index {n} is behind its snapshot's {}",
                        st.meta.snapshot_sm_index
                    ))));
                }
                Some(s) if n == st.meta.snapshot_sm_index => Some(s),
                None if n == 0 => None,
                _ => Some(sh.log_id_of(&st, n).ok_or_else(|| {
                    sm_err(&Inconsistent(format!(
                        "state machine's applied index {n} is neither in the log nor a snapshot"
                    )))
                })?),
            };
            let membership = match applied {
                Some(a) => sh.membership_at(&st, a.index),
                None => Membership::default(),
            };
            st.last_applied = applied;
            tracing::info!(applied = ?applied.map(|a| a.index), "state machine opened");
            Ok((applied, membership))
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.blocking(move |sh| {
            let mut st = sh.lock();
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let index = e.log_id.index;
                let data = match e.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(cmd) => {
                        let r = sh.sm.apply(index, &cmd).map_err(|err| {
                            tracing::error!(index, error = %err, "state machine apply failed");
                            storage_err(ErrorSubject::Apply(e.log_id), ErrorVerb::Write, &err)
                        })?;
                        st.last_command = index;
                        r
                    }
                    EntryPayload::Membership(m) => {
                        let mut meta = st.meta.clone();
                        meta.memberships
                            .retain(|x| x.log_id().is_some_and(|l| l.index < index));
                        meta.memberships
                            .push(StoredMembership::new(Some(e.log_id), m));
                        let extra = meta.memberships.len().saturating_sub(KEEP_MEMBERSHIPS);
                        meta.memberships.drain(..extra);
                        sh.save(&meta)?;
                        st.meta = meta;
                        Vec::new()
                    }
                };
                st.last_applied = Some(e.log_id);
                out.push(Response { index, data });
            }
            Ok(out)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SmSnapshotBuilder {
            store: self.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let n = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.shared.snapshots().join(format!("receiving-{n}.part"));
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(&e))?;
        self.shared.lock().receiving.push(path);
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        snapshot.flush().await.map_err(|e| snap_err(&e))?;
        let ino = snapshot.metadata().await.map_err(|e| snap_err(&e))?.ino();
        let ours = {
            let mut st = self.shared.lock();
            let pos = st
                .receiving
                .iter()
                .position(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino));
            pos.map(|i| st.receiving.remove(i))
        };
        let part = match ours {
            Some(p) => p,
            None => {
                // a snapshot file not from begin_receiving_snapshot: copy it in
                let n = self.shared.seq.fetch_add(1, Ordering::Relaxed);
                let p = self.shared.snapshots().join(format!("copying-{n}.part"));
                let mut f = tokio::fs::File::create(&p)
                    .await
                    .map_err(|e| snap_err(&e))?;
                snapshot
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| snap_err(&e))?;
                tokio::io::copy(&mut *snapshot, &mut f)
                    .await
                    .map_err(|e| snap_err(&e))?;
                f.flush().await.map_err(|e| snap_err(&e))?;
                snapshot = Box::new(f);
                p
            }
        };
        snapshot.sync_all().await.map_err(|e| snap_err(&e))?;
        drop(snapshot);
        let meta = meta.clone();
        self.blocking(move |sh| {
            let mut st = sh.lock();
            let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
            let path = sh.snapshot_path(&meta.snapshot_id);
            std::fs::rename(&part, &path).map_err(|e| snap_err(&e))?;
            files::sync_dir(&sh.snapshots()).map_err(|e| snap_err(&e))?;
            let mut m = st.meta.clone();
            m.installing = Some(meta.clone());
            sh.save(&m)?;
            sh.sm
                .install_snapshot(&path, index)
                .map_err(|e| snap_err(&e))?;
            m.installing = None;
            m.memberships = vec![meta.last_membership.clone()];
            m.snapshot = Some(meta.clone());
            m.snapshot_sm_index = index;
            sh.save(&m)?;
            st.meta = m;
            st.last_applied = meta.last_log_id;
            st.last_command = index;
            for p in st.receiving.drain(..) {
                let _ = files::remove_file(&p);
            }
            drop(st);
            sh.remove_snapshots_except(&meta.snapshot_id);
            tracing::info!(index, snapshot = %meta.snapshot_id, "snapshot installed");
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.blocking(|sh| {
            // opened under the lock: a newer snapshot cannot remove this file meanwhile
            let st = sh.lock();
            let Some(meta) = st.meta.snapshot.clone() else {
                return Ok(None);
            };
            let path = sh.snapshot_path(&meta.snapshot_id);
            let f = std::fs::File::open(&path).map_err(|e| snap_err(&e))?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(tokio::fs::File::from_std(f)),
            }))
        })
        .await
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
