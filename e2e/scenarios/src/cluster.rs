//! The cluster side of a scenario: a client from `KUBECONFIG`, one labelled namespace per
//! test (removed when the test ends), bounded polling and the Events about an object.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Longest any single wait of a scenario may take.
pub const DEADLINE: Duration = Duration::from_secs(240);

/// Label every scenario namespace carries (the runner deletes leftovers by it).
pub const E2E_LABEL: &str = "modelhub.io/e2e";

/// A client for the cluster `KUBECONFIG` names.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a client from KUBECONFIG (run through make test-e2e)")
}

/// A namespace for one test, `mh-e2e-<what>-<random>`; deleted (without waiting) on drop.
pub struct TestNs {
    pub name: String,
    client: Client,
}

impl TestNs {
    pub async fn create(client: &Client, what: &str) -> Self {
        let name = format!("mh-e2e-{what}-{:04x}", rand::random::<u16>());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {E2E_LABEL: "true"}}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            // Best effort: the runner also deletes every labelled namespace at the end.
            drop(handle.spawn(async move {
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await;
            }));
        }
    }
}

/// Polls `f` every half second until it yields a value; panics after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Messages of the Events with `reason` about the object `name`, oldest first.
pub async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let mut list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    list.into_iter().filter_map(|e| e.message).collect()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Addresses of the Ready pods matching `selector`.
pub async fn ready_pod_ips(client: &Client, ns: &str, selector: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect()
}

/// Waits until the object has a `Ready` condition that is True; returns it.
pub async fn wait_ready<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    wait_for(&format!("{name} Ready"), || async {
        let obj = api.get(name).await.ok()?;
        let v = serde_json::to_value(&obj).ok()?;
        let ready = v["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(obj)
    })
    .await
}

/// Waits until an EndpointSlice of Service `service` lists a ready endpoint (what a
/// gateway routes to), which can lag the pod's own Ready condition.
pub async fn wait_endpoints(client: &Client, ns: &str, service: &str) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let selector = format!("kubernetes.io/service-name={service}");
    wait_for(
        &format!("a ready endpoint of Service {service}"),
        || async {
            let list = slices
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items
                .iter()
                .flat_map(|s| &s.endpoints)
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .then_some(())
        },
    )
    .await
}
