//! One container's life in a pod: start its process through the sandbox helper with its
//! output in a log file, run its probes, restart it by the pod's restartPolicy with back-off,
//! and stop it with SIGTERM, the grace period, then SIGKILL.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::env;
use crate::error::{Error, Result};
use crate::probe::{self, Outcome, Timing};
use crate::process::signal_group;
use crate::sandbox::ExecSpec;
use crate::status::{Shared, State, now};
use crate::volumes::PreparedVolumes;

/// Which list of the pod a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    Regular,
}

/// Everything the containers of one pod share.
pub struct PodContext {
    pub client: Client,
    pub config: Arc<AgentConfig>,
    pub recorder: Recorder,
    pub pod: Pod,
    pub ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    pub netns: Option<PathBuf>,
    /// Set once the pod's volumes are prepared.
    pub volumes: std::sync::OnceLock<PreparedVolumes>,
    pub shared: Arc<Shared>,
    /// Grace period to use when `stop` fires (seconds).
    pub grace: std::sync::atomic::AtomicI64,
    pub stop: CancellationToken,
}

impl PodContext {
    /// Publishes an Event about the pod (failures to publish are only logged).
    pub async fn event(&self, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        let reference = kube::Resource::object_ref(&self.pod, &());
        if let Err(err) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %err, reason, "cannot publish event");
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }
}

async fn set_state(
    ctx: &PodContext,
    kind: Kind,
    idx: usize,
    f: impl FnOnce(&mut crate::status::ContainerRecord),
) {
    ctx.shared
        .update(|r| {
            let list = match kind {
                Kind::Init => &mut r.init_containers,
                Kind::Regular => &mut r.containers,
            };
            if let Some(c) = list.get_mut(idx) {
                f(c);
            }
        })
        .await;
}

/// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
async fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let Some(pid) = child.id() else {
        return child.wait().await.ok();
    };
    signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            signal_group(pid, libc::SIGKILL);
            status.ok()
        }
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            child.wait().await.ok()
        }
    }
}

/// Why a running container stopped.
enum Stop {
    Exited(Option<std::process::ExitStatus>),
    Killed(Option<std::process::ExitStatus>, &'static str),
    PodStopping(Option<std::process::ExitStatus>),
}

async fn start(ctx: &PodContext, c: &Container) -> Result<(Child, ExecSpec)> {
    let binary = env::resolve_image(&ctx.config, c.image.as_deref().unwrap_or_default())?;
    let vars = env::environment(
        &ctx.client,
        &ctx.pod,
        c,
        &ctx.ip.to_string(),
        &ctx.host_ip.to_string(),
        ctx.config.apiserver_port,
    )
    .await?;
    let argv: Vec<String> = env::argv(c, &binary)
        .iter()
        .map(|a| env::expand(a, &vars))
        .collect();
    let uid = ctx.pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = ctx.config.pod_dir(&uid);
    let spec = ExecSpec {
        netns: ctx.netns.clone(),
        hostname: ctx.pod.metadata.name.clone().unwrap_or_default(),
        image_dir: binary.parent().map(Path::to_path_buf),
        mounts: ctx
            .volumes
            .get()
            .ok_or_else(|| Error::ContainerConfig("volumes not prepared".into()))?
            .mounts(c)?,
        workdir: c.working_dir.as_ref().map(PathBuf::from),
        argv,
        env: vars,
    };
    let spec_path = pod_dir.join(format!("{}.exec.json", c.name));
    std::fs::create_dir_all(&pod_dir).map_err(|e| Error::io("pod dir", e))?;
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)
        .map_err(|e| Error::io("writing exec spec", e))?;
    let log_dir = ctx.config.log_dir(
        ctx.pod.metadata.namespace.as_deref().unwrap_or_default(),
        ctx.pod.metadata.name.as_deref().unwrap_or_default(),
        &uid,
    );
    std::fs::create_dir_all(&log_dir).map_err(|e| Error::io("log dir", e))?;
    let log_path = log_dir.join(format!("{}.log", c.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
    let log2 = log.try_clone().map_err(|e| Error::io("log fd", e))?;
    let child = tokio::process::Command::new(&ctx.config.self_exe)
        .arg("sandbox")
        .arg(&spec_path)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io("spawning the sandbox helper", e))?;
    if let Some(pid) = child.id() {
        crate::process::record(&pod_dir.join(format!("{}.pid", c.name)), pid);
    }
    Ok((child, spec))
}

/// One probe attempt; `exec` probes run the command like the container (same namespaces,
/// mounts and environment) through the sandbox helper and succeed on exit code 0.
async fn check(ctx: &PodContext, p: &Probe, c: &Container, spec: &ExecSpec) -> Outcome {
    let Some(cmd) = p.exec.as_ref().and_then(|e| e.command.clone()) else {
        return probe::check(p, c, ctx.ip).await;
    };
    let uid = ctx.pod.metadata.uid.clone().unwrap_or_default();
    let path = ctx
        .config
        .pod_dir(&uid)
        .join(format!("{}.probe.json", c.name));
    let probe_spec = ExecSpec {
        argv: cmd,
        ..spec.clone()
    };
    let written = serde_json::to_vec(&probe_spec)
        .map_err(|e| e.to_string())
        .and_then(|b| std::fs::write(&path, b).map_err(|e| e.to_string()));
    if let Err(e) = written {
        return Outcome::Failure(format!("cannot write the exec probe spec: {e}"));
    }
    let child = tokio::process::Command::new(&ctx.config.self_exe)
        .arg("sandbox")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("cannot run the exec probe: {e}")),
    };
    let pid = child.id();
    let timeout = Timing::of(p).timeout;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Outcome::Success,
        Ok(Ok(out)) => Outcome::Failure(format!(
            "command exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(Err(e)) => Outcome::Failure(e.to_string()),
        Err(_) => {
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGKILL);
            }
            Outcome::Failure(format!("command timed out after {}s", timeout.as_secs()))
        }
    }
}

