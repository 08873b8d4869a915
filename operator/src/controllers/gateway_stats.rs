//! Reading the gateways' windowed per-backend figures for the rollout's canary
//! analysis: `GET http://<podIP>:8080/stats?window=<N>s` on every Ready gateway pod of
//! a TrafficPolicy, summed per backend (requests, errors; the highest p99). Behind the
//! [`FigureSource`] trait so that the controller logic can be tested with figures built
//! in code. Any pod that cannot be read fails the whole read: partial sums would make
//! the canary look healthier or sicker than it is.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;

use crate::api::BackendObservation;
use crate::builders::common::selector_labels;
use crate::builders::traffic_policy::{HTTP_PORT, WORKLOAD};

/// Longest wait for one gateway's answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/stats` body accepted.
const MAX_BODY: usize = 1 << 20;

/// Why the gateways' figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot list the gateway pods: {0}")]
    ListPods(#[source] kube::Error),
    #[error("no Ready gateway pod")]
    NoReadyPod,
    #[error("gateway pod {pod}: {reason}")]
    Pod { pod: String, reason: String },
}

/// Where the canary analysis gets its figures.
pub trait FigureSource: Send + Sync {
    /// Per-backend figures of the last `window` across all gateway pods of the
    /// TrafficPolicy `policy` in `namespace`.
    fn figures<'a>(
        &'a self,
        namespace: &'a str,
        policy: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<Vec<BackendObservation>, StatsError>>;
}

/// The real source: the gateway pods' `/stats` endpoint, over plain HTTP.
pub struct GatewayStats {
    kube: kube::Client,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    /// The gateways' HTTP port (another one only in tests).
    port: i32,
}

impl GatewayStats {
    pub fn new(kube: kube::Client) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        Self {
            kube,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            port: HTTP_PORT,
        }
    }

    async fn read(
        &self,
        namespace: &str,
        policy: &str,
        window: Duration,
    ) -> Result<Vec<BackendObservation>, StatsError> {
        let selector = selector_labels(WORKLOAD, policy)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(self.kube.clone(), namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(StatsError::ListPods)?;
        let targets: Vec<(String, String)> = pods.items.iter().filter_map(ready_ip).collect();
        if targets.is_empty() {
            return Err(StatsError::NoReadyPod);
        }
        let reads = targets
            .iter()
            .map(|(pod, ip)| self.read_pod(pod, ip, window));
        let reports = futures::future::try_join_all(reads).await?;
        Ok(sum(&reports))
    }

    async fn read_pod(&self, pod: &str, ip: &str, window: Duration) -> Result<Report, StatsError> {
        let fail = |reason: String| StatsError::Pod {
            pod: pod.to_owned(),
            reason,
        };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        let uri: http::Uri = format!(
            "http://{host}:{}/stats?window={}s",
            self.port,
            window.as_secs().max(1)
        )
        .parse()
        .map_err(|e| fail(format!("bad address: {e}")))?;
        let body = tokio::time::timeout(TIMEOUT, async {
            let resp = self
                .http
                .get(uri)
                .await
                .map_err(|e| fail(format!("request failed: {e}")))?;
            if !resp.status().is_success() {
                return Err(fail(format!("answered {}", resp.status())));
            }
            Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| fail(format!("cannot read the body: {e}")))
        })
        .await
        .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))??;
        parse(&body).map_err(|e| fail(format!("malformed /stats answer: {e}")))
    }
}

impl FigureSource for GatewayStats {
    fn figures<'a>(
        &'a self,
        namespace: &'a str,
        policy: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<Vec<BackendObservation>, StatsError>> {
        Box::pin(self.read(namespace, policy, window))
    }
}

/// Name and IP of a pod that is Ready.
fn ready_ip(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    ready.then(|| (pod.metadata.name.clone().unwrap_or_default(), ip))
}

/// The part of the gateway's `/stats` answer the analysis uses.
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    backends: Vec<Figure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Figure {
    name: String,
    /// `primary` or `mirror`; mirror copies are not what the clients saw.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    requests: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    latency_p99_seconds: Option<f64>,
}

