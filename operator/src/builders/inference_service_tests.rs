use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::builders::test_support::{spec, stored_meta};

fn isvc(spec_json: serde_json::Value) -> InferenceService {
    let mut isvc = InferenceService::new("mlp", spec(spec_json));
    isvc.metadata = stored_meta("mlp");
    isvc
}

fn container(children: &Children) -> &Container {
    &children
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The one model of `TINYINFER_CONFIG`, parsed and validated as tinyinfer does.
fn config_env(children: &Children) -> tinyinfer::ModelConfig {
    let env = container(children).env.as_ref().unwrap();
    let raw = env
        .iter()
        .find(|e| e.name == "TINYINFER_CONFIG")
        .unwrap()
        .value
        .clone()
        .unwrap();
    let mut config = tinyinfer::FileConfig::load(&raw).expect("tinyinfer accepts the config");
    assert_eq!(config.models.len(), 1);
    config.models.remove(0)
}

#[test]
fn a_single_replica_gets_no_disruption_budget() {
    let children = build(
        &isvc(
            json!({"model": {"name": "mlp", "storageUri": "file:///models/mlp.onnx"}, "replicas": 1}),
        ),
        &Images::default(),
    );
    assert!(children.pdb.is_none());
}

#[test]
fn statefulset_service_and_pdb() {
    let children = build(
        &isvc(
            json!({"model": {"name": "mlp", "storageUri": "file:///models/mlp.onnx"}, "replicas": 3}),
        ),
        &Images::default(),
    );
    let sts = children.statefulset.spec.as_ref().unwrap();
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(sts.service_name.as_deref(), Some("mlp-headless"));
    assert_eq!(children.service.metadata.name.as_deref(), Some("mlp"));
    assert_eq!(children.service.spec.as_ref().unwrap().cluster_ip, None);
    assert_eq!(
        children
            .headless_service
            .spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
    assert_eq!(
        children
            .pdb
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .max_unavailable,
        Some(IntOrString::Int(1))
    );
    let c = container(&children);
    let ports: Vec<_> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [8080, 8081]);
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/v2/health/ready")
    );
}

#[test]
fn model_config_carries_runtime_and_batching() {
    let children = build(
        &isvc(json!({
            "model": {"name": "bert", "version": "2", "storageUri": "https://models.example/bert.onnx",
                      "sha256": "ab".repeat(32)},
            "runtime": {"graphOptimizationLevel": "Basic", "intraOpThreads": 4, "executionProvider": "CPU"},
            "batching": {"maxBatchSize": 16, "maxQueueDelay": "3ms", "maxQueueSize": 100}
        })),
        &Images::default(),
    );
    let cfg = config_env(&children);
    assert_eq!((cfg.name.as_str(), cfg.version.as_str()), ("bert", "2"));
    assert_eq!(cfg.uri, "https://models.example/bert.onnx");
    assert_eq!(cfg.sha256, Some("ab".repeat(32)));
    assert_eq!(cfg.runtime.graph_optimization, tinyinfer::OptLevel::Basic);
    assert_eq!(
        cfg.runtime.execution_provider,
        tinyinfer::ExecutionProvider::Cpu
    );
    assert_eq!(
        (cfg.runtime.intra_op_threads, cfg.runtime.inter_op_threads),
        (4, 0)
    );
    assert_eq!(cfg.batching.max_batch_size, 16);
    assert_eq!(cfg.batching.max_queue_delay_us, 3000);
    assert_eq!(cfg.batching.max_queue_size, 100);
    assert_eq!(cfg.tokenizer, None);
}

#[test]
fn quantization_reaches_tinyinfer() {
    let config = |runtime: serde_json::Value| {
        config_env(&build(
            &isvc(
                json!({"model": {"name": "m", "storageUri": "file:///m.onnx"}, "runtime": runtime}),
            ),
            &Images::default(),
        ))
        .runtime
    };
    let none = config(json!({}));
    assert_eq!(none.quantization, tinyinfer::Quantization::None);
    assert!(none.quantization_exclude.is_empty());
    let dynamic =
        config(json!({"quantization": "Int8Dynamic", "quantizationExclude": ["lm_head", "Gemm"]}));
    assert_eq!(dynamic.quantization, tinyinfer::Quantization::Int8Dynamic);
    assert_eq!(
        dynamic.quantization_exclude,
        vec!["lm_head".to_owned(), "Gemm".to_owned()]
    );
    // The name older manifests used means the same.
    let legacy = config(json!({"quantization": "Int8"}));
    assert_eq!(legacy.quantization, tinyinfer::Quantization::Int8Dynamic);
}

#[test]
fn no_batching_section_means_unbatched() {
    let children = build(
        &isvc(json!({"model": {"name": "m", "storageUri": "file:///m.onnx"}})),
        &Images::default(),
    );
    assert_eq!(config_env(&children).batching.max_batch_size, 1);
}

#[test]
fn pvc_uris_mount_the_claim_read_only() {
    let children = build(
        &isvc(
            json!({"model": {"name": "e5", "storageUri": "pvc://models/e5/model.onnx",
                               "tokenizerUri": "pvc://models/e5/tokenizer.json"}}),
        ),
        &Images::default(),
    );
    let cfg = config_env(&children);
    assert_eq!(cfg.uri, "file:///mnt/pvc/models/e5/model.onnx");
    assert_eq!(
        cfg.tokenizer.as_deref(),
        Some("file:///mnt/pvc/models/e5/tokenizer.json")
    );
    let pod = children
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let claims: Vec<_> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| (c.claim_name.as_str(), c.read_only))
        .collect();
    assert_eq!(claims, [("models", Some(true))]);
    let mount = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/mnt/pvc/models")
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
}

#[test]
fn gpus_become_nvidia_limits() {
    let children = build(
        &isvc(
            json!({"model": {"name": "m", "storageUri": "file:///m.onnx"},
                     "runtime": {"executionProvider": "CUDA"}, "gpus": 2}),
        ),
        &Images::default(),
    );
    let limits = container(&children)
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "2");
    assert_eq!(
        config_env(&children).runtime.execution_provider,
        tinyinfer::ExecutionProvider::Cuda
    );
}

#[test]
fn inference_pods_get_no_api_token() {
    let children = build(
        &isvc(json!({"model": {"name": "m", "storageUri": "file:///m.onnx"}})),
        &Images::default(),
    );
    let pod = children
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
}
