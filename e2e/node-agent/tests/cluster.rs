//! The node agent against the real local control plane (`make test-node-agent` starts the
//! cluster and an agent serving `mh-na-test-*` namespaces). Ignored by a plain `cargo test`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;

fn server_container(extra_args: &[&str]) -> serde_json::Value {
    let mut args = vec!["--port=8080".to_owned()];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    json!({
        "name": "server",
        "image": TEST_IMAGE,
        "args": args,
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2, "failureThreshold": 5},
    })
}

/// Ready addresses of the EndpointSlices of `service`.
async fn ready_endpoints(
    client: &Client,
    ns: &str,
    service: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
    for s in api.list(&lp).await.map(|l| l.items).unwrap_or_default() {
        for e in s.endpoints {
            let r = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            for a in e.addresses {
                if r {
                    ready.insert(a)
                } else {
                    not_ready.insert(a)
                };
            }
        }
    }
    (ready, not_ready)
}

#[tokio::test]
#[ignore = "needs the local control plane and node agent: make test-node-agent"]
async fn statefulset_pods_run_restart_keep_data_scale_and_go_away() {
    let client = client().await;
    let ns = TestNs::create(&client, "sts").await;
    let ns = ns.name.as_str();
    let mut container = server_container(&["--data-dir=/data"]);
    container["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    create::<Service>(&client, ns, json!({
        "metadata": {"name": "echo"},
        "spec": {"clusterIP": "None", "selector": {"app": "echo"}, "ports": [{"name": "http", "port": 8080}]},
    })).await;
    create::<StatefulSet>(&client, ns, json!({
        "metadata": {"name": "echo"},
        "spec": {
            "serviceName": "echo", "replicas": 3, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    })).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // 3 Ready pods with distinct addresses whose ports answer as themselves.
    let ready = wait_ready_pods(&pods, "app=echo", 3).await;
    let ips: BTreeSet<String> = ready.iter().map(pod_ip).collect();
    assert_eq!(ips.len(), 3, "pod addresses are distinct: {ips:?}");
    for p in &ready {
        let i = info(&pod_ip(p)).await.expect("pod answers");
        assert_eq!(
            i["pod"],
            json!(p.metadata.name),
            "downward API metadata.name"
        );
        assert_eq!(i["ip"], json!(pod_ip(p)), "downward API status.podIP");
        assert_eq!(i["namespace"], json!(ns));
        assert_eq!(
            i["node"],
            json!(p.spec.as_ref().and_then(|s| s.node_name.clone()))
        );
        assert_eq!(
            i["hostname"],
            json!(p.metadata.name),
            "hostname is the pod name"
        );
        assert_eq!(i["starts"], json!(1));
        let (code, body) = http_get(&pod_ip(p), 8080, "/api")
            .await
            .expect("pod answers /api");
        assert_eq!(
            code, 200,
            "the API server is reachable from the pod: {body}"
        );
    }

    // EndpointSlices list them.
    wait("3 ready endpoints", || async {
        (ready_endpoints(&client, ns, "echo").await.0 == ips).then_some(())
    })
    .await;

    // Killing a process: restartCount increments, the pod becomes Ready again.
    let echo0 = pods.get("echo-0").await.expect("echo-0");
    let pid = info(&pod_ip(&echo0)).await.expect("info")["pid"]
        .as_i64()
        .expect("pid");
    // SAFETY: plain kill(2) of the test server's process.
    assert_eq!(
        unsafe { libc::kill(pid as i32, libc::SIGKILL) },
        0,
        "kill the container process"
    );
    let restarted = wait("echo-0 restarted and Ready", || async {
        let p = pods.get("echo-0").await.ok()?;
        (restart_count(&p) >= 1 && is_ready(&p) && info(&pod_ip(&p)).await.is_some()).then_some(p)
    })
    .await;
    let last = restarted
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(last, Some(137), "lastState records the SIGKILL");

    // A failing readiness probe takes the pod out of the ready endpoints, and back.
    let echo2 = pods.get("echo-2").await.expect("echo-2");
    let ip2 = pod_ip(&echo2);
    assert_eq!(
        http_get(&ip2, 8080, "/ready/false").await.map(|r| r.0),
        Some(200)
    );
    wait("echo-2 not ready in the EndpointSlice", || async {
        let (ready, not_ready) = ready_endpoints(&client, ns, "echo").await;
        (!ready.contains(&ip2) && not_ready.contains(&ip2) && ready.len() == 2).then_some(())
    })
    .await;
    assert!(
        !is_ready(&pods.get("echo-2").await.expect("echo-2")),
        "pod Ready condition is False"
    );
    assert_eq!(
        http_get(&ip2, 8080, "/ready/true").await.map(|r| r.0),
        Some(200)
    );
    wait("echo-2 ready again", || async {
        ready_endpoints(&client, ns, "echo")
            .await
            .0
            .contains(&ip2)
            .then_some(())
    })
    .await;

    // Deleting a pod: it is recreated and finds what it wrote in its PVC directory.
    let old_uid = pods.get("echo-1").await.expect("echo-1").metadata.uid;
    pods.delete("echo-1", &DeleteParams::default())
        .await
        .expect("delete echo-1");
    let new = wait("echo-1 recreated and Ready", || async {
        let p = pods.get("echo-1").await.ok()?;
        (p.metadata.uid != old_uid && is_ready(&p)).then_some(p)
    })
    .await;
    let ip1 = pod_ip(&new);
    let i = wait("new echo-1 answers", || info(&ip1)).await;
    assert_eq!(
        i["starts"],
        json!(2),
        "the recreated pod found its PVC data"
    );

    // Scale down and up.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    sts.patch("echo", &PatchParams::default(), &Patch::Merge(&scale(1)))
        .await
        .expect("scale to 1");
    wait("scaled down to 1 pod", || async {
        let all = pods
            .list(&ListParams::default().labels("app=echo"))
            .await
            .ok()?
            .items;
        (all.len() == 1).then_some(())
    })
    .await;
    sts.patch("echo", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await
        .expect("scale to 3");
    let back = wait_ready_pods(&pods, "app=echo", 3).await;
    for p in back
        .iter()
        .filter(|p| p.metadata.name.as_deref() == Some("echo-2"))
    {
        let i = info(&pod_ip(p)).await.expect("echo-2 answers");
        assert_eq!(
            i["starts"],
            json!(2),
            "echo-2 got its claim back after scale-up"
        );
    }

    // Deleting the StatefulSet garbage-collects its pods (and the agent finalises them).
    sts.delete("echo", &DeleteParams::background())
        .await
        .expect("delete sts");
    wait("pods gone", || async {
        pods.list(&ListParams::default().labels("app=echo"))
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    for p in &back {
        let ip = pod_ip(p);
        assert!(info(&ip).await.is_none(), "{ip} stopped answering");
    }
}

#[tokio::test]
#[ignore = "needs the local control plane and node agent: make test-node-agent"]
async fn deployment_rolling_update_replaces_pods_one_by_one() {
    let client = client().await;
    let ns = TestNs::create(&client, "deploy").await;
    let ns = ns.name.as_str();
    let mut container = server_container(&[]);
    container["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "VERSION", "value": "v1"}));
    container["readinessProbe"]["failureThreshold"] = json!(3);
    create::<Deployment>(&client, ns, json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}},
        },
    })).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let before = wait_ready_pods(&pods, "app=web", 3).await;
    let old: BTreeSet<String> = before
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();

    // Watch from the version listed before the update, so every pod change is seen in
    // order: a poll can miss intermediate states when the machine is busy.
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    let version = listed.metadata.resource_version.unwrap_or_default();
    let mut state: BTreeMap<String, Pod> = listed
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p)))
        .collect();
    let watch = pods
        .watch(
            &WatchParams::default().labels("app=web").timeout(290),
            &version,
        )
        .await
        .expect("watch pods");
    let mut watch = std::pin::pin!(watch);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "env": [
        {"name": "VERSION", "value": "v2"}]}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("update");

    // After each pod event: never fewer than `replicas` ready pods (maxUnavailable 0),
    // old pods leave one at a time, and at most replicas + maxSurge + 1 live pods. The
    // Deployment controller bounds ReplicaSet replicas, not pods: it scales the new set
    // up as soon as the old set's replicas drop, and the old pod the ReplicaSet
    // controller is about to delete is still live for a moment (seen as 5).
    let mut max_live = 0;
    let mut min_ready = usize::MAX;
    let mut old_counts = vec![old.len()];
    let rollout = async {
        while let Some(event) = watch.next().await {
            match event.expect("watch event") {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    if let Some(name) = p.metadata.name.clone() {
                        state.insert(name, p);
                    }
                }
                WatchEvent::Deleted(p) => {
                    if let Some(name) = &p.metadata.name {
                        state.remove(name);
                    }
                }
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            }
            let live: Vec<&Pod> = state
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live.iter().filter(|p| is_ready(p)).count();
            max_live = max_live.max(live.len());
            min_ready = min_ready.min(ready);
            let remaining = live
                .iter()
                .filter(|p| p.metadata.name.as_ref().is_some_and(|n| old.contains(n)))
                .count();
            if old_counts.last() != Some(&remaining) {
                old_counts.push(remaining);
            }
            if remaining == 0 && live.len() == 3 && ready == 3 {
                return;
            }
        }
        panic!("the watch ended before the rollout did");
    };
    tokio::time::timeout(DEADLINE, rollout)
        .await
        .expect("gave up waiting for the rollout to v2");
    let after = wait_ready_pods(&pods, "app=web", 3).await;
    for p in &after {
        wait(&format!("{} answers v2", pod_ip(p)), || async {
            let i = info(&pod_ip(p)).await?;
            (i["version"] == json!("v2")).then_some(())
        })
        .await;
    }
    assert!(
        max_live <= 5,
        "at most replicas + maxSurge (+1 being deleted) pods at once, saw {max_live}"
    );
    assert!(
        min_ready >= 3,
        "never fewer than 3 ready pods, saw {min_ready}"
    );
    assert!(
        old_counts
            .windows(2)
            .all(|w| w[0] >= w[1] && w[0] - w[1] <= 1),
        "old pods replaced one by one: {old_counts:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane and node agent: make test-node-agent"]
