//! Backups of a VectorCollection to a real S3-compatible server (versitygw, built by
//! `make tools`) and a restore into a new VectorCollection with another shard count,
//! all through the Kubernetes API: the credentials in a Secret, the schedule in the
//! spec, the complete backups in the source's status, `restoreFrom` in the new one's
//! spec, and each shard's `restoredFrom` in its status.
//!
//! Ignored by a plain `cargo test`: `make test-e2e` runs it.

use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use modelhub_e2e::cluster::{TestNs, client, is_ready, wait_for, wait_ready};
use modelhub_e2e::load::{http_client, send};
use modelhub_operator::api::VectorCollection;
use serde_json::{Value, json};

const DIM: usize = 8;
const POINTS: u64 = 300;
const BUCKET: &str = "backups";

struct S3 {
    host: String,
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node's InternalIP: the pods' gateway, where a process on the host is reachable
/// from inside the pods' network namespaces.
async fn node_ip(client: &kube::Client) -> String {
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("list nodes");
    nodes
        .items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .expect("a node with an InternalIP")
}

/// versitygw on the node's address, with bucket `BUCKET`.
async fn start_s3(host: &str) -> S3 {
    let bin = std::env::var("VERSITYGW_BIN")
        .expect("VERSITYGW_BIN (the S3 server make tools builds): run through make test-e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("root").join(BUCKET)).expect("bucket dir");
    std::fs::create_dir_all(dir.path().join("meta")).expect("meta dir");
    let port = std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(dir.path().join("versitygw.log")).expect("log");
    let child = Command::new(&bin)
        .arg(format!("--port={host}:{port}"))
        .arg("posix")
        .arg(format!("--sidecar={}", dir.path().join("meta").display()))
        .arg(dir.path().join("root"))
        .env("ROOT_ACCESS_KEY", "e2e-access")
        .env("ROOT_SECRET_KEY", "e2e-secret-key")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start versitygw");
    let s3 = S3 {
        host: host.to_owned(),
        port,
        child,
        _dir: dir,
    };
    wait_for("versitygw to listen", || async {
        tokio::net::TcpStream::connect((host, port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    s3
}

fn vector(i: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 17 + d as u64 * 5) % 89) as f32 / 10.0)
        .collect()
}

async fn call(method: &str, url: &str, body: Value) -> (u16, Value) {
    let (status, bytes) = send(&http_client(), method, url, Some(body.to_string())).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn pod_ip(pods: &Api<Pod>, name: &str) -> String {
    wait_for(&format!("pod {name} Ready"), || async {
        let p = pods.get(name).await.ok()?;
        is_ready(&p).then_some(p.status?.pod_ip?)
    })
    .await
}

async fn create_vc(vcs: &Api<VectorCollection>, name: &str, spec: Value) {
    let vc: VectorCollection = serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": "VectorCollection",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("vector collection");
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create vc");
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn a_scheduled_backup_restores_into_a_collection_with_another_shard_count() {
    let client = client().await;
    let s3 = start_s3(&node_ip(&client).await).await;
    let ns = TestNs::create(&client, "backup").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": "e2e-access", "AWS_SECRET_ACCESS_KEY": "e2e-secret-key"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let bucket = json!({
        "endpoint": format!("http://{}:{}", s3.host, s3.port), "bucket": BUCKET,
        "prefix": "e2e", "credentialsSecret": "s3-creds"
    });
    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // The source: 2 shards, a backup every minute.
    create_vc(
        &vcs,
        "src",
        json!({"dimension": DIM, "distance": "Euclid", "shards": 2, "storage": {"size": "64Mi"},
               "durability": {"snapshots": {"schedule": "* * * * *", "retention": 2, "s3": bucket}}}),
    )
    .await;
    wait_ready(&vcs, "src").await;
    let ip = pod_ip(&pods, "src-shard-0-0").await;
    let points: Vec<Value> = (0..POINTS)
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"n": i}}))
        .collect();
    let url =
        |ip: &str, coll: &str, path: &str| format!("http://{ip}:6333/collections/{coll}{path}");
    wait_for("the upsert", || async {
        let (status, _) = call(
            "PUT",
            &url(&ip, "src", "/points?wait=true"),
            json!({"points": points}),
        )
        .await;
        (status == 200).then_some(())
    })
    .await;

    // The status lists a complete backup holding every point.
    let backup = wait_for("a complete backup in the source's status", || async {
        let st = vcs.get("src").await.ok()?.status?;
        st.backups
            .iter()
            .find(|b| b.shards == 2 && b.points == POINTS as i64)
            .map(|b| b.id.clone())
    })
    .await;

    // A new collection of 3 shards starts from it.
    create_vc(
        &vcs,
        "dst",
        json!({"dimension": DIM, "distance": "Euclid", "shards": 3, "storage": {"size": "64Mi"},
               "restoreFrom": {"s3": bucket, "collection": "src", "backup": backup}}),
    )
    .await;
    let dst = wait_ready(&vcs, "dst").await;
    let st = dst.status.expect("status");
    assert_eq!(st.shards.len(), 3);
    for s in &st.shards {
        assert_eq!(
            s.restored_from.as_deref(),
            Some(backup.as_str()),
            "shard {}",
            s.index
        );
    }
    let ip = pod_ip(&pods, "dst-shard-2-0").await;
    let (status, got) = call(
        "POST",
        &url(&ip, "dst", "/points"),
        json!({"ids": (0..POINTS).collect::<Vec<_>>(), "with_payload": true, "with_vector": true}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let got = got["result"].as_array().expect("points").clone();
    assert_eq!(got.len(), POINTS as usize, "every point is restored");
    for p in got {
        let i = p["id"].as_u64().expect("id");
        assert_eq!(p["payload"]["n"], i);
        let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).expect("vector");
        assert_eq!(v, vector(i), "vector of {i}");
    }
}
