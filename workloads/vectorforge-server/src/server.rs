//! Runs the server: opens the collections, creates the collection the operator names
//! on the command line, serves REST and gRPC, snapshots collections in the background
//! and, on SIGTERM, stops accepting, drains in-flight requests, flushes and snapshots.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use vectorforge::{HnswConfig, PayloadSchemaType, SyncPolicy};

use crate::auth::ApiKey;
use crate::backup::{BackupConfig, BackupSettings, BackupState};
use crate::cluster::peers::{KubePeers, PeerSource, StaticPeers, collection_selector};
use crate::cluster::rpc::ShardRpc;
use crate::cluster::{Cluster, ClusterConfig};
use crate::grpc::GrpcState;
use crate::metrics::Metrics;
use crate::params::{CollectionParams, DEFAULT_VECTOR, VectorParams};
use crate::registry::Registry;
use crate::replication::{Replication, ReplicationConfig};
use crate::rest::{self, AppState};
use crate::service::{CollectionService, Defaults};
use crate::store::Write;

/// A collection to create at start (the operator's contract flags).
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub name: String,
    pub vector: VectorParams,
    pub payload_indexes: Vec<(String, PayloadSchemaType)>,
    pub quantization: vectorforge::Quantization,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub api_key: Option<String>,
    pub sync: SyncPolicy,
    pub hnsw: HnswConfig,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    pub request_timeout: Duration,
    /// Snapshot a collection once this many operations followed its last snapshot.
    pub snapshot_every_ops: u64,
    pub bootstrap: Option<Bootstrap>,
    /// Scheduled snapshots, backups and the restore of the bootstrap collection.
    pub backup: Option<BackupSettings>,
    /// Namespace of the pod's VectorCollection (backup object keys).
    pub namespace: String,
    /// This pod's place in a distributed collection (the bootstrap collection).
    pub cluster: Option<ClusterSetup>,
}

/// Where a pod of a distributed collection is and how it finds the others.
#[derive(Clone, Debug)]
pub struct ClusterSetup {
    pub shard: u32,
    pub shards: u32,
    /// The internal port's address (shard-to-shard calls; Raft later).
    pub internal_addr: SocketAddr,
    /// This pod's name among its peers.
    pub self_name: String,
    /// When a read of another shard also goes to a second pod of that shard.
    pub hedge_after: Option<Duration>,
    /// Pods per shard (the Raft group's size) until the VectorCollection says
    /// otherwise (with Kubernetes discovery the pod follows its `spec.replicas`).
    pub replicas: u32,
    /// This pod's ordinal in its shard (its Raft node id).
    pub ordinal: u32,
    /// This pod's internal address as the others reach it (pod IP and internal port).
    pub advertise: SocketAddr,
    pub peers: PeerDiscovery,
}

/// How the pods of the collection are found.
#[derive(Clone, Debug)]
pub enum PeerDiscovery {
    /// `--peer SHARD=HOST:PORT` items.
    Static(Vec<String>),
    /// A watch on the pods `selector` picks (the shard selector is narrowed to the
    /// collection) in `namespace`.
    Kube { namespace: String, selector: String },
}

/// The peers, and with Kubernetes discovery the API client the pod's other watches
/// and status reports share.
async fn peer_source(
    setup: &ClusterSetup,
) -> anyhow::Result<(Arc<dyn PeerSource>, Option<kube::Client>)> {
    Ok(match &setup.peers {
        PeerDiscovery::Static(items) => (
            Arc::new(StaticPeers::parse(items).map_err(|e| anyhow::anyhow!(e))?),
            None,
        ),
        PeerDiscovery::Kube {
            namespace,
            selector,
        } => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (peers are found through it)")?;
            let selector = collection_selector(selector);
            let peers = KubePeers::start(
                client.clone(),
                namespace,
                &selector,
                setup.internal_addr.port(),
            );
            (peers, Some(client))
        }
    })
}

/// The payload indexes of `wanted` that collection `c` lacks.
fn missing_indexes(
    c: &crate::store::PointsCollection,
    wanted: &[(String, PayloadSchemaType)],
) -> Vec<(String, PayloadSchemaType)> {
    let have = c.info().indexed_fields;
    wanted
        .iter()
        .filter(|(k, t)| !have.iter().any(|(hk, ht)| hk == k && ht == t))
        .cloned()
        .collect()
}

