//! What this process applied to its children, and the writes themselves: [`apply`]
//! (server-side apply, skipped for children the cache shows unchanged since this
//! process applied them) and [`prune`] (children no longer desired). The plain
//! server-side apply is private here, so every child write goes through the cache.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;

use super::{Child, Owned};
use crate::builders::common::FIELD_MANAGER;
use crate::controllers::{Context, Error};

/// What this process last applied to one child.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Applied {
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
pub(super) type Key = (&'static str, String, String);

pub(super) fn key_of<K: Child>(meta: &ObjectMeta) -> Result<Key, Error> {
    Ok((
        child_kind::<K>(),
        meta.namespace
            .clone()
            .ok_or(Error::MissingObjectKey("namespace"))?,
        meta.name.clone().ok_or(Error::MissingObjectKey("name"))?,
    ))
}

pub(super) fn child_kind<K: Child>() -> &'static str {
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

impl Owned {
    pub(super) fn records(&self) -> MutexGuard<'_, HashMap<Key, Applied>> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored child `obj` describes if this process applied exactly `obj` to it and
    /// nobody changed it since.
    fn unchanged<K: Child>(&self, key: &Key, hash: u64) -> Option<Arc<K>> {
        let cached = self
            .store::<K>()
            .ok()?
            .get(&ObjectRef::new(&key.2).within(&key.1))?;
        let records = self.records();
        let record = records.get(key)?;
        (record.hash == hash && record.untouched(cached.meta())).then_some(cached)
    }
}

/// Server-side applies `obj` unless the cache shows it is already in place as this
/// process last applied it. Returns the child as stored (status included; pod
/// templates stripped when it comes from the cache).
pub async fn apply<K: Child>(ctx: &Context, obj: &K) -> Result<K, Error> {
    let key = key_of::<K>(obj.meta())?;
    let stored = ctx
        .owned
        .store::<K>()?
        .get(&ObjectRef::new(&key.2).within(&key.1));
    if let Some(owner) = stored.and_then(|s| taken_by(s.meta(), obj.meta())) {
        return Err(Error::ChildTaken {
            kind: key.0,
            namespace: key.1,
            name: key.2,
            owner,
        });
    }
    let hash = hash_of(obj)?;
    if let Some(cached) = ctx.owned.unchanged::<K>(&key, hash) {
        ctx.metrics
            .child_applies
            .with_label_values(&[key.0, "skipped"])
            .inc();
        return Ok(K::clone(&cached));
    }
    let stored = server_side_apply(ctx, obj).await?;
    ctx.owned
        .records()
        .insert(key.clone(), Applied::of(hash, stored.meta()));
    ctx.metrics
        .child_applies
        .with_label_values(&[key.0, "applied"])
        .inc();
    Ok(stored)
}

fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// `Kind name` of the object controlling `stored` when that is not the controller the
/// desired child names: two resources may want the same child name (a TrafficPolicy's
/// Service and an InferenceService's, both named after their resource), and a forced
/// apply would hand the object back and forth between them.
fn taken_by(stored: &ObjectMeta, desired: &ObjectMeta) -> Option<String> {
    match (controller(stored), controller(desired)) {
        (Some(theirs), Some(ours)) if theirs.uid != ours.uid => {
            Some(format!("{} {}", theirs.kind, theirs.name))
        }
        _ => None,
    }
}

/// Server-side applies `obj` (force: the operator owns these fields) and returns the
/// stored object, status included.
async fn server_side_apply<K: Child>(ctx: &Context, obj: &K) -> Result<K, Error> {
    let (ns, name) = crate::controllers::namespace_and_name(obj.meta())?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(obj)).await?)
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
    let orphans: Vec<String> = ctx
        .owned
        .store::<K>()?
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

    fn owned_by(kind: &str, name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "modelhub.io/v1alpha1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_child_controlled_by_another_object_is_taken() {
        let isvc = owned_by("InferenceService", "lookup", "u1");
        let tp = owned_by("TrafficPolicy", "lookup", "u2");
        assert_eq!(
            taken_by(&isvc, &tp).as_deref(),
            Some("InferenceService lookup")
        );
        assert_eq!(taken_by(&tp, &tp), None, "its own child");
        assert_eq!(
            taken_by(&ObjectMeta::default(), &tp),
            None,
            "no controller yet"
        );
    }

    #[test]
    fn hashes_follow_the_desired_object() {
        let mut svc = k8s_openapi::api::core::v1::Service::default();
        svc.metadata.name = Some("a".into());
        let h1 = hash_of(&svc).unwrap();
        assert_eq!(h1, hash_of(&svc.clone()).unwrap());
        svc.metadata.name = Some("b".into());
        assert_ne!(h1, hash_of(&svc).unwrap());
    }
}
