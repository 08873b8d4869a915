//! Pieces every child object shares: labels, owner references, the restricted Pod
//! Security Standard, probes and downward-API environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, Probe, SeccompProfile, SecurityContext,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// Field manager used for every server-side apply of the operator.
pub const FIELD_MANAGER: &str = "modelhub-operator";

/// `app.kubernetes.io/managed-by` value of every child.
pub const MANAGED_BY: &str = "modelhub-operator";

/// Label naming the custom resource a child belongs to (its value is the CR's name).
/// Together with `app.kubernetes.io/name` it selects every child of one resource.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the workload (`vectorforge`, `tinyinfer`, `gateway`).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the part a child plays (`shard`, `server`, `gateway`).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label set on every child.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label carrying a VectorCollection shard index.
pub const SHARD_LABEL: &str = "modelhub.io/shard";

/// Unprivileged user and group the workloads run as.
pub const RUN_AS_USER: i64 = 65532;

/// Container images of the workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub vectorforge: String,
    pub tinyinfer: String,
    pub gateway: String,
    /// `imagePullPolicy` of every workload container; Kubernetes' default when unset.
    pub pull_policy: Option<String>,
}

impl Images {
    /// `ghcr.io/modelhub/<workload>:<tag>` for every workload.
    pub fn with_tag(registry: &str, tag: &str) -> Self {
        let image = |name: &str| format!("{registry}/{name}:{tag}");
        Self {
            vectorforge: image("vectorforge"),
            tinyinfer: image("tinyinfer"),
            gateway: image("gateway"),
            pull_policy: None,
        }
    }
}

impl Default for Images {
    fn default() -> Self {
        Self::with_tag("ghcr.io/modelhub", env!("CARGO_PKG_VERSION"))
    }
}

/// Labels selecting every pod of one workload instance.
pub fn selector_labels(workload: &str, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), workload.to_owned()),
        (INSTANCE_LABEL.to_owned(), instance.to_owned()),
    ])
}

/// Full label set of a child: the selector labels plus component and management labels.
pub fn labels(workload: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(workload, instance);
    labels.insert(COMPONENT_LABEL.to_owned(), component.to_owned());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(
        "app.kubernetes.io/part-of".to_owned(),
        "modelhub".to_owned(),
    );
    labels
}

/// Renders a label map as a selector string (`a=b,c=d`).
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The controller owner reference pointing at `owner`.
///
/// Objects read from the API always carry name and uid; a missing one is a bug in the
/// caller, reported as an error by the controllers before builders run.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// Metadata of a child object named `name` in the owner's namespace.
pub fn child_meta<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels),
        owner_references: owner_reference(owner).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Pod-level settings of the `restricted` Pod Security Standard.
pub fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level settings of the `restricted` Pod Security Standard.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// A named TCP container port.
pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// An HTTP GET probe on a named port.
pub fn http_probe(path: &str, port_name: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port_name.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// `POD_NAME`, `POD_NAMESPACE` and `POD_IP` from the downward API.
pub fn downward_api_env() -> Vec<EnvVar> {
    [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ]
    .into_iter()
    .map(|(name, path)| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    })
    .collect()
}

/// A literal environment variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A PodDisruptionBudget over the pods matched by `selector`.
pub fn pod_disruption_budget<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    max_unavailable: i32,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(owner, name, labels),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_string_is_sorted_and_comma_separated() {
        let labels = selector_labels("vectorforge", "docs");
        assert_eq!(
            selector_string(&labels),
            "app.kubernetes.io/instance=docs,app.kubernetes.io/name=vectorforge"
        );
    }

    #[test]
    fn restricted_security_drops_all_capabilities() {
        let sc = restricted_container_security();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        let psc = restricted_pod_security();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.map(|s| s.type_),
            Some("RuntimeDefault".to_owned())
        );
    }

    #[test]
    fn default_images_follow_the_workload_contract() {
        let images = Images::default();
        assert_eq!(
            images.vectorforge,
            format!("ghcr.io/modelhub/vectorforge:{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
