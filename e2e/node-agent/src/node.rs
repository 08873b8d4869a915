//! The Node this agent serves: registered Ready with capacity and addresses, its status
//! refreshed periodically, and a heartbeat Lease in `kube-node-lease` renewed every 10 s.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::error::Result;
use crate::status::now;

const MANAGER: &str = "modelhub-node-agent";

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(4 * 1024 * 1024)
}

fn status(config: &AgentConfig) -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let resources = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": "110",
        "ephemeral-storage": "100Gi",
    });
    let t = now();
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "modelhub-node-agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.gateway.to_string()},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "osImage": "local processes", "containerRuntimeVersion": "modelhub-local://0.1.0",
            "kubeletVersion": "v1.35.4-modelhub", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

/// Creates or updates the Node and writes its status.
pub async fn register(client: &Client, config: &AgentConfig) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": {
                "kubernetes.io/hostname": config.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node.modelhub.io/local-agent": "true",
            },
        },
        "spec": {"podCIDR": format!("{}/{}", network_base(config), config.prefix_len)},
    });
    let pp = PatchParams::apply(MANAGER).force();
    nodes
        .patch(&config.node_name, &pp, &Patch::Apply(&node))
        .await?;
    update_status(client, config).await
}

fn network_base(config: &AgentConfig) -> std::net::Ipv4Addr {
    let mask = u32::MAX << (32 - u32::from(config.prefix_len));
    std::net::Ipv4Addr::from(u32::from(config.gateway) & mask)
}

async fn update_status(client: &Client, config: &AgentConfig) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": status(config)});
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn renew_lease(client: &Client, config: &AgentConfig) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": config.node_name},
        "spec": {"holderIdentity": config.node_name, "leaseDurationSeconds": 40, "renewTime": t},
    });
    leases
        .patch(
            &config.node_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}

/// Keeps the Lease and the Node status fresh until `stop` fires.
pub async fn heartbeat(client: Client, config: Arc<AgentConfig>, stop: CancellationToken) {
    let mut tick = 0u64;
    loop {
        if let Err(err) = renew_lease(&client, &config).await {
            tracing::warn!(error = %err, "cannot renew node lease");
        }
        if tick.is_multiple_of(6)
            && let Err(err) = update_status(&client, &config).await
        {
            tracing::warn!(error = %err, "cannot update node status");
        }
        if tick.is_multiple_of(3)
            && let Err(err) = crate::volumes::reap_released(&client, &config).await
        {
            tracing::warn!(error = %err, "cannot reap released volumes");
        }
        tick += 1;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
