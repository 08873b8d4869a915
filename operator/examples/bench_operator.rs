//! Operator benchmark (prints figures; not a test): creates N mixed custom resources on
//! the local control plane, measures apply → child workload created (StatefulSet or
//! Deployment seen through a watch), the time until every resource's status describes
//! its current generation, and the operator's peak RSS (VmHWM).
//!
//! Creates go out 32 at a time as fast as the API server takes them, or, with a rate,
//! paced at that many resources per second (a sustained load rather than a burst). The
//! CPU seconds the API server and the operator spent during the run are printed too:
//! on a small machine the control plane's own cost per resource bounds the settle time.
//!
//! Run by `make bench-operator`, which starts the cluster and passes the release
//! operator binary: `bench_operator <operator-binary> [count] [rate-per-second]`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use modelhub_operator::api::{InferenceService, TrafficPolicy, VectorCollection};
use serde_json::json;
use tokio::sync::Mutex;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Resources of `api` whose status describes their current generation.
async fn settled_count<K>(
    api: &Api<K>,
    observed: impl Fn(&K) -> Option<i64>,
) -> anyhow::Result<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|o| observed(o) == o.meta().generation)
        .count())
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) process `pid` has used.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The API server's `process_cpu_seconds_total` from its /metrics.
async fn apiserver_cpu_seconds(client: &Client) -> Option<f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = client.request_text(req).await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))?
        .trim()
        .parse()
        .ok()
}

/// The operator's Prometheus text (empty when it cannot be read).
fn scrape_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let mut body = String::new();
    let _ = conn
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n")
        .and_then(|()| conn.read_to_string(&mut body));
    body
}

/// The workload child whose creation ends the latency measurement of resource `i`.
fn child_name(i: usize) -> String {
    match i % 5 {
        0 | 1 => format!("vc-{i}-shard-0"),
        2 | 3 => format!("isvc-{i}"),
        _ => format!("tp-{i}-gateway"),
    }
}

/// Waits until the namespaces of earlier runs are gone: their thousands of children
/// being garbage-collected would load the API server during this run.
async fn wait_for_earlier_runs(client: &Client) -> anyhow::Result<()> {
    let namespaces = Api::<Namespace>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = namespaces
            .list(&ListParams::default().labels("modelhub.io/bench=true"))
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} namespaces of earlier runs still being deleted after 600 s");
        }
        eprintln!("waiting for {left} namespace(s) of earlier runs to be deleted");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// A fresh namespace per run (deleting 1,000 resources of an earlier run takes long).
