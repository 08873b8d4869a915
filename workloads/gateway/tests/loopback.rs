//! The gateway binary in front of real tinyinfer backends on loopback: each backend
//! serves `mlp` at its own version, so a response's `model_version` says which backend
//! answered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Gateway, Http, figures, grpc_infer, wait_for};
use futures::StreamExt;
use gateway::policy::{
    BackendSpec, EndpointSpec, HeaderMatchSpec, HeaderRuleSpec, MirrorSpec, PolicySpec,
};

fn backend(name: &str, weight: i32, endpoints: Vec<EndpointSpec>) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        service: name.into(),
        weight,
        endpoints,
    }
}

/// `n` requests, `concurrency` at a time; the count of each answer (version or error).
async fn run(
    gw: &Gateway,
    n: usize,
    concurrency: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let http = Http::new();
    let base = gw.url("");
    let results: Vec<Result<String, String>> = futures::stream::iter(0..n)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            async move { http.infer(&base, headers).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for r in results {
        *counts
            .entry(r.unwrap_or_else(|e| format!("error {e}")))
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_follows_weights_and_header_rules_route_everything() {
    let (v1, v2) = tokio::join!(Backend::start("1"), Backend::start("2"));
    let mut policy = PolicySpec {
        backends: vec![
            backend("stable", 70, vec![v1.endpoint()]),
            backend("canary", 30, vec![v2.endpoint()]),
        ],
        rules: vec![HeaderRuleSpec {
            headers: vec![HeaderMatchSpec {
                name: "x-canary".into(),
                exact: None,
                prefix: None,
                regex: Some("yes|1".into()),
            }],
            backend: "canary".into(),
        }],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    let counts = run(&gw, 5000, 32, &[]).await;
    let share = counts.get("1").copied().unwrap_or(0) as f64 / 5000.0;
    assert_eq!(counts.values().sum::<usize>(), 5000);
    assert!(counts.keys().all(|k| k == "1" || k == "2"), "{counts:?}");
    assert!(
        (share - 0.70).abs() <= 0.03,
        "stable share {share}: {counts:?}"
    );

    let ruled = run(&gw, 300, 16, &[("x-canary", "yes")]).await;
    assert_eq!(ruled.get("2"), Some(&300), "{ruled:?}");

    // gRPC: the same rule by metadata, and the weighted split otherwise.
    let mut client = gw.grpc_client().await;
    for _ in 0..50 {
        let resp = client
            .model_infer(grpc_infer(&[("x-canary", "1")]))
            .await
            .unwrap();
        assert_eq!(resp.into_inner().model_version, "2");
    }
    let ready = client
        .model_ready(oip::grpc::pb::ModelReadyRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);

    // Effective weights from the status replace the spec weights.
    policy.effective_weights = vec![gateway::policy::BackendWeight {
        backend: "canary".into(),
        weight: 100,
    }];
    // Under the old weights a "2" answer proves nothing: wait for the reload itself.
    gw.set_policy(&policy);
    wait_for(
        "effective weights applied",
        Duration::from_secs(10),
        || async { gw.proc.log().contains("policy reloaded") },
    )
    .await;
    let after = run(&gw, 200, 16, &[]).await;
    assert_eq!(after.get("2"), Some(&200), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sticky_keys_stay_on_one_backend() {
    let (v1, v2) = tokio::join!(Backend::start("1"), Backend::start("2"));
    let policy = PolicySpec {
        backends: vec![
            backend("a", 50, vec![v1.endpoint()]),
            backend("b", 50, vec![v2.endpoint()]),
        ],
        sticky_header: Some("x-user".into()),
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let base = gw.url("");
    let mut seen = HashMap::new();
    for user in 0..40 {
        let key = format!("user-{user}");
        let mut versions = Vec::new();
        for _ in 0..8 {
            versions.push(http.infer(&base, &[("x-user", &key)]).await.unwrap());
        }
        assert!(
            versions.iter().all(|v| *v == versions[0]),
            "{key}: {versions:?}"
        );
        *seen.entry(versions[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "keys spread over both backends: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_gets_its_share_and_its_failures_never_reach_the_client() {
    let (v1, v3) = tokio::join!(Backend::start("1"), Backend::start("3"));
    let dead = EndpointSpec {
        http: Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            common::free_port(),
        ))),
        grpc: None,
    };
    let mut policy = PolicySpec {
        backends: vec![
            backend("main", 100, vec![v1.endpoint()]),
            backend("shadow", 0, vec![v3.endpoint()]),
            backend("dead", 0, vec![dead]),
        ],
        mirror: Some(MirrorSpec {
            backend: "shadow".into(),
            percent: 30,
        }),
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let counts = run(&gw, 1000, 8, &[]).await;
    assert_eq!(
        counts.get("1"),
        Some(&1000),
        "the client only sees the primary: {counts:?}"
    );
    wait_for(
        "mirror copies answered",
        Duration::from_secs(20),
        || async {
            let s = gw.stats(&http).await;
            let (r, _) = figures(&s, "shadow", "mirror");
            r + s["mirrorDropped"].as_u64().unwrap_or(0) >= 200
        },
    )
    .await;
    let s = gw.stats(&http).await;
    let (mirrored, errors) = figures(&s, "shadow", "mirror");
    let dropped = s["mirrorDropped"].as_u64().unwrap_or(0);
    assert!((230..=370).contains(&(mirrored + dropped)), "{s}");
    assert_eq!(errors, 0, "{s}");
    assert_eq!(figures(&s, "main", "primary"), (1000, 0), "{s}");

    // A mirror that cannot be reached: the client still sees only successes.
    policy.mirror = Some(MirrorSpec {
        backend: "dead".into(),
        percent: 100,
    });
    gw.set_policy(&policy);
    wait_for(
        "mirror moved to the dead backend",
        Duration::from_secs(10),
        || async {
            let _ = http.infer(&gw.url(""), &[]).await;
            figures(&gw.stats(&http).await, "dead", "mirror").1 > 0
        },
    )
    .await;
    let counts = run(&gw, 200, 8, &[]).await;
    assert_eq!(counts.get("1"), Some(&200), "{counts:?}");
}

/// Sends 3,000 calls 16 at a time, SIGKILLs `victim` (one of the backend's two pods)
/// after 500 have finished, and checks that at most the calls in flight failed and that
/// 200 calls afterwards all reach the survivor (backend version "1").
async fn a_pod_killed_mid_run<F, Fut>(victim: &mut Backend, call: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send,
{
    const CONCURRENCY: usize = 16;
    let calls = |n: usize, done: Arc<AtomicUsize>| {
        let call = call.clone();
        async move {
            futures::stream::iter(0..n)
                .map(|_| {
                    let (call, done) = (call.clone(), Arc::clone(&done));
                    async move {
                        let r = call().await;
                        done.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        }
    };
    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(calls(3000, Arc::clone(&done)));
    wait_for("load under way", Duration::from_secs(60), || async {
        done.load(Ordering::Relaxed) >= 500
    })
    .await;
    victim.proc.kill();
    let at_kill = done.load(Ordering::Relaxed);
    let results = load.await.unwrap();
    assert!(
        at_kill < 2500,
        "the kill came too late to matter ({at_kill} done)"
    );
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.len() <= CONCURRENCY,
        "{} errors: {errors:?}",
        errors.len()
    );
    // After the kill everything goes to the survivor.
    let after = calls(200, Arc::new(AtomicUsize::new(0))).await;
    let ok = after.iter().filter(|r| r.as_deref() == Ok("1")).count();
    assert_eq!(ok, 200, "{:?}", after.iter().find(|r| r.is_err()));
}

/// A gateway in front of one backend with two pods (both version "1").
async fn two_pod_gateway() -> (Backend, Backend, Gateway) {
    let (p1, p2) = tokio::join!(Backend::start("1"), Backend::start("1"));
    let policy = PolicySpec {
        backends: vec![backend("a", 100, vec![p1.endpoint(), p2.endpoint()])],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    (p1, p2, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pod_costs_at_most_its_in_flight_requests() {
    let (p1, mut p2, gw) = two_pod_gateway().await;
    let (http, base) = (Http::new(), gw.url(""));
    a_pod_killed_mid_run(&mut p2, move || {
        let (http, base) = (http.clone(), base.clone());
        async move { http.infer(&base, &[]).await }
    })
    .await;
    drop(p1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pod_costs_at_most_its_in_flight_grpc_calls() {
    let (p1, mut p2, gw) = two_pod_gateway().await;
    let client = gw.grpc_client().await;
    a_pod_killed_mid_run(&mut p2, move || {
        let mut client = client.clone();
        async move {
            client
                .model_infer(grpc_infer(&[]))
                .await
                .map(|a| a.into_inner().model_version)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
    })
    .await;
    drop(p1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_edits_apply_without_restart() {
    let (v1, v2) = tokio::join!(Backend::start("1"), Backend::start("2"));
    let mut policy = PolicySpec {
        backends: vec![
            backend("a", 100, vec![v1.endpoint()]),
            backend("b", 0, vec![v2.endpoint()]),
        ],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    assert_eq!(run(&gw, 100, 8, &[]).await.get("1"), Some(&100));
    let pid = gw.proc.child.id();
    policy.backends[0].weight = 0;
    policy.backends[1].weight = 100;
    gw.set_policy(&policy);
    let http = Http::new();
    let base = gw.url("");
    wait_for("new weights", Duration::from_secs(10), || async {
        http.infer(&base, &[]).await.is_ok_and(|v| v == "2")
    })
    .await;
    assert_eq!(run(&gw, 100, 8, &[]).await.get("2"), Some(&100));
    // An invalid edit is refused and the last good policy stays.
    std::fs::write(&gw.policy_path, b"{\"backends\": [}").unwrap();
    wait_for(
        "the bad edit read and refused",
        Duration::from_secs(10),
        || async { gw.proc.log().contains("policy edit rejected") },
    )
    .await;
    assert_eq!(run(&gw, 50, 8, &[]).await.get("2"), Some(&50));
    assert_eq!(gw.proc.child.id(), pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_protocol_error_bodies() {
    let v1 = Backend::start("1").await;
    let policy = PolicySpec {
        backends: vec![
            backend("a", 100, vec![v1.endpoint()]),
            backend("empty", 0, vec![]),
        ],
        rules: vec![HeaderRuleSpec {
            headers: vec![HeaderMatchSpec {
                name: "x-empty".into(),
                exact: Some("1".into()),
                prefix: None,
                regex: None,
            }],
            backend: "empty".into(),
        }],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let error_of = |body: &bytes::Bytes| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["error"].as_str().unwrap_or_default().to_owned()
    };
    let infer = gw.url("/v2/models/mlp/infer");
    for body in [
        &b"not json"[..],
        b"{\"inputs\": 3}",
        b"{\"inputs\": [{\"name\": \"input\"}]}",
    ] {
        let (s, b) = http
            .send(http::Method::POST, &infer, &[], body.to_vec().into())
            .await
            .unwrap();
        assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
        assert!(!error_of(&b).is_empty());
    }
    let (s, b) = http.get(&gw.url("/nope")).await.unwrap();
    assert_eq!((s, error_of(&b).contains("no route")), (404, true));
    let (s, b) = http.get(&gw.url("/stats?window=forever")).await.unwrap();
    assert_eq!((s, error_of(&b).contains("invalid window")), (400, true));
    let (s, b) = http
        .send(
            http::Method::POST,
            &infer,
            &[("x-empty", "1")],
            common::infer_json().to_string().into(),
        )
        .await
        .unwrap();
    assert_eq!(s, 503);
    assert!(error_of(&b).contains("no ready pod"), "{}", error_of(&b));
    let mut client = gw.grpc_client().await;
    let status = client
        .model_infer(grpc_infer(&[("x-empty", "1")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("no ready pod"), "{status:?}");
    // The backend's own errors pass through unchanged.
    let status = client
        .model_metadata(oip::grpc::pb::ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    // Metadata and health go through too, and the gateway is still up.
    let (s, _) = http
        .get(&gw.url("/v2/models/mlp/versions/1"))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = http.get(&gw.url("/v2/health/ready")).await.unwrap();
    assert_eq!(s, 200);
    let (s, m) = http.get(&gw.url("/metrics")).await.unwrap();
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&m).contains("gateway_no_backend_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_connections_are_retried_on_another_pod() {
    let v1 = Backend::start("1").await;
    // Two dead pods, one per protocol: a refused pod is passed over for a while on both
    // ports, and each protocol's retry must be exercised on its own.
    let dead_port = || {
        Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            common::free_port(),
        )))
    };
    let dead_rest = EndpointSpec {
        http: dead_port(),
        grpc: None,
    };
    let dead_grpc = EndpointSpec {
        http: None,
        grpc: dead_port(),
    };
    let policy = PolicySpec {
        backends: vec![backend("a", 100, vec![dead_rest, dead_grpc, v1.endpoint()])],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    // Sequential requests: an idle dead pod is as "least loaded" as the live one, so the
    // first requests try it, are refused, and must be retried, not failed.
    let http = Http::new();
    for _ in 0..20 {
        assert_eq!(http.infer(&gw.url(""), &[]).await.unwrap(), "1");
    }
    let mut client = gw.grpc_client().await;
    for _ in 0..20 {
        let resp = client.model_infer(grpc_infer(&[])).await.unwrap();
        assert_eq!(resp.into_inner().model_version, "1");
    }
    let (_, m) = http.get(&gw.url("/metrics")).await.unwrap();
    let m = String::from_utf8_lossy(&m);
    for proto in ["rest", "grpc"] {
        let line = format!(
            r#"gateway_request_errors_total{{backend="a",kind="connect",protocol="{proto}",role="primary"}}"#
        );
        assert!(
            m.contains(&line),
            "{proto}: the dead pod was never tried:\n{m}"
        );
    }
}
