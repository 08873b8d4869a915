//! Raft replication for vectorforge shards, generic over the state machine.
//!
//! Each shard's pods (StatefulSet, node id = pod ordinal) form one Raft group: the
//! replicated log is the source of truth and the engine is the state machine, applied
//! through [`StateMachine::apply`] (the server maps it onto the engine's `apply_at`).
//! Built on openraft 0.9 (`storage-v2`); this crate supplies storage, transport and a
//! small handle.
//!
//! # Files
//! - `log.rs` — the log on disk: segment files of CRC-checked records; torn tail cut at
//!   open, corruption refused; truncate (conflicting suffix), purge (prefix).
//! - `log_store.rs` — openraft's `RaftLogStorage` over it, plus the vote and committed id.
//! - `state_machine.rs` — the [`StateMachine`] trait and its openraft adapter: applies,
//!   snapshot files (built, sent, installed), `sm_meta.json`.
//! - `wire.rs`, `network.rs`, `service.rs` — gRPC transport (`proto/raft.proto`,
//!   `vectorforge.raft.v1.Raft`): the client with its [`Resolver`], the tonic service.
//! - `node.rs` — [`RaftNode`]: start, initialize, propose, linearizable reads,
//!   membership, metrics, shutdown.
//! - `files.rs` — atomic fsynced JSON files, typed I/O errors.
//!
//! # API
//! [`RaftNode::start`]`(NodeConfig, Arc<impl StateMachine>, Arc<dyn Resolver>)`, then
//! mount [`RaftNode::service`] into the pod's tonic server on the Raft port (6335) or
//! [`RaftNode::serve_on`] a listener; [`RaftNode::initialize`] on every pod (only the
//! lowest id bootstraps, once); [`RaftNode::propose`] → [`Response`] `{ index, data }` or
//! [`NodeError::NotLeader`] `{ leader }`; [`RaftNode::ensure_linearizable`] before leader
//! reads; [`RaftNode::add_learner`], [`RaftNode::change_membership`],
//! [`RaftNode::remove`]; [`RaftNode::metrics`] (role, leader, voters, learners,
//! per-follower matched index and lag, last applied, last log index);
//! [`RaftNode::shutdown`].
//!
//! # What is durable when
//! - A log entry: fsynced before openraft is told it is flushed (so before a follower
//!   acknowledges it and before the leader counts itself in the quorum).
//! - The vote (term and voted-for): an fsynced file, written before it is acted on.
//! - The committed log id: written but not fsynced (a lower value after a crash only
//!   defers re-applying until a leader commits again).
//! - The state machine: as durable as it makes itself. At start the applied point is the
//!   state machine's own durable `applied_index()`; every committed entry after it is
//!   re-applied from the log (which purges only entries covered by a snapshot).
//! - Memberships applied and snapshot metadata: `sm_meta.json`, fsynced when they change.
//! - Snapshots: files under `snapshots/` written by the state machine, renamed into place
//!   and fsynced before they are recorded; snapshots stream from and to disk
//!   (`SnapshotData = tokio::fs::File`) in chunks.

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
