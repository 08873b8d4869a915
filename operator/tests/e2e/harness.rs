//! Shared helpers: clients, namespaces, polling and reading the samples.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;

/// How long a test waits for the control plane or the operator to converge.
pub const TIMEOUT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A client from `KUBECONFIG` (the admin kubeconfig of the local cluster).
pub async fn client() -> Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run these tests through `make test-operator-e2e`"
    );
    Client::try_default()
        .await
        .expect("kube client from KUBECONFIG")
}

/// A fresh namespace named `e2e-<name>`, deleted first if a previous run left it.
pub async fn namespace(client: &Client, name: &str) -> String {
    let ns_name = format!("e2e-{name}");
    let api: Api<Namespace> = Api::all(client.clone());
    if api
        .get_opt(&ns_name)
        .await
        .expect("get namespace")
        .is_some()
    {
        let _ = api.delete(&ns_name, &DeleteParams::default()).await;
        wait_for(&format!("namespace {ns_name} to be gone"), || async {
            api.get_opt(&ns_name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await;
    }
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns_name, "labels": {"modelhub.io/e2e": "true"}}
    }))
    .expect("namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    ns_name
}

/// Polls `check` every 250 ms until it yields a value; panics after [`TIMEOUT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `name` exists in `api` and returns it.
pub async fn wait_exists<K>(api: &Api<K>, name: &str) -> K
where
    K: Clone + DeserializeOwned + std::fmt::Debug + kube::Resource<DynamicType = ()>,
{
    wait_for(&format!("{} {name} to exist", K::kind(&())), || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

/// Waits until `name` no longer exists in `api`.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Clone + DeserializeOwned + std::fmt::Debug + kube::Resource<DynamicType = ()>,
{
    wait_for(
        &format!("{} {name} to be deleted", K::kind(&())),
        || async {
            match api.get_opt(name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await
}

/// Reads the documents of kind `kind` from a YAML file of `config/samples`.
pub fn sample<K: DeserializeOwned>(file: &str, kind: &str) -> K {
    let path = repo_root().join("config/samples").join(file);
    let text = std::fs::read_to_string(&path).expect("read sample");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("parse sample YAML");
    let doc = docs
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {}", path.display()));
    serde_json::from_value(doc).expect("sample matches the type")
}

/// Runs `kubectl` (from `$KUBECTL`) with `args`; returns (success, stdout+stderr).
pub fn kubectl(args: &[&str]) -> (bool, String) {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let out = std::process::Command::new(kubectl)
        .args(args)
        .output()
        .expect("run kubectl");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Names of a list of objects, sorted.
pub fn sorted_names<K: kube::Resource>(objs: impl IntoIterator<Item = K>) -> Vec<String> {
    let mut names: Vec<String> = objs.into_iter().map(|o| o.name_any()).collect();
    names.sort();
    names
}
