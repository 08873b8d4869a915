//! Children of a `TrafficPolicy`: the gateway Deployment and its Service, a
//! PodDisruptionBudget, and the ServiceAccount + Role that let the gateways watch their
//! policy and the backends' EndpointSlices. The API key reaches the gateway as
//! `GATEWAY_API_KEY` from the Secret; the rate limit is read by the gateway from the
//! TrafficPolicy it watches, so it is not in the pod template (no restart on change).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, SecretKeySelector, Service,
    ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use modelhub_contract::gateway::{API_KEY_ENV, GatewayArgs};

use super::common::{
    self, Images, child_meta, downward_api_env, env, http_probe, port,
    restricted_container_security, restricted_pod_security,
};
use crate::api::TrafficPolicy;

/// Workload name (`app.kubernetes.io/name`) of gateway pods.
pub const WORKLOAD: &str = "gateway";
/// Open Inference Protocol REST port (also `/metrics`, probes).
pub const HTTP_PORT: i32 = 8080;
/// Open Inference Protocol gRPC port.
pub const GRPC_PORT: i32 = 8081;

/// Name of the gateway Deployment, ServiceAccount, Role, RoleBinding and PDB.
pub fn gateway_name(tp: &str) -> String {
    format!("{tp}-gateway")
}

/// Everything a TrafficPolicy needs, built from its spec alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub service: Service,
    pub deployment: Deployment,
    /// Only with two gateway replicas or more (see the InferenceService builder).
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds the children of `tp`.
pub fn build(tp: &TrafficPolicy, images: &Images) -> Children {
    let name = tp.name_any();
    let gw = gateway_name(&name);
    let labels = common::labels(WORKLOAD, &name, "gateway");
    Children {
        service_account: ServiceAccount {
            metadata: child_meta(tp, gw.clone(), labels.clone()),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: role(tp, gw.clone(), labels.clone()),
        role_binding: RoleBinding {
            metadata: child_meta(tp, gw.clone(), labels.clone()),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: gw.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: gw.clone(),
                namespace: tp.namespace(),
                api_group: None,
            }]),
        },
        service: service(tp),
        deployment: deployment(tp, images),
        pdb: (tp.spec.gateway.replicas >= 2).then(|| {
            common::pod_disruption_budget(
                tp,
                gw,
                labels,
                common::selector_labels(WORKLOAD, &name),
                1,
            )
        }),
    }
}

fn role(
    tp: &TrafficPolicy,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
) -> Role {
    let read = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    Role {
        metadata: child_meta(tp, name, labels),
        rules: Some(vec![
            read("modelhub.io", &["trafficpolicies", "inferenceservices"]),
            read("discovery.k8s.io", &["endpointslices"]),
        ]),
    }
}

fn service(tp: &TrafficPolicy) -> Service {
    let name = tp.name_any();
    Service {
        metadata: child_meta(tp, name.clone(), common::labels(WORKLOAD, &name, "gateway")),
        spec: Some(ServiceSpec {
            selector: Some(common::selector_labels(WORKLOAD, &name)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: HTTP_PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("grpc".to_owned()),
                    port: GRPC_PORT,
                    target_port: Some(IntOrString::String("grpc".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    app_protocol: Some("kubernetes.io/h2c".to_owned()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn deployment(tp: &TrafficPolicy, images: &Images) -> Deployment {
    let name = tp.name_any();
    let labels = common::labels(WORKLOAD, &name, "gateway");
    let mut env_vars = downward_api_env();
    env_vars.push(env("RUST_LOG", "info"));
    if let Some(secret) = &tp.spec.gateway.api_key_secret_ref {
        env_vars.push(EnvVar {
            name: API_KEY_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    let container = Container {
        name: WORKLOAD.to_owned(),
        image: Some(
            tp.spec
                .gateway
                .image
                .clone()
                .unwrap_or_else(|| images.gateway.clone()),
        ),
        image_pull_policy: images.pull_policy.clone(),
        args: Some(
            GatewayArgs {
                policy: name.clone(),
                http_port: HTTP_PORT,
                grpc_port: GRPC_PORT,
            }
            .to_args(),
        ),
        env: Some(env_vars),
        ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
        liveness_probe: Some(http_probe("/healthz", "http", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", "http", 5, 3)),
        resources: tp.spec.gateway.resources.clone(),
        security_context: Some(restricted_container_security()),
        ..Container::default()
    };
    Deployment {
        metadata: child_meta(tp, gateway_name(&name), labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(tp.spec.gateway.replicas),
            selector: LabelSelector {
                match_labels: Some(common::selector_labels(WORKLOAD, &name)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(gateway_name(&name)),
                    security_context: Some(restricted_pod_security()),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::builders::test_support::{spec, stored_meta};

    fn tp() -> TrafficPolicy {
        let mut tp = TrafficPolicy::new(
            "chat",
            spec(json!({
                "backends": [
                    {"name": "v1", "service": "mlp-v1", "weight": 90},
                    {"name": "v2", "service": "mlp-v2", "weight": 10}
                ],
                "gateway": {"replicas": 3}
            })),
        );
        tp.metadata = stored_meta("chat");
        tp
    }

    #[test]
    fn gateway_deployment_watches_its_policy() {
        let children = build(&tp(), &Images::default());
        assert_eq!(
            children.deployment.metadata.name.as_deref(),
            Some("chat-gateway")
        );
        let spec = children.deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("chat-gateway"));
        let args = pod.containers[0].args.as_ref().unwrap();
        assert!(args.contains(&"--policy=chat".to_owned()), "{args:?}");
        assert_eq!(children.service.metadata.name.as_deref(), Some("chat"));
    }

    #[test]
    fn a_single_gateway_replica_gets_no_disruption_budget() {
        let mut policy = tp();
        assert!(build(&policy, &Images::default()).pdb.is_some());
        policy.spec.gateway.replicas = 1;
        assert!(build(&policy, &Images::default()).pdb.is_none());
    }

    fn gateway_env(tp: &TrafficPolicy) -> Vec<EnvVar> {
        let deployment = build(tp, &Images::default()).deployment;
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        pod.containers[0].env.clone().unwrap_or_default()
    }

    #[test]
    fn the_api_key_comes_from_the_secret_and_the_rate_limit_stays_out_of_the_pod() {
        let mut policy = tp();
        assert!(
            gateway_env(&policy).iter().all(|e| e.name != API_KEY_ENV),
            "no key without apiKeySecretRef"
        );
        policy.spec.gateway = serde_json::from_value(json!({
            "replicas": 3,
            "apiKeySecretRef": {"name": "gw-key", "key": "token"},
            "rateLimit": {"requestsPerSecond": 5, "burst": 10}
        }))
        .unwrap();
        let env = gateway_env(&policy);
        let key = env.iter().find(|e| e.name == "GATEWAY_API_KEY").unwrap();
        assert_eq!(
            key.value, None,
            "the key is never written into the pod template"
        );
        let selector = key
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap();
        assert_eq!(selector.name, "gw-key");
        assert_eq!(selector.key, "token");
        assert_eq!(selector.optional, Some(false));
        // A rate change must not roll the gateway pods: the template ignores it.
        let before = build(&policy, &Images::default()).deployment;
        policy.spec.gateway.rate_limit = None;
        assert_eq!(build(&policy, &Images::default()).deployment, before);
    }

    #[test]
    fn gateway_role_is_read_only() {
        let children = build(&tp(), &Images::default());
        for rule in children.role.rules.as_ref().unwrap() {
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
        }
        let subject = &children.role_binding.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.name, "chat-gateway");
        assert_eq!(subject.namespace.as_deref(), Some("ml"));
    }
}
