//! Raft replication for vectorforge shards, generic over the state machine.
//!
//! Each shard's pods (StatefulSet, node id = pod ordinal) form one Raft group: the
//! replicated log is the source of truth and the engine is the state machine, applied
//! through [`StateMachine::apply`] (the server maps it onto the engine's `apply_at`,
//! which accepts gaps and is a no-op for an index it already has). Built on openraft 0.9
//! (`storage-v2`); this crate supplies the storage, the transport and a small handle.
//!
//! # Files
//! - `log.rs` — the log on disk: segment files (`log/<first index>.seg`) of CRC-checked
//!   records; memory holds only log ids and positions; torn tail cut at open, any other
//!   bad record refused; truncate (conflicting suffix), purge (prefix, `purged.json`).
//! - `log_store.rs` — openraft's `RaftLogStorage` over it, plus the vote (`vote.json`)
//!   and the committed log id (`committed.json`).
//! - `state_machine.rs` — the [`StateMachine`] trait and its openraft adapter
//!   ([`SmStore`]): applies on blocking threads, snapshot files (built, sent, installed),
//!   `sm_meta.json`.
//! - `wire.rs`, `network.rs`, `service.rs` — gRPC transport (`proto/raft.proto`, service
//!   `vectorforge.raft.v1.Raft`: AppendEntries, Vote, InstallSnapshot chunks; commands as
//!   protobuf `bytes`, openraft's other structs as JSON in `bytes`); the client resolves
//!   peers through a [`Resolver`] at connect time and reconnects after errors; every
//!   call names its group and target node, and a node refuses calls meant for another.
//! - `node.rs` — [`RaftNode`]: start, initialize, propose, linearizable reads,
//!   membership, metrics, shutdown; [`NodeConfig`], [`NodeError`].
//! - `files.rs` — atomic fsynced JSON files, typed I/O errors.
//! - `state_machine_tests.rs` — unit tests: a snapshot install interrupted by a crash.
//!
//! # API
//! [`RaftNode::start`]`(NodeConfig::new(group, id, data_dir), Arc<impl StateMachine>,
//! Arc<dyn Resolver>)`, then mount [`RaftNode::service`] ([`RaftServer`]) into the pod's
//! tonic server on the Raft port (6335) or [`RaftNode::serve_on`] a listener;
//! [`RaftNode::initialize`]`(members)` on every pod (only the lowest id bootstraps, and
//! only an empty node); [`RaftNode::propose`]`(command)` → [`Response`] `{ index, data }`
//! once applied on the leader, or [`NodeError::NotLeader`] `{ leader: Some(Leader { id,
//! addr }) }`; [`RaftNode::ensure_linearizable`] before leader reads;
//! [`RaftNode::add_learner`]`(id, addr, blocking)`, [`RaftNode::change_membership`]`(voters)`,
//! [`RaftNode::remove`]`(id)`; [`RaftNode::metrics`] ([`Metrics`]: role, term, leader,
//! voters, learners, per-follower matched index and lag, last applied, last log index,
//! snapshot and purge points); [`RaftNode::trigger_snapshot`]; [`RaftNode::shutdown`].
//!
//! # What is durable when
//! - A log entry: fsynced before openraft's `LogFlushed` callback (so before a follower
//!   acknowledges it and before the leader counts itself in the quorum).
//! - The vote (term and voted-for): an fsynced file, written before it is acted on.
//! - The committed log id: written but not fsynced (a lower value after a crash only
//!   defers re-applying until a leader commits again).
//! - The state machine: as durable as it makes itself. At start the applied log id is
//!   derived from the state machine's durable `applied_index()` (its term from the log, or
//!   from the snapshot metadata), and every committed entry after it is re-applied from
//!   the log; the log purges only entries a snapshot covers, and the state machine is
//!   durable at a snapshot's index once it built or installed it. Nothing is written per
//!   apply beside what the state machine writes.
//! - Memberships applied (the last few) and snapshot metadata: `sm_meta.json`, fsynced
//!   when they change; a snapshot being installed is recorded there before the state
//!   machine installs it, so a crash in between resolves at the next start.
//! - Snapshots: files under `snapshots/` written by the state machine, fsynced and
//!   renamed into place before they are recorded; they stream from and to disk
//!   (`SnapshotData = tokio::fs::File`) in chunks of `snapshot_chunk_bytes`.

// openraft's StorageError / RPCError are large by design and its traits fix them as the
// error types; boxing them here would only add conversions.
#![allow(clippy::result_large_err)]

mod files;
pub mod log;
mod log_store;
mod network;
mod node;
mod service;
mod state_machine;
pub mod wire;

use serde::{Deserialize, Serialize};

pub use files::FileError;
pub use log::{LogError, LogFiles};
pub use log_store::LogStore;
pub use network::{Resolver, StaticResolver};
pub use node::{Leader, Metrics, NodeConfig, NodeError, Progress, RaftNode, Role};
pub use service::{RaftServer, RaftService, serve};
pub use state_machine::{SmSnapshotBuilder, SmStore, StateMachine};

/// The node type in memberships: the node's Raft address (`host:port`).
pub type Node = openraft::BasicNode;

/// What applying a command gave: its log index and the state machine's response bytes
/// (empty for blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub index: u64,
    pub data: Vec<u8>,
}

openraft::declare_raft_types!(
    /// openraft's type configuration: u64 node ids, commands as opaque bytes (the
    /// server's encoded write), snapshots as files.
    pub TypeConfig:
        D = Vec<u8>,
        R = Response,
        NodeId = u64,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