fn parse(body: &[u8]) -> Result<Report, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Requests and errors summed per backend over all pods, the highest p99; primary
/// traffic only.
fn sum(reports: &[Report]) -> Vec<BackendObservation> {
    let mut by_name: BTreeMap<&str, BackendObservation> = BTreeMap::new();
    for f in reports.iter().flat_map(|r| &r.backends) {
        if f.role.as_deref().is_some_and(|r| r != "primary") {
            continue;
        }
        let o = by_name
            .entry(&f.name)
            .or_insert_with(|| BackendObservation {
                name: f.name.clone(),
                ..Default::default()
            });
        o.requests = o
            .requests
            .saturating_add(i64::try_from(f.requests).unwrap_or(i64::MAX));
        o.errors = o
            .errors
            .saturating_add(i64::try_from(f.errors).unwrap_or(i64::MAX));
        if let Some(p99) = f.latency_p99_seconds.filter(|p| p.is_finite()) {
            o.latency_p99_seconds = Some(o.latency_p99_seconds.map_or(p99, |m| m.max(p99)));
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    use super::*;

    #[test]
    fn figures_are_summed_across_pods_with_the_highest_p99_and_no_mirror() {
        let a = parse(
            br#"{"windowSeconds": 30, "mirrorDropped": 0, "backends": [
            {"name": "stable", "role": "primary", "requests": 90, "errors": 1, "errorRate": 0.011,
             "latencyP50Seconds": 0.01, "latencyP99Seconds": 0.05},
            {"name": "canary", "role": "primary", "requests": 10, "errors": 2, "errorRate": 0.2,
             "latencyP50Seconds": 0.02, "latencyP99Seconds": 0.30},
            {"name": "canary", "role": "mirror", "requests": 500, "errors": 400, "errorRate": 0.8,
             "latencyP50Seconds": 1.0, "latencyP99Seconds": 9.0}]}"#,
        )
        .unwrap();
        let b = parse(
            br#"{"windowSeconds": 30, "mirrorDropped": 0, "backends": [
            {"name": "canary", "role": "primary", "requests": 30, "errors": 0, "errorRate": 0.0,
             "latencyP50Seconds": null, "latencyP99Seconds": 0.10}]}"#,
        )
        .unwrap();
        let sums = sum(&[a, b]);
        assert_eq!(
            sums,
            [
                BackendObservation {
                    name: "canary".into(),
                    requests: 40,
                    errors: 2,
                    latency_p99_seconds: Some(0.30)
                },
                BackendObservation {
                    name: "stable".into(),
                    requests: 90,
                    errors: 1,
                    latency_p99_seconds: Some(0.05)
                },
            ]
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        assert!(parse(b"<html>oops</html>").is_err());
        assert!(parse(br#"{"backends": [{"requests": 3}]}"#).is_err());
        assert!(sum(&[parse(b"{}").unwrap()]).is_empty());
    }

    fn pod(ready: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("gw-1".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_pods_with_an_address_are_read() {
        assert_eq!(
            ready_ip(&pod("True", Some("10.0.0.7"))),
            Some(("gw-1".into(), "10.0.0.7".into()))
        );
        assert_eq!(ready_ip(&pod("False", Some("10.0.0.7"))), None);
        assert_eq!(ready_ip(&pod("True", None)), None);
        assert_eq!(ready_ip(&Pod::default()), None);
    }

    /// A `GatewayStats` reading 127.0.0.1:`port` (its kube client is never used).
    fn stats_on(port: u16) -> GatewayStats {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let mut stats = GatewayStats::new(kube::Client::try_from(config).unwrap());
        stats.port = i32::from(port);
        stats
    }

    async fn serve(app: axum::Router) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn a_pod_is_read_with_the_window_in_the_query() {
        let app = axum::Router::new().route(
            "/stats",
            axum::routing::get(|q: axum::extract::RawQuery| async move {
                let requests = if q.0.as_deref() == Some("window=30s") { 7 } else { 0 };
                format!(r#"{{"backends": [{{"name": "c", "role": "primary", "requests": {requests}, "errors": 1}}]}}"#)
            }),
        );
        let stats = stats_on(serve(app).await);
        let report = stats
            .read_pod("gw-1", "127.0.0.1", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(sum(&[report])[0].requests, 7);
    }

    #[tokio::test]
    async fn a_failing_or_unreachable_pod_is_an_error_naming_it() {
        let app = axum::Router::new().route(
            "/stats",
            axum::routing::get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "draining") }),
        );
        let stats = stats_on(serve(app).await);
        let err = stats
            .read_pod("gw-1", "127.0.0.1", Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("gw-1") && err.to_string().contains("503"),
            "{err}"
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap().port();
        drop(listener);
        let err = stats_on(closed)
            .read_pod("gw-2", "127.0.0.1", Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StatsError::Pod { ref pod, .. } if pod == "gw-2"),
            "{err}"
        );
    }
}
