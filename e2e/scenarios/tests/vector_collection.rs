//! A sharded VectorCollection end to end: the operator's StatefulSets, vectorforge pods
//! run by the node agent finding each other through the Kubernetes API, and requests
//! sent to pod addresses (any pod coordinates over every shard).
//!
//! - 2 shards × 3 Raft pods: writes through a pod of one shard keep succeeding while
//!   the other shard's leader pod is deleted and recreated; every acknowledged point is
//!   on every pod afterwards, and the leaders report their groups into the status.
//! - 3 shards: Ready; points upserted through one pod spread over the three shards
//!   (each pod's own count), every pod counts all of them, an exact search through
//!   another pod returns the true nearest neighbours (computed here), and a deleted pod
//!   comes back on its volume with its points.
//!
//! Ignored by a plain `cargo test`: `make test-e2e` runs them.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use modelhub_e2e::cluster::{TestNs, client, is_ready, wait_for, wait_ready};
use modelhub_e2e::load::{http_client, send};
use modelhub_operator::api::VectorCollection;
use serde_json::{Value, json};

const DIM: usize = 8;
const POINTS: u64 = 300;

fn vector(i: u64) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(7);
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f32 / 100.0
        })
        .collect()
}

fn euclid(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let (status, bytes) = send(&http_client(), method, url, body.map(|b| b.to_string())).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Retries while the pods are still learning about each other (503).
async fn ok(method: &str, url: &str, body: Value) -> Value {
    wait_for(&format!("{method} {url} to answer 200"), || {
        let body = body.clone();
        async move {
            let (status, v) = call(method, url, Some(body)).await;
            (status == 200).then_some(v["result"].clone())
        }
    })
    .await
}

async fn own_points(ip: &str) -> u64 {
    let (_, bytes) = send(
        &http_client(),
        "GET",
        &format!("http://{ip}:6333/metrics"),
        None,
    )
    .await;
    String::from_utf8_lossy(&bytes)
        .lines()
        .find(|l| l.starts_with("vectorforge_collection_points{collection=\"vecs\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn ready_pod(pods: &Api<Pod>, name: &str, not_uid: Option<&str>) -> (String, String) {
    wait_for(&format!("pod {name} Ready"), || async {
        let p = pods.get(name).await.ok()?;
        let uid = p.metadata.uid.clone()?;
        if Some(uid.as_str()) == not_uid || !is_ready(&p) {
            return None;
        }
        Some((p.status?.pod_ip?, uid))
    })
    .await
}

/// Creates VectorCollection `vecs` (8-d, Euclid) with `shards` × `replicas` pods in
/// `ns` and waits until it is Ready; its API and the namespace's pods.
async fn ready_collection(
    client: &kube::Client,
    ns: &str,
    shards: i32,
    replicas: i32,
) -> (Api<VectorCollection>, Api<Pod>) {
    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), ns);
    let vc: VectorCollection = serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": "VectorCollection",
        "metadata": {"name": "vecs"},
        "spec": {"dimension": DIM, "distance": "Euclid", "shards": shards,
                 "replicas": replicas, "storage": {"size": "64Mi"}}
    }))
    .expect("vector collection");
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create vc");
    wait_ready(&vcs, "vecs").await;
    (vcs, Api::namespaced(client.clone(), ns))
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn three_shards_spread_points_answer_from_any_pod_and_survive_a_pod_deletion() {
    let client = client().await;
    let ns = TestNs::create(&client, "shards").await;
    let (_, pods) = ready_collection(&client, &ns.name, 3, 1).await;
    let mut ips = Vec::new();
    for s in 0..3 {
        ips.push(ready_pod(&pods, &format!("vecs-shard-{s}-0"), None).await.0);
    }

    let points: Vec<Value> = (0..POINTS)
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"n": i}}))
        .collect();
    let url = |ip: &str, path: &str| format!("http://{ip}:6333/collections/vecs{path}");
    ok(
        "PUT",
        &url(&ips[0], "/points?wait=true"),
        json!({"points": points}),
    )
    .await;
    let mut own = Vec::new();
    for ip in &ips {
        let n = ok("POST", &url(ip, "/points/count"), json!({"exact": true})).await;
        assert_eq!(n["count"], POINTS, "count through {ip}");
        own.push(own_points(ip).await);
    }
    assert_eq!(own.iter().sum::<u64>(), POINTS, "{own:?}");
    assert!(own.iter().all(|n| *n > 0), "a shard got no points: {own:?}");

    // an exact search through another pod finds the true nearest neighbours
    let q = vector(10_000);
    let mut truth: Vec<(f32, u64)> = (0..POINTS).map(|i| (euclid(&q, &vector(i)), i)).collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let want: Vec<u64> = truth.iter().take(5).map(|t| t.1).collect();
    let hits = ok(
        "POST",
        &url(&ips[2], "/points/search"),
        json!({"vector": q, "limit": 5, "params": {"exact": true}}),
    )
    .await;
    let got: Vec<u64> = hits
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["id"].as_u64())
        .collect();
    assert_eq!(got, want);

    // a deleted pod comes back on its volume with its points
    let (_, uid) = ready_pod(&pods, "vecs-shard-1-0", None).await;
    pods.delete("vecs-shard-1-0", &DeleteParams::default())
        .await
        .expect("delete pod");
    let (ip, _) = ready_pod(&pods, "vecs-shard-1-0", Some(&uid)).await;
    let n = ok("POST", &url(&ip, "/points/count"), json!({"exact": true})).await;
    assert_eq!(n["count"], POINTS);
    assert_eq!(own_points(&ip).await, own[1]);
}

