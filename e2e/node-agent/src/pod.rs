//! One pod on this node, from sandbox to finalisation: network namespace and volumes, init
//! containers then containers, the status writer, and on deletion the graceful stop, the
//! teardown and the final delete that lets the API server drop the object.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::container::{self, Kind, PodContext};
use crate::network::{Network, PodNetwork};
use crate::status::{ContainerRecord, Shared, now};
use crate::volumes;

/// What a pod worker needs from the agent.
#[derive(Clone)]
pub struct Deps {
    pub client: Client,
    pub config: Arc<AgentConfig>,
    pub network: Arc<Network>,
    pub recorder: kube::runtime::events::Recorder,
    /// Fires when the agent shuts down: stop processes, leave the pod objects alone.
    pub shutdown: CancellationToken,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn previous_restarts(pod: &Pod, name: &str, init: bool) -> i32 {
    let status = pod.status.as_ref();
    let list = if init {
        status.and_then(|s| s.init_container_statuses.as_ref())
    } else {
        status.and_then(|s| s.container_statuses.as_ref())
    };
    list.into_iter()
        .flatten()
        .find(|c| c.name == name)
        // A container that ran under a previous agent run counts as restarted once more.
        .map(|c| {
            c.restart_count
                + i32::from(
                    c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some()),
                )
        })
        .unwrap_or(0)
}

