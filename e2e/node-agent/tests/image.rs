//! A pod's image files reach it whatever the host path of the binary is: the agent mounts
//! the mapped binary's directory at `/opt/modelhub/bin` before the volumes and runs the
//! entrypoint from there, so a file beside the binary (tinyinfer's ONNX Runtime library)
//! is found even when a pod volume covers the binary's host path, as an `emptyDir` at
//! `/tmp` does for a checkout under `/tmp`. Needs `make test-node-agent`.

mod common;

use std::path::Path;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

/// The agent under test maps `TEST_IMAGE` to this binary (same target directory).
const TESTSERVER: &str = env!("CARGO_BIN_EXE_node-agent-testserver");

#[tokio::test]
#[ignore = "needs the local control plane and node agent: make test-node-agent"]
async fn files_beside_the_binary_survive_a_volume_over_their_host_path() {
    let client = client().await;
    let ns = TestNs::create(&client, "image").await;
    let ns = ns.name.as_str();
    let bin_dir = Path::new(TESTSERVER)
        .parent()
        .expect("the test server binary lies in a directory");
    // What the binary needs beside it, unique to this run.
    let beside = format!("node-agent-testserver.{ns}.lib");
    let content = format!("library of {ns}");
    std::fs::write(bin_dir.join(&beside), &content).expect("write the file beside the binary");
    let _cleanup = RemoveOnDrop(bin_dir.join(&beside));

    let mountpath = bin_dir.display().to_string();
    create::<Pod>(&client, ns, json!({
        "metadata": {"name": "covered", "labels": {"app": "covered"}},
        "spec": {
            "containers": [{
                "name": "server", "image": TEST_IMAGE,
                "args": ["--port=8080", format!("--beside={beside}")],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                // The volume hides the binary's host directory from the container.
                "volumeMounts": [{"name": "scratch", "mountPath": mountpath}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }))
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = wait_ready_pods(&pods, "app=covered", 1).await.remove(0);
    let ip = pod_ip(&pod);
    assert_eq!(
        http_get(&ip, 8080, "/beside").await,
        Some((200, content)),
        "the file beside the binary, read through the binary's own path"
    );
    let i = info(&ip).await.expect("info");
    assert_eq!(
        i["exe"],
        json!("/opt/modelhub/bin/node-agent-testserver"),
        "the entrypoint runs from the image directory"
    );
    assert_eq!(restart_count(&pod), 0, "started at the first try");
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
