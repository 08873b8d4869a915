//! Children of an `InferenceService`: a StatefulSet of tinyinfer pods, a ClusterIP
//! Service clients call, the headless Service that governs the StatefulSet, and a
//! PodDisruptionBudget allowing one pod down at a time.
//!
//! The model configuration travels to tinyinfer as JSON in `TINYINFER_CONFIG`
//! (see `workloads/tinyinfer/README.md`); `pvc://<claim>/<path>` URIs become files on
//! the claim, mounted read-only at `/mnt/pvc/<claim>`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use modelhub_contract::tinyinfer;

use super::common::{
    self, Images, child_meta, downward_api_env, env, http_probe, port,
    restricted_container_security, restricted_pod_security,
};
use crate::api::{
    ExecutionProvider, GraphOptimizationLevel, InferenceService, InferenceServiceSpec,
    ModelQuantization,
};

/// Workload name (`app.kubernetes.io/name`) of tinyinfer pods.
pub const WORKLOAD: &str = "tinyinfer";
/// Open Inference Protocol REST port (also `/metrics`).
pub const HTTP_PORT: i32 = 8080;
/// Open Inference Protocol gRPC port.
pub const GRPC_PORT: i32 = 8081;
/// Model download cache.
pub const CACHE_DIR: &str = "/models";
/// Where `pvc://` claims are mounted.
pub const PVC_ROOT: &str = "/mnt/pvc";

/// Name of the headless Service governing the StatefulSet.
pub fn headless_name(isvc: &str) -> String {
    format!("{isvc}-headless")
}

/// Everything an InferenceService needs, built from its spec alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service: Service,
    pub headless_service: Service,
    pub statefulset: StatefulSet,
    /// Only with two replicas or more: one replica cannot stay up through a voluntary
    /// disruption, so its budget would protect nothing and cost writes.
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds the children of `isvc`.
pub fn build(isvc: &InferenceService, images: &Images) -> Children {
    let name = isvc.name_any();
    Children {
        service: service(isvc, name.clone(), false),
        headless_service: service(isvc, headless_name(&name), true),
        statefulset: statefulset(isvc, images),
        pdb: (isvc.spec.replicas >= 2).then(|| {
            common::pod_disruption_budget(
                isvc,
                name.clone(),
                common::labels(WORKLOAD, &name, "server"),
                common::selector_labels(WORKLOAD, &name),
                1,
            )
        }),
    }
}

