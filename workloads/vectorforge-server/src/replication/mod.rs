//! Raft replication of this pod's shard (`vectorforge-raft`): the pods of one shard
//! form a Raft group (node id = pod ordinal, group `<collection>-shard-<i>`), the
//! replicated log is the source of truth and the collection is its state machine
//! (`machine`). A write is proposed on the leader and acknowledged once applied
//! there; a follower answers `NotLeader` naming the leader, and the coordinator
//! forwards to it. Peers are resolved at connect time through the pod watch (Ready or
//! not: a pod joins before it is Ready).
//!
//! Membership follows the desired size (the VectorCollection's `spec.replicas`, watched
//! through the API, or `--replicas` for hand-run pods): ordinal 0 bootstraps a fresh
//! group of ordinals `0..replicas` once it knows the size and can resolve them;
//! afterwards the leader adds missing ordinals below `replicas` as learners, promotes
//! them once caught up, and removes members at or above `replicas` (Raft's joint
//! consensus keeps a majority through the change). A scale therefore restarts no pod.

mod machine;

pub use machine::ShardMachine;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vectorforge_raft::{NodeConfig, NodeError, RaftNode, RaftServer, Resolver};

use crate::cluster::peers::PeerSource;
use crate::error::{ServiceError, ServiceResult};
use crate::registry::Registry;

/// What this pod is in its shard's group.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    pub collection: String,
    pub shard: u32,
    /// This pod's ordinal (its node id).
    pub ordinal: u32,
    /// Members the group should have: ordinals `0..replicas` (until
    /// [`Replication::follow_replicas`] says otherwise).
    pub replicas: u32,
    /// Wait for [`Replication::follow_replicas`] before bootstrapping (the size comes
    /// from the VectorCollection).
    pub size_from_api: bool,
    /// Where the Raft log and metadata live (on the pod's volume).
    pub dir: PathBuf,
    /// This pod's own internal address, as others reach it.
    pub advertise: SocketAddr,
}

/// Node id → Raft address through the pod watch.
struct PeerResolver {
    peers: Arc<dyn PeerSource>,
    shard: u32,
    me: (u64, SocketAddr),
}

impl Resolver for PeerResolver {
    fn address(&self, node: u64) -> Option<String> {
        if node == self.me.0 {
            return Some(self.me.1.to_string());
        }
        let ordinal = u32::try_from(node).ok()?;
        self.peers
            .member(self.shard, ordinal)
            .map(|a| a.to_string())
    }
}

/// This pod's Raft node for its shard.
pub struct Replication {
    cfg: ReplicationConfig,
    node: RaftNode,
    resolver: Arc<PeerResolver>,
    /// Set once the node has caught up with a known leader (`/readyz`).
    caught_up: AtomicBool,
    /// The group's desired size, and whether it is known yet.
    desired: AtomicU32,
    desired_known: AtomicBool,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// How long a proposal may wait for its commit.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(format!("Service unavailable: {e}"))
}

impl Replication {
    /// Opens the shard's Raft node (its log under `cfg.dir`) over collection
    /// `cfg.collection` of `registry`, and starts bootstrapping and membership upkeep.
    pub async fn start(
        cfg: ReplicationConfig,
        registry: Arc<Registry>,
        peers: Arc<dyn PeerSource>,
    ) -> ServiceResult<Arc<Replication>> {
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", cfg.dir.display())))?;
        let machine = Arc::new(ShardMachine::open(registry, &cfg.collection, &cfg.dir)?);
        let group = format!("{}-shard-{}", cfg.collection, cfg.shard);
        let mut nc = NodeConfig::new(group, u64::from(cfg.ordinal), cfg.dir.clone());
        // a lost leader is replaced within ~1-2 s (the heartbeat also bounds one
        // AppendEntries call, follower fsync included)
        nc.heartbeat = Duration::from_millis(150);
        nc.election_timeout_min = Duration::from_millis(1000);
        nc.election_timeout_max = Duration::from_millis(2000);
        let resolver = Arc::new(PeerResolver {
            peers,
            shard: cfg.shard,
            me: (u64::from(cfg.ordinal), cfg.advertise),
        });
        let node = RaftNode::start(nc, machine, resolver.clone())
            .await
            .map_err(|e| {
                ServiceError::internal(format!("Service internal error: starting Raft: {e}"))
            })?;
        let (cfg_replicas, size_from_api) = (cfg.replicas, cfg.size_from_api);
        let repl = Arc::new(Replication {
            cfg,
            node,
            resolver,
            caught_up: AtomicBool::new(false),
            desired: AtomicU32::new(cfg_replicas.max(1)),
            desired_known: AtomicBool::new(!size_from_api),
        });
        tokio::spawn(upkeep(repl.clone()));
        Ok(repl)
    }

    /// The replicated collection.
    pub fn collection(&self) -> &str {
        &self.cfg.collection
    }

    /// Whether this node leads its group now.
    pub fn is_leader(&self) -> bool {
        let m = self.node.metrics();
        m.leader == Some(m.id)
    }

    /// The Raft transport, to mount on the internal port.
    pub fn service(&self) -> RaftServer {
        self.node.service()
    }

