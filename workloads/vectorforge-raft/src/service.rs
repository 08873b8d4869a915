//! The server side of the Raft transport: the tonic service (`vectorforge.raft.v1.Raft`)
//! handing peers' AppendEntries, Vote and InstallSnapshot chunks to the local openraft
//! node. Mount [`RaftService::server`] into an existing tonic server, or run it alone with
//! [`serve`].

use std::net::SocketAddr;

use openraft::raft::VoteRequest;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::Raft;
use crate::network::{GROUP_KEY, MAX_MESSAGE, TARGET_KEY};
use crate::wire::{self, pb};

/// The gRPC service of one Raft node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    group: String,
    id: u64,
}

/// The tonic service type to add to a server (`Server::builder().add_service(..)`).
pub type RaftServer = pb::raft_server::RaftServer<RaftService>;

impl RaftService {
    pub(crate) fn new(raft: Raft, group: String, id: u64) -> Self {
        RaftService { raft, group, id }
    }

    /// Refuses a call meant for another group or node (a stale peer address).
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let md = req.metadata();
        let group = md.get(GROUP_KEY).and_then(|v| v.to_str().ok());
        let target = md
            .get(TARGET_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if group == Some(self.group.as_str()) && target == Some(self.id) {
            return Ok(());
        }
        tracing::warn!(
            node = self.id,
            ?group,
            ?target,
            "refusing a Raft call meant for another node"
        );
        Err(Status::failed_precondition(format!(
            "this is node {} of Raft group {:?}, not node {target:?} of {group:?}",
            self.id, self.group
        )))
    }

    /// The service, ready to add to a tonic server.
    pub fn server(self) -> RaftServer {
        pb::raft_server::RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

fn bad(e: wire::WireError) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        self.check(&req)?;
        let rpc = wire::append_from_pb(req.into_inner()).map_err(bad)?;
        let r = self.raft.append_entries(rpc).await;
        Ok(Response::new(wire::reply(&r)))
    }

    async fn vote(&self, req: Request<pb::VoteRequest>) -> Result<Response<pb::RaftReply>, Status> {
        self.check(&req)?;
        let rpc: VoteRequest<u64> =
            wire::from_json("vote request", &req.into_inner().request_json).map_err(bad)?;
        let r = self.raft.vote(rpc).await;
        Ok(Response::new(wire::reply(&r)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        self.check(&req)?;
        let rpc = wire::snapshot_from_pb(req.into_inner()).map_err(bad)?;
        let r = self.raft.install_snapshot(rpc).await;
        Ok(Response::new(wire::reply(&r)))
    }
}

fn incoming(l: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

/// Serves `service` alone on `listener` until `stop` resolves.
pub async fn serve(
    service: RaftServer,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "Raft gRPC service listening");
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), stop)
        .await
}
