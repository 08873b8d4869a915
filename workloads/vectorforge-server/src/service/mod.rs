//! The collection service: the one async API over the registry and the collection
//! stores that every transport calls (REST, gRPC, and later shard-to-shard RPC).
//! Engine work runs on blocking threads here, so transports never block; errors are
//! [`ServiceError`]s, mapped to a status only by each transport; request limits are
//! checked here once.
//!
//! A write goes prepare → propose → await: `prepare` resolves selectors and has every
//! engine check the operation, `propose` hands it to the shard's log (today the
//! collection's own journal or engine WAL, with replication the Raft log), and the
//! returned [`Proposal`] resolves once the write is committed and applied.

mod distributed;
mod search;
mod snapshots;

pub use search::{MAX_RESULTS, Search, Target};
pub use snapshots::SnapshotInfo;

use std::collections::BTreeMap;
use std::sync::Arc;

use vectorforge::{Filter, PayloadSchemaType, PointId};

use crate::cluster::Cluster;
use crate::error::{ServiceError, ServiceResult};
use crate::params::CollectionParams;
use crate::registry::Registry;
use crate::replication::Replication;
use crate::store::{Info, PointOut, PointsCollection, Prepared, VectorSelection, Write};

/// Settings of collections created over an API.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub sync: vectorforge::SyncPolicy,
    pub hnsw: vectorforge::HnswConfig,
}

/// Indexed payload fields, their types and how many points have a value there.
pub type SchemaCounts = Vec<(String, PayloadSchemaType, usize)>;

/// What CollectionInfo shows.
#[derive(Clone, Debug)]
pub struct Description {
    pub info: Info,
    /// Indexed payload fields, their types and how many points have a value there.
    pub payload_schema: SchemaCounts,
    pub params: CollectionParams,
}

/// A page of points in id order.
#[derive(Clone, Debug)]
pub struct Scroll {
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: Option<PointId>,
    pub with_payload: bool,
    pub vectors: VectorSelection,
}

/// A write handed to the shard's log; await [`Proposal::committed`] for its index.
pub struct Proposal(tokio::task::JoinHandle<ServiceResult<u64>>);

impl Proposal {
    /// The write's index (Qdrant's operation_id) once it is committed and applied.
    pub async fn committed(self) -> ServiceResult<u64> {
        self.0.await.map_err(|e| {
            ServiceError::internal(format!("Service internal error: write task failed: {e}"))
        })?
    }
}

/// A write prepared against one collection, ready to be proposed.
pub struct PreparedWrite {
    collection: Arc<PointsCollection>,
    prepared: Prepared,
}

/// The collection service; cheap to clone. With a [`Cluster`], the cluster's
/// collection is distributed: this service coordinates every request on it over all
/// shards (`distributed`), and answers its own shard's part in-process.
#[derive(Clone)]
pub struct CollectionService {
    registry: Arc<Registry>,
    defaults: Arc<Defaults>,
    cluster: Option<Arc<Cluster>>,
    /// The Raft group of this pod's shard of the cluster's collection.
    replication: Option<Arc<Replication>>,
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ServiceResult<T> + Send + 'static,
) -> ServiceResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ServiceError::internal(format!("Service internal error: worker failed: {e}"))
    })?
}

impl CollectionService {
    pub fn new(registry: Arc<Registry>, defaults: Defaults) -> Self {
        CollectionService {
            registry,
            defaults: Arc::new(defaults),
            cluster: None,
            replication: None,
        }
    }

    /// The same service coordinating the cluster's collection over its shards.
    pub fn with_cluster(self, cluster: Arc<Cluster>) -> Self {
        CollectionService {
            cluster: Some(cluster),
            ..self
        }
    }

    /// The same service writing the cluster's collection through its shard's Raft
    /// group (a write is proposed on the shard leader; see `replication`).
    pub fn with_replication(self, replication: Arc<Replication>) -> Self {
        CollectionService {
            replication: Some(replication),
            ..self
        }
    }

    /// The Raft group of `name`'s shard on this pod, when it has one.
    fn replicated(&self, name: &str) -> Option<&Arc<Replication>> {
        self.replication.as_ref().filter(|r| r.collection() == name)
    }

    /// Qdrant's `GET /cluster`: this pod's place in its collection (shard, shard count)
    /// and, with replication, its shard's Raft group as this node sees it.
    pub fn cluster_status(&self) -> serde_json::Value {
        let Some(cl) = &self.cluster else {
            return serde_json::json!({"status": "disabled"});
        };
        let mut v = serde_json::json!({
            "status": "enabled",
            "collection": cl.collection(),
            "shard": cl.shard(),
            "shards": cl.shards(),
        });
        if let Some(r) = &self.replication {
            let m = r.metrics();
            let role = match m.role {
                vectorforge_raft::Role::Leader => "Leader",
                vectorforge_raft::Role::Follower => "Follower",
                vectorforge_raft::Role::Candidate => "Candidate",
                vectorforge_raft::Role::Learner => "Learner",
                vectorforge_raft::Role::Shutdown => "Shutdown",
            };
            v["peer_id"] = m.id.into();
            v["raft_info"] = serde_json::json!({
                "term": m.term,
                "commit": m.last_applied.unwrap_or(0),
                "last_log_index": m.last_log_index.unwrap_or(0),
                "leader": m.leader,
                "role": role,
                "is_voter": m.voters.contains(&m.id),
                "voters": m.voters,
                "learners": m.learners,
                "lag": m.replication.iter().map(|(id, p)| (id.to_string(), p.lag)).collect::<BTreeMap<_, _>>(),
            });
            v["ready"] = r.ready().into();
        }
        v
    }

