//! Distribution of one collection over shards: which shard owns a point (`hash`),
//! where the other shards' pods answer (`peers`), the shard-to-shard API on the
//! internal port (`rpc`, messages in `wire`, proto/shard.proto) and [`Cluster`], what
//! a coordinating pod uses to call another shard. The coordinator itself (split a
//! write by shard, scatter a read, merge the answers) lives in the collection
//! service (`service::distributed`), so that every transport gets it.
//!
//! With `--replicas` above 1 the pods of a shard form a Raft group (`replication`):
//! a coordinator sends a write part to any pod of the shard and follows `NotLeader`
//! to the leader; reads go to any Ready pod (hedged).

pub mod hash;
pub mod peers;
pub mod rpc;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use vectorforge::PointId;

use crate::error::{ServiceError, ServiceResult};
use peers::PeerSource;
use rpc::Clients;

/// Generated shard-to-shard protocol types, server and client.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("vectorforge.shard.v1");
}

pub use pb::shard_client::ShardClient;

/// What this pod is in its collection.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The distributed collection (the VectorCollection's name).
    pub collection: String,
    /// This pod's shard.
    pub shard: u32,
    /// This pod's name among the peers (pod name, or its internal address for static
    /// peers), so that it does not call itself.
    pub self_name: String,
    /// How many shards the collection has.
    pub shards: u32,
    /// The key other pods expect (the client API key).
    pub api_key: Option<String>,
    /// Deadline of one shard-to-shard call.
    pub timeout: Duration,
    /// The client APIs' message limit (internal messages may be twice as large).
    pub max_message_bytes: usize,
    /// A read not answered by one pod of a shard within this time is also sent to
    /// another pod of the shard (the first answer wins). None: no hedging.
    pub hedge_after: Option<Duration>,
}

/// This pod's view of its collection's shards, and the way to call them.
pub struct Cluster {
    cfg: ClusterConfig,
    peers: Arc<dyn PeerSource>,
    clients: Clients,
    next: AtomicUsize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("cfg", &self.cfg).finish()
    }
}

/// A pending shard-to-shard call.
pub type Call<T> = std::pin::Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

impl Cluster {
    pub fn new(cfg: ClusterConfig, peers: Arc<dyn PeerSource>) -> Cluster {
        let clients = Clients::new(cfg.api_key.clone(), cfg.timeout, cfg.max_message_bytes);
        Cluster {
            cfg,
            peers,
            clients,
            next: AtomicUsize::new(0),
        }
    }

    pub fn collection(&self) -> &str {
        &self.cfg.collection
    }

    pub fn shard(&self) -> u32 {
        self.cfg.shard
    }

    pub fn shards(&self) -> u32 {
        self.cfg.shards
    }

    /// The shard that owns `id`.
    pub fn owner(&self, id: &PointId) -> u32 {
        hash::shard_of(id, self.cfg.shards)
    }

    /// Every shard but this pod's own.
    pub fn others(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.cfg.shards).filter(|s| *s != self.cfg.shard)
    }

    /// Sends `msg` to one Ready pod of every other shard (see [`Cluster::call`]), in
    /// parallel; the answers in shard order, or the first shard's error.
    pub async fn scatter<M, T>(
        &self,
        msg: M,
        method: impl Fn(ShardClient<Channel>, Request<M>) -> Call<T>,
    ) -> ServiceResult<Vec<T>>
    where
        M: Clone,
    {
        let method = &method;
        let calls = self
            .others()
            .map(|shard| self.call(shard, msg.clone(), method));
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Sends `msg` to the pod at `addr` (a shard leader named by a `NotLeader`).
    pub async fn call_at<M, T>(
        &self,
        addr: &str,
        msg: M,
        method: impl Fn(ShardClient<Channel>, Request<M>) -> Call<T>,
    ) -> ServiceResult<T> {
        let sock: std::net::SocketAddr = addr.parse().map_err(|_| {
            ServiceError::Unavailable(format!("Service unavailable: leader address {addr:?}"))
        })?;
        let client = self.clients.client(sock)?;
        method(client, self.clients.request(msg))
            .await
            .map(Response::into_inner)
            .map_err(|s| rpc::error_from(addr, &s))
    }

    /// Sends `msg` to a ready pod of `shard` with `method`; when that pod cannot be
    /// reached (or is not serving), the next ready pod of the shard is tried at once,
    /// and when it has not answered within `hedge_after`, the next one is asked too
    /// (a hedged read: the first answer wins, the other call is dropped). Errors name
    /// the shard. For reads, and for writes that are safe to repeat.
    pub async fn call<M, T>(
        &self,
        shard: u32,
        msg: M,
        method: impl Fn(ShardClient<Channel>, Request<M>) -> Call<T>,
    ) -> ServiceResult<T>
    where
        M: Clone,
    {
        use futures::StreamExt;
        let ctx = |e: ServiceError| e.context(&format!("shard {shard}"));
        let mut peers: Vec<_> = self
            .peers
            .ready(shard)
            .into_iter()
            .filter(|p| p.name != self.cfg.self_name)
            .collect();
        if peers.is_empty() {
            return Err(ServiceError::Unavailable(format!(
                "Service unavailable: shard {shard} of collection {} has no ready pod",
                self.cfg.collection
            )));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % peers.len();
        peers.rotate_left(start);
        let mut untried = peers.into_iter();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut last = None;
        let launch = |peer: peers::Peer| {
            let call = self
                .clients
                .client(peer.addr)
                .map(|c| method(c, self.clients.request(msg.clone())));
            async move {
                match call {
                    Ok(call) => (
                        peer.name.clone(),
                        call.await
                            .map(Response::into_inner)
                            .map_err(|s| rpc::error_from(&peer.name, &s)),
                    ),
                    Err(e) => (peer.name, Err(e)),
                }
            }
        };
        if let Some(p) = untried.next() {
            in_flight.push(launch(p));
        }
        loop {
            let hedge = async {
                match self.cfg.hedge_after {
                    Some(d) => tokio::time::sleep(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                done = in_flight.next() => match done {
                    Some((_, Ok(v))) => return Ok(v),
                    Some((name, Err(e))) => {
                        if !e.retryable() {
                            return Err(ctx(e));
                        }
                        tracing::debug!(shard, peer = name, error = %e, "shard call failed; trying the next pod");
                        last = Some(e);
                        if let Some(p) = untried.next() {
                            in_flight.push(launch(p));
                        } else if in_flight.is_empty() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = hedge, if untried.len() > 0 => {
                    if let Some(p) = untried.next() {
                        tracing::debug!(shard, peer = p.name, "hedging a slow shard call");
                        in_flight.push(launch(p));
                    }
                }
            }
        }
        Err(ctx(last.unwrap_or_else(|| {
            ServiceError::Unavailable("Service unavailable: no pod answered".into())
        })))
    }
}
