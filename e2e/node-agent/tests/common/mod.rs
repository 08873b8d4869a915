//! Helpers of the node agent's cluster tests: a client, throw-away namespaces, polling with
//! generous deadlines (no timed assertions), and plain HTTP to pod addresses.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Prefix the agent under test serves (see `make test-node-agent`).
pub const NS_PREFIX: &str = "mh-na-test-";
/// Image the agent maps to the test server binary.
pub const TEST_IMAGE: &str = "ghcr.io/modelhub/node-agent-testserver:dev";
/// Deadline of every wait: generous, the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(240);

pub async fn client() -> Client {
    match Client::try_default().await {
        Ok(c) => c,
        Err(e) => panic!("no cluster (run `make test-node-agent`): {e}"),
    }
}

/// A namespace deleted when the test ends (also on failure); the drop waits until it is gone.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub async fn create(client: &Client, test: &str) -> TestNs {
        let suffix = std::process::id() % 100_000;
        let name = format!("{NS_PREFIX}{test}-{suffix}");
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("static namespace JSON");
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        // The ServiceAccount admission needs the default ServiceAccount before pods.
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait("default service account", || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        TestNs { name }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                return;
            };
            rt.block_on(async {
                if let Ok(c) = Client::try_default().await {
                    let api: Api<Namespace> = Api::all(c);
                    let _ = api.delete(&name, &DeleteParams::background()).await;
                    // Wait while the agent still runs, so it finalises the namespace's pods.
                    let start = std::time::Instant::now();
                    while start.elapsed() < DEADLINE {
                        if let Ok(None) = api.get_opt(&name).await {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Polls `f` every half second until it yields a value; panics after [`DEADLINE`].
pub async fn wait<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `GET http://ip:port/path` → (status code, body); None when the connection fails.
pub async fn http_get(ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

/// The test server's `/info` of the pod at `ip`.
pub async fn info(ip: &str) -> Option<serde_json::Value> {
    let (code, body) = http_get(ip, 8080, "/info").await?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

pub fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

/// Pods matching `selector` that are not being deleted.
pub async fn live_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until exactly `n` pods match `selector`, all Ready and answering `/info`.
pub async fn wait_ready_pods(pods: &Api<Pod>, selector: &str, n: usize) -> Vec<Pod> {
    wait(&format!("{n} ready pods with {selector}"), || async {
        let all = pods
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?
            .items;
        if all.len() != n || !all.iter().all(is_ready) {
            return None;
        }
        for p in &all {
            info(&pod_ip(p)).await?;
        }
        Some(all)
    })
    .await
}

/// Creates a namespaced object from JSON.
pub async fn create<K>(client: &Client, ns: &str, value: serde_json::Value) -> K
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let obj: K = serde_json::from_value(value).expect("test object JSON");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create object")
}
