//! Admission through the real gateway binary in front of a real tinyinfer backend on
//! loopback: API-key authentication and the per-client token bucket, over REST and
//! gRPC, configured by the static policy file (and `GATEWAY_API_KEY`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Gateway, Http, figures, grpc_infer, infer_json, wait_for};
use gateway::policy::{ApiKey, BackendSpec, PolicySpec, RateLimitSpec};

fn one_backend(b: &Backend) -> PolicySpec {
    PolicySpec {
        backends: vec![BackendSpec {
            name: "stable".into(),
            service: "mlp".into(),
            weight: 100,
            endpoints: vec![b.endpoint()],
        }],
        ..Default::default()
    }
}

fn limit(rps: f64, burst: i64) -> Option<RateLimitSpec> {
    Some(RateLimitSpec {
        requests_per_second: rps,
        burst,
        client_header: Some("x-client".into()),
    })
}

/// One REST inference: status, `Retry-After` (if any), body as JSON.
async fn infer(
    http: &Http,
    gw: &Gateway,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, serde_json::Value) {
    let body = Bytes::from(serde_json::to_vec(&infer_json()).unwrap());
    let headers = [&[("content-type", "application/json")], headers].concat();
    let (s, h, body) = http
        .send_full(
            http::Method::POST,
            &gw.url("/v2/models/mlp/infer"),
            &headers,
            body,
        )
        .await
        .unwrap();
    let retry_after = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (s, retry_after, serde_json::from_slice(&body).unwrap())
}

/// The value of `gateway_refused_total{reason}` on `/metrics`.
async fn refused(http: &Http, gw: &Gateway, reason: &str) -> u64 {
    let (s, body) = http.get(&gw.url("/metrics")).await.unwrap();
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let prefix = format!("gateway_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_key_guards_oip_requests_and_leaves_the_gateways_endpoints_open() {
    let b = Backend::start("1").await;
    let policy = PolicySpec {
        api_key: Some(ApiKey("s3cret".into())),
        ..one_backend(&b)
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();

    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong")][..],
        &[("api-key", "s3cre")][..],
        &[("authorization", "Basic s3cret")][..],
    ] {
        let (s, _, body) = infer(&http, &gw, headers).await;
        assert_eq!(s, 401, "{headers:?}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    for headers in [
        &[("authorization", "Bearer s3cret")][..],
        &[("api-key", "s3cret")][..],
    ] {
        let (s, _, body) = infer(&http, &gw, headers).await;
        assert_eq!(s, 200, "{headers:?}: {body}");
        assert_eq!(body["model_version"], "1");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/stats?window=60s"] {
        let (s, _) = http.get(&gw.url(path)).await.unwrap();
        assert_eq!(s, 200, "{path}");
    }

    let mut client = gw.grpc_client().await;
    for md in [&[][..], &[("authorization", "Bearer wrong")][..]] {
        let status = client.model_infer(grpc_infer(md)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{md:?}");
    }
    let ok = client
        .model_infer(grpc_infer(&[("authorization", "Bearer s3cret")]))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().model_version, "1");
    let ok = client
        .model_infer(grpc_infer(&[("api-key", "s3cret")]))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().model_version, "1");

    assert_eq!(refused(&http, &gw, "unauthenticated").await, 6);
    // Refused requests never reached the backend: only the 4 admitted ones did.
    let stats = gw.stats(&http).await;
    assert_eq!(figures(&stats, "stable", "primary"), (4, 0), "{stats}");

    // The key the operator passes from the Secret works the same way.
    let env_gw =
        Gateway::start_with_env(&one_backend(&b), &[("GATEWAY_API_KEY", "from-env")]).await;
    assert_eq!(infer(&http, &env_gw, &[]).await.0, 401);
    let (s, _, body) = infer(&http, &env_gw, &[("api-key", "from-env")]).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_rate_is_refused_alone_until_its_bucket_refills() {
    let b = Backend::start("1").await;
    // 0.2 tokens a second: a refill takes 5 s, far more than the requests below.
    let policy = PolicySpec {
        rate_limit: limit(0.2, 2),
        ..one_backend(&b)
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let a = [("x-client", "a")];

    for _ in 0..2 {
        let (s, _, body) = infer(&http, &gw, &a).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, retry_after, body) = infer(&http, &gw, &a).await;
    assert_eq!(s, 429, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("rate")),
        "{body}"
    );
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&secs), "Retry-After {secs}");

    // Another client key has its own bucket, over REST and gRPC alike.
    let (s, _, body) = infer(&http, &gw, &[("x-client", "b")]).await;
    assert_eq!(s, 200, "{body}");
    let mut client = gw.grpc_client().await;
    let status = client
        .model_infer(grpc_infer(&[("x-client", "a")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after").is_some());
    for _ in 0..2 {
        client
            .model_infer(grpc_infer(&[("x-client", "c")]))
            .await
            .unwrap();
    }
    let status = client
        .model_infer(grpc_infer(&[("x-client", "c")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);

    let refused_before = refused(&http, &gw, "rate_limited").await;
    assert_eq!(refused_before, 3);
    let stats = gw.stats(&http).await;
    assert_eq!(figures(&stats, "stable", "primary"), (5, 0), "{stats}");

    // Client a gets a token back in at most 5 s.
    wait_for(
        "client a's bucket refills",
        Duration::from_secs(30),
        || async { infer(&http, &gw, &a).await.0 == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_edit_applies_without_restart() {
    let b = Backend::start("1").await;
    let mut policy = one_backend(&b);
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let a = [("x-client", "a")];
    for _ in 0..10 {
        assert_eq!(infer(&http, &gw, &a).await.0, 200);
    }

    // A limit appears: three requests, then nothing for 100 s.
    policy.rate_limit = limit(0.01, 3);
    gw.set_policy(&policy);
    wait_for("the limit loaded", Duration::from_secs(10), || async {
        gw.proc.log().matches("policy reloaded").count() >= 1
    })
    .await;
    for _ in 0..3 {
        assert_eq!(infer(&http, &gw, &a).await.0, 200);
    }
    assert_eq!(infer(&http, &gw, &a).await.0, 429);

    // A much higher rate: the same client's bucket refills at once instead of in 100 s.
    policy.rate_limit = limit(1000.0, 1000);
    gw.set_policy(&policy);
    wait_for("the new rate applies", Duration::from_secs(10), || async {
        infer(&http, &gw, &a).await.0 == 200
    })
    .await;
    assert_eq!(gw.proc.log().matches("policy reloaded").count(), 2);
}
