//! The handle the server holds: [`RaftNode::start`] opens the node's files, starts
//! openraft, and offers `initialize`, `propose`, `ensure_linearizable`, membership
//! changes, a metrics summary and `shutdown`, with typed [`NodeError`]s (`NotLeader`
//! names the leader to forward to).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::log::LogError;
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, Resolver, resolve};
use crate::service::{RaftServer, RaftService, serve};
use crate::state_machine::{SmStore, StateMachine};
use crate::{Node, Raft, Response, files};

/// How a node runs. [`NodeConfig::new`] gives values for pods; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// the Raft group's name (e.g. `<collection>-shard-<n>`): every call carries it and a
    /// node of another group refuses it
    pub group: String,
    /// the node id (the pod ordinal)
    pub id: u64,
    /// the node's directory: `log/`, `sm_meta.json`, `snapshots/`
    pub data_dir: PathBuf,
    /// leader heartbeat interval; openraft also uses it as the timeout of one
    /// AppendEntries call, follower fsync included
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// build a snapshot every this many applied entries (0: only when triggered)
    pub snapshot_every: u64,
    /// log entries kept behind a snapshot (so a slightly lagging follower needs no snapshot)
    pub keep_after_snapshot: u64,
    /// size after which the log starts a new segment file
    pub segment_bytes: u64,
    /// bytes of a snapshot per InstallSnapshot call
    pub snapshot_chunk_bytes: u64,
    /// limit for one InstallSnapshot call; the last one includes the state machine's
    /// `install_snapshot`, so this bounds installing a whole snapshot
    pub snapshot_install_timeout: Duration,
    /// most entries per AppendEntries call (mind command sizes: a call carries at most
    /// 64 MiB)
    pub max_payload_entries: u64,
    pub connect_timeout: Duration,
}

impl NodeConfig {
    /// Defaults for a shard pod: heartbeat 150 ms, elections after 1.5–3 s, a snapshot
    /// every 10,000 entries keeping 1,000 behind it, 64 MiB segments, 1 MiB chunks, 60 s
    /// to install a snapshot, 64 entries per AppendEntries.
    pub fn new(group: impl Into<String>, id: u64, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            group: group.into(),
            id,
            data_dir: data_dir.into(),
            heartbeat: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(1500),
            election_timeout_max: Duration::from_millis(3000),
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            segment_bytes: 64 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_install_timeout: Duration::from_secs(60),
            max_payload_entries: 64,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// The current leader, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: u64,
    /// its Raft address (resolver first, then membership), when known
    pub addr: Option<String>,
}

/// Errors of the node handle.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader: forward to `leader` (None while an election runs).
    #[error("not the Raft leader (leader: {leader:?})")]
    NotLeader { leader: Option<Leader> },
    /// Retry later (e.g. no quorum reachable to confirm leadership).
    #[error("Raft unavailable: {0}")]
    Unavailable(String),
    /// A membership change refused (another in progress, unknown learner, empty set).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The Raft node stopped (shut down, or a storage error stopped it).
    #[error("Raft node stopped: {0}")]
    Stopped(String),
    #[error("bad Raft configuration: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
    #[error("Raft group name {0:?} is not printable ASCII")]
    InvalidGroup(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("Raft storage: {0}")]
    Storage(String),
}

/// This node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A follower's replication progress, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// highest index known to be on that follower
    pub matched: Option<u64>,
    /// this leader's last log index minus `matched`
    pub lag: u64,
}

/// A summary of openraft's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// per follower and learner, on the leader only
    pub replication: BTreeMap<u64, Progress>,
}

