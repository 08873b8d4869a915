//! The scheduler part: every pod without a node (in the namespaces this agent serves) is
//! bound to this agent's Node through the `pods/binding` subresource, as kube-scheduler does.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

async fn bind(client: &Client, config: &AgentConfig, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() || !config.serves_namespace(&ns) {
        return;
    }
    let scheduler = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if scheduler != "default-scheduler" {
        return;
    }
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(config.node_name.clone()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = %config.node_name, "bound pod")
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(err) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "cannot bind pod"),
    }
}

/// Binds unscheduled pods until `stop` fires.
pub async fn run(client: Client, config: Arc<AgentConfig>, stop: CancellationToken) {
    let api: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields("spec.nodeName=");
    let mut stream = watcher::watcher(api, cfg).boxed();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            ev = stream.next() => match ev {
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => bind(&client, &config, &pod).await,
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "scheduler watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                None => return,
            }
        }
    }
}
