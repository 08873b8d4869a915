//! Tests of the TrafficPolicy + EndpointSlice translation, with objects built in code.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::json;

use super::*;

fn tp(status: serde_json::Value, sticky_header: Option<&str>) -> DynamicObject {
    let mut obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "chat", "namespace": "ns"},
        "spec": {
            "backends": [
                {"name": "stable", "service": "isvc-v1", "weight": 90},
                {"name": "canary", "service": "isvc-v2", "weight": 10}
            ],
            "rules": [{"headers": [{"name": "x-canary", "exact": "1"}], "backend": "canary"}],
            "mirror": {"backend": "canary", "percent": 5},
            "gateway": {"replicas": 2},
            "rollout": {"canaryBackend": "canary", "steps": [{"setWeight": 20}]}
        },
        "status": status
    }))
    .unwrap();
    if let Some(header) = sticky_header {
        obj.data["spec"]["stickyHeader"] = json!(header);
    }
    obj
}

fn slice(
    name: &str,
    service: &str,
    ports: &[(&str, i32)],
    eps: &[(&str, Option<bool>)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: (!n.is_empty()).then(|| (*n).to_owned()),
                    port: Some(*p),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: eps
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![(*ip).into()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn policy_and_ready_endpoints_become_the_routing_spec() {
    let v1 = slice(
        "isvc-v1-abc",
        "isvc-v1",
        &[("http", 9000), ("grpc", 9001)],
        &[
            ("10.244.0.5", Some(true)),
            ("10.244.0.6", Some(false)),
            ("10.244.0.7", None),
        ],
    );
    // Unnamed ports fall back to the contract's numbers.
    let v2 = slice(
        "isvc-v2-x",
        "isvc-v2",
        &[("", 8080), ("", 8081)],
        &[("10.244.1.2", Some(true))],
    );
    let other = slice(
        "other",
        "unrelated",
        &[("http", 80)],
        &[("10.0.0.1", Some(true))],
    );
    let obj = tp(serde_json::Value::Null, Some("x-user"));
    let spec = translate(&obj, &[&v1, &v2, &other]).unwrap();
    assert_eq!(spec.backends[0].name, "stable");
    assert_eq!(
        spec.backends[0].endpoints,
        [
            EndpointSpec {
                http: addr("10.244.0.5:9000"),
                grpc: addr("10.244.0.5:9001")
            },
            EndpointSpec {
                http: addr("10.244.0.7:9000"),
                grpc: addr("10.244.0.7:9001")
            },
        ],
        "not-ready endpoints are left out; unknown readiness counts as ready"
    );
    assert_eq!(
        spec.backends[1].endpoints,
        [EndpointSpec {
            http: addr("10.244.1.2:8080"),
            grpc: addr("10.244.1.2:8081")
        }]
    );
    assert_eq!(spec.sticky_header.as_deref(), Some("x-user"));
    assert!(spec.effective_weights.is_empty());
    let policy = Policy::compile(&spec).unwrap();
    assert_eq!(policy.mirror, Some((1, 5)));
    assert_eq!(policy.rules[0].backend, 1);
    assert_eq!(
        policy.backends[1].weight, 10,
        "spec weights until the status has any"
    );
}

#[test]
fn effective_weights_from_the_status_win() {
    let obj = tp(
        json!({"phase": "Progressing", "effectiveWeights": [
            {"backend": "stable", "weight": 80}, {"backend": "canary", "weight": 20}]}),
        None,
    );
    let policy = Policy::compile(&translate(&obj, &[]).unwrap()).unwrap();
    assert_eq!(
        policy.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [80, 20]
    );
    assert!(policy.backends.iter().all(|b| b.endpoints.is_empty()));
    assert!(policy.sticky_header.is_none());
}

#[test]
fn a_policy_without_backends_is_a_shape_error() {
    let mut obj = tp(serde_json::Value::Null, None);
    obj.data["spec"] = json!({"rules": []});
    assert!(matches!(
        translate(&obj, &[]),
        Err(KubeSourceError::Shape(_))
    ));
}

#[test]
fn the_gateway_rate_limit_is_read_from_the_spec() {
    let mut obj = tp(json!(null), None);
    assert_eq!(translate(&obj, &[]).unwrap().rate_limit, None);
    obj.data["spec"]["gateway"] = json!({"replicas": 2, "apiKeySecretRef": {"name": "s", "key": "k"},
        "rateLimit": {"requestsPerSecond": 2.5, "burst": 5, "clientHeader": "x-user"}});
    let spec = translate(&obj, &[]).unwrap();
    assert_eq!(
        spec.rate_limit,
        Some(RateLimitSpec {
            requests_per_second: 2.5,
            burst: 5,
            client_header: Some("x-user".into()),
        })
    );
    // The key itself is never in the object: it comes from GATEWAY_API_KEY.
    assert_eq!(spec.api_key, None);
}
