//! Settings of one agent instance, shared by every part of it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// How the agent runs; built by the binary from its command line.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Name of the Node this agent registers and serves.
    pub node_name: String,
    /// Root of pod state: volumes, per-pod directories, logs.
    pub data_root: PathBuf,
    /// Directory holding the workspace's built binaries (`ghcr.io/modelhub/<name>` → `<dir>/<name>`).
    pub bin_dir: PathBuf,
    /// Extra image mappings: image prefix (repository without tag) → binary path.
    pub image_map: Vec<(String, PathBuf)>,
    /// Bridge in the root network namespace that every pod's veth joins.
    pub bridge: String,
    /// Address of the bridge (the pods' gateway and the node's InternalIP).
    pub gateway: Ipv4Addr,
    /// Prefix length of the pod network.
    pub prefix_len: u8,
    /// Address and port of the API server in the root namespace, forwarded into each pod.
    pub apiserver_port: u16,
    /// Only pods in namespaces starting with this prefix are scheduled and run (empty: all).
    pub namespace_prefix: String,
    /// First restart back-off (doubles up to `max_backoff`).
    pub initial_backoff: Duration,
    /// Longest restart back-off.
    pub max_backoff: Duration,
    /// Path of the agent's own executable (re-executed as the sandbox helper).
    pub self_exe: PathBuf,
}

impl AgentConfig {
    /// Whether pods of `namespace` are this agent's business.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        namespace.starts_with(&self.namespace_prefix)
    }

    /// Directory of one pod's private state (emptyDirs, config files, pid files).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_root.join("pods").join(uid)
    }

    /// Directory of the log files of one pod.
    pub fn log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.data_root
            .join("logs")
            .join(format!("{namespace}_{name}_{uid}"))
    }
}
