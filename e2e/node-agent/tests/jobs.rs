//! Run-to-completion pods against the real local control plane: a Job with an init
//! container, failing pods with exit codes, exec probes and the kept logs. Run by `make
//! test-node-agent`; ignored by a plain `cargo test`.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

#[tokio::test]
#[ignore = "needs the local control plane and node agent: make test-node-agent"]
async fn job_with_init_container_completes_and_keeps_its_logs() {
    let client = client().await;
    let ns = TestNs::create(&client, "job").await;
    let ns = ns.name.as_str();
    let shell = |script: &str| json!(["/bin/sh", "-c", script]);
    create::<k8s_openapi::api::batch::v1::Job>(&client, ns, json!({
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "prepare", "image": TEST_IMAGE,
                "command": shell("echo prepared-by-init > /work/msg"),
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            "containers": [{"name": "main", "image": TEST_IMAGE,
                "command": shell("cat /work/msg; echo \"pod=$POD_NAME\""),
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            "volumes": [{"name": "work", "emptyDir": {}}],
        }}},
    })).await;
    create::<Pod>(
        &client,
        ns,
        json!({
            "metadata": {"name": "fails"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": TEST_IMAGE,
                "command": shell("echo failing >&2; exit 7")}]},
        }),
    )
    .await;

    // An exec readiness probe runs inside the container's view: /scratch is its emptyDir.
    create::<Pod>(&client, ns, json!({
        "metadata": {"name": "exec-probe", "labels": {"app": "exec-probe"}},
        "spec": {"containers": [{"name": "server", "image": TEST_IMAGE, "args": ["--port=8080", "--data-dir=/scratch"],
            "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "test -f /scratch/starts && test \"$(hostname)\" = exec-probe"]},
                "periodSeconds": 1},
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}]},
    })).await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
    wait("job succeeded", || async {
        let j = jobs.get("once").await.ok()?;
        (j.status?.succeeded? == 1).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let job_pod = pods
        .list(&ListParams::default().labels("job-name=once"))
        .await
        .expect("list")
        .items
        .remove(0);
    let status = job_pod.status.clone().expect("status");
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let init = status.init_container_statuses.expect("init statuses");
    assert_eq!(
        init[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(0)
    );

    let failed = wait("pod with exit 7 Failed", || async {
        let p = pods.get("fails").await.ok()?;
        let st = p.status?;
        (st.phase.as_deref() == Some("Failed")).then_some(st)
    })
    .await;
    let term = failed.container_statuses.expect("statuses")[0]
        .state
        .clone()
        .expect("state")
        .terminated
        .expect("terminated");
    assert_eq!(term.exit_code, 7);
    assert_eq!(term.reason.as_deref(), Some("Error"));

    wait_ready_pods(&pods, "app=exec-probe", 1).await;

    // `make logs` shows what the containers wrote.
    let state =
        std::env::var("NODE_AGENT_STATE").expect("NODE_AGENT_STATE (run `make test-node-agent`)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/logs.sh");
    let name = job_pod.metadata.name.clone().expect("name");
    let out = std::process::Command::new(script)
        .args([&state, &format!("{ns}/{name}"), ""])
        .output()
        .expect("logs.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("prepared-by-init") && text.contains(&format!("pod={name}")),
        "logs: {text}"
    );
    let out = std::process::Command::new(script)
        .args([&state, &format!("{ns}/fails"), "main"])
        .output()
        .expect("logs.sh");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failing"),
        "stderr is logged too"
    );
}