async fn env_sources_config_volumes_and_unknown_images() {
    let client = client().await;
    let ns = TestNs::create(&client, "env").await;
    let ns = ns.name.as_str();
    create::<k8s_openapi::api::core::v1::ConfigMap>(&client, ns, json!({
        "metadata": {"name": "cfg"}, "data": {"value": "from-configmap", "greeting": "hello from a volume"}})).await;
    create::<k8s_openapi::api::core::v1::Secret>(
        &client,
        ns,
        json!({
        "metadata": {"name": "sec"}, "stringData": {"value": "from-secret"}}),
    )
    .await;
    let mut c = server_container(&[]);
    let env = c["env"].as_array_mut().expect("env");
    env.push(json!({"name": "VERSION", "value": "literal-$(POD_NAME)"}));
    env.push(json!({"name": "CONFIG_VALUE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "value"}}}));
    env.push(json!({"name": "SECRET_VALUE", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "value"}}}));
    c["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2});
    c["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/testserver", "readOnly": true},
        {"name": "tmp", "mountPath": "/tmp"},
    ]);
    // What the operator's pods carry: the restricted security context (not enforced here).
    c["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    create::<Pod>(
        &client,
        ns,
        json!({
            "metadata": {"name": "env", "labels": {"app": "env"}},
            "spec": {"containers": [c], "automountServiceAccountToken": true, "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {}}]},
        }),
    )
    .await;
    create::<Pod>(
        &client,
        ns,
        json!({
            "metadata": {"name": "foreign"},
            "spec": {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.27"}]},
        }),
    )
    .await;
    create::<Pod>(&client, ns, json!({
        "metadata": {"name": "grpc", "labels": {"app": "grpc"}},
        "spec": {"containers": [{"name": "server", "image": TEST_IMAGE,
            "args": ["--port=8080", "--grpc-port=9090"],
            "readinessProbe": {"grpc": {"port": 9090}, "periodSeconds": 1, "failureThreshold": 1}}]},
    })).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p = wait_ready_pods(&pods, "app=env", 1).await.remove(0);

    // A gRPC readiness probe (grpc.health.v1): Ready while SERVING, not Ready after.
    let g = wait_ready_pods(&pods, "app=grpc", 1).await.remove(0);
    assert_eq!(
        http_get(&pod_ip(&g), 8080, "/healthz/false")
            .await
            .map(|r| r.0),
        Some(200)
    );
    wait("grpc pod not Ready once NOT_SERVING", || async {
        let p = pods.get("grpc").await.ok()?;
        (!is_ready(&p)).then_some(())
    })
    .await;
    let i = info(&pod_ip(&p)).await.expect("info");
    assert_eq!(
        i["version"],
        json!("literal-env"),
        "literal with $(VAR) expansion"
    );
    assert_eq!(i["config"], json!("from-configmap"));
    assert_eq!(i["secret"], json!("from-secret"));
    assert_eq!(
        i["mounted_config"],
        json!("hello from a volume"),
        "configMap volume at its mountPath"
    );

    // The projected service-account token, CA and forwarded API server make an in-cluster
    // client work from inside the pod's network namespace.
    let (code, user) = http_get(&pod_ip(&p), 8080, "/whoami")
        .await
        .expect("whoami answers");
    assert_eq!(code, 200, "in-cluster client: {user}");
    assert_eq!(user, format!("system:serviceaccount:{ns}:default"));

    // A failing liveness probe restarts the process; the pod becomes Ready again.
    let ip = pod_ip(&p);
    assert_eq!(
        http_get(&ip, 8080, "/healthz/false").await.map(|r| r.0),
        Some(200)
    );
    wait(
        "env restarted after liveness failures and Ready",
        || async {
            let p = pods.get("env").await.ok()?;
            (restart_count(&p) >= 1 && is_ready(&p) && info(&pod_ip(&p)).await.is_some())
                .then_some(())
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait("a Killing event for the liveness failure", || async {
        let evs = events.list(&ListParams::default()).await.ok()?.items;
        evs.iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("env")
                    && e.reason.as_deref() == Some("Killing")
                    && e.message.as_deref().is_some_and(|m| m.contains("liveness"))
            })
            .then_some(())
    })
    .await;

    let waiting = wait("foreign image refused", || async {
        let p = pods.get("foreign").await.ok()?;
        let w = p
            .status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .waiting?;
        (w.reason.as_deref() == Some("ErrImagePull")).then_some(w)
    })
    .await;
    assert!(
        waiting.message.unwrap_or_default().contains("nginx"),
        "the reason names the image"
    );
    assert_eq!(
        pods.get("foreign")
            .await
            .expect("pod")
            .status
            .and_then(|s| s.phase)
            .as_deref(),
        Some("Pending")
    );
    wait("a Failed event for the foreign image", || async {
        let evs = events.list(&ListParams::default()).await.ok()?.items;
        evs.iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("foreign")
                    && e.reason.as_deref() == Some("Failed")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("ErrImagePull"))
            })
            .then_some(())
    })
    .await;
}
