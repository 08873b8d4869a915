//! Children of a `VectorCollection`: per shard a StatefulSet (its pods one Raft group),
//! a headless Service for peer addressing and, with two or more replicas, a
//! PodDisruptionBudget that keeps the Raft quorum; one client Service over all pods;
//! and the ServiceAccount + Role the pods use to find their peers through the API.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    SecretKeySelector, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use modelhub_contract::vectorforge::{self as contract, ShardArgs};

use super::common::{
    self, Images, child_meta, downward_api_env, env, http_probe, port,
    restricted_container_security, restricted_pod_security,
};
use crate::api::{S3Location, VectorCollection, WalSync};

/// Workload name (`app.kubernetes.io/name`) of vectorforge pods.
pub const WORKLOAD: &str = "vectorforge";
/// REST port (Qdrant-compatible API, `/metrics`, probes).
pub const HTTP_PORT: i32 = 6333;
/// gRPC port.
pub const GRPC_PORT: i32 = 6334;
/// Internal port: Raft and shard-to-shard traffic.
pub const RAFT_PORT: i32 = 6335;
/// Mount path of each pod's persistent volume.
pub const DATA_DIR: &str = "/data";

/// Name of shard `index`'s StatefulSet, headless Service and PodDisruptionBudget.
pub fn shard_name(vc: &str, index: i32) -> String {
    format!("{vc}-shard-{index}")
}

/// Name of the ServiceAccount, Role and RoleBinding of the collection's pods.
pub fn service_account_name(vc: &str) -> String {
    format!("{vc}-vectorforge")
}

/// Labels selecting the pods of one shard.
pub fn shard_selector(vc: &str, index: i32) -> BTreeMap<String, String> {
    let mut labels = common::selector_labels(WORKLOAD, vc);
    labels.insert(common::SHARD_LABEL.to_owned(), index.to_string());
    labels
}

fn shard_labels(vc: &str, index: i32) -> BTreeMap<String, String> {
    let mut labels = common::labels(WORKLOAD, vc, "shard");
    labels.insert(common::SHARD_LABEL.to_owned(), index.to_string());
    labels
}

/// Quorum-preserving disruption allowance of a Raft group of `replicas` members.
pub fn max_unavailable(replicas: i32) -> i32 {
    (replicas - 1) / 2
}

/// Everything a VectorCollection needs, built from its spec alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub client_service: Service,
    pub shard_services: Vec<Service>,
    pub statefulsets: Vec<StatefulSet>,
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Builds the children of `vc`.
pub fn build(vc: &VectorCollection, images: &Images) -> Children {
    let name = vc.name_any();
    let shards = 0..vc.spec.shards.max(1);
    Children {
        service_account: service_account(vc),
        role: role(vc),
        role_binding: role_binding(vc),
        client_service: client_service(vc),
        shard_services: shards.clone().map(|i| shard_service(vc, i)).collect(),
        statefulsets: shards.clone().map(|i| statefulset(vc, i, images)).collect(),
        pdbs: if vc.spec.replicas >= 2 {
            shards
                .map(|i| {
                    common::pod_disruption_budget(
                        vc,
                        shard_name(&name, i),
                        shard_labels(&name, i),
                        shard_selector(&name, i),
                        max_unavailable(vc.spec.replicas),
                    )
                })
                .collect()
        } else {
            // A single-member group has no quorum to protect; a budget would only block
            // node drains forever.
            Vec::new()
        },
    }
}

fn service_account(vc: &VectorCollection) -> ServiceAccount {
    let name = vc.name_any();
    ServiceAccount {
        metadata: child_meta(
            vc,
            service_account_name(&name),
            common::labels(WORKLOAD, &name, "shard"),
        ),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

/// Read access to the pods and EndpointSlices of the namespace, for peer discovery.
fn role(vc: &VectorCollection) -> Role {
    let name = vc.name_any();
    let read = |group: &str, resource: &str| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    Role {
        metadata: child_meta(
            vc,
            service_account_name(&name),
            common::labels(WORKLOAD, &name, "shard"),
        ),
        rules: Some(vec![
            read("", "pods"),
            read("discovery.k8s.io", "endpointslices"),
            read("modelhub.io", "vectorcollections"),
            // each shard's leader reports its group (leader, members, points, lag)
            PolicyRule {
                api_groups: Some(vec!["modelhub.io".to_owned()]),
                resources: Some(vec!["vectorcollections/status".to_owned()]),
                verbs: vec!["get".into(), "patch".into()],
                ..PolicyRule::default()
            },
        ]),
    }
}

fn role_binding(vc: &VectorCollection) -> RoleBinding {
    let name = vc.name_any();
    let sa = service_account_name(&name);
    RoleBinding {
        metadata: child_meta(vc, sa.clone(), common::labels(WORKLOAD, &name, "shard")),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: sa.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa,
            namespace: vc.namespace(),
            api_group: None,
        }]),
    }
}

fn service_ports() -> Vec<ServicePort> {
    [("http", HTTP_PORT), ("grpc", GRPC_PORT)]
        .into_iter()
        .map(|(name, number)| ServicePort {
            name: Some(name.to_owned()),
            port: number,
            target_port: Some(IntOrString::String(name.to_owned())),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        })
        .collect()
}

