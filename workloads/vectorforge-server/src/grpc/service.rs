//! `modelhub.vectorforge.v1.VectorService`: protocol messages in, calls of the collection
//! service (the same one REST calls), protocol messages out. Every call is recorded in
//! the gRPC metrics with its final code; unary calls run under the request timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{Instrument as _, Span};

use super::GrpcState;
use super::convert;
use super::pb;
use crate::error::{ServiceError, ServiceResult};
use crate::metrics::Metrics;
use crate::service::Scroll;
use crate::store::{Selector, Write};

/// The vector service; cheap to clone.
#[derive(Clone)]
pub struct VectorApi {
    st: GrpcState,
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::SearchBatchResult, Status>> + Send>>;

impl VectorApi {
    pub fn new(st: GrpcState) -> Self {
        VectorApi { st }
    }

    /// Runs a unary call in its span, under the request timeout, and records it.
    async fn unary<Req, T, F>(
        &self,
        method: &'static str,
        req: Request<Req>,
        call: impl FnOnce(Req) -> F,
    ) -> Result<Response<T>, Status>
    where
        F: Future<Output = ServiceResult<T>>,
    {
        let started = Instant::now();
        let span = call_span(method, &req);
        let limit = self.st.request_timeout;
        let out = match tokio::time::timeout(limit, call(req.into_inner()))
            .instrument(span.clone())
            .await
        {
            Ok(r) => r.map_err(Status::from),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "Timeout error: the request took longer than {} s",
                limit.as_secs()
            ))),
        };
        record(&self.st.metrics, &span, method, started, out).map(Response::new)
    }

    /// Applies one message of a streaming upsert; `coll` is the stream's collection,
    /// set by its first message.
    async fn apply(
        &self,
        coll: &mut Option<String>,
        msg: pb::UpsertRequest,
    ) -> ServiceResult<Option<u64>> {
        let name = match coll {
            Some(c) => {
                if !msg.collection_name.is_empty() && msg.collection_name != *c {
                    return Err(ServiceError::invalid(format!(
                        "Wrong input: collection_name {:?}: a stream upserts into one collection ({c})",
                        msg.collection_name,
                    )));
                }
                c.clone()
            }
            None => {
                self.st.service.require(&msg.collection_name)?;
                coll.insert(msg.collection_name.clone()).clone()
            }
        };
        if msg.points.is_empty() {
            return Ok(None);
        }
        let points = msg
            .points
            .into_iter()
            .enumerate()
            .map(|(i, p)| convert::named_point(p, i))
            .collect::<ServiceResult<Vec<_>>>()?;
        self.st
            .service
            .write(&name, Write::Upsert(points))
            .await
            .map(Some)
    }

    async fn ingest(
        &self,
        mut stream: Streaming<pb::UpsertRequest>,
    ) -> Result<pb::UpsertStreamResponse, Status> {
        let mut coll = None;
        let mut done = pb::UpsertStreamResponse::default();
        let context = |e: Status, done: &pb::UpsertStreamResponse| {
            Status::new(
                e.code(),
                format!(
                    "message {}: {}; the {} messages before it ({} points) stay applied, it and any later messages were not applied",
                    done.messages,
                    e.message(),
                    done.messages,
                    done.points
                ),
            )
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(done),
                Err(e) => return Err(context(e, &done)),
            };
            let n = msg.points.len() as u64;
            match self.apply(&mut coll, msg).await {
                Ok(seq) => {
                    done.messages += 1;
                    done.points += n;
                    if let Some(seq) = seq {
                        done.operation_id = seq;
                    }
                }
                Err(e) => return Err(context(e.into(), &done)),
            }
        }
    }
}

/// One span per call, joined to the caller's trace (W3C traceparent metadata) when
/// OTLP is on.
fn call_span<T>(method: &'static str, req: &Request<T>) -> Span {
    let span = tracing::info_span!(
        "grpc.request",
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty
    );
    modelhub_telemetry::propagation::set_parent_from_headers(
        &span,
        &req.metadata().clone().into_headers(),
    );
    span
}

