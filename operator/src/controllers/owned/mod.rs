//! The operator's view of the objects it owns, and the writes it saves with it.
//!
//! One watch per child kind (label `app.kubernetes.io/managed-by=modelhub-operator`)
//! feeds a reflector store, objects stripped to what reconciles read. From the same
//! stream, after the store is updated, every child event triggers its controlling
//! resource's reconcile, so a reconcile always sees at least the state that woke it.
//! The stores are kept by kind: the kinds are listed once, in [`children!`] below, and
//! adding a kind of child is one line there (plus its RBAC).
//!
//! [`apply`] (in `writes`) skips the server-side apply of a child whose desired object
//! hashes the same as what this process last applied and which nobody has changed since
//! (same uid, and same generation, or resourceVersion for kinds without one).
//! Re-reconciles caused by children's status changes, Services getting addresses or the
//! periodic resync then cost no write, while an edit of a child by anyone else
//! (`kubectl scale sts`, a deleted Service) is still put back on the next reconcile.

mod writes;

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::writes::{Applied, Key, child_kind, key_of};
pub use self::writes::{apply, prune};
use super::{Error, api};
use crate::api::{InferenceService, TrafficPolicy, VectorCollection};
use crate::builders::common::{MANAGED_BY, MANAGED_BY_LABEL};

/// A kind of child object the operator applies and caches.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Drops what no reconcile reads (kept small: a thousand StatefulSets are cached).
    fn strip(&mut self) {
        self.meta_mut().managed_fields = None;
    }
}

/// Lists the child kinds once: implements [`Child`] for each (with what its cache drops
/// beyond the managed fields) and registers a store and a watch per kind.
macro_rules! children {
    ($($kind:ty $(=> |$obj:ident| $strip:block)?),+ $(,)?) => {
        $(impl Child for $kind {
            $(fn strip(&mut self) {
                self.meta_mut().managed_fields = None;
                let $obj = self;
                $strip
            })?
        })+

        fn register_children(kinds: &mut Kinds) {
            $(kinds.add::<$kind>();)+
        }
    };
}

// Reconciles read the workloads' metadata and status only, never their pod templates.
children! {
    StatefulSet => |sts| {
        if let Some(spec) = sts.spec.as_mut() {
            spec.template = Default::default();
            spec.volume_claim_templates = None;
        }
    },
    Deployment => |d| {
        if let Some(spec) = d.spec.as_mut() {
            spec.template = Default::default();
        }
    },
    Service,
    PodDisruptionBudget,
    ServiceAccount,
    Role,
    RoleBinding,
}

/// The watch of one child kind, waiting for the cache it fills.
type WatchKind =
    Box<dyn FnOnce(Arc<Owned>, Client, Option<String>, Triggers) -> BoxFuture<'static, ()> + Send>;

/// Stores by kind, and the watches that fill them, while [`Owned::new`] builds them.
#[derive(Default)]
struct Kinds {
    stores: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    watches: Vec<WatchKind>,
}

impl Kinds {
    fn add<K: Child>(&mut self) {
        let (store, writer) = reflector::store::<K>();
        self.stores.insert(TypeId::of::<K>(), Box::new(store));
        self.watches
            .push(Box::new(move |owned, client, ns, triggers| {
                Box::pin(async move {
                    let api: Api<K> = api(&client, ns.as_deref());
                    owned.watch_kind(api, writer, &triggers).await;
                })
            }));
    }
}

/// The stores of the owned children and what was last applied to each.
pub struct Owned {
    /// `Store<K>` of every child kind `K`, by the kind's type.
    stores: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    /// Metadata of the InferenceServices, for the TrafficPolicies' backends.
    pub inference_services: Store<PartialObjectMeta<InferenceService>>,
    applied: Mutex<HashMap<Key, Applied>>,
}

/// The write halves of [`Owned`]'s stores: the children's, consumed by
/// [`Owned::watch`], and the InferenceServices', consumed by
/// [`crate::controllers::traffic_policy::watch_backends`].
pub struct Writers {
    pub children: ChildWatches,
    pub inference_services: reflector::store::Writer<PartialObjectMeta<InferenceService>>,
}

/// The watches of the child kinds, one per kind, each filling its store.
pub struct ChildWatches(Vec<WatchKind>);

