//! InferenceService `runtime.quantization` end to end: tinyinfer pods run by the node
//! agent quantize their model at load (the Rust INT8 dynamic pass) and serve it.
//!
//! - `Int8Dynamic` on an FP32 MLP: Ready, answers infer close to the FP32 service on the
//!   same input, and its `/metrics` say the served precision is `int8-dynamic`.
//! - `Int8Dynamic` on a model with nothing to quantize (a Gather lookup): the pod stays
//!   not Ready without restarting, and its repository index says why.
//!
//! Ignored by a plain `cargo test`: `make test-e2e` runs them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use modelhub_e2e::claims::{env_dir, seed_claim};
use modelhub_e2e::cluster::{TestNs, client, wait_for, wait_ready};
use modelhub_e2e::load::{http_client, post};
use modelhub_operator::api::InferenceService;
use serde_json::json;

fn isvc(name: &str, model: &str, file: &str, quantization: &str) -> InferenceService {
    serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model, "version": "1", "storageUri": format!("pvc://models/{file}")},
            "runtime": {"intraOpThreads": 1, "quantization": quantization},
            "replicas": 1,
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
        }
    }))
    .expect("inference service")
}

async fn pod_ip(pods: &Api<Pod>, name: &str) -> String {
    wait_for(&format!("an address for {name}"), || async {
        pods.get(name).await.ok()?.status?.pod_ip
    })
    .await
}

async fn get(url: &str) -> Option<String> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let resp = client.get(url.parse().ok()?).await.ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?;
    String::from_utf8(body.to_bytes().to_vec()).ok()
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn int8_dynamic_serves_the_quantized_model_or_says_why_it_cannot() {
    let client = client().await;
    let ns = TestNs::create(&client, "int8").await;
    let ns = ns.name.as_str();
    let models = env_dir("TINYINFER_MODELS_DIR");
    let (mlp, lookup) = (models.join("mlp.onnx"), models.join("lookup.onnx"));
    let files: [(&Path, &str); 2] = [(&mlp, "mlp/mlp.onnx"), (&lookup, "lookup/lookup.onnx")];
    seed_claim(&client, ns, "models", &files).await;
    let api: Api<InferenceService> = Api::namespaced(client.clone(), ns);
    for spec in [
        isvc("mlp-fp32", "mlp", "mlp/mlp.onnx", "None"),
        isvc("mlp-int8", "mlp", "mlp/mlp.onnx", "Int8Dynamic"),
        isvc("lookup-int8", "lookup", "lookup/lookup.onnx", "Int8Dynamic"),
    ] {
        api.create(&PostParams::default(), &spec)
            .await
            .expect("create inference service");
    }
    wait_ready(&api, "mlp-fp32").await;
    wait_ready(&api, "mlp-int8").await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (fp32, int8) = (
        pod_ip(&pods, "mlp-fp32-0").await,
        pod_ip(&pods, "mlp-int8-0").await,
    );
    let input: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 4.0).collect();
    let body =
        json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": input}]});
    let http = http_client();
    let mut outputs = Vec::new();
    for ip in [&fp32, &int8] {
        let (status, answer) = post(
            &http,
            &format!("http://{ip}:8080/v2/models/mlp/infer"),
            body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{ip}: {}", String::from_utf8_lossy(&answer));
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("OIP JSON");
        let data: Vec<f64> = v["outputs"][0]["data"]
            .as_array()
            .expect("output data")
            .iter()
            .filter_map(|x| x.as_f64())
            .collect();
        assert_eq!(data.len(), 8, "{v}");
        outputs.push(data);
    }
    let scale = outputs[0]
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(1e-6);
    let worst = outputs[0]
        .iter()
        .zip(&outputs[1])
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0f64, f64::max);
    assert!(
        worst < 0.05,
        "INT8 vs FP32 relative error {worst}: {outputs:?}"
    );
    let metrics = get(&format!("http://{int8}:8080/metrics"))
        .await
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tinyinfer_model_precision{")
                && l.contains("precision=\"int8-dynamic\"")
                && l.ends_with(" 1")),
        "precision gauge in {int8}/metrics"
    );

    // Nothing to quantize: not Ready, not restarting, the reason in the repository index.
    let ip = pod_ip(&pods, "lookup-int8-0").await;
    let index = wait_for(
        "lookup-int8's repository index to give the reason",
        || async {
            let (status, answer) = post(
                &http,
                &format!("http://{ip}:8080/v2/repository/index"),
                "{}".into(),
            )
            .await;
            let text = String::from_utf8_lossy(&answer).into_owned();
            (status == 200 && text.contains("UNAVAILABLE")).then_some(text)
        },
    )
    .await;
    assert!(index.contains("nothing to quantize"), "index: {index}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = pods.get("lookup-int8-0").await.expect("pod");
    let status = pod.status.expect("pod status");
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let restarts: i32 = status
        .container_statuses
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum();
    assert!(
        !ready && restarts == 0,
        "lookup-int8-0 ready={ready} restarts={restarts}"
    );
}
