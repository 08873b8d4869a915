//! What the gateway forwards and returns, against an in-process echo backend (no
//! tinyinfer needed): the W3C trace context and the binary tensor extension's
//! `Inference-Header-Content-Length` reach the backend, the body arrives byte for byte,
//! hop-by-hop headers do not, and a backend 5xx is passed through and counted; SIGTERM
//! lets an in-flight request finish; with auth on, the API key never reaches the backend.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{Gateway, Http, figures, wait_for};
use gateway::policy::{BackendSpec, EndpointSpec, PolicySpec};

/// Set when a request asking for a delay has arrived.
static DELAYED_ARRIVED: AtomicBool = AtomicBool::new(false);

async fn echo(headers: HeaderMap, body: Bytes) -> (StatusCode, axum::Json<serde_json::Value>) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(ms) = h("x-delay-ms").and_then(|v| v.parse().ok()) {
        DELAYED_ARRIVED.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = if h("x-fail").is_some() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let json = serde_json::json!({
        "traceparent": h("traceparent"),
        "header_length": h("inference-header-content-length"),
        "keep_alive": h("keep-alive"),
        "authorization": h("authorization"),
        "api_key": h("api-key"),
        "body_len": body.len(),
        "body_crc": body.iter().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b))),
    });
    (status, axum::Json(json))
}

async fn echo_gateway() -> Gateway {
    echo_gateway_with(PolicySpec::default()).await
}

/// The echo backend behind a gateway whose policy is `base` with the echo backend.
async fn echo_gateway_with(base: PolicySpec) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v2/models/{m}/infer", post(echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let policy = PolicySpec {
        backends: vec![BackendSpec {
            name: "echo".into(),
            service: "echo".into(),
            weight: 100,
            endpoints: vec![EndpointSpec {
                http: Some(addr),
                grpc: None,
            }],
        }],
        ..base
    };
    Gateway::start(&policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_not_forwarded() {
    let gw = echo_gateway_with(PolicySpec {
        api_key: Some(gateway::policy::ApiKey("s3cret".into())),
        ..Default::default()
    })
    .await;
    let http = Http::new();
    let url = gw.url("/v2/models/m/infer");
    for header in [("authorization", "Bearer s3cret"), ("api-key", "s3cret")] {
        let (s, body) = http
            .send(http::Method::POST, &url, &[header], Bytes::new())
            .await
            .unwrap();
        assert_eq!(s, 200, "{header:?}");
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(seen["authorization"].is_null(), "{seen}");
        assert!(seen["api_key"].is_null(), "{seen}");
    }
    // Without auth the gateway leaves Authorization alone (it may be the backend's).
    let open = echo_gateway().await;
    let (_, body) = http
        .send(
            http::Method::POST,
            &open.url("/v2/models/m/infer"),
            &[("authorization", "Bearer other")],
            Bytes::new(),
        )
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["authorization"], "Bearer other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let mut gw = echo_gateway().await;
    let http = Http::new();
    let url = gw.url("/v2/models/m/infer");
    let in_flight = tokio::spawn(async move {
        http.send(
            http::Method::POST,
            &url,
            &[("x-delay-ms", "1000")],
            Bytes::new(),
        )
        .await
    });
    wait_for(
        "the slow request at the backend",
        Duration::from_secs(10),
        || async { DELAYED_ARRIVED.load(Ordering::SeqCst) },
    )
    .await;
    let pid = gw.proc.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, _) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200, "the in-flight request finished");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = gw.proc.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "gateway still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}\n{}", gw.proc.log());
    assert!(
        gw.proc.log().contains("gateway stopped"),
        "{}",
        gw.proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_binary_header_and_body_reach_the_backend() {
    let gw = echo_gateway().await;
    let http = Http::new();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let crc = body
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (s, resp) = http
        .send(
            http::Method::POST,
            &gw.url("/v2/models/m/infer"),
            &[
                ("traceparent", tp),
                ("inference-header-content-length", "42"),
                ("content-type", "application/octet-stream"),
                ("keep-alive", "timeout=5"),
            ],
            body.clone().into(),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["traceparent"], tp);
    assert_eq!(v["header_length"], "42");
    assert_eq!(
        v["keep_alive"],
        serde_json::Value::Null,
        "hop-by-hop headers stay"
    );
    assert_eq!(
        (v["body_len"].as_u64(), v["body_crc"].as_u64()),
        (Some(10_000), Some(crc))
    );

    let (s, _) = http
        .send(
            http::Method::POST,
            &gw.url("/v2/models/m/infer"),
            &[("x-fail", "1")],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(s, 500, "a backend's 5xx reaches the client unchanged");
    wait_for("the 5xx counted", Duration::from_secs(5), || async {
        figures(&gw.stats(&http).await, "echo", "primary") == (2, 1)
    })
    .await;
    let stats = gw.stats(&http).await;
    let echo = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "echo")
        .unwrap();
    assert_eq!(echo["errorRate"], 0.5);
    assert!(
        echo["latencyP99Seconds"].as_f64().is_some_and(|p| p > 0.0),
        "{stats}"
    );
}