async fn create_namespace(client: &Client) -> anyhow::Result<String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let name = format!("bench-operator-{secs}");
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"modelhub.io/bench": "true"}}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let operator_bin = args
        .next()
        .context("usage: bench_operator <operator-binary> [count] [rate-per-second]")?;
    let count: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(1000);
    let rate: f64 = args.next().map(|r| r.parse()).transpose()?.unwrap_or(0.0);
    let client = Client::try_default()
        .await
        .context("KUBECONFIG must point at the local cluster")?;
    wait_for_earlier_runs(&client).await?;
    let ns_name = create_namespace(&client).await?;
    let ns = ns_name.as_str();

    let log = std::fs::File::create(std::env::temp_dir().join("bench-operator.log"))?;
    let mut operator = Command::new(&operator_bin)
        .args([
            "--metrics-addr=127.0.0.1:18095",
            "--leader-elect=false",
            &format!("--namespace={ns}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start operator")?;
    let operator_pid = operator.id();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Watch the workload children and note when each first appears.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = |stream: futures::stream::BoxStream<'static, Result<String, watcher::Error>>| {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            while let Ok(Some(name)) = stream.try_next().await {
                seen.lock().await.entry(name).or_insert_with(Instant::now);
            }
        })
    };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let w1 = watch(
        watcher(sts, watcher::Config::default())
            .applied_objects()
            .map_ok(|o| o.name_any())
            .boxed(),
    );
    let w2 = watch(
        watcher(deps, watcher::Config::default())
            .applied_objects()
            .map_ok(|o| o.name_any())
            .boxed(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), ns);
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), ns);
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), ns);
    let apiserver_cpu_before = apiserver_cpu_seconds(&client).await;
    let started = Instant::now();
    let created: Vec<(usize, Instant)> = futures::stream::iter(0..count)
        .then(|i| async move {
            if rate > 0.0 {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            i
        })
        .map(|i| {
            let (vcs, isvcs, tps) = (vcs.clone(), isvcs.clone(), tps.clone());
            async move {
                let t = Instant::now();
                let pp = PostParams::default();
                let res = match i % 5 {
                    0 | 1 => vcs
                        .create(&pp, &serde_json::from_value(json!({
                            "apiVersion": "modelhub.io/v1alpha1", "kind": "VectorCollection",
                            "metadata": {"name": format!("vc-{i}")},
                            "spec": {"dimension": 128, "distance": "Cosine", "shards": 1, "replicas": 1}}))?)
                        .await
                        .map(|_| ()),
                    2 | 3 => isvcs
                        .create(&pp, &serde_json::from_value(json!({
                            "apiVersion": "modelhub.io/v1alpha1", "kind": "InferenceService",
                            "metadata": {"name": format!("isvc-{i}")},
                            "spec": {"model": {"name": "m", "storageUri": "file:///m.onnx"}}}))?)
                        .await
                        .map(|_| ()),
                    _ => tps
                        .create(&pp, &serde_json::from_value(json!({
                            "apiVersion": "modelhub.io/v1alpha1", "kind": "TrafficPolicy",
                            "metadata": {"name": format!("tp-{i}")},
                            "spec": {"backends": [{"name": "a", "service": format!("isvc-{}", i - 2), "weight": 100}],
                                     "gateway": {"replicas": 1}}}))?)
                        .await
                        .map(|_| ()),
                };
                res.with_context(|| format!("create resource {i}"))?;
                anyhow::Ok((i, t))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let applied_in = started.elapsed();

    // Wait until every resource's status describes its generation.
    let deadline = Instant::now() + Duration::from_secs(600);
    let settled_in = loop {
        let settled = settled_count(&vcs, |o| {
            o.status.as_ref().and_then(|s| s.observed_generation)
        })
        .await?
            + settled_count(&isvcs, |o| {
                o.status.as_ref().and_then(|s| s.observed_generation)
            })
            .await?
            + settled_count(&tps, |o| {
                o.status.as_ref().and_then(|s| s.observed_generation)
            })
            .await?;
        if settled == count {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {settled}/{count} resources settled in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let seen = seen.lock().await.clone();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(i, t)| {
            seen.get(&child_name(*i))
                .map(|s| s.saturating_duration_since(*t))
        })
        .collect();
    latencies.sort();
    let rss = peak_rss_mib(operator_pid);
    let operator_cpu = process_cpu_seconds(operator_pid);
    let apiserver_cpu = apiserver_cpu_seconds(&client)
        .await
        .zip(apiserver_cpu_before)
        .map(|(after, before)| after - before);
    let metrics = scrape_metrics("127.0.0.1:18095");
    let _ = Command::new("kill")
        .args(["-TERM", &operator_pid.to_string()])
        .status();
    let _ = operator.wait();
    w1.abort();
    w2.abort();

    let pace = if rate > 0.0 {
        format!("created at {rate} per second")
    } else {
        "32 creates in flight, as fast as the API server takes them".to_owned()
    };
    println!(
        "operator benchmark: {count} custom resources (40% VectorCollection, 40% InferenceService, 20% TrafficPolicy), {pace}"
    );
    println!("| metric | value | goal |");
    println!("|---|---|---|");
    println!("| children observed | {}/{count} | all |", latencies.len());
    println!(
        "| apply -> workload created p50 | {:.1} ms | |",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3
    );
    println!(
        "| apply -> workload created p99 | {:.1} ms | < 200 ms |",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| all created (API) | {:.1} s | |",
        applied_in.as_secs_f64()
    );
    println!(
        "| all settled (status observedGeneration) | {:.1} s | < 30 s |",
        settled_in.as_secs_f64()
    );
    match rss {
        Some(mib) => println!("| operator peak RSS | {mib:.1} MiB | < 64 MiB |"),
        None => println!("| operator peak RSS | unavailable | < 64 MiB |"),
    }
    let per_resource = |secs: f64| secs * 1e3 / count as f64;
    if let Some(cpu) = operator_cpu {
        println!(
            "| operator CPU | {cpu:.1} s ({:.1} ms per resource) | |",
            per_resource(cpu)
        );
    }
    if let Some(cpu) = apiserver_cpu {
        println!(
            "| API server CPU | {cpu:.1} s ({:.1} ms per resource) | |",
            per_resource(cpu)
        );
    }
    println!();
    println!("operator counters at the end of the run:");
    for line in metrics.lines().filter(|l| {
        l.starts_with("modelhub_operator_reconciles_total")
            || l.starts_with("modelhub_operator_reconcile_errors_total")
            || l.starts_with("modelhub_operator_child_applies_total")
            || l.starts_with("modelhub_operator_reconcile_duration_seconds_sum")
    }) {
        println!("  {line}");
    }
    // Deleting the namespace removes everything the run created (in the background).
    Api::<Namespace>::all(client)
        .delete(ns, &DeleteParams::default())
        .await?;
    Ok(())
}