/// The Service clients use: any ready pod of any shard routes the request.
fn client_service(vc: &VectorCollection) -> Service {
    let name = vc.name_any();
    Service {
        metadata: child_meta(vc, name.clone(), common::labels(WORKLOAD, &name, "client")),
        spec: Some(ServiceSpec {
            selector: Some(common::selector_labels(WORKLOAD, &name)),
            ports: Some(service_ports()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Headless Service of one shard; publishes not-ready pods so Raft peers can reach
/// each other before they are ready.
fn shard_service(vc: &VectorCollection, index: i32) -> Service {
    let name = vc.name_any();
    let mut ports = service_ports();
    ports.push(ServicePort {
        name: Some("raft".to_owned()),
        port: RAFT_PORT,
        target_port: Some(IntOrString::String("raft".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    });
    Service {
        metadata: child_meta(vc, shard_name(&name, index), shard_labels(&name, index)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(shard_selector(&name, index)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Command-line arguments of a shard's vectorforge container (the workload contract,
/// [`ShardArgs`], which the vectorforge binary's tests parse).
pub fn args(vc: &VectorCollection, index: i32) -> Vec<String> {
    let spec = &vc.spec;
    ShardArgs {
        collection: vc.name_any(),
        shard: index,
        shards: spec.shards,
        dimension: spec.dimension,
        distance: spec.distance.as_str().to_owned(),
        hnsw_m: spec.hnsw.m,
        hnsw_ef_construct: spec.hnsw.ef_construct,
        hnsw_ef: spec.hnsw.ef,
        quantization: spec.quantization.as_str().to_owned(),
        quantization_quantile: spec.quantization_quantile,
        data_dir: DATA_DIR.to_owned(),
        http_port: HTTP_PORT,
        grpc_port: GRPC_PORT,
        raft_port: RAFT_PORT,
        wal_sync: match spec.durability.wal_sync {
            WalSync::Always => contract::WalSync::Always,
            WalSync::Interval => contract::WalSync::Interval,
        },
        wal_sync_interval: spec
            .durability
            .wal_sync_interval
            .as_ref()
            .map(|i| i.to_string()),
        snapshot_schedule: spec.durability.snapshots.schedule.clone(),
        snapshot_retention: spec.durability.snapshots.retention,
        backup: spec.durability.snapshots.s3.as_ref().map(s3_target),
        restore: spec.restore_from.as_ref().map(|r| contract::RestoreArgs {
            s3: s3_target(&r.s3),
            namespace: r
                .namespace
                .clone()
                .or_else(|| vc.namespace())
                .unwrap_or_else(|| "default".to_owned()),
            collection: r.collection.clone(),
            backup: r.backup.clone(),
        }),
        peer_selector: common::selector_string(&shard_selector(&vc.name_any(), index)),
        payload_indexes: spec
            .payload_indexes
            .iter()
            .map(|idx| (idx.field.clone(), idx.type_.as_str().to_owned()))
            .collect(),
    }
    .to_args()
}

fn s3_target(s3: &S3Location) -> contract::S3Target {
    contract::S3Target {
        endpoint: s3.endpoint.clone(),
        bucket: s3.bucket.clone(),
        prefix: s3.prefix.clone(),
        region: s3.region.clone(),
    }
}

/// `VECTORFORGE_<WHAT>_S3_ACCESS_KEY_ID` / `..._SECRET_ACCESS_KEY` from the bucket's
/// credentials Secret (keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
fn s3_credentials_env(what: &str, s3: &S3Location, env_vars: &mut Vec<EnvVar>) {
    let Some(secret) = &s3.credentials_secret else {
        return;
    };
    for (var, key) in [
        ("ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ] {
        env_vars.push(EnvVar {
            name: format!("VECTORFORGE_{what}_S3_{var}"),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
}

fn container(vc: &VectorCollection, index: i32, images: &Images) -> Container {
    let mut env_vars = downward_api_env();
    env_vars.push(env("RUST_LOG", "info"));
    if let Some(secret) = &vc.spec.api_key_secret_ref {
        env_vars.push(EnvVar {
            name: "VECTORFORGE_API_KEY".to_owned(),
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
    if let Some(s3) = &vc.spec.durability.snapshots.s3 {
        s3_credentials_env("BACKUP", s3, &mut env_vars);
    }
    if let Some(r) = &vc.spec.restore_from {
        s3_credentials_env("RESTORE", &r.s3, &mut env_vars);
    }
    Container {
        name: WORKLOAD.to_owned(),
        image: Some(
            vc.spec
                .image
                .clone()
                .unwrap_or_else(|| images.vectorforge.clone()),
        ),
        image_pull_policy: images.pull_policy.clone(),
        args: Some(args(vc, index)),
        env: Some(env_vars),
        ports: Some(vec![
            port("http", HTTP_PORT),
            port("grpc", GRPC_PORT),
            port("raft", RAFT_PORT),
        ]),
        startup_probe: Some(http_probe("/healthz", "http", 2, 150)),
        liveness_probe: Some(http_probe("/healthz", "http", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", "http", 5, 3)),
        resources: vc.spec.resources.clone(),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: DATA_DIR.to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

fn statefulset(vc: &VectorCollection, index: i32, images: &Images) -> StatefulSet {
    let name = vc.name_any();
    let selector = shard_selector(&name, index);
    let pod_labels = shard_labels(&name, index);
    StatefulSet {
        metadata: child_meta(vc, shard_name(&name, index), pod_labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(vc.spec.replicas),
            service_name: Some(shard_name(&name, index)),
            // Raft members must start together to elect a leader.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(service_account_name(&name)),
                    security_context: Some(restricted_pod_security()),
                    termination_grace_period_seconds: Some(30),
                    affinity: Some(spread_replicas(selector)),
                    containers: vec![container(vc, index, images)],
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: vc.spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            vc.spec.storage.size.clone(),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// Prefer placing the replicas of one shard on different nodes.
fn spread_replicas(selector: BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
#[path = "vector_collection_tests.rs"]
mod tests;
