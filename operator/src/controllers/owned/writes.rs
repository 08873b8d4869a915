//! The operator's view of the objects it owns, and the writes it saves with it.
//!
//! One watch per child kind (label `app.kubernetes.io/managed-by=modelhub-operator`)
//! feeds a reflector store, objects stripped to what reconciles read. From the same
//! stream, after the store is updated, every child event triggers its controlling
//! resource's reconcile, so a reconcile always sees at least the state that woke it.
//!
//! [`apply`] skips the server-side apply of a child whose desired object hashes the same
//! as what this process last applied and which nobody has changed since (same uid, and
//! same generation, or resourceVersion for kinds without one). Re-reconciles caused by
//! children's status changes, Services getting addresses or the periodic resync then
//! cost no write, while an edit of a child by anyone else (`kubectl scale sts`, a
//! deleted Service) is still put back on the next reconcile.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, api};
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
    /// The store holding this kind's children.
    fn store(owned: &Owned) -> &Store<Self>;
    /// Drops what no reconcile reads (kept small: a thousand StatefulSets are cached).
    fn strip(&mut self) {
        self.meta_mut().managed_fields = None;
    }
}

macro_rules! child {
    ($kind:ty, $field:ident) => {
        impl Child for $kind {
            fn store(owned: &Owned) -> &Store<Self> {
                &owned.$field
            }
        }
    };
    ($kind:ty, $field:ident, |$obj:ident| $strip:block) => {
        impl Child for $kind {
            fn store(owned: &Owned) -> &Store<Self> {
                &owned.$field
            }
            fn strip(&mut self) {
                self.meta_mut().managed_fields = None;
                let $obj = self;
                $strip
            }
        }
    };
}

// Reconciles read the workloads' metadata and status only, never their pod templates.
child!(StatefulSet, statefulsets, |sts| {
    if let Some(spec) = sts.spec.as_mut() {
        spec.template = Default::default();
        spec.volume_claim_templates = None;
    }
});
child!(Deployment, deployments, |d| {
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
});
child!(Service, services);
child!(PodDisruptionBudget, pdbs);
child!(ServiceAccount, service_accounts);
child!(Role, roles);
child!(RoleBinding, role_bindings);

/// What this process last applied to one child.
#[derive(Debug, Clone, PartialEq)]
struct Applied {
    hash: u64,
    uid: String,
    generation: Option<i64>,
    resource_version: Option<String>,
}

impl Applied {
    fn of(hash: u64, meta: &ObjectMeta) -> Self {
        Self {
            hash,
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation,
            resource_version: meta.resource_version.clone(),
        }
    }

    /// Whether `meta` (the stored child) is still the object this record describes.
    fn untouched(&self, meta: &ObjectMeta) -> bool {
        let same_version = match self.generation {
            Some(generation) => meta.generation == Some(generation),
            None => meta.resource_version == self.resource_version,
        };
        meta.uid.as_deref() == Some(self.uid.as_str()) && same_version
    }
}

/// (kind, namespace, name) of a child.
type Key = (&'static str, String, String);

fn key_of<K: Child>(meta: &ObjectMeta) -> Result<Key, Error> {
    Ok((
        child_kind::<K>(),
        meta.namespace
            .clone()
            .ok_or(Error::MissingObjectKey("namespace"))?,
        meta.name.clone().ok_or(Error::MissingObjectKey("name"))?,
    ))
}

fn child_kind<K: Child>() -> &'static str {
    // Kinds of k8s-openapi types are static strings.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "unknown",
    }
}

fn hash_of<K: Child>(obj: &K) -> Result<u64, Error> {
    let bytes = serde_json::to_vec(obj).map_err(|source| Error::Serialize {
        what: "child object",
        source,
    })?;
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Ok(hasher.finish())
}

/// The stores of the owned children and what was last applied to each.
pub struct Owned {
    pub statefulsets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    /// Metadata of the InferenceServices, for the TrafficPolicies' backends.
    pub inference_services: Store<PartialObjectMeta<InferenceService>>,
    applied: Mutex<HashMap<Key, Applied>>,
}

