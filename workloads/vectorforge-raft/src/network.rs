//! The client side of the Raft transport: openraft's `RaftNetworkFactory` /
//! `RaftNetwork` over tonic. A peer's address is asked of the [`Resolver`] when a
//! connection is made (falling back to the address in the membership); after a
//! transport error the connection is dropped and the next call resolves and connects
//! again, so a restarted peer (possibly at a new address) is reached.
//!
//! Snapshots go as openraft's chunked install (`snapshot_max_chunk_size` per call).
//!
//! Every call carries the group name and the target node id as gRPC metadata
//! (`x-raft-group`, `x-raft-target`); a server of another group or node refuses it
//! (`FAILED_PRECONDITION`), so a stale address (a pod IP reused by another shard) never
//! mixes two groups: the client drops the connection and resolves again.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::wire::{self, pb};
use crate::{Node, TypeConfig};

/// Largest gRPC message accepted or sent (AppendEntries batches, snapshot chunks).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
/// Metadata key naming the Raft group a call is for.
pub(crate) const GROUP_KEY: &str = "x-raft-group";
/// Metadata key naming the node id a call is for.
pub(crate) const TARGET_KEY: &str = "x-raft-target";

/// Where a node is: the server implements it from the shard's pods; tests use
/// [`StaticResolver`].
pub trait Resolver: Send + Sync + 'static {
    /// `host:port` (or `http://host:port`) of the node's Raft port, if known now.
    fn address(&self, node: u64) -> Option<String>;
}

/// A resolver over a map that can be changed while running.
#[derive(Debug, Default)]
pub struct StaticResolver {
    map: RwLock<BTreeMap<u64, String>>,
}

impl StaticResolver {
    /// A resolver knowing these addresses.
    pub fn new(map: BTreeMap<u64, String>) -> Self {
        StaticResolver {
            map: RwLock::new(map),
        }
    }

    /// Sets (or replaces) a node's address.
    pub fn set(&self, node: u64, addr: impl Into<String>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, addr.into());
    }
}

impl Resolver for StaticResolver {
    fn address(&self, node: u64) -> Option<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned()
    }
}

/// Resolves `node`'s address: the resolver first, then the membership's.
pub(crate) fn resolve(resolver: &dyn Resolver, node: u64, known: Option<&Node>) -> Option<String> {
    resolver
        .address(node)
        .or_else(|| known.map(|n| n.addr.clone()))
        .filter(|a| !a.is_empty())
}

/// Makes one [`PeerClient`] per peer for openraft.
pub struct NetworkFactory {
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) connect_timeout: Duration,
    pub(crate) group: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Node) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            resolver: self.resolver.clone(),
            connect_timeout: self.connect_timeout,
            group: self.group.clone(),
            client: None,
        }
    }
}

/// The connection to one peer, re-made after a transport error.
pub struct PeerClient {
    target: u64,
    node: Node,
    resolver: Arc<dyn Resolver>,
    connect_timeout: Duration,
    group: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    client: Option<pb::raft_client::RaftClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerClient {
    fn client<E: std::error::Error>(
        &mut self,
    ) -> Result<pb::raft_client::RaftClient<Channel>, RPCError<u64, Node, E>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let addr =
            resolve(self.resolver.as_ref(), self.target, Some(&self.node)).ok_or_else(|| {
                RPCError::Unreachable(Unreachable::new(&Msg(format!(
                    "no address known for node {}",
                    self.target
                ))))
            })?;
        let uri = if addr.contains("://") {
            addr
        } else {
            format!("http://{addr}")
        };
        let ep = Endpoint::from_shared(uri)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let c = pb::raft_client::RaftClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Maps a failed call: a transport problem drops the connection (re-resolved next time).
    fn failed<E: std::error::Error>(&mut self, s: tonic::Status) -> RPCError<u64, Node, E> {
        use tonic::Code;
        match s.code() {
            // connection failures, and a server that is not this group's node `target`
            Code::Unavailable | Code::Unknown | Code::FailedPrecondition => {
                if s.code() == Code::FailedPrecondition {
                    tracing::warn!(target_node = self.target, status = %s, "Raft peer address reached another node");
                } else {
                    tracing::debug!(target_node = self.target, status = %s, "Raft peer unreachable");
                }
                self.client = None;
                RPCError::Unreachable(Unreachable::new(&s))
            }
            // a slow call: keep the connection
            _ => RPCError::Network(NetworkError::new(&s)),
        }
    }

    fn decode<T: DeserializeOwned, E>(
        &self,
        r: pb::RaftReply,
    ) -> Result<T, RPCError<u64, Node, RaftError<u64, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        match wire::unreply::<T, RaftError<u64, E>>(r) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl PeerClient {
    fn request<T>(&self, msg: T, option: &RPCOption) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(option.hard_ttl());
        let md = r.metadata_mut();
        md.insert(GROUP_KEY, self.group.clone());
        md.insert(
            TARGET_KEY,
            tonic::metadata::MetadataValue::from(self.target),
        );
        r
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        let mut c = self.client()?;
        match c
            .append_entries(self.request(wire::append_to_pb(&rpc), &option))
            .await
        {
            Ok(r) => self.decode(r.into_inner()),
            Err(s) => Err(self.failed(s)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Node, RaftError<u64, InstallSnapshotError>>,
    > {
        let mut c = self.client()?;
        match c
            .install_snapshot(self.request(wire::snapshot_to_pb(rpc), &option))
            .await
        {
            Ok(r) => self.decode(r.into_inner()),
            Err(s) => Err(self.failed(s)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        let mut c = self.client()?;
        let msg = pb::VoteRequest {
            request_json: wire::to_json(&rpc),
        };
        match c.vote(self.request(msg, &option)).await {
            Ok(r) => self.decode(r.into_inner()),
            Err(s) => Err(self.failed(s)),
        }
    }
}
