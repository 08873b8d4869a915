//! The shard-to-shard gRPC service (proto/shard.proto) on the internal port: the
//! server side answers from this pod's own shard (a [`CollectionService`] without a
//! cluster, so a call never fans out again); the client side keeps one lazily
//! connected channel per peer address. With an API key configured, both sides use
//! it: the internal port is no way around authentication.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::pb;
use super::pb::shard_client::ShardClient;
use super::wire;
use crate::auth::ApiKey;
use crate::error::{ServiceError, ServiceResult};
use crate::service::{CollectionService, Scroll};

/// Answers shard-to-shard calls from the local shard.
pub struct ShardRpc {
    local: CollectionService,
    api_key: Option<Arc<ApiKey>>,
}

impl ShardRpc {
    /// `local` must be a service without a cluster ([`CollectionService::local`]).
    pub fn new(local: CollectionService, api_key: Option<Arc<ApiKey>>) -> Self {
        ShardRpc { local, api_key }
    }

    /// The tonic service, with the message limit of the client APIs (plus room for
    /// the per-point overhead of the internal encoding).
    pub fn into_service(self, max_message_bytes: usize) -> pb::shard_server::ShardServer<ShardRpc> {
        let limit = max_message_bytes.saturating_mul(2);
        pb::shard_server::ShardServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match &self.api_key {
            Some(k) if !k.accepts(&req.metadata().clone().into_headers()) => {
                Err(Status::unauthenticated("Invalid API key or JWT"))
            }
            _ => Ok(()),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::shard_server::Shard for ShardRpc {
    async fn write(&self, req: Request<pb::WriteRequest>) -> Reply<pb::WriteReply> {
        self.check(&req)?;
        let (name, w) = wire::write_from(req.into_inner())?;
        let operation_id = self.local.write(&name, w).await?;
        Ok(Response::new(pb::WriteReply { operation_id }))
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Reply<pb::SearchReply> {
        self.check(&req)?;
        let r = req.into_inner();
        let searches = r
            .searches
            .into_iter()
            .map(wire::search_from)
            .collect::<ServiceResult<Vec<_>>>()?;
        let stream = self.local.search_batch(&r.collection, searches)?;
        let mut results = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(hits) = stream.next().await {
            results.push(pb::Hits {
                points: hits?.into_iter().map(wire::point_out_to).collect(),
            });
        }
        Ok(Response::new(pb::SearchReply { results }))
    }

    async fn retrieve(&self, req: Request<pb::RetrieveRequest>) -> Reply<pb::PointsReply> {
        self.check(&req)?;
        let r = req.into_inner();
        let ids = r
            .ids
            .into_iter()
            .map(|i| wire::id_from(Some(i)))
            .collect::<ServiceResult<Vec<_>>>()?;
        let points = self
            .local
            .retrieve(
                &r.collection,
                ids,
                r.with_payload,
                wire::selection_from(r.vectors),
            )
            .await?;
        Ok(Response::new(pb::PointsReply {
            points: points.into_iter().map(wire::point_out_to).collect(),
        }))
    }

    async fn scroll(&self, req: Request<pb::ScrollRequest>) -> Reply<pb::ScrollReply> {
        self.check(&req)?;
        let r = req.into_inner();
        let s = Scroll {
            filter: wire::filter_from(r.filter_json)?,
            limit: usize::try_from(r.limit).unwrap_or(usize::MAX),
            offset: r.offset.map(|o| wire::id_from(Some(o))).transpose()?,
            with_payload: r.with_payload,
            vectors: wire::selection_from(r.vectors),
        };
        let (points, next) = self.local.scroll(&r.collection, s).await?;
        Ok(Response::new(pb::ScrollReply {
            points: points.into_iter().map(wire::point_out_to).collect(),
            next_page_offset: next.map(wire::id_to),
        }))
    }

    async fn count(&self, req: Request<pb::CountRequest>) -> Reply<pb::CountReply> {
        self.check(&req)?;
        let r = req.into_inner();
        let n = self
            .local
            .count(&r.collection, wire::filter_from(r.filter_json)?)
            .await?;
        Ok(Response::new(pb::CountReply { count: n as u64 }))
    }

    async fn describe(&self, req: Request<pb::DescribeRequest>) -> Reply<pb::DescribeReply> {
        self.check(&req)?;
        let d = self.local.describe(&req.into_inner().collection).await?;
        Ok(Response::new(wire::describe_to(&d.info, &d.payload_schema)))
    }
}

/// The service error a peer's status stands for. Transport failures (the peer is
/// gone, restarting, or too slow) are `Unavailable`: another replica may answer.
pub fn error_from(peer: &str, s: &Status) -> ServiceError {
    let m = s.message().to_owned();
    match s.code() {
        Code::InvalidArgument | Code::OutOfRange => ServiceError::Invalid(m),
        Code::NotFound => ServiceError::NotFound(m),
        Code::AlreadyExists => ServiceError::AlreadyExists(m),
        Code::Unavailable if s.metadata().get("leader").is_some() => ServiceError::NotLeader {
            leader: s
                .metadata()
                .get("leader")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ServiceError::Unavailable(format!("Service unavailable: peer {peer}: {m}"))
        }
        _ => ServiceError::Internal(format!("Service internal error: peer {peer}: {m}")),
    }
}

/// Channels to peers, one per address, created on first use; they reconnect by
/// themselves after a peer restarts.
pub struct Clients {
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    api_key: Option<String>,
    timeout: Duration,
    max_message_bytes: usize,
}

impl Clients {
    pub fn new(api_key: Option<String>, timeout: Duration, max_message_bytes: usize) -> Self {
        Clients {
            channels: Mutex::new(HashMap::new()),
            api_key,
            timeout,
            max_message_bytes,
        }
    }

    /// A client of the peer at `addr`.
    pub fn client(&self, addr: SocketAddr) -> ServiceResult<ShardClient<Channel>> {
        let channel = {
            let mut chans = self.channels.lock();
            match chans.get(&addr) {
                Some(c) => c.clone(),
                None => {
                    let c = Endpoint::from_shared(format!("http://{addr}"))
                        .map_err(|e| ServiceError::internal(format!("peer {addr}: {e}")))?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .connect_lazy();
                    chans.insert(addr, c.clone());
                    c
                }
            }
        };
        Ok(ShardClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(self.max_message_bytes.saturating_mul(2)))
    }

    /// A request with this pod's credentials and deadline.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(k) = &self.api_key
            && let Ok(v) = k.parse()
        {
            r.metadata_mut().insert("api-key", v);
        }
        r
    }
}