fn service(isvc: &InferenceService, name: String, headless: bool) -> Service {
    let instance = isvc.name_any();
    Service {
        metadata: child_meta(isvc, name, common::labels(WORKLOAD, &instance, "server")),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_owned()),
            selector: Some(common::selector_labels(WORKLOAD, &instance)),
            ports: Some(
                [("http", HTTP_PORT), ("grpc", GRPC_PORT)]
                    .into_iter()
                    .map(|(port_name, number)| ServicePort {
                        name: Some(port_name.to_owned()),
                        port: number,
                        target_port: Some(IntOrString::String(port_name.to_owned())),
                        protocol: Some("TCP".to_owned()),
                        app_protocol: (port_name == "grpc").then(|| "kubernetes.io/h2c".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A `pvc://claim/path` URI split into claim and path.
fn split_pvc_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("pvc://")?.split_once('/')
}

/// The URI tinyinfer reads: `pvc://` rewritten to the claim's mount path.
pub fn resolve_uri(uri: &str) -> String {
    match split_pvc_uri(uri) {
        Some((claim, path)) => format!("file://{PVC_ROOT}/{claim}/{path}"),
        None => uri.to_owned(),
    }
}

/// Claims referenced by the model and tokenizer URIs.
fn claims(spec: &InferenceServiceSpec) -> BTreeSet<String> {
    [
        Some(&spec.model.storage_uri),
        spec.model.tokenizer_uri.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|uri| split_pvc_uri(uri).map(|(claim, _)| claim.to_owned()))
    .collect()
}

/// The tinyinfer model configuration (`TINYINFER_CONFIG`) of the spec, in the contract's
/// types, which tinyinfer parses.
pub fn model_config(spec: &InferenceServiceSpec) -> tinyinfer::FileConfig {
    let runtime = spec.runtime.clone().unwrap_or_default();
    // CEL rules keep thread counts and sizes non-negative; a negative one would mean
    // "let ONNX Runtime choose" (0) rather than a wrap-around.
    let count = |n: Option<i32>| n.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let runtime = tinyinfer::RuntimeOptions {
        graph_optimization: match runtime.graph_optimization_level {
            GraphOptimizationLevel::Disable => tinyinfer::OptLevel::Disable,
            GraphOptimizationLevel::Basic => tinyinfer::OptLevel::Basic,
            GraphOptimizationLevel::Extended => tinyinfer::OptLevel::Extended,
            GraphOptimizationLevel::All => tinyinfer::OptLevel::All,
        },
        execution_provider: match runtime.execution_provider {
            ExecutionProvider::Cpu => tinyinfer::ExecutionProvider::Cpu,
            ExecutionProvider::Cuda => tinyinfer::ExecutionProvider::Cuda,
        },
        intra_op_threads: count(runtime.intra_op_threads),
        inter_op_threads: count(runtime.inter_op_threads),
        quantization: match runtime.quantization {
            ModelQuantization::None => tinyinfer::Quantization::None,
            ModelQuantization::Int8 | ModelQuantization::Int8Dynamic => {
                tinyinfer::Quantization::Int8Dynamic
            }
            // Refused by the CRD's CEL rule before it gets here; the nearest precision built.
            ModelQuantization::Int8Static => tinyinfer::Quantization::Int8Dynamic,
        },
        quantization_exclude: runtime.quantization_exclude.clone(),
        ..tinyinfer::RuntimeOptions::default()
    };
    let batching = match &spec.batching {
        Some(b) => {
            let delay: std::time::Duration = b.max_queue_delay.into();
            tinyinfer::BatchingConfig {
                max_batch_size: count(Some(b.max_batch_size)).max(1),
                max_queue_delay_us: u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
                max_queue_size: count(Some(b.max_queue_size)).max(1),
                ..tinyinfer::BatchingConfig::default()
            }
        }
        // No batching section: requests run one by one.
        None => tinyinfer::BatchingConfig {
            max_batch_size: 1,
            ..tinyinfer::BatchingConfig::default()
        },
    };
    let model = tinyinfer::ModelConfig {
        name: spec.model.name.clone(),
        version: spec.model.version.clone(),
        uri: resolve_uri(&spec.model.storage_uri),
        sha256: spec.model.sha256.clone(),
        runtime,
        batching,
        tokenizer: spec.model.tokenizer_uri.as_deref().map(resolve_uri),
        ..tinyinfer::ModelConfig::new(String::new(), String::new())
    };
    tinyinfer::FileConfig {
        models: vec![model],
    }
}

/// Container resources: the spec's, plus `nvidia.com/gpu` limits when GPUs are asked for.
fn resources(spec: &InferenceServiceSpec) -> Option<ResourceRequirements> {
    let gpus = spec.gpus.filter(|g| *g > 0);
    let mut resources = spec.resources.clone();
    if let Some(gpus) = gpus {
        let r = resources.get_or_insert_with(ResourceRequirements::default);
        r.limits
            .get_or_insert_with(BTreeMap::new)
            .insert("nvidia.com/gpu".to_owned(), Quantity(gpus.to_string()));
    }
    resources
}

fn statefulset(isvc: &InferenceService, images: &Images) -> StatefulSet {
    let name = isvc.name_any();
    let spec = &isvc.spec;
    let labels = common::labels(WORKLOAD, &name, "server");
    let mut mounts = vec![
        VolumeMount {
            name: "model-cache".to_owned(),
            mount_path: CACHE_DIR.to_owned(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "model-cache".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    for (i, claim) in claims(spec).into_iter().enumerate() {
        let volume = format!("pvc-{i}");
        mounts.push(VolumeMount {
            name: volume.clone(),
            mount_path: format!("{PVC_ROOT}/{claim}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: volume,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    let mut env_vars = downward_api_env();
    env_vars.push(env("RUST_LOG", "info"));
    env_vars.push(env(tinyinfer::CONFIG_ENV, model_config(spec).to_json()));
    env_vars.push(env(tinyinfer::CACHE_DIR_ENV, CACHE_DIR));
    let container = Container {
        name: WORKLOAD.to_owned(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| images.tinyinfer.clone()),
        ),
        image_pull_policy: images.pull_policy.clone(),
        args: Some(vec![
            format!("--http-port={HTTP_PORT}"),
            format!("--grpc-port={GRPC_PORT}"),
        ]),
        env: Some(env_vars),
        ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
        // Model downloads and session creation can take minutes.
        startup_probe: Some(http_probe("/v2/health/live", "http", 2, 300)),
        liveness_probe: Some(http_probe("/v2/health/live", "http", 10, 3)),
        readiness_probe: Some(http_probe("/v2/health/ready", "http", 5, 3)),
        resources: resources(spec),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    StatefulSet {
        metadata: child_meta(isvc, name.clone(), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_name(&name)),
            pod_management_policy: Some("Parallel".to_owned()),
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
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod_security()),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "inference_service_tests.rs"]
mod tests;