/// Runs pod `rx` until it is gone, or until the agent shuts down.
pub async fn run(deps: Deps, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(pod) = rx.borrow().clone() else {
        return;
    };
    let key = pod_key(&pod);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
    let mut net: Option<PodNetwork> = None;
    let stop = CancellationToken::new();
    let mut supervisor: Option<tokio::task::JoinHandle<()>> = None;
    let mut ctx_slot: Option<Arc<PodContext>> = None;
    let writer_stop = CancellationToken::new();

    if pod.metadata.deletion_timestamp.is_none() && !terminal {
        loop {
            match start(&deps, &pod, stop.clone()).await {
                Ok((n, ctx, handle)) => {
                    net = Some(n);
                    tokio::spawn(status_writer(
                        deps.client.clone(),
                        ctx.clone(),
                        writer_stop.clone(),
                    ));
                    supervisor = Some(handle);
                    ctx_slot = Some(ctx);
                    break;
                }
                Err(err) => {
                    tracing::warn!(pod = %key, error = %err, "cannot create the pod sandbox; retrying");
                    tokio::select! {
                        _ = deps.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    let gone = rx
                        .borrow()
                        .as_ref()
                        .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
                    if gone {
                        break;
                    }
                }
            }
        }
    }

    // Wait for deletion (graceful), disappearance (forced) or agent shutdown.
    let mut forced = false;
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => {
                forced = true;
                break;
            }
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                if let Some(ctx) = &ctx_slot {
                    let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(30);
                    ctx.grace.store(grace, Ordering::Relaxed);
                }
                break;
            }
            Some(_) => {}
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { forced = true; break },
            _ = deps.shutdown.cancelled() => {
                tracing::info!(pod = %key, "agent shutting down: stopping the pod's processes");
                stop.cancel();
                if let Some(h) = supervisor.take() { let _ = h.await; }
                writer_stop.cancel();
                if let Some(n) = &net { deps.network.teardown(n).await; }
                return;
            }
        }
    }
    tracing::info!(pod = %key, forced, "stopping pod");
    if forced && let Some(ctx) = &ctx_slot {
        ctx.grace.store(2, Ordering::Relaxed);
    }
    stop.cancel();
    if let Some(h) = supervisor.take() {
        let _ = h.await;
    }
    // Let the writer flush the final container states.
    if let Some(ctx) = &ctx_slot {
        ctx.shared.changed.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    writer_stop.cancel();
    if let Some(n) = &net {
        deps.network.teardown(n).await;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = deps.config.pod_dir(&uid);
    if dir.exists()
        && let Err(err) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(pod = %key, error = %err, "cannot remove pod directory");
    }
    deps.network.release(&key);
    if !forced {
        let api: Api<Pod> = Api::namespaced(
            deps.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => tracing::info!(pod = %key, "pod finalised"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(err) => tracing::warn!(pod = %key, error = %err, "cannot finalise pod"),
        }
    }
}

type Started = (PodNetwork, Arc<PodContext>, tokio::task::JoinHandle<()>);

async fn start(deps: &Deps, pod: &Pod, stop: CancellationToken) -> crate::Result<Started> {
    let key = pod_key(pod);
    let addr = match pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
    {
        Some(existing) => {
            deps.network.reserve(&key, existing);
            deps.network.allocate(&key)?
        }
        None => deps.network.allocate(&key)?,
    };
    let net = deps.network.setup(addr).await?;
    deps.network.start_apiserver_forwarder(&net, stop.clone())?;
    let spec = pod.spec.clone().unwrap_or_default();
    let shared = Arc::new(Shared::default());
    {
        let mut r = shared.record.lock().await;
        r.pod_ip = Some(addr.to_string());
        r.host_ip = deps.network.gateway().to_string();
        r.start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(now);
        r.sandbox_ready = true;
        r.initialized = spec.init_containers.as_ref().is_none_or(|v| v.is_empty());
        for c in spec.init_containers.iter().flatten() {
            r.init_containers.push(ContainerRecord::new(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                previous_restarts(pod, &c.name, true),
            ));
        }
        for c in &spec.containers {
            r.containers.push(ContainerRecord::new(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                previous_restarts(pod, &c.name, false),
            ));
        }
    }
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    let ctx = Arc::new(PodContext {
        client: deps.client.clone(),
        config: deps.config.clone(),
        recorder: deps.recorder.clone(),
        pod: pod.clone(),
        ip: addr,
        host_ip: deps.network.gateway(),
        netns: Some(net.netns_path()),
        volumes: std::sync::OnceLock::new(),
        shared,
        grace: AtomicI64::new(grace),
        stop,
    });
    let handle = tokio::spawn(run_containers(ctx.clone(), spec));
    Ok((net, ctx, handle))
}

/// Prepares volumes (retrying), runs init containers in order, then all containers.
async fn run_containers(ctx: Arc<PodContext>, spec: k8s_openapi::api::core::v1::PodSpec) {
    let key = pod_key(&ctx.pod);
    let volumes = loop {
        match volumes::prepare(
            &ctx.client,
            &ctx.config,
            &ctx.pod,
            &ctx.ip.to_string(),
            &ctx.host_ip.to_string(),
        )
        .await
        {
            Ok(v) => break v,
            Err(err) => {
                tracing::warn!(pod = %key, error = %err, "cannot prepare volumes");
                ctx.event(EventType::Warning, "FailedMount", err.to_string())
                    .await;
                tokio::select! {
                    _ = ctx.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let _ = ctx.volumes.set(volumes);
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let ok = container::supervise(ctx.clone(), Kind::Init, i, c.clone()).await;
        if !ok {
            if !ctx.stop.is_cancelled() {
                ctx.shared.update(|r| r.failed_init = true).await;
            }
            return;
        }
    }
    ctx.shared.update(|r| r.initialized = true).await;
    let mut tasks = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        tasks.push(tokio::spawn(container::supervise(
            ctx.clone(),
            Kind::Regular,
            i,
            c.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Writes the pod's status whenever the record changes (and every few seconds).
async fn status_writer(client: Client, ctx: Arc<PodContext>, stop: CancellationToken) {
    let ns = ctx.pod.metadata.namespace.clone().unwrap_or_default();
    let name = ctx.pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut last = serde_json::Value::Null;
    loop {
        let status = ctx
            .shared
            .record
            .lock()
            .await
            .status_json(ctx.pod.metadata.generation);
        if status != last {
            let patch = serde_json::json!({"status": status});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => last = status,
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                Err(err) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "cannot write pod status")
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.shared.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