async fn role(ip: &str) -> Option<String> {
    let (status, v) = call("GET", &format!("http://{ip}:6333/cluster"), None).await;
    (status == 200).then(|| v["result"]["raft_info"]["role"].as_str().map(str::to_owned))?
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn a_replicated_shard_keeps_every_acknowledged_write_through_its_leader_pod_deletion() {
    let client = client().await;
    let ns = TestNs::create(&client, "raft").await;
    let (vcs, pods) = ready_collection(&client, &ns.name, 2, 3).await;
    let mut shard0 = Vec::new();
    for o in 0..3 {
        let name = format!("vecs-shard-0-{o}");
        let (ip, uid) = ready_pod(&pods, &name, None).await;
        shard0.push((name, ip, uid));
    }
    let (writer_ip, _) = ready_pod(&pods, "vecs-shard-1-0", None).await;
    let url = |ip: &str, path: &str| format!("http://{ip}:6333/collections/vecs{path}");

    // the shard's leader, as its pods report it
    let mut leader = None;
    for (name, ip, uid) in &shard0 {
        if role(ip).await.as_deref() == Some("Leader") {
            leader = Some((name.clone(), uid.clone()));
        }
    }
    let (leader, leader_uid) = leader.expect("shard 0 has a leader");

    // writers through a pod of the other shard while the leader pod is deleted
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, target) = (stop.clone(), url(&writer_ip, "/points?wait=true"));
        tokio::spawn(async move {
            let (mut acked, mut failed, mut next) = (Vec::new(), 0u32, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ids: Vec<u64> = (next..next + 10).collect();
                next += 10;
                let pts: Vec<Value> = ids
                    .iter()
                    .map(|i| json!({"id": i, "vector": vector(*i), "payload": {"n": i}}))
                    .collect();
                match call("PUT", &target, Some(json!({"points": pts}))).await {
                    (200, _) => acked.extend(ids),
                    _ => failed += 1,
                }
            }
            (acked, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    let (ip, _) = ready_pod(&pods, &leader, Some(&leader_uid)).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writer.await.expect("writer");
    assert!(!acked.is_empty());
    assert_eq!(failed, 0, "writes failed while the leader pod was replaced");

    // every pod of the shard converges, the recreated one included, and every
    // acknowledged point is there through any pod
    let ips: Vec<String> = shard0
        .iter()
        .map(|(n, i, _)| if *n == leader { ip.clone() } else { i.clone() })
        .collect();
    wait_for("shard 0's pods to hold the same points", || {
        let ips = ips.clone();
        async move {
            let mut counts = Vec::new();
            for ip in &ips {
                counts.push(own_points(ip).await);
            }
            (counts.iter().all(|c| *c == counts[0]) && counts[0] > 0).then_some(())
        }
    })
    .await;
    for ip in &ips {
        let got = ok(
            "POST",
            &url(ip, "/points"),
            json!({"ids": acked, "with_payload": true}),
        )
        .await;
        assert_eq!(
            got.as_array().map(Vec::len),
            Some(acked.len()),
            "through {ip}"
        );
    }

    // each shard's leader reports its group into the VectorCollection's status
    let total = ok(
        "POST",
        &url(&writer_ip, "/points/count"),
        json!({"exact": true}),
    )
    .await["count"]
        .as_i64()
        .expect("count");
    let status = wait_for("the shards' reports in the status", || async {
        let st = vcs.get("vecs").await.ok()?.status?;
        let reported = st.shards.len() == 2
            && st
                .shards
                .iter()
                .all(|s| s.leader.is_some() && s.members.len() == 3)
            && st.points == Some(total)
            // each leader reports on its own few-second tick: wait for the latest of both
            && st.shards.iter().filter_map(|s| s.points).sum::<i64>() == total;
        reported.then_some(st)
    })
    .await;
    assert!(
        status.shards[0]
            .members
            .iter()
            .all(|m| m.starts_with("vecs-shard-0-"))
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn scaling_a_collection_changes_its_raft_groups_without_restarting_a_pod() {
    let client = client().await;
    let ns = TestNs::create(&client, "scale").await;
    let (vcs, pods) = ready_collection(&client, &ns.name, 1, 3).await;
    let mut before = Vec::new();
    for o in 0..3 {
        before.push(ready_pod(&pods, &format!("vecs-shard-0-{o}"), None).await);
    }
    let url = |ip: &str, path: &str| format!("http://{ip}:6333/collections/vecs{path}");
    let points: Vec<Value> = (0..100u64)
        .map(|i| json!({"id": i, "vector": vector(i)}))
        .collect();
    ok(
        "PUT",
        &url(&before[0].0, "/points?wait=true"),
        json!({"points": points}),
    )
    .await;
    let members = |n: usize| {
        let vcs = vcs.clone();
        async move {
            wait_for(&format!("{n} members in the shard's group"), || async {
                let st = vcs.get("vecs").await.ok()?.status?;
                (st.shards.first()?.members.len() == n).then_some(())
            })
            .await
        }
    };
    members(3).await;

    // scale out: the new pods join as learners and are promoted
    let scale = |n: i64| {
        let vcs = vcs.clone();
        async move {
            vcs.patch(
                "vecs",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .expect("scale the collection")
        }
    };
    scale(5).await;
    members(5).await;
    for o in 3..5 {
        let (ip, _) = ready_pod(&pods, &format!("vecs-shard-0-{o}"), None).await;
        wait_for("a new pod to hold every point", || {
            let ip = ip.clone();
            async move { (own_points(&ip).await == 100).then_some(()) }
        })
        .await;
    }
    // scale in: the group shrinks back; the first three pods never restarted
    scale(3).await;
    members(3).await;
    for (o, (_, uid)) in before.iter().enumerate() {
        let p = pods.get(&format!("vecs-shard-0-{o}")).await.expect("pod");
        assert_eq!(
            p.metadata.uid.as_deref(),
            Some(uid.as_str()),
            "pod {o} was replaced"
        );
        let restarts: i32 = p
            .status
            .and_then(|s| s.container_statuses)
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        assert_eq!(restarts, 0, "pod {o} restarted");
    }
    let n = ok(
        "POST",
        &url(&before[1].0, "/points/count"),
        json!({"exact": true}),
    )
    .await;
    assert_eq!(n["count"], 100);
}
