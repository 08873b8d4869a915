//! A load generator for OIP REST: a few concurrent clients POST infer requests to one
//! address until stopped, and every answer's HTTP status (0 for no answer) is counted, so
//! a scenario can assert what its users saw while a rollout moved underneath them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Answers seen so far, by HTTP status (0: connection failed or timed out).
pub type Tally = BTreeMap<u16, u64>;

/// Builds the JSON body of one request from a random number generator.
pub type BodyFn = Arc<dyn Fn(&mut rand::rngs::ThreadRng) -> String + Send + Sync>;

/// Running clients; [`Load::stop`] ends them and returns what they saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One POST; returns the status (0 when there was no answer) and the body.
pub async fn post(client: &HttpClient, url: &str, body: String) -> (u16, Bytes) {
    send(client, "POST", url, Some(body)).await
}

/// One request with an optional JSON body; returns the status (0 when there was no
/// answer within 10 s) and the body.
pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Option<String>,
) -> (u16, Bytes) {
    let Ok(method) = hyper::Method::from_bytes(method.as_bytes()) else {
        return (0, Bytes::new());
    };
    let Ok(req) = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
    else {
        return (0, Bytes::new());
    };
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, body)
        }
        _ => (0, Bytes::new()),
    }
}

/// A pooled keep-alive HTTP/1 client.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

impl Load {
    /// `clients` loops each sending a request to `url` every `pause`.
    pub fn start(url: String, clients: usize, pause: Duration, body: BodyFn) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, tally, url, body) =
                    (stop.clone(), tally.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    let client = http_client();
                    while !stop.load(Ordering::Relaxed) {
                        let req = body(&mut rand::rng());
                        let (status, _) = post(&client, &url, req).await;
                        if let Ok(mut t) = tally.lock() {
                            *t.entry(status).or_default() += 1;
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Self { stop, tally, tasks }
    }

    /// What the clients have seen so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Stops the clients (each finishes its request in flight) and returns the tally.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }
}