/// Runs the probes of a started container; returns only when it must be killed.
async fn probes(
    ctx: &PodContext,
    kind: Kind,
    idx: usize,
    c: &Container,
    exec: &ExecSpec,
) -> &'static str {
    if let Some(p) = &c.startup_probe {
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            match check(ctx, p, c, exec).await {
                Outcome::Success => break,
                Outcome::Failure(msg) => {
                    failures += 1;
                    ctx.event(
                        EventType::Warning,
                        "Unhealthy",
                        format!("Startup probe failed: {msg}"),
                    )
                    .await;
                    if failures >= t.failure_threshold {
                        return "failed startup probe";
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
    set_state(ctx, kind, idx, |r| r.started = true).await;
    if kind == Kind::Init {
        return std::future::pending().await;
    }
    let readiness = async {
        let Some(p) = &c.readiness_probe else {
            set_state(ctx, kind, idx, |r| r.ready = true).await;
            return std::future::pending::<()>().await;
        };
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let (mut ok, mut bad, mut ready) = (0u32, 0u32, false);
        loop {
            match check(ctx, p, c, exec).await {
                Outcome::Success => {
                    ok += 1;
                    bad = 0;
                    if !ready && ok >= t.success_threshold {
                        ready = true;
                        set_state(ctx, kind, idx, |r| r.ready = true).await;
                    }
                }
                Outcome::Failure(msg) => {
                    bad += 1;
                    ok = 0;
                    if ready && bad >= t.failure_threshold {
                        ready = false;
                        set_state(ctx, kind, idx, |r| r.ready = false).await;
                        ctx.event(
                            EventType::Warning,
                            "Unhealthy",
                            format!("Readiness probe failed: {msg}"),
                        )
                        .await;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(p) = &c.liveness_probe else {
            return std::future::pending::<&'static str>().await;
        };
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut bad = 0;
        loop {
            match check(ctx, p, c, exec).await {
                Outcome::Success => bad = 0,
                Outcome::Failure(msg) => {
                    bad += 1;
                    ctx.event(
                        EventType::Warning,
                        "Unhealthy",
                        format!("Liveness probe failed: {msg}"),
                    )
                    .await;
                    if bad >= t.failure_threshold {
                        return "failed liveness probe";
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::select! {
        _ = readiness => "readiness ended",
        why = liveness => why,
    }
}

/// Supervises container `idx` until it finishes for good or the pod stops.
/// Returns whether the container ended successfully (exit code 0).
pub async fn supervise(ctx: Arc<PodContext>, kind: Kind, idx: usize, c: Container) -> bool {
    let mut backoff = ctx.config.initial_backoff;
    let key = ctx.key();
    loop {
        if ctx.stop.is_cancelled() {
            return false;
        }
        let (mut child, exec_spec) = match start(&ctx, &c).await {
            Ok(started) => started,
            Err(err) => {
                let reason = match err {
                    Error::ImageNotMapped { .. } => "ErrImagePull",
                    Error::Kube(_) | Error::ContainerConfig(_) => "CreateContainerConfigError",
                    _ => "CreateContainerError",
                };
                tracing::warn!(pod = %key, container = %c.name, error = %err, reason, "cannot start container");
                ctx.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {reason}: {err}"),
                )
                .await;
                let msg = err.to_string();
                set_state(&ctx, kind, idx, |r| {
                    r.state = State::Waiting {
                        reason: reason.into(),
                        message: msg,
                    };
                })
                .await;
                tokio::select! {
                    _ = ctx.stop.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ctx.config.max_backoff);
                continue;
            }
        };
        let started_at = now();
        let pid = child.id();
        let ran_since = Instant::now();
        tracing::info!(pod = %key, container = %c.name, pid, "container started");
        ctx.event(
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        )
        .await;
        let sa = started_at.clone();
        set_state(&ctx, kind, idx, |r| {
            if r.ever_started {
                r.restart_count += 1;
            }
            r.ever_started = true;
            r.state = State::Running { started_at: sa };
            r.pid = pid;
            r.ready = false;
            r.started = false;
        })
        .await;
        let stop = {
            let probing = probes(&ctx, kind, idx, &c, &exec_spec);
            tokio::select! {
                status = child.wait() => Stop::Exited(status.ok()),
                why = probing => {
                    ctx.event(EventType::Normal, "Killing", format!("Container {} {why}, will be restarted", c.name)).await;
                    let grace = grace_of(&ctx);
                    Stop::Killed(terminate(&mut child, grace).await, why)
                }
                _ = ctx.stop.cancelled() => {
                    ctx.event(EventType::Normal, "Killing", format!("Stopping container {}", c.name)).await;
                    let grace = grace_of(&ctx);
                    Stop::PodStopping(terminate(&mut child, grace).await)
                }
            }
        };
        let (status, message) = match &stop {
            Stop::Exited(s) => (*s, String::new()),
            Stop::Killed(s, why) => (*s, format!("container {why}")),
            Stop::PodStopping(s) => (*s, String::new()),
        };
        if let Some(pid) = pid {
            signal_group(pid, libc::SIGKILL);
        }
        let (exit_code, signal) = exit_of(status);
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        tracing::info!(pod = %key, container = %c.name, exit_code, ?signal, "container exited");
        let restart = match (&stop, kind, ctx.restart_policy()) {
            (Stop::PodStopping(_), _, _) => false,
            (_, Kind::Init, "Never") => false,
            (_, Kind::Init, _) => exit_code != 0,
            (_, _, "Always") => true,
            (_, _, "OnFailure") => exit_code != 0,
            _ => false,
        };
        let terminated = State::Terminated {
            exit_code,
            signal,
            reason: reason.into(),
            message,
            started_at,
            finished_at: now(),
        };
        let is_stopping = matches!(stop, Stop::PodStopping(_));
        let t2 = terminated.clone();
        set_state(&ctx, kind, idx, |r| {
            r.ready = false;
            r.started = false;
            r.pid = None;
            if restart {
                r.last_state = Some(t2);
                r.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!("back-off restarting failed container {}", r.name),
                };
            } else {
                r.state = t2;
                r.finished = !is_stopping;
            }
        })
        .await;
        if !restart {
            return exit_code == 0 && !is_stopping;
        }
        if ran_since.elapsed() > Duration::from_secs(600) {
            backoff = ctx.config.initial_backoff;
        }
        ctx.event(
            EventType::Warning,
            "BackOff",
            format!("Back-off restarting container {}", c.name),
        )
        .await;
        tokio::select! {
            _ = ctx.stop.cancelled() => {
                set_state(&ctx, kind, idx, |r| r.state = terminated).await;
                return false;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(ctx.config.max_backoff);
    }
}

fn grace_of(ctx: &PodContext) -> Duration {
    Duration::from_secs(ctx.grace.load(std::sync::atomic::Ordering::Relaxed).max(0) as u64)
}

fn exit_of(status: Option<std::process::ExitStatus>) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            _ => (-1, None),
        },
        None => (-1, None),
    }
}