    /// This pod's own shard only: what answers shard-to-shard calls and serves the
    /// coordinator's local part.
    pub fn local(&self) -> CollectionService {
        CollectionService {
            cluster: None,
            ..self.clone()
        }
    }

    /// The cluster when `name` is its distributed collection.
    fn routed(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref().filter(|c| c.collection() == name)
    }

    /// Collections of a distributed server are declared, not created over the API.
    fn refuse_in_cluster(&self, name: &str, what: &str) -> ServiceResult<()> {
        match &self.cluster {
            Some(c) => Err(ServiceError::invalid(format!(
                "Wrong input: cannot {what} collection {name}: this server is shard {} of {} of the distributed collection {}; collections and their settings are declared as VectorCollection resources",
                c.shard(),
                c.shards(),
                c.collection()
            ))),
            None => Ok(()),
        }
    }

    /// The collections on disk (for metrics and start-up wiring, not for transports).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    fn collection(&self, name: &str) -> ServiceResult<Arc<PointsCollection>> {
        self.registry.get(name)
    }

    // ---- collections

    pub fn list(&self) -> Vec<String> {
        self.registry.names()
    }

    pub fn exists(&self, name: &str) -> bool {
        self.registry.exists(name)
    }

    /// `NotFound` unless the collection exists (transports that parse a large body
    /// check this first, so a missing collection is reported before a bad body).
    pub fn require(&self, name: &str) -> ServiceResult<()> {
        self.collection(name).map(drop)
    }

    /// Creates a collection; `AlreadyExists` when it exists.
    pub async fn create(&self, name: String, params: CollectionParams) -> ServiceResult<()> {
        self.refuse_in_cluster(&name, "create")?;
        let reg = self.registry.clone();
        blocking(move || reg.create(&name, params).map(drop)).await
    }

    /// Deletes a collection and its data; false when it did not exist.
    pub async fn delete(&self, name: String) -> ServiceResult<bool> {
        self.refuse_in_cluster(&name, "delete")?;
        let reg = self.registry.clone();
        blocking(move || reg.delete(&name)).await
    }

    pub async fn describe(&self, name: &str) -> ServiceResult<Description> {
        if let Some(cl) = self.routed(name) {
            return self.cluster_describe(cl, name).await;
        }
        self.local_describe(name).await
    }

    async fn local_describe(&self, name: &str) -> ServiceResult<Description> {
        let c = self.collection(name)?;
        blocking(move || {
            Ok(Description {
                info: c.info(),
                payload_schema: c.payload_schema(),
                params: c.params(),
            })
        })
        .await
    }

    /// Changes settings that need no rebuild; `f` returns an error to refuse a change.
    pub async fn update_params(
        &self,
        name: &str,
        f: impl FnOnce(&mut CollectionParams) -> ServiceResult<()> + Send + 'static,
    ) -> ServiceResult<()> {
        self.refuse_in_cluster(name, "change the settings of")?;
        let c = self.collection(name)?;
        blocking(move || c.update_params(f)).await
    }

    // ---- writes

    /// Prepares, proposes and awaits one write; returns its index (operation_id).
    pub async fn write(&self, name: &str, w: Write) -> ServiceResult<u64> {
        if let Some(cl) = self.routed(name) {
            return self.cluster_write(cl, name, w).await;
        }
        self.local_write(name, w).await
    }

    async fn local_write(&self, name: &str, w: Write) -> ServiceResult<u64> {
        let p = self.prepare(name, w).await?;
        self.propose(p).committed().await
    }

    /// Resolves the write's selectors and has every engine check it; applies nothing.
    pub async fn prepare(&self, name: &str, w: Write) -> ServiceResult<PreparedWrite> {
        let c = self.collection(name)?;
        blocking(move || {
            let prepared = c.prepare(w)?;
            Ok(PreparedWrite {
                collection: c,
                prepared,
            })
        })
        .await
    }

    /// Hands a prepared write to the shard's log: with replication the shard's Raft
    /// log (this pod must lead the group, else `NotLeader` names the leader), otherwise
    /// the collection's own journal / WAL, written on a blocking thread.
    pub fn propose(&self, p: PreparedWrite) -> Proposal {
        let PreparedWrite {
            collection,
            prepared,
        } = p;
        if let Some(repl) = self.replicated(collection.name()).cloned() {
            return Proposal(tokio::spawn(async move {
                let command = collection.encode(&prepared)?;
                repl.propose(command).await
            }));
        }
        Proposal(tokio::task::spawn_blocking(move || {
            collection.commit(prepared)
        }))
    }

    // ---- reads

    /// Points by id, in the order asked (missing ids are skipped).
    pub async fn retrieve(
        &self,
        name: &str,
        ids: Vec<PointId>,
        with_payload: bool,
        vectors: VectorSelection,
    ) -> ServiceResult<Vec<PointOut>> {
        if let Some(cl) = self.routed(name) {
            return self
                .cluster_retrieve(cl, name, ids, with_payload, vectors)
                .await;
        }
        self.local_retrieve(name, ids, with_payload, vectors).await
    }

    async fn local_retrieve(
        &self,
        name: &str,
        ids: Vec<PointId>,
        with_payload: bool,
        vectors: VectorSelection,
    ) -> ServiceResult<Vec<PointOut>> {
        let c = self.collection(name)?;
        blocking(move || c.retrieve(&ids, with_payload, &vectors)).await
    }

    /// A page of points ordered by id, and where the next page starts.
    pub async fn scroll(
        &self,
        name: &str,
        s: Scroll,
    ) -> ServiceResult<(Vec<PointOut>, Option<PointId>)> {
        if s.limit == 0 {
            return Err(ServiceError::invalid(
                "Wrong input: limit: expected a positive integer",
            ));
        }
        if let Some(cl) = self.routed(name) {
            return self.cluster_scroll(cl, name, s).await;
        }
        self.local_scroll(name, s).await
    }

    async fn local_scroll(
        &self,
        name: &str,
        s: Scroll,
    ) -> ServiceResult<(Vec<PointOut>, Option<PointId>)> {
        let c = self.collection(name)?;
        blocking(move || c.scroll(s.filter, s.limit, s.offset, s.with_payload, &s.vectors)).await
    }

    pub async fn count(&self, name: &str, filter: Option<Filter>) -> ServiceResult<usize> {
        if let Some(cl) = self.routed(name) {
            return self.cluster_count(cl, name, filter).await;
        }
        self.local_count(name, filter).await
    }

    async fn local_count(&self, name: &str, filter: Option<Filter>) -> ServiceResult<usize> {
        let c = self.collection(name)?;
        blocking(move || Ok(c.count(filter.as_ref()))).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vectorforge::{SearchRequest, SyncPolicy};

    use super::*;
    use crate::params::parse_vectors;
    use crate::store::{NamedPoint, Selector};

    fn service(dir: &std::path::Path) -> CollectionService {
        let reg = Arc::new(Registry::open(dir).unwrap());
        CollectionService::new(
            reg,
            Defaults {
                sync: SyncPolicy::Always,
                hnsw: Default::default(),
            },
        )
    }

    fn near(v: Vec<f32>) -> Search {
        Search {
            target: Target::Vector(v),
            using: String::new(),
            req: SearchRequest {
                limit: 3,
                ..Default::default()
            },
            vectors: VectorSelection::None,
            quantization: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_go_prepare_propose_commit_and_batches_are_checked_first() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let params = CollectionParams {
            vectors: parse_vectors(&serde_json::json!({"size": 2, "distance": "Euclid"})).unwrap(),
            hnsw: Default::default(),
            sync: SyncPolicy::Always,
            optimizers_config: None,
            metadata: None,
            created_at: String::new(),
            quantization: Default::default(),
        };
        s.create("c".into(), params.clone()).await.unwrap();
        assert!(matches!(
            s.create("c".into(), params).await,
            Err(ServiceError::AlreadyExists(_))
        ));
        let points = (0..10u64)
            .map(|i| NamedPoint {
                id: PointId::Num(i),
                vectors: BTreeMap::from([(String::new(), vec![i as f32, 0.0])]),
                payload: None,
            })
            .collect();
        // a prepared write changes nothing until it is proposed and committed
        let p = s.prepare("c", Write::Upsert(points)).await.unwrap();
        assert_eq!(s.count("c", None).await.unwrap(), 0);
        assert_eq!(s.propose(p).committed().await.unwrap(), 1);
        assert_eq!(s.count("c", None).await.unwrap(), 10);
        let del = Write::Delete(Selector::Ids(vec![PointId::Num(0)]));
        assert_eq!(s.write("c", del).await.unwrap(), 2);
        // a bad search anywhere in a batch fails it before any runs, and says which
        let batch = vec![near(vec![1.0, 0.0]), near(vec![1.0])];
        match s.search_all("c", batch).await {
            Err(ServiceError::Invalid(m)) => assert!(m.starts_with("searches[1]: "), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let hits = s
            .search_all("c", vec![near(vec![1.1, 0.0]), near(vec![8.9, 0.0])])
            .await
            .unwrap();
        assert_eq!(hits[0][0].id, PointId::Num(1));
        assert_eq!(hits[1][0].id, PointId::Num(9));
        assert!(matches!(
            s.write("missing", Write::DropIndex { key: "k".into() })
                .await,
            Err(ServiceError::NotFound(_))
        ));
        let zero = Scroll {
            filter: None,
            limit: 0,
            offset: None,
            with_payload: false,
            vectors: VectorSelection::None,
        };
        assert!(matches!(
            s.scroll("c", zero).await,
            Err(ServiceError::Invalid(_))
        ));
    }
}