impl ChildWatches {
    /// How many kinds are watched.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where child events are routed: the reconcile queues of the three controllers.
#[derive(Clone)]
pub struct Triggers {
    pub vector_collections: UnboundedSender<ObjectRef<VectorCollection>>,
    pub inference_services: UnboundedSender<ObjectRef<InferenceService>>,
    pub traffic_policies: UnboundedSender<ObjectRef<TrafficPolicy>>,
}

impl Triggers {
    /// Queues the reconcile of the resource controlling `meta`, if it is one of ours.
    fn owner_of(&self, meta: &ObjectMeta) {
        let Some(ns) = meta.namespace.as_deref() else {
            return;
        };
        for owner in meta.owner_references.iter().flatten() {
            if owner.controller != Some(true)
                || owner.api_version != VectorCollection::api_version(&())
            {
                continue;
            }
            let name = owner.name.as_str();
            // A send fails only when the controller has stopped (shutdown).
            match owner.kind.as_str() {
                "VectorCollection" => {
                    let _ = self
                        .vector_collections
                        .unbounded_send(ObjectRef::new(name).within(ns));
                }
                "InferenceService" => {
                    let _ = self
                        .inference_services
                        .unbounded_send(ObjectRef::new(name).within(ns));
                }
                "TrafficPolicy" => {
                    let _ = self
                        .traffic_policies
                        .unbounded_send(ObjectRef::new(name).within(ns));
                }
                _ => {}
            }
        }
    }
}

impl Owned {
    /// Empty stores; they fill once [`Owned::watch`] runs.
    pub fn new() -> (Self, Writers) {
        let mut kinds = Kinds::default();
        register_children(&mut kinds);
        let (inference_services, isvc_writer) = reflector::store();
        let owned = Self {
            stores: kinds.stores,
            inference_services,
            applied: Mutex::default(),
        };
        let writers = Writers {
            children: ChildWatches(kinds.watches),
            inference_services: isvc_writer,
        };
        (owned, writers)
    }

    /// The cache of child kind `K`.
    pub fn store<K: Child>(&self) -> Result<&Store<K>, Error> {
        self.stores
            .get(&TypeId::of::<K>())
            .and_then(|s| s.downcast_ref::<Store<K>>())
            .ok_or(Error::UncachedKind(child_kind::<K>()))
    }

    /// Watches every child kind (in `ns`, or all namespaces) until the future is
    /// dropped, filling the stores and routing events to `triggers`.
    pub async fn watch(
        self: Arc<Self>,
        client: Client,
        ns: Option<String>,
        watches: ChildWatches,
        triggers: Triggers,
    ) {
        let watches = watches
            .0
            .into_iter()
            .map(|w| w(self.clone(), client.clone(), ns.clone(), triggers.clone()));
        futures::future::join_all(watches).await;
    }

    async fn watch_kind<K: Child>(
        &self,
        api: Api<K>,
        writer: reflector::store::Writer<K>,
        triggers: &Triggers,
    ) {
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let store = writer.as_reader();
        let mut events = std::pin::pin!(
            watcher(api, config)
                .default_backoff()
                .modify(K::strip)
                .reflect(writer)
        );
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    triggers.owner_of(obj.meta());
                }
                Ok(watcher::Event::Delete(obj)) => {
                    if let Ok(key) = key_of::<K>(obj.meta()) {
                        self.records().remove(&key);
                    }
                    triggers.owner_of(obj.meta());
                }
                Ok(watcher::Event::InitDone) => {
                    // Forget children deleted while the watch was down.
                    let present: BTreeSet<Key> = store
                        .state()
                        .iter()
                        .filter_map(|o| key_of::<K>(o.meta()).ok())
                        .collect();
                    let kind = child_kind::<K>();
                    self.records()
                        .retain(|key, _| key.0 != kind || present.contains(key));
                }
                Ok(watcher::Event::Init) => {}
                Err(err) => {
                    tracing::warn!(kind = child_kind::<K>(), error = %err, "watch of children failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_the_builders_make_has_a_cache() {
        let (owned, writers) = Owned::new();
        assert!(owned.store::<StatefulSet>().is_ok());
        assert!(owned.store::<Deployment>().is_ok());
        assert!(owned.store::<Service>().is_ok());
        assert!(owned.store::<PodDisruptionBudget>().is_ok());
        assert!(owned.store::<ServiceAccount>().is_ok());
        assert!(owned.store::<Role>().is_ok());
        assert!(owned.store::<RoleBinding>().is_ok());
        // One watch per cached kind.
        assert_eq!(writers.children.len(), owned.stores.len());
    }

    impl Child for k8s_openapi::api::core::v1::ConfigMap {}

    #[test]
    fn a_kind_without_a_cache_is_an_error_not_a_panic() {
        // ConfigMaps are not children (the impl below is the test's): the lookup
        // names the kind.
        let (owned, _) = Owned::new();
        let err = owned
            .store::<k8s_openapi::api::core::v1::ConfigMap>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "child kind ConfigMap has no cache (it is missing from controllers::owned::children!)"
            )
        );
    }

    #[test]
    fn stripping_a_statefulset_keeps_status_and_metadata() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "generation": 2,
                         "managedFields": [{"manager": "modelhub-operator"}]},
            "spec": {"replicas": 3, "serviceName": "s", "selector": {},
                     "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}
        }))
        .unwrap();
        sts.strip();
        assert_eq!(sts.metadata.managed_fields, None);
        assert_eq!(sts.metadata.generation, Some(2));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.template.spec, None);
        assert_eq!(sts.status.unwrap().ready_replicas, Some(2));
    }
}