/// Records a finished call in the metrics and its span (and server errors in the log).
fn record<T>(
    metrics: &Metrics,
    span: &Span,
    method: &'static str,
    started: Instant,
    out: Result<T, Status>,
) -> Result<T, Status> {
    let code = match &out {
        Ok(_) => Code::Ok,
        Err(s) => {
            if s.code() == Code::Internal {
                tracing::warn!(parent: span, method, error = s.message(), "gRPC call failed");
            }
            s.code()
        }
    };
    span.record("rpc.grpc.status_code", code as i32);
    metrics.observe_grpc(method, code, started.elapsed());
    out
}

/// A response stream that records its call when it ends, fails, or is dropped early
/// (the client went away: CANCELLED).
pub struct Observed {
    inner: BatchStream,
    metrics: Arc<Metrics>,
    method: &'static str,
    span: Span,
    started: Instant,
    done: bool,
}

impl Observed {
    fn end(&mut self, code: Code) {
        self.done = true;
        self.span.record("rpc.grpc.status_code", code as i32);
        self.metrics
            .observe_grpc(self.method, code, self.started.elapsed());
    }
}

impl Stream for Observed {
    type Item = Result<pb::SearchBatchResult, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = futures::ready!(self.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(_)) => {}
            Some(Err(s)) => self.end(s.code()),
            None => self.end(Code::Ok),
        }
        Poll::Ready(item)
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if !self.done {
            self.end(Code::Cancelled);
        }
    }
}

fn write_response(seq: u64) -> pb::WriteResponse {
    pb::WriteResponse { operation_id: seq }
}