fn bootstrap(reg: &Registry, b: &Bootstrap, cfg: &ServerConfig) -> anyhow::Result<()> {
    let c = match reg.get(&b.name) {
        Ok(c) => {
            let p = c.params();
            let have = p.vectors.get(DEFAULT_VECTOR);
            if have.map(|v| (v.size, v.distance)) != Some((b.vector.size, b.vector.distance)) {
                anyhow::bail!(
                    "collection {} exists with vectors {:?}, but the flags ask for size {} / {:?}; dimension and distance cannot change",
                    b.name,
                    p.vectors,
                    b.vector.size,
                    b.vector.distance
                );
            }
            if p.quantization != b.quantization {
                anyhow::bail!(
                    "collection {} exists with quantization {:?}, but the flags ask for {:?}; quantization cannot change",
                    b.name,
                    p.quantization,
                    b.quantization
                );
            }
            c
        }
        Err(_) => reg
            .create(
                &b.name,
                CollectionParams {
                    vectors: [(DEFAULT_VECTOR.to_string(), b.vector.clone())].into(),
                    hnsw: cfg.hnsw.clone(),
                    sync: cfg.sync,
                    optimizers_config: None,
                    metadata: None,
                    created_at: chrono::Utc::now().to_rfc3339(),
                    quantization: b.quantization,
                },
            )
            .map_err(|e| anyhow::anyhow!("creating collection {}: {e}", b.name))?,
    };
    if cfg.cluster.is_some() {
        // a shard pod is a Raft member: its leader proposes the indexes through the log
        // (index_upkeep)
        return Ok(());
    }
    for (key, kind) in missing_indexes(&c, &b.payload_indexes) {
        c.write(Write::CreateIndex {
            key: key.clone(),
            kind,
        })
        .map_err(|e| anyhow::anyhow!("payload index {key}: {e}"))?;
    }
    Ok(())
}

/// With replication: once this pod leads its shard's group, proposes the payload
/// indexes the flags ask for and the collection lacks (through the log, so every
/// replica builds them at the same index).
async fn index_upkeep(service: CollectionService, repl: Arc<Replication>, b: Bootstrap) {
    let local = service.local();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !repl.is_leader() {
            continue;
        }
        let Ok(c) = service.registry().get(&b.name) else {
            return;
        };
        let missing = missing_indexes(&c, &b.payload_indexes);
        if missing.is_empty() {
            return;
        }
        for (key, kind) in missing {
            match local
                .write(
                    &b.name,
                    Write::CreateIndex {
                        key: key.clone(),
                        kind,
                    },
                )
                .await
            {
                Ok(_) => tracing::info!(
                    collection = b.name,
                    key,
                    "payload index created through the shard's log"
                ),
                Err(e) => tracing::warn!(collection = b.name, key, error = %e, "payload index"),
            }
        }
    }
}

/// `/readyz` follows the pod's place in its shard's group (with replication) and waits
/// for a restore to be done.
async fn readiness(
    repl: Option<Arc<Replication>>,
    backups: Arc<BackupState>,
    ready: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let member = repl.as_ref().is_none_or(|r| r.ready());
        ready.store(member && !backups.restore_pending(), Ordering::Release);
    }
}

/// Snapshots collections whose WAL has grown past the threshold.
async fn maintenance(
    reg: Arc<Registry>,
    every_ops: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for c in reg.all() {
            if c.wal_lag() >= every_ops {
                let name = c.name().to_string();
                match tokio::task::spawn_blocking(move || c.snapshot()).await {
                    Ok(Ok(seq)) => tracing::info!(collection = name, seq, "background snapshot"),
                    Ok(Err(e)) => {
                        tracing::error!(collection = name, error = %e, "background snapshot failed")
                    }
                    Err(e) => {
                        tracing::error!(collection = name, error = %e, "background snapshot panicked")
                    }
                }
            }
        }
    }
}

