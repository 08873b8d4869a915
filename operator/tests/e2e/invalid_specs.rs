//! Bad specs are refused by the API server itself (schema and CEL rules), each with the
//! message the rule gives.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use modelhub_operator::api::{InferenceService, TrafficPolicy, VectorCollection};
use serde_json::{Value, json};

use crate::harness::{client, namespace};

fn resource_of(kind: &str) -> ApiResource {
    use kube::Resource;
    match kind {
        "VectorCollection" => ApiResource::erase::<VectorCollection>(&()),
        "InferenceService" => ApiResource::erase::<InferenceService>(&()),
        "TrafficPolicy" => ApiResource::erase::<TrafficPolicy>(&()),
        other => panic!("unknown kind {other}; {}", VectorCollection::kind(&())),
    }
}

/// Creates (dry run) `kind` named `name` with `spec`; returns the API server's refusal.
async fn refusal(ns: &str, kind: &str, name: &str, spec: Value) -> String {
    let client = client().await;
    let ar = resource_of(kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("object");
    match api
        .create(
            &PostParams {
                dry_run: true,
                field_manager: None,
            },
            &obj,
        )
        .await
    {
        Ok(_) => panic!("{kind} {name} with spec {spec} was accepted"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(err) => panic!("unexpected error {err}"),
    }
}

fn vc(extra: Value) -> Value {
    let mut spec = json!({"dimension": 8, "distance": "Cosine"});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

fn isvc(extra: Value) -> Value {
    let mut spec = json!({"model": {"name": "m", "storageUri": "file:///m.onnx"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn invalid_specs_are_rejected_with_clear_messages() {
    let client = client().await;
    let ns = namespace(&client, "invalid").await;
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "VectorCollection",
            "dim-zero",
            json!({"dimension": 0, "distance": "Cosine"}),
            "should be greater than or equal to 1",
        ),
        (
            "VectorCollection",
            "dim-huge",
            json!({"dimension": 70000, "distance": "Cosine"}),
            "should be less than or equal to 65536",
        ),
        (
            "VectorCollection",
            "bad-distance",
            json!({"dimension": 8, "distance": "Hamming"}),
            "Unsupported value: \"Hamming\"",
        ),
        (
            "VectorCollection",
            "dup-index",
            vc(
                json!({"payloadIndexes": [{"field": "a", "type": "keyword"}, {"field": "a", "type": "integer"}]}),
            ),
            "each field may be indexed only once",
        ),
        (
            "VectorCollection",
            "bad-index-type",
            vc(json!({"payloadIndexes": [{"field": "a", "type": "geo"}]})),
            "Unsupported value: \"geo\"",
        ),
        (
            "VectorCollection",
            "hnsw",
            vc(json!({"hnsw": {"m": 32, "efConstruct": 16}})),
            "hnsw.efConstruct must be at least hnsw.m",
        ),
        (
            "VectorCollection",
            "cron",
            vc(json!({"durability": {"snapshots": {"schedule": "hourly"}}})),
            "5-field cron expression",
        ),
        (
            "VectorCollection",
            "quantized-l1",
            json!({"dimension": 8, "distance": "Manhattan", "quantization": "Int8"}),
            "quantization Int8 and Binary need Cosine, Dot or Euclid",
        ),
        (
            "VectorCollection",
            "quantile-binary",
            vc(json!({"quantization": "Binary", "quantizationQuantile": 0.99})),
            "quantizationQuantile applies to Int8 quantization only",
        ),
        (
            "VectorCollection",
            "quantile-range",
            vc(json!({"quantization": "Int8", "quantizationQuantile": 0.3})),
            "spec.quantizationQuantile",
        ),
        (
            "InferenceService",
            "int8-static",
            isvc(json!({"runtime": {"quantization": "Int8Static"}})),
            "Int8Static (calibrated QDQ) is not implemented yet",
        ),
        (
            "VectorCollection",
            "a-name-that-is-far-too-long-for-a-collection",
            vc(json!({})),
            "metadata.name must be at most 40 characters",
        ),
        (
            "InferenceService",
            "min-max",
            isvc(json!({"replicas": 2, "scaling": {"minReplicas": 5, "maxReplicas": 2}})),
            "scaling.minReplicas must not exceed scaling.maxReplicas",
        ),
        (
            "InferenceService",
            "zero-min",
            isvc(json!({"replicas": 1, "scaling": {"minReplicas": 0, "maxReplicas": 2}})),
            "minReplicas may be 0 only when scaling.scaleToZero is true",
        ),
        (
            "InferenceService",
            "out-of-range",
            isvc(json!({"replicas": 9, "scaling": {"minReplicas": 1, "maxReplicas": 3}})),
            "spec.replicas must lie within",
        ),
        (
            "InferenceService",
            "s3",
            json!({"model": {"name": "m", "storageUri": "s3://bucket/m.onnx"}}),
            "model.storageUri must start with",
        ),
        (
            "InferenceService",
            "cuda",
            isvc(json!({"runtime": {"executionProvider": "CUDA"}})),
            "runtime.executionProvider CUDA needs spec.gpus > 0",
        ),
        (
            "InferenceService",
            "bad-name",
            json!({"model": {"name": "-x", "storageUri": "file:///m.onnx"}}),
            "model.name may contain",
        ),
        (
            "TrafficPolicy",
            "weights-90",
            json!({"backends": [{"name": "a", "service": "a", "weight": 50}, {"name": "b", "service": "b", "weight": 40}]}),
            "backends: weights must sum to 100",
        ),
        (
            "TrafficPolicy",
            "dup-backend",
            json!({"backends": [{"name": "a", "service": "a", "weight": 50}, {"name": "a", "service": "b", "weight": 50}]}),
            "backends: names must be unique",
        ),
        (
            "TrafficPolicy",
            "canary",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}, {"name": "b", "service": "b", "weight": 0}], "rollout": {"canaryBackend": "c", "steps": [{"setWeight": 10}]}}),
            "rollout.canaryBackend must be listed in backends",
        ),
        (
            "TrafficPolicy",
            "step",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}, {"name": "b", "service": "b", "weight": 0}], "rollout": {"canaryBackend": "b", "steps": [{"setWeight": 10, "pause": {"duration": "1m"}}]}}),
            "a rollout step needs exactly one of setWeight, pause or analysis",
        ),
        (
            "TrafficPolicy",
            "rule",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "rules": [{"headers": [{"name": "x", "exact": "1"}], "backend": "zz"}]}),
            "every rule's backend must be listed in backends",
        ),
        (
            "TrafficPolicy",
            "header",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "rules": [{"headers": [{"name": "x", "exact": "1", "prefix": "1"}], "backend": "a"}]}),
            "exactly one of exact, prefix or regex",
        ),
        (
            "TrafficPolicy",
            "mirror",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "mirror": {"backend": "b", "percent": 10}}),
            "mirror.backend must be listed in backends",
        ),
        (
            "TrafficPolicy",
            "rate-zero",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "gateway": {"rateLimit": {"requestsPerSecond": 0.0, "burst": 1}}}),
            "rateLimit.requestsPerSecond must be greater than 0",
        ),
        (
            "TrafficPolicy",
            "rate-negative",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "gateway": {"rateLimit": {"requestsPerSecond": -1.5, "burst": 1}}}),
            "rateLimit.requestsPerSecond must be greater than 0",
        ),
        (
            "TrafficPolicy",
            "burst-zero",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "gateway": {"rateLimit": {"requestsPerSecond": 1.0, "burst": 0}}}),
            "rateLimit.burst",
        ),
        (
            "TrafficPolicy",
            "sticky-header",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "stickyHeader": "x user"}),
            "stickyHeader must be a valid HTTP header name",
        ),
        (
            "TrafficPolicy",
            "client-header",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "gateway": {"rateLimit": {"requestsPerSecond": 1.0, "burst": 1, "clientHeader": "x client"}}}),
            "rateLimit.clientHeader must be a valid HTTP header name",
        ),
        (
            "TrafficPolicy",
            "key-ref",
            json!({"backends": [{"name": "a", "service": "a", "weight": 100}], "gateway": {"apiKeySecretRef": {"name": "s"}}}),
            "apiKeySecretRef.key",
        ),
    ];
    for (kind, name, spec, expected) in cases {
        let message = refusal(&ns, kind, name, spec).await;
        assert!(
            message.contains(expected),
            "{kind} {name}: expected {expected:?} in {message:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn immutable_fields_cannot_change() {
    let client = client().await;
    let ns = namespace(&client, "immutable").await;
    let vcs: Api<VectorCollection> = Api::namespaced(client, &ns);
    let vc: VectorCollection = serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": "VectorCollection",
        "metadata": {"name": "fixed"}, "spec": {"dimension": 8, "distance": "Cosine"}
    }))
    .unwrap();
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create");
    for (patch, expected) in [
        (json!({"spec": {"dimension": 16}}), "dimension is immutable"),
        (
            json!({"spec": {"distance": "Dot"}}),
            "distance is immutable",
        ),
        (
            json!({"spec": {"storage": {"size": "20Gi"}}}),
            "storage is immutable",
        ),
        (
            json!({"spec": {"quantization": "Int8"}}),
            "quantization is immutable",
        ),
        (json!({"spec": {"shards": 2}}), "shards is immutable"),
        (
            json!({"spec": {"restoreFrom": {"s3": {"bucket": "old"}, "collection": "a"}}}),
            "restoreFrom can only be set when the VectorCollection is created",
        ),
    ] {
        let err = vcs
            .patch("fixed", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err("immutable field changed");
        match err {
            kube::Error::Api(status) => {
                assert!(status.message.contains(expected), "{}", status.message)
            }
            other => panic!("unexpected error {other}"),
        }
    }
    // Mutable fields still change.
    vcs.patch(
        "fixed",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"replicas": 3, "durability": {"snapshots": {"retention": 7}}}}),
        ),
    )
    .await
    .expect("replicas and retention are mutable");
}
