//! Model files put onto a PersistentVolumeClaim before a pod uses it. The local node agent
//! keeps claim `c` of namespace `ns` in `<data-root>/volumes/<ns>/<c>-<uid>/`
//! (`NODE_AGENT_STATE`/data is the data root the runner starts it with) and binds it
//! when a pod first mounts it, so files copied there beforehand are what the pod sees.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// A directory named by an environment variable the runner sets.
pub fn env_dir(var: &str) -> PathBuf {
    let dir = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set (run through make test-e2e)"));
    PathBuf::from(dir)
}

/// Creates claim `claim` in `ns` and copies each `(source, path inside the claim)` onto it.
pub async fn seed_claim(client: &Client, ns: &str, claim: &str, files: &[(&Path, &str)]) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("claim");
    let created = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("create claim");
    let uid = created.metadata.uid.expect("claim uid");
    let root = env_dir("NODE_AGENT_STATE")
        .join("data/volumes")
        .join(ns)
        .join(format!("{claim}-{uid}"));
    for (src, dst) in files {
        let dst = root.join(dst);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).expect("claim directory");
        }
        std::fs::copy(src, &dst)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    }
}
