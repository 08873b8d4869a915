//! Operator benchmark (prints figures; not a test): creates N mixed custom resources on
//! the local control plane, measures apply → child workload created (StatefulSet or
//! Deployment seen through a watch), the time until every resource's status describes
//! its current generation, and the operator's peak RSS (VmHWM).
//!
//! Run by `make bench-operator`, which starts the cluster and passes the release
//! operator binary: `bench_operator <operator-binary> [count]`.

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

/// The workload child whose creation ends the latency measurement of resource `i`.
fn child_name(i: usize) -> String {
    match i % 5 {
        0 | 1 => format!("vc-{i}-shard-0"),
        2 | 3 => format!("isvc-{i}"),
        _ => format!("tp-{i}-gateway"),
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
        .context("usage: bench_operator <operator-binary> [count]")?;
    let count: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(1000);
    let client = Client::try_default()
        .await
        .context("KUBECONFIG must point at the local cluster")?;
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
    let started = Instant::now();
    let created: Vec<(usize, Instant)> = futures::stream::iter(0..count)
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
    let _ = Command::new("kill")
        .args(["-TERM", &operator_pid.to_string()])
        .status();
    let _ = operator.wait();
    w1.abort();
    w2.abort();

    println!(
        "operator benchmark: {count} custom resources (40% VectorCollection, 40% InferenceService, 20% TrafficPolicy), 32 creates in flight"
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
    // Deleting the namespace removes everything the run created (in the background).
    Api::<Namespace>::all(client)
        .delete(ns, &DeleteParams::default())
        .await?;
    Ok(())
}