#[tonic::async_trait]
impl pb::vector_service_server::VectorService for VectorApi {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        self.unary("CreateCollection", req, |r| async move {
            let params = convert::create_params(&r, self.st.service.defaults())?;
            self.st.service.create(r.collection_name, params).await?;
            Ok(pb::CreateCollectionResponse {})
        })
        .await
    }

    async fn get_collection(
        &self,
        req: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.unary("GetCollection", req, |r| async move {
            let d = self.st.service.describe(&r.collection_name).await?;
            Ok(convert::collection_info(
                &r.collection_name,
                d.info,
                d.payload_schema,
                &d.params,
            ))
        })
        .await
    }

    async fn list_collections(
        &self,
        req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        self.unary("ListCollections", req, |_| async move {
            Ok(pb::ListCollectionsResponse {
                collections: self.st.service.list(),
            })
        })
        .await
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        self.unary("DeleteCollection", req, |r| async move {
            let deleted = self.st.service.delete(r.collection_name).await?;
            Ok(pb::DeleteCollectionResponse { deleted })
        })
        .await
    }

    async fn create_payload_index(
        &self,
        req: Request<pb::CreatePayloadIndexRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.unary("CreatePayloadIndex", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let kind = convert::schema_type(r.field_type)?;
            let w = Write::CreateIndex {
                key: r.field_name,
                kind,
            };
            let seq = self.st.service.write(&r.collection_name, w).await?;
            Ok(write_response(seq))
        })
        .await
    }

    async fn delete_payload_index(
        &self,
        req: Request<pb::DeletePayloadIndexRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.unary("DeletePayloadIndex", req, |r| async move {
            let w = Write::DropIndex { key: r.field_name };
            let seq = self.st.service.write(&r.collection_name, w).await?;
            Ok(write_response(seq))
        })
        .await
    }

    async fn upsert(
        &self,
        req: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.unary("Upsert", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let points = r
                .points
                .into_iter()
                .enumerate()
                .map(|(i, p)| convert::named_point(p, i))
                .collect::<ServiceResult<Vec<_>>>()?;
            let seq = self
                .st
                .service
                .write(&r.collection_name, Write::Upsert(points))
                .await?;
            Ok(write_response(seq))
        })
        .await
    }

    async fn upsert_stream(
        &self,
        req: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertStreamResponse>, Status> {
        let started = Instant::now();
        let span = call_span("UpsertStream", &req);
        let out = self.ingest(req.into_inner()).instrument(span.clone()).await;
        if let Err(e) = &out {
            tracing::debug!(parent: &span, code = ?e.code(), error = e.message(), "streaming upsert stopped");
        }
        record(&self.st.metrics, &span, "UpsertStream", started, out).map(Response::new)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.unary("Delete", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let sel = match r.selector {
                Some(pb::delete_request::Selector::Ids(l)) => {
                    Selector::Ids(convert::point_ids(&l.ids, "ids")?)
                }
                Some(pb::delete_request::Selector::FilterJson(f)) => match convert::filter(&f)? {
                    Some(f) => Selector::Filter(f),
                    None => {
                        return Err(ServiceError::invalid("Wrong input: filter_json is empty"));
                    }
                },
                None => {
                    return Err(ServiceError::invalid(
                        "Wrong input: expected `ids` or `filter_json`",
                    ));
                }
            };
            let seq = self
                .st
                .service
                .write(&r.collection_name, Write::Delete(sel))
                .await?;
            Ok(write_response(seq))
        })
        .await
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.unary("Search", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let name = r.collection_name.clone();
            let hits = self.st.service.search(&name, convert::query(r)?).await?;
            Ok(pb::SearchResponse {
                result: hits.into_iter().map(convert::scored_out).collect(),
            })
        })
        .await
    }

    type SearchBatchStream = Observed;

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<Self::SearchBatchStream>, Status> {
        let started = Instant::now();
        let span = call_span("SearchBatch", &req);
        let r = req.into_inner();
        let checked = (|| {
            self.st.service.require(&r.collection_name)?;
            let mut queries = Vec::with_capacity(r.searches.len());
            for (i, s) in r.searches.into_iter().enumerate() {
                if !s.collection_name.is_empty() && s.collection_name != r.collection_name {
                    return Err(ServiceError::invalid(format!(
                        "Wrong input: searches[{i}]: collection_name {:?} differs from the batch's {:?}",
                        s.collection_name, r.collection_name
                    )));
                }
                queries.push(convert::query(s).map_err(|e| e.context(&format!("searches[{i}]")))?);
            }
            // the service checks every search before any runs
            self.st.service.search_batch(&r.collection_name, queries)
        })();
        let results = match checked {
            Ok(x) => x,
            Err(e) => {
                return record(
                    &self.st.metrics,
                    &span,
                    "SearchBatch",
                    started,
                    Err(e.into()),
                );
            }
        };
        let results = results.enumerate().map(|(i, r)| {
            r.map(|hits| pb::SearchBatchResult {
                index: i as u32,
                result: hits.into_iter().map(convert::scored_out).collect(),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Observed {
            inner: Box::pin(results),
            metrics: self.st.metrics.clone(),
            method: "SearchBatch",
            span,
            started,
            done: false,
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.unary("Get", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let ids = convert::point_ids(&r.ids, "ids")?;
            let vectors = convert::selection(r.with_vectors, r.vector_names);
            let points = self
                .st
                .service
                .retrieve(&r.collection_name, ids, r.with_payload, vectors)
                .await?;
            Ok(pb::GetResponse {
                result: points.into_iter().map(convert::point_out).collect(),
            })
        })
        .await
    }

    async fn scroll(
        &self,
        req: Request<pb::ScrollRequest>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        self.unary("Scroll", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let scroll = Scroll {
                filter: convert::filter(&r.filter_json)?,
                limit: match r.limit {
                    0 => 10,
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                },
                offset: r
                    .offset
                    .as_ref()
                    .map(|o| convert::point_id(Some(o), "offset"))
                    .transpose()?,
                with_payload: r.with_payload,
                vectors: convert::selection(r.with_vectors, r.vector_names),
            };
            let (points, next) = self.st.service.scroll(&r.collection_name, scroll).await?;
            Ok(pb::ScrollResponse {
                result: points.into_iter().map(convert::point_out).collect(),
                next_page_offset: next.map(convert::id_out),
            })
        })
        .await
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        self.unary("Count", req, |r| async move {
            self.st.service.require(&r.collection_name)?;
            let filter = convert::filter(&r.filter_json)?;
            let n = self.st.service.count(&r.collection_name, filter).await?;
            Ok(pb::CountResponse { count: n as u64 })
        })
        .await
    }
}