/// One running Raft node.
pub struct RaftNode {
    id: u64,
    group: String,
    raft: Raft,
    resolver: Arc<dyn Resolver>,
    served: Mutex<Vec<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

fn stopped(e: impl std::fmt::Display) -> NodeError {
    NodeError::Stopped(e.to_string())
}

impl RaftNode {
    /// Opens the node's files under `cfg.data_dir` and starts openraft. Peers are reached
    /// through `resolver`; serve the transport with [`RaftNode::service`] or
    /// [`RaftNode::serve_on`].
    pub async fn start<S: StateMachine>(
        cfg: NodeConfig,
        state_machine: Arc<S>,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, NodeError> {
        let ms = |d: Duration| d.as_millis() as u64;
        let rc = openraft::Config {
            cluster_name: cfg.group.clone(),
            heartbeat_interval: ms(cfg.heartbeat),
            election_timeout_min: ms(cfg.election_timeout_min),
            election_timeout_max: ms(cfg.election_timeout_max),
            snapshot_policy: if cfg.snapshot_every == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(cfg.snapshot_every)
            },
            max_in_snapshot_log_to_keep: cfg.keep_after_snapshot,
            snapshot_max_chunk_size: cfg.snapshot_chunk_bytes,
            install_snapshot_timeout: ms(cfg.snapshot_install_timeout),
            max_payload_entries: cfg.max_payload_entries,
            // add_learner(blocking) returns once the learner is within one batch of the leader
            replication_lag_threshold: cfg.max_payload_entries,
            ..Default::default()
        }
        .validate()
        .map_err(Box::new)?;
        let data_dir = cfg.data_dir.clone();
        let id = cfg.id;
        let (log, sm) = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            let log = LogStore::open(&data_dir.join("log"), cfg.segment_bytes)?;
            let sm = SmStore::open(&data_dir, state_machine, log.clone())?;
            Ok((log, sm))
        })
        .await
        .map_err(|e| NodeError::Storage(e.to_string()))??;
        let group_md = tonic::metadata::MetadataValue::try_from(cfg.group.as_str())
            .map_err(|_| NodeError::InvalidGroup(cfg.group.clone()))?;
        let net = NetworkFactory {
            resolver: resolver.clone(),
            connect_timeout: cfg.connect_timeout,
            group: group_md,
        };
        let raft = Raft::new(id, Arc::new(rc), net, log, sm)
            .await
            .map_err(stopped)?;
        tracing::info!(node = id, "Raft node started");
        Ok(RaftNode {
            id,
            group: cfg.group,
            raft,
            resolver,
            served: Mutex::new(Vec::new()),
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The openraft handle (waits, triggers) for what this API does not wrap.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The gRPC service, to mount into the server's tonic server.
    pub fn service(&self) -> RaftServer {
        RaftService::new(self.raft.clone(), self.group.clone(), self.id).server()
    }

    /// Serves the gRPC service alone on `listener` until [`RaftNode::shutdown`].
    pub fn serve_on(&self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let svc = self.service();
        let id = self.id;
        let h = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            if let Err(e) = serve(svc, listener, stop).await {
                tracing::error!(node = id, error = %e, "Raft gRPC service failed");
            }
        });
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tx, h));
    }

    /// Bootstraps a fresh group of `members` (id → Raft address). Only the lowest id
    /// does it, and only when its log is empty; every other call is a no-op, so each pod
    /// may call it on start. Returns whether this call bootstrapped the group.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> Result<bool, NodeError> {
        if members.keys().next() != Some(&self.id) {
            return Ok(false);
        }
        if self.raft.is_initialized().await.map_err(stopped)? {
            return Ok(false);
        }
        let nodes: BTreeMap<u64, Node> = members
            .into_iter()
            .map(|(id, a)| (id, Node::new(a)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => {
                tracing::info!(node = self.id, "bootstrapped a new Raft group");
                Ok(true)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(NodeError::Membership(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(stopped(f)),
        }
    }

    fn not_leader(&self, f: ForwardToLeader<u64, Node>) -> NodeError {
        let leader = f.leader_id.map(|id| Leader {
            id,
            addr: resolve(self.resolver.as_ref(), id, f.leader_node.as_ref()),
        });
        NodeError::NotLeader { leader }
    }

    fn write_error(&self, e: RaftError<u64, ClientWriteError<u64, Node>>) -> NodeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.not_leader(f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(m)) => {
                NodeError::Membership(m.to_string())
            }
            RaftError::Fatal(f) => stopped(f),
        }
    }

    /// Appends `command` to the replicated log and waits until this node applied it:
    /// the log index and the state machine's response. `NotLeader` on a follower. An
    /// error after leadership was lost mid-way leaves it unknown whether the command
    /// commits (the server's writes are idempotent per index, not per request).
    pub async fn propose(&self, command: Vec<u8>) -> Result<Response, NodeError> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok(r.data),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// Confirms leadership with a quorum and waits until the state machine applied
    /// everything committed before: a read of local state afterwards is linearizable.
    /// Returns the index read up to.
    pub async fn ensure_linearizable(&self) -> Result<u64, NodeError> {
        match self.raft.ensure_linearizable().await {
            Ok(l) => Ok(l.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader(f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(NodeError::Unavailable(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(stopped(f)),
        }
    }

    /// Adds `id` at `addr` as a learner (leader only); with `blocking`, waits until it
    /// caught up with the leader's log (within `max_payload_entries` of its last index).
    /// Returns the membership entry's index.
    pub async fn add_learner(
        &self,
        id: u64,
        addr: impl Into<String>,
        blocking: bool,
    ) -> Result<u64, NodeError> {
        self.raft
            .add_learner(id, Node::new(addr.into()), blocking)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| self.write_error(e))
    }

    /// Makes `voters` the voting members (each must be a member or learner already);
    /// members left out become learners. Returns the final membership entry's index.
    pub async fn change_membership(&self, voters: BTreeSet<u64>) -> Result<u64, NodeError> {
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| self.write_error(e))
    }

    /// Removes `id` from the group entirely (voter or learner).
    pub async fn remove(&self, id: u64) -> Result<u64, NodeError> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = m.membership().voter_ids().any(|v| v == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| self.write_error(e))
    }

    /// Builds a snapshot now (and purges the log behind it, keeping
    /// `keep_after_snapshot` entries). Returns once requested, not when done.
    pub async fn trigger_snapshot(&self) -> Result<(), NodeError> {
        self.raft.trigger().snapshot().await.map_err(stopped)
    }

    /// A summary of this node's state.
    pub fn metrics(&self) -> Metrics {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let last = m.last_log_index.unwrap_or(0);
        let replication = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, l)| {
                let matched = l.map(|l| l.index);
                let lag = last.saturating_sub(matched.unwrap_or(0));
                (*id, Progress { matched, lag })
            })
            .collect();
        let membership = m.membership_config.membership();
        Metrics {
            id: self.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            replication,
        }
    }

    /// Stops openraft and the gRPC service started by [`RaftNode::serve_on`].
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        let served: Vec<_> =
            std::mem::take(&mut *self.served.lock().unwrap_or_else(|p| p.into_inner()));
        for (tx, h) in served {
            let _ = tx.send(());
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .is_err()
            {
                // connections still open after the drain: cut them
                abort.abort();
            }
        }
        self.raft.shutdown().await.map_err(stopped)?;
        tracing::info!(node = self.id, "Raft node stopped");
        Ok(())
    }
}
