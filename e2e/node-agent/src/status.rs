//! The agent's record of a pod's containers and its rendering as a Pod `status`, kept
//! truthful: container states, restart counts, exit codes, readiness, phase, conditions.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

/// RFC 3339 timestamp with seconds, as Kubernetes writes them.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The state of one container, as `containerStatuses[].state` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: String,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    fn json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code, "signal": signal, "reason": reason, "message": message,
                "startedAt": started_at, "finishedAt": finished_at,
            }}),
        }
    }
}

/// What the agent knows about one container.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    pub pid: Option<u32>,
    /// Has run at least once in this pod.
    pub ever_started: bool,
    /// Exited and will not be restarted.
    pub finished: bool,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str, restart_count: i32) -> Self {
        ContainerRecord {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last_state: None,
            restart_count,
            ready: false,
            started: false,
            pid: None,
            ever_started: false,
            finished: false,
        }
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("modelhub-local://{}", self.image),
            "containerID": self.pid.map(|p| format!("modelhub-local://{p}")),
            "state": self.state.json(),
            "lastState": self.last_state.as_ref().map(State::json).unwrap_or_else(|| json!({})),
            "restartCount": self.restart_count,
            "ready": self.ready,
            "started": self.started,
        })
    }
}

/// What the agent knows about one pod.
#[derive(Debug, Default)]
pub struct PodRecord {
    pub init_containers: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    pub sandbox_ready: bool,
    pub initialized: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: String,
    /// Set when init containers failed for good.
    pub failed_init: bool,
    /// condition type → (status, lastTransitionTime)
    transitions: HashMap<&'static str, (bool, String)>,
}

/// A pod record shared between the pod's tasks, with a wake-up for the status writer.
#[derive(Debug, Default)]
pub struct Shared {
    pub record: Mutex<PodRecord>,
    pub changed: Notify,
}

impl Shared {
    /// Applies `f` to the record and wakes the status writer.
    pub async fn update<R>(&self, f: impl FnOnce(&mut PodRecord) -> R) -> R {
        let r = f(&mut *self.record.lock().await);
        self.changed.notify_one();
        r
    }
}

impl PodRecord {
    /// The pod phase that follows from the containers.
    pub fn phase(&self) -> &'static str {
        if self.failed_init {
            return "Failed";
        }
        if !self.containers.is_empty() && self.containers.iter().all(|c| c.finished) {
            let ok = self
                .containers
                .iter()
                .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
            return if ok { "Succeeded" } else { "Failed" };
        }
        if self.initialized && self.containers.iter().all(|c| c.ever_started) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn condition(&mut self, kind: &'static str, status: bool, reason: Option<&str>) -> Value {
        let entry = self
            .transitions
            .entry(kind)
            .or_insert_with(|| (status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        let mut c = json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": entry.1,
        });
        if let Some(r) = reason.filter(|_| !status) {
            c["reason"] = json!(r);
        }
        c
    }

    /// The full `status` of the pod.
    pub fn status_json(&mut self, generation: Option<i64>) -> Value {
        let all_ready = self.containers.iter().all(|c| c.ready) && self.initialized;
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let not_ready_reason = if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let sandbox = self.sandbox_ready && !terminal;
        let initialized = self.initialized;
        let conditions = vec![
            self.condition("PodReadyToStartContainers", sandbox, None),
            self.condition("Initialized", initialized, Some("ContainersNotInitialized")),
            self.condition("Ready", all_ready && !terminal, Some(not_ready_reason)),
            self.condition(
                "ContainersReady",
                all_ready && !terminal,
                Some(not_ready_reason),
            ),
            self.condition("PodScheduled", true, None),
        ];
        let ips: Vec<Value> = self.pod_ip.iter().map(|ip| json!({"ip": ip})).collect();
        json!({
            "observedGeneration": generation,
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": ips,
            "startTime": self.start_time,
            "initContainerStatuses": self.init_containers.iter().map(ContainerRecord::json).collect::<Vec<_>>(),
            "containerStatuses": self.containers.iter().map(ContainerRecord::json).collect::<Vec<_>>(),
        })
    }
}
