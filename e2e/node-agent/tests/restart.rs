//! Agent stop and restart against the real control plane: a graceful stop stops the pod's
//! processes but not the pod, a restart starts it again at the same address; after a SIGKILL
//! of the agent the next run kills the orphaned processes and takes over. `make
//! test-node-agent` runs this alone (it restarts the shared agent) with `NODE_AGENT_UP`,
//! `NODE_AGENT_DOWN` and `NODE_AGENT_STATE` set.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

fn sh(var: &str) {
    let cmd = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set (run `make test-node-agent`)"));
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(&cmd)
        .status()
        .expect("run shell");
    assert!(status.success(), "{var} failed: {cmd}");
}

/// Whether `pid` runs (a zombie waiting for a reaper that is not its agent counts as gone).
fn alive(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
    !matches!(state.as_deref(), Some("Z") | Some("X") | None)
}

async fn ready_pod(pods: &Api<Pod>) -> (Pod, serde_json::Value) {
    wait("pod Ready and answering", || async {
        let p = pods.get("survivor").await.ok()?;
        if !is_ready(&p) {
            return None;
        }
        let i = info(&pod_ip(&p)).await?;
        // The status describes the process that answers (not one from before a restart).
        let container_id = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.container_id.clone())?;
        (container_id == format!("modelhub-local://{}", i["pid"])).then_some((p, i))
    })
    .await
}

#[tokio::test]
#[ignore = "restarts the node agent: make test-node-agent"]
async fn agent_restart_stops_then_restarts_pods_and_cleans_up_after_a_crash() {
    let client = client().await;
    let ns = TestNs::create(&client, "restart").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "survivor"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "server", "image": TEST_IMAGE, "args": ["--port=8080", "--data-dir=/scratch"],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }))
    .expect("pod JSON");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let (p1, i1) = ready_pod(&pods).await;
    let ip = pod_ip(&p1);
    let pid1 = i1["pid"].as_i64().expect("pid");

    // Graceful stop: the process and its network go, the pod object stays.
    sh("NODE_AGENT_DOWN");
    assert!(!alive(pid1), "the container process stopped with the agent");
    assert!(
        info(&ip).await.is_none(),
        "nothing answers at {ip} while the agent is down"
    );
    assert!(
        pods.get_opt("survivor").await.expect("get").is_some(),
        "the pod object stays"
    );

    // Restart: same address, restartCount + 1, the emptyDir kept (start counter is 2).
    sh("NODE_AGENT_UP");
    let (p2, i2) = ready_pod(&pods).await;
    assert_eq!(pod_ip(&p2), ip, "same address after an agent restart");
    assert!(
        restart_count(&p2) > restart_count(&p1),
        "restartCount increments"
    );
    assert_eq!(
        i2["starts"],
        json!(2),
        "the pod's emptyDir survives an agent restart"
    );
    let pid2 = i2["pid"].as_i64().expect("pid");

    // Crash: SIGKILL the agent; its children survive until the next run cleans them up.
    let state = std::env::var("NODE_AGENT_STATE").expect("NODE_AGENT_STATE");
    let agent_pid: i64 = std::fs::read_to_string(format!("{state}/agent.pid"))
        .expect("agent pid file")
        .trim()
        .parse()
        .expect("agent pid");
    // SAFETY: plain kill(2) of the agent this test suite started.
    assert_eq!(unsafe { libc::kill(agent_pid as i32, libc::SIGKILL) }, 0);
    wait("agent gone", || async { (!alive(agent_pid)).then_some(()) }).await;
    assert!(alive(pid2), "a killed agent leaves its container running");
    sh("NODE_AGENT_UP");
    let (p3, i3) = ready_pod(&pods).await;
    assert!(
        !alive(pid2),
        "the restarted agent killed the orphaned process"
    );
    assert_ne!(i3["pid"], json!(pid2));
    assert_eq!(pod_ip(&p3), ip, "same address after an agent crash");
    drop(ns);
}