/// Runs until SIGTERM / Ctrl-C, then shuts down gracefully.
pub async fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir.clone();
    let reg = tokio::task::spawn_blocking(move || Registry::open(&data_dir))
        .await?
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", cfg.data_dir.display()))?;
    let reg = Arc::new(reg);
    if let Some(b) = cfg.bootstrap.clone() {
        let (r, c) = (reg.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || bootstrap(&r, &b, &c)).await??;
    }
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let ready = Arc::new(AtomicBool::new(false));
    let mut service = CollectionService::new(
        reg.clone(),
        Defaults {
            sync: cfg.sync,
            hnsw: cfg.hnsw.clone(),
        },
    );
    let api_key = cfg
        .api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|k| Arc::new(ApiKey::new(k)));
    let mut internal = None;
    let mut replication: Option<Arc<Replication>> = None;
    let mut kube_client: Option<kube::Client> = None;
    if let Some(setup) = &cfg.cluster {
        let collection = cfg
            .bootstrap
            .as_ref()
            .map(|b| b.name.clone())
            .context("a distributed collection needs --collection")?;
        let (peers, kube) = peer_source(setup).await?;
        kube_client = kube;
        let peers_for_raft = peers.clone();
        let cluster = Arc::new(Cluster::new(
            ClusterConfig {
                collection: collection.clone(),
                shard: setup.shard,
                shards: setup.shards,
                self_name: setup.self_name.clone(),
                api_key: cfg.api_key.clone().filter(|k| !k.is_empty()),
                timeout: cfg.request_timeout,
                max_message_bytes: cfg.max_body_bytes,
                hedge_after: setup.hedge_after,
            },
            peers,
        ));
        let listener = tokio::net::TcpListener::bind(setup.internal_addr)
            .await
            .with_context(|| format!("binding the internal port on {}", setup.internal_addr))?;
        let dir = cfg.data_dir.join("raft").join(&collection);
        let fresh = !dir.exists();
        let have = reg.get(&collection).map(|c| c.applied_index()).unwrap_or(0);
        if fresh && have > 0 {
            anyhow::bail!(
                "collection {collection} holds {have} operations written without replication and there is no Raft state in {}; a replicated shard must start empty (restore a snapshot into a new VectorCollection instead)",
                dir.display()
            );
        }
        let repl = Replication::start(
            ReplicationConfig {
                collection: collection.clone(),
                shard: setup.shard,
                ordinal: setup.ordinal,
                replicas: setup.replicas,
                size_from_api: matches!(setup.peers, PeerDiscovery::Kube { .. }),
                dir,
                advertise: setup.advertise,
            },
            reg.clone(),
            peers_for_raft.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        replication = Some(repl.clone());
        service = service.with_replication(repl);
        let rpc = ShardRpc::new(service.local(), api_key.clone()).into_service(cfg.max_body_bytes);
        internal = Some((listener, rpc));
        tracing::info!(collection, shard = setup.shard, shards = setup.shards, internal = %setup.internal_addr, "serving one shard of a distributed collection");
        service = service.with_cluster(cluster);
    }
    let st = AppState {
        service: service.clone(),
        metrics: metrics.clone(),
        api_key: api_key.clone(),
        ready: ready.clone(),
        request_timeout: cfg.request_timeout,
        max_body_bytes: cfg.max_body_bytes,
        max_upload_bytes: cfg.max_upload_bytes,
    };
    let grpc_state = GrpcState {
        service,
        metrics: metrics.clone(),
        api_key,
        request_timeout: cfg.request_timeout,
        max_message_bytes: cfg.max_body_bytes,
    };
    let http = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("binding REST on {}", cfg.http_addr))?;
    let grpc = tokio::net::TcpListener::bind(cfg.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", cfg.grpc_addr))?;
    tracing::info!(http = %cfg.http_addr, grpc = %cfg.grpc_addr, collections = reg.names().len(), auth = st.api_key.is_some(), "vectorforge listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = {
        let ready = ready.clone();
        async move {
            modelhub_telemetry::shutdown_signal().await;
            ready.store(false, Ordering::Release);
            tracing::info!("shutting down: draining requests");
            let _ = stop_tx.send(true);
        }
    };
    tokio::spawn(signal);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let rest_srv = axum::serve(http, rest::router(st.clone()))
        .with_graceful_shutdown(wait_stop(stop_rx.clone()));
    let grpc_srv = tonic::transport::Server::builder()
        .add_routes(crate::grpc::routes(grpc_state))
        .serve_with_incoming_shutdown(tokio_stream_listener(grpc), wait_stop(stop_rx.clone()));
    let internal_srv = internal.map(|(listener, rpc)| {
        let stop = wait_stop(stop_rx.clone());
        let mut routes = tonic::service::Routes::new(rpc);
        if let Some(r) = &replication {
            routes = routes.add_service(r.service());
        }
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(tokio_stream_listener(listener), stop),
        )
    });
    let maint = tokio::spawn(maintenance(
        reg.clone(),
        cfg.snapshot_every_ops,
        stop_rx.clone(),
    ));
    let backup_cfg = match (&cfg.backup, &cfg.bootstrap) {
        (Some(b), Some(start)) => Some(Arc::new(BackupConfig {
            collection: start.name.clone(),
            namespace: cfg.namespace.clone(),
            shard: cfg.cluster.as_ref().map_or(0, |c| c.shard),
            shards: cfg.cluster.as_ref().map_or(1, |c| c.shards),
            schedule: b.schedule.clone(),
            retention: b.retention,
            upload: b.upload.clone(),
            restore: b.restore.clone(),
        })),
        (Some(_), None) => {
            tracing::warn!("snapshot schedule without a start collection (--collection): ignored");
            None
        }
        _ => None,
    };
    let backups = Arc::new(BackupState::new(
        backup_cfg.as_ref().is_some_and(|b| b.restore.is_some()),
    ));
    tokio::spawn(readiness(
        replication.clone(),
        backups.clone(),
        ready.clone(),
        stop_rx.clone(),
    ));
    if let Some(bc) = &backup_cfg {
        tokio::spawn(crate::backup::run_schedule(
            st.service.clone(),
            bc.clone(),
            backups.clone(),
            replication.clone(),
            metrics.clone(),
        ));
        if bc.restore.is_some() {
            let marker = crate::backup::restore::marker_path(
                &cfg.data_dir.join("raft").join(&bc.collection),
            );
            tokio::spawn(crate::backup::restore::run_restore(
                st.service.clone(),
                bc.clone(),
                backups.clone(),
                replication.clone(),
                marker,
                kube_client.is_some(),
            ));
        }
    }
    if let Some(repl) = &replication {
        {
            if let Some(setup) = &cfg.cluster
                && let Some(client) = &kube_client
                && let PeerDiscovery::Kube { namespace, .. } = &setup.peers
                && let (Some(b), Some((prefix, _))) =
                    (&cfg.bootstrap, setup.self_name.rsplit_once('-'))
            {
                let target = crate::status::StatusTarget {
                    namespace: namespace.clone(),
                    name: b.name.clone(),
                    shard: setup.shard,
                    pod_prefix: format!("{prefix}-"),
                };
                tokio::spawn(crate::status::follow_spec(
                    client.clone(),
                    target.clone(),
                    repl.clone(),
                    backups.clone(),
                ));
                tokio::spawn(crate::status::report(
                    client.clone(),
                    target,
                    st.service.clone(),
                    repl.clone(),
                    backups.clone(),
                ));
            }
            if let Some(b) = cfg.bootstrap.clone() {
                tokio::spawn(index_upkeep(st.service.clone(), repl.clone(), b));
            }
        }
    }
    let (r, g) = tokio::join!(rest_srv, grpc_srv);
    r.context("REST server")?;
    g.context("gRPC server")?;
    if let Some(srv) = internal_srv {
        srv.await?.context("internal server")?;
    }
    let _ = maint.await;
    if let Some(repl) = &replication {
        repl.shutdown().await;
    }
    tracing::info!("requests drained; flushing and snapshotting collections");
    tokio::task::spawn_blocking(move || {
        reg.flush_all();
        for c in reg.all() {
            if c.wal_lag() > 0
                && let Err(e) = c.snapshot()
            {
                tracing::error!(collection = c.name(), error = %e, "final snapshot failed");
            }
        }
    })
    .await?;
    tracing::info!("vectorforge stopped");
    Ok(())
}

fn tokio_stream_listener(
    l: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