/// The write halves of [`Owned`]'s stores, consumed by [`Owned::watch`].
pub struct Writers {
    statefulsets: reflector::store::Writer<StatefulSet>,
    deployments: reflector::store::Writer<Deployment>,
    services: reflector::store::Writer<Service>,
    pdbs: reflector::store::Writer<PodDisruptionBudget>,
    service_accounts: reflector::store::Writer<ServiceAccount>,
    roles: reflector::store::Writer<Role>,
    role_bindings: reflector::store::Writer<RoleBinding>,
    inference_services: reflector::store::Writer<PartialObjectMeta<InferenceService>>,
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
        let (statefulsets, sts_w) = reflector::store();
        let (deployments, deploy_w) = reflector::store();
        let (services, svc_w) = reflector::store();
        let (pdbs, pdb_w) = reflector::store();
        let (service_accounts, sa_w) = reflector::store();
        let (roles, role_w) = reflector::store();
        let (role_bindings, rb_w) = reflector::store();
        let (inference_services, isvc_w) = reflector::store();
        let owned = Self {
            statefulsets,
            deployments,
            services,
            pdbs,
            service_accounts,
            roles,
            role_bindings,
            inference_services,
            applied: Mutex::default(),
        };
        let writers = Writers {
            statefulsets: sts_w,
            deployments: deploy_w,
            services: svc_w,
            pdbs: pdb_w,
            service_accounts: sa_w,
            roles: role_w,
            role_bindings: rb_w,
            inference_services: isvc_w,
        };
        (owned, writers)
    }

    /// Watches every child kind (in `ns`, or all namespaces) until the future is
    /// dropped, filling the stores and routing events to `triggers`; InferenceService
    /// events go to the TrafficPolicies (in `policies`) that name them as a backend.
    pub async fn watch(
        self: Arc<Self>,
        client: Client,
        ns: Option<String>,
        writers: Writers,
        triggers: Triggers,
        policies: Store<TrafficPolicy>,
    ) {
        let ns = ns.as_deref();
        tokio::join!(
            self.watch_kind(api(&client, ns), writers.statefulsets, &triggers),
            self.watch_kind(api(&client, ns), writers.deployments, &triggers),
            self.watch_kind(api(&client, ns), writers.services, &triggers),
            self.watch_kind(api(&client, ns), writers.pdbs, &triggers),
            self.watch_kind(api(&client, ns), writers.service_accounts, &triggers),
            self.watch_kind(api(&client, ns), writers.roles, &triggers),
            self.watch_kind(api(&client, ns), writers.role_bindings, &triggers),
            watch_backends(
                api(&client, ns),
                writers.inference_services,
                &triggers,
                &policies
            ),
        );
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

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Applied>> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored child `obj` describes if this process applied exactly `obj` to it and
    /// nobody changed it since.
    fn unchanged<K: Child>(&self, key: &Key, hash: u64) -> Option<Arc<K>> {
        let cached = K::store(self).get(&ObjectRef::new(&key.2).within(&key.1))?;
        let records = self.records();
        let record = records.get(key)?;
        (record.hash == hash && record.untouched(cached.meta())).then_some(cached)
    }
}

/// Keeps the InferenceService metadata store and wakes the TrafficPolicies whose
/// backends name a changed InferenceService.
async fn watch_backends(
    api: Api<PartialObjectMeta<InferenceService>>,
    writer: reflector::store::Writer<PartialObjectMeta<InferenceService>>,
    triggers: &Triggers,
    policies: &Store<TrafficPolicy>,
) {
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|m| m.metadata.managed_fields = None)
            .reflect(writer)
            .touched_objects()
    );
    while let Some(event) = events.next().await {
        match event {
            Ok(isvc) => {
                let (ns, name) = (isvc.namespace(), isvc.name_any());
                for tp in policies.state() {
                    if tp.namespace() == ns && tp.spec.backends.iter().any(|b| b.service == name) {
                        let _ = triggers
                            .traffic_policies
                            .unbounded_send(ObjectRef::from_obj(tp.as_ref()));
                    }
                }
            }
            Err(err) => {
                tracing::warn!(kind = "InferenceService", error = %err, "watch of backends failed; retrying");
            }
        }
    }
}

/// Server-side applies `obj` unless the cache shows it is already in place as this
/// process last applied it. Returns the child as stored (status included; pod
/// templates stripped when it comes from the cache).
pub async fn apply<K: Child>(ctx: &Context, obj: &K) -> Result<K, Error> {
    let key = key_of::<K>(obj.meta())?;
    let hash = hash_of(obj)?;
    if let Some(cached) = ctx.owned.unchanged::<K>(&key, hash) {
        ctx.metrics
            .child_applies
            .with_label_values(&[key.0, "skipped"])
            .inc();
        return Ok(K::clone(&cached));
    }
    let stored = super::apply(&ctx.client, obj).await?;
    ctx.owned
        .records()
        .insert(key.clone(), Applied::of(hash, stored.meta()));
    ctx.metrics
        .child_applies
        .with_label_values(&[key.0, "applied"])
        .inc();
    Ok(stored)
}

/// Deletes the children of kind `K` in `ns` controlled by `owner_uid` whose names are
/// not in `keep`, as the cache sees them. Returns the deleted names.
pub async fn prune<K: Child>(
    ctx: &Context,
    ns: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let orphans: Vec<String> = K::store(&ctx.owned)
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns))
        .filter(|o| {
            o.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == owner_uid)
        })
        .map(|o| o.name_any())
        .filter(|name| !keep.contains(name))
        .collect();
    let mut deleted = Vec::new();
    for name in orphans {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, generation: Option<i64>, rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            generation,
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_record_holds_until_the_generation_or_the_object_changes() {
        let applied = Applied::of(7, &meta("u1", Some(3), "100"));
        // Status updates change the resourceVersion, not the generation.
        assert!(applied.untouched(&meta("u1", Some(3), "140")));
        // Someone edited the spec.
        assert!(!applied.untouched(&meta("u1", Some(4), "150")));
        // Deleted and created again under the same name.
        assert!(!applied.untouched(&meta("u2", Some(3), "160")));
    }

    #[test]
    fn kinds_without_generation_compare_resource_versions() {
        let applied = Applied::of(7, &meta("u1", None, "100"));
        assert!(applied.untouched(&meta("u1", None, "100")));
        assert!(!applied.untouched(&meta("u1", None, "101")));
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

    #[test]
    fn hashes_follow_the_desired_object() {
        let mut svc = Service::default();
        svc.metadata.name = Some("a".into());
        let h1 = hash_of(&svc).unwrap();
        assert_eq!(h1, hash_of(&svc.clone()).unwrap());
        svc.metadata.name = Some("b".into());
        assert_ne!(h1, hash_of(&svc).unwrap());
    }
}
