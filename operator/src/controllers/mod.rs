//! The reconcile loops, one per kind, and what they share: the [`Context`]
//! (`context`), the [`Error`] type, the cache of owned children with their writes
//! (`owned`: server-side apply, pruning of orphans), status patches (`status`), Events
//! (`events`) and what wraps every reconcile (`runner`: span, metrics, backoff).
//!
//! Every reconcile follows the same path: build the desired children (pure builders),
//! apply them all with server-side apply (skipped for children the cache shows
//! unchanged, see [`owned`]), delete the children that are no longer desired, then
//! compute the status from the children's real status and write it if it changed.

pub mod conditions;
mod context;
mod events;
pub mod gateway_stats;
pub mod inference_service;
pub mod owned;
pub mod rollout;
mod runner;
mod status;
pub mod traffic_policy;
pub mod vector_collection;

use std::collections::BTreeSet;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource};

pub use self::context::Context;
pub use self::events::publish_transitions;
pub use self::runner::{error_policy, instrumented};
pub use self::status::patch_status;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("child kind {0} has no cache (it is missing from controllers::owned::children!)")]
    UncachedKind(&'static str),
    #[error(
        "{kind} {namespace}/{name} already belongs to {owner}; rename this resource or that one"
    )]
    ChildTaken {
        kind: &'static str,
        namespace: String,
        name: String,
        owner: String,
    },
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(_) => "client",
            Self::MissingObjectKey(_) => "missing_key",
            Self::UncachedKind(_) => "uncached_kind",
            Self::ChildTaken { .. } => "child_taken",
            Self::Serialize { .. } => "serialize",
        }
    }
}

/// The API of kind `K` in namespace `ns`, or in all namespaces.
pub fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The namespace and name of a namespaced object (both set on anything the API
/// server returned or a builder made).
pub fn namespace_and_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(&str, &str), Error> {
    let ns = meta
        .namespace
        .as_deref()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let name = meta
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey("name"))?;
    Ok((ns, name))
}

/// Names of a list of objects, for `prune`'s keep set.
pub fn names<'a, K: Resource + 'a>(objs: impl IntoIterator<Item = &'a K>) -> BTreeSet<String> {
    objs.into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}