    /// Proposes a log command; its index once applied on this node (the leader).
    /// Without a quorum the write is not acknowledged within [`PROPOSE_TIMEOUT`]
    /// (Unavailable; it may still commit once the group heals).
    pub async fn propose(&self, command: Vec<u8>) -> ServiceResult<u64> {
        let Ok(r) = tokio::time::timeout(PROPOSE_TIMEOUT, self.node.propose(command)).await else {
            return Err(unavailable(format!(
                "shard {}'s Raft group did not commit the write within {} s (no quorum reachable?); it may still be applied once the group heals",
                self.cfg.shard,
                PROPOSE_TIMEOUT.as_secs()
            )));
        };
        match r {
            Ok(r) => Ok(r.index),
            Err(NodeError::NotLeader { leader }) => Err(ServiceError::NotLeader {
                leader: leader.and_then(|l| l.addr),
            }),
            Err(NodeError::Unavailable(m)) => Err(unavailable(m)),
            Err(e @ NodeError::Stopped(_)) => Err(unavailable(e)),
            Err(e) => Err(ServiceError::internal(format!(
                "Service internal error: Raft: {e}"
            ))),
        }
    }

    /// The group's desired size changed (the VectorCollection's `spec.replicas`).
    pub fn follow_replicas(&self, n: u32) {
        let n = n.max(1);
        if self.desired.swap(n, Ordering::AcqRel) != n
            || !self.desired_known.load(Ordering::Acquire)
        {
            tracing::info!(
                replicas = n,
                shard = self.cfg.shard,
                "the shard's desired group size"
            );
        }
        self.desired_known.store(true, Ordering::Release);
    }

    fn desired(&self) -> Option<u32> {
        self.desired_known
            .load(Ordering::Acquire)
            .then(|| self.desired.load(Ordering::Acquire))
    }

    /// Whether this pod has joined its group and caught up with a leader.
    pub fn ready(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// This node's view of the group.
    pub fn metrics(&self) -> vectorforge_raft::Metrics {
        self.node.metrics()
    }

    /// Stops Raft (a leader does not hand leadership away first: openraft 0.9 has no
    /// transfer, so the others elect a new one after their election timeout).
    pub async fn shutdown(&self) {
        if let Err(e) = self.node.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
    }

    fn members_resolvable(&self) -> Option<BTreeMap<u64, String>> {
        (0..self.desired()?)
            .map(|o| {
                let id = u64::from(o);
                self.resolver.address(id).map(|a| (id, a))
            })
            .collect()
    }
}

/// Bootstraps the group, keeps `caught_up` current and, on the leader, keeps the
/// membership equal to ordinals `0..replicas`.
async fn upkeep(repl: Arc<Replication>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut leaderless_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let m = repl.metrics();
        // a group once bootstrapped always has voters
        if m.voters.is_empty()
            && repl.cfg.ordinal == 0
            && let Some(members) = repl.members_resolvable()
        {
            match repl.node.initialize(members).await {
                Ok(true) => tracing::info!(
                    shard = repl.cfg.shard,
                    "bootstrapped the shard's Raft group"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "bootstrapping the shard's Raft group"),
            }
        }
        // readiness: a member with a known leader that applied what it has
        let member = m.voters.contains(&m.id) || m.learners.contains(&m.id);
        let applied = m.last_applied.unwrap_or(0) >= m.last_log_index.unwrap_or(0);
        match m.leader {
            Some(_) => leaderless_since = None,
            None => {
                leaderless_since.get_or_insert_with(Instant::now);
            }
        }
        let was = repl.caught_up.load(Ordering::Acquire);
        let now = if was {
            // stay Ready through a short election; not through a long loss of quorum
            member && leaderless_since.is_none_or(|t| t.elapsed() < Duration::from_secs(10))
        } else {
            member && m.leader.is_some() && applied
        };
        if now != was {
            tracing::info!(ready = now, leader = ?m.leader, term = m.term, "shard replica readiness");
            repl.caught_up.store(now, Ordering::Release);
        }
        if m.leader == Some(m.id) {
            reconcile_membership(&repl, &m).await;
        }
    }
}

/// Leader only: adds missing ordinals below `replicas` as learners, promotes caught-up
/// learners, drops members at or above `replicas`.
async fn reconcile_membership(repl: &Replication, m: &vectorforge_raft::Metrics) {
    let Some(desired) = repl.desired() else {
        return;
    };
    let want: BTreeSet<u64> = (0..u64::from(desired)).collect();
    for id in want
        .iter()
        .filter(|id| !m.voters.contains(id) && !m.learners.contains(id))
    {
        if let Some(addr) = repl.resolver.address(*id) {
            match repl.node.add_learner(*id, addr, false).await {
                Ok(_) => tracing::info!(node = id, "added a learner to the shard's group"),
                Err(e) => tracing::debug!(node = id, error = %e, "adding a learner"),
            }
        }
    }
    let caught_up = |id: &u64| {
        m.replication
            .get(id)
            .is_some_and(|p| p.lag <= 64 && p.matched.is_some())
    };
    let voters: BTreeSet<u64> = want
        .iter()
        .filter(|id| m.voters.contains(id) || (m.learners.contains(id) && caught_up(id)))
        .copied()
        .collect();
    if voters != m.voters && !voters.is_empty() && voters.contains(&m.id) {
        match repl.node.change_membership(voters.clone()).await {
            Ok(_) => tracing::info!(?voters, "changed the shard's voters"),
            Err(e) => tracing::debug!(error = %e, "changing the shard's voters"),
        }
    }
    for id in m.learners.iter().filter(|id| !want.contains(id)) {
        if let Err(e) = repl.node.remove(*id).await {
            tracing::debug!(node = id, error = %e, "removing a learner");
        }
    }
}
