//! `modelhub-operator`: runs the VectorCollection, InferenceService and TrafficPolicy
//! controllers behind a leader lease, and serves `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use modelhub_operator::api::{InferenceService, TrafficPolicy, VectorCollection};
use modelhub_operator::builders::Images;
use modelhub_operator::controllers::owned::{Owned, Triggers, Writers};
use modelhub_operator::controllers::{self, Context, api, error_policy};
use modelhub_operator::leader::LeaseLock;
use modelhub_operator::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Kubernetes operator for ModelHub.
#[derive(Parser, Debug)]
#[command(name = "modelhub-operator", version)]
struct Args {
    /// Address of the metrics and health server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease (turn off only when exactly one replica runs).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "modelhub-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease and in Events; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Only watch this namespace; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Registry of the workload images (`<registry>/<workload>:<tag>`).
    #[arg(long, env = "IMAGE_REGISTRY", default_value = "ghcr.io/modelhub")]
    image_registry: String,
    /// Tag of the workload images.
    #[arg(long, env = "IMAGE_TAG", default_value = env!("CARGO_PKG_VERSION"))]
    image_tag: String,
    /// imagePullPolicy of the workload containers.
    #[arg(long, env = "IMAGE_PULL_POLICY")]
    image_pull_policy: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: modelhub_telemetry::LogFormat,
    /// Reconciles run at once per kind (never two for the same object). Bounded so a
    /// burst of resources cannot flood the API server with writes.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

/// How long in-flight reconciles may run after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn metrics_handler(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            modelhub_telemetry::metrics::CONTENT_TYPE,
        )],
        modelhub_telemetry::metrics::render(&h.metrics.registry),
    )
}

async fn readyz(State(h): State<Health>) -> StatusCode {
    if h.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn log_result<K, E>(kind: &'static str, res: Result<(ObjectRef<K>, Action), E>)
where
    K: Resource,
    K::DynamicType: Clone + std::fmt::Debug,
    E: std::fmt::Display,
{
    match res {
        Ok((obj, _)) => tracing::debug!(kind, object = %obj, "reconciled"),
        Err(err) => tracing::debug!(kind, error = %err, "reconcile loop error"),
    }
}

/// Runs the three controllers and the watches of their children until `stop` is
/// cancelled.
async fn run_controllers(
    client: Client,
    ns: Option<String>,
    concurrency: u16,
    ctx: Arc<Context>,
    writers: Writers,
    stop: CancellationToken,
) {
    let nsr = ns.as_deref();
    let config = || controller::Config::default().concurrency(concurrency);
    // Child events reach their owner's controller through these queues, from the watch
    // that also fills the cache (controllers/owned.rs).
    let (vc_tx, vc_rx) = mpsc::unbounded();
    let (isvc_tx, isvc_rx) = mpsc::unbounded();
    let (tp_tx, tp_rx) = mpsc::unbounded();
    let triggers = Triggers {
        vector_collections: vc_tx,
        inference_services: isvc_tx,
        traffic_policies: tp_tx,
    };
    let vc = Controller::new(
        api::<VectorCollection>(&client, nsr),
        watcher::Config::default(),
    )
    .with_config(config())
    .reconcile_on(vc_rx)
    .graceful_shutdown_on(stop.clone().cancelled_owned())
    .run(
        controllers::vector_collection::reconcile,
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| log_result("VectorCollection", r));
    let isvc = Controller::new(
        api::<InferenceService>(&client, nsr),
        watcher::Config::default(),
    )
    .with_config(config())
    .reconcile_on(isvc_rx)
    .graceful_shutdown_on(stop.clone().cancelled_owned())
    .run(
        controllers::inference_service::reconcile,
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| log_result("InferenceService", r));
    let tp_controller = Controller::new(
        api::<TrafficPolicy>(&client, nsr),
        watcher::Config::default(),
    );
    let policies = tp_controller.store();
    let tp = tp_controller
        .with_config(config())
        .reconcile_on(tp_rx)
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            controllers::traffic_policy::reconcile,
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| log_result("TrafficPolicy", r));
    let children = ctx.owned.clone().watch(
        client.clone(),
        ns.clone(),
        writers.children,
        triggers.clone(),
    );
    let backends = controllers::traffic_policy::watch_backends(
        api(&client, nsr),
        writers.inference_services,
        &triggers,
        &policies,
    );
    let watches = async {
        tokio::join!(children, backends);
    };
    // The controllers end on `stop`; the watches end with them.
    tokio::select! {
        _ = async { tokio::join!(vc, isvc, tp) } => {}
        () = watches => tracing::error!("the watches of the children ended"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = modelhub_telemetry::init("modelhub-operator", args.log_format)?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("modelhub-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();

    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(addr = %args.metrics_addr, "metrics and health server listening");
    let http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.cancelled_owned())
            .await
    });

    let signal_stop = shutdown.clone();
    tokio::spawn(async move {
        modelhub_telemetry::shutdown_signal().await;
        signal_stop.cancel();
    });

    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let version = client
        .apiserver_version()
        .await
        .context("cannot reach the Kubernetes API server")?;
    tracing::info!(server = %version.git_version, %identity, "connected to the API server");
    ready.store(true, Ordering::Relaxed);

    let reporter = Reporter {
        controller: "modelhub-operator".to_owned(),
        instance: Some(identity.clone()),
    };
    let images = Images {
        pull_policy: args.image_pull_policy.clone(),
        ..Images::with_tag(&args.image_registry, &args.image_tag)
    };
    let (owned, writers) = Owned::new();
    let ctx = Arc::new(Context::new(
        client.clone(),
        images,
        metrics.clone(),
        reporter,
        Arc::new(owned),
    ));

    let lock = args.leader_elect.then(|| {
        LeaseLock::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            args.lease_name.clone(),
            identity.clone(),
            Duration::from_secs(15),
        )
    });
    let mut lost_lease = false;
    if let Some(lock) = &lock {
        tracing::info!(lease = %args.lease_name, namespace = %args.lease_namespace, "waiting for the leader lease");
        loop {
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read or take the lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(lock.renew_period()) => {}
            }
        }
    }
    if !shutdown.is_cancelled() {
        metrics.leader.set(1);
        tracing::info!("leading: starting controllers");
        let controllers_stop = shutdown.child_token();
        let renew = async {
            let Some(lock) = &lock else {
                return std::future::pending::<()>().await;
            };
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(lock.renew_period()).await;
                match lock.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot renew the lease");
                        if last_renewal.elapsed() > Duration::from_secs(15) {
                            return;
                        }
                    }
                }
            }
        };
        // After SIGTERM the controllers get a bounded grace period to finish their
        // in-flight reconciles; the process must not outlive terminationGracePeriod.
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = run_controllers(client.clone(), args.namespace.clone(), args.concurrency, ctx, writers, controllers_stop.clone()) => {}
            () = grace => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop within the grace period; exiting");
            }
            () = renew => {
                tracing::error!("lost the leader lease; stopping");
                lost_lease = true;
                controllers_stop.cancel();
            }
        }
        metrics.leader.set(0);
    }
    if let Some(lock) = &lock
        && !lost_lease
        && let Err(err) = lock.release().await
    {
        tracing::warn!(error = %err, "cannot release the lease");
    }
    shutdown.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "metrics server failed"),
        Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
    }
    if lost_lease {
        anyhow::bail!("lost the leader lease");
    }
    tracing::info!("stopped");
    Ok(())
}
