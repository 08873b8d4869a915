//! The kubelet part: watches the pods bound to this node and keeps one worker per pod
//! ([`crate::pod::run`]); on start it cleans up processes a previous run left behind.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pod::{self, Deps};
use crate::process;

/// Kills the process groups recorded in `<data-root>/pods/*/*.pid` by a previous run.
pub fn kill_leftovers(data_root: &Path) {
    let Ok(pods) = std::fs::read_dir(data_root.join("pods")) else {
        return;
    };
    for pod_dir in pods.flatten() {
        let Ok(files) = std::fs::read_dir(pod_dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                continue;
            }
            if let Some(pid) = process::still_running(&path) {
                tracing::info!(pid, file = %path.display(), "killing a container process left by a previous run");
                process::signal_group(pid, libc::SIGKILL);
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

struct Worker {
    tx: watch::Sender<Option<Pod>>,
    handle: JoinHandle<()>,
}

/// Runs the pods bound to this node until the agent shuts down.
pub async fn run(deps: Deps) {
    kill_leftovers(&deps.config.data_root);
    let api: Api<Pod> = Api::all(deps.client.clone());
    let cfg =
        watcher::Config::default().fields(&format!("spec.nodeName={}", deps.config.node_name));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let ev = tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            ev = stream.next() => ev,
        };
        match ev {
            Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(Event::InitApply(p))) => {
                if let (Some(seen), Some(uid)) = (listed.as_mut(), p.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                dispatch(&deps, &mut workers, p);
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = listed.take() {
                    workers.retain(|uid, w| {
                        if seen.contains(uid) {
                            return true;
                        }
                        let _ = w.tx.send(None);
                        false
                    });
                }
            }
            Some(Ok(Event::Apply(p))) => dispatch(&deps, &mut workers, p),
            Some(Ok(Event::Delete(p))) => {
                if let Some(w) = p.metadata.uid.as_ref().and_then(|u| workers.remove(u)) {
                    let _ = w.tx.send(None);
                }
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "pod watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            None => break,
        }
    }
    for (_, w) in workers.drain() {
        let _ = w.handle.await;
    }
}

fn dispatch(deps: &Deps, workers: &mut HashMap<String, Worker>, p: Pod) {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    if !deps.config.serves_namespace(&ns) {
        return;
    }
    let Some(uid) = p.metadata.uid.clone() else {
        return;
    };
    if let Some(w) = workers.get(&uid)
        && !w.handle.is_finished()
    {
        let _ = w.tx.send(Some(p));
        return;
    }
    let (tx, rx) = watch::channel(Some(p));
    let handle = tokio::spawn(pod::run(deps.clone(), rx));
    workers.insert(uid, Worker { tx, handle });
}
