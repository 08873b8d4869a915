//! `make bench-ann`: recall@10 vs QPS on GloVe 6B 50d (cosine), M=16,
//! efConstruct=200, single-threaded search with an ef sweep, build time and
//! memory; then filtered search per selectivity. Prints markdown tables.
//! Queries: rows with index % 400 == 0 (1,000); base: the other 399,000.
//! Each ef is timed over VF_BENCH_REPS passes (default 3) after one warm-up pass
//! and the best pass is reported, as wall-clock QPS and as QPS per CPU-second of
//! the searching thread (the latter hardly moves when other processes compete
//! for the cores); QPS at recall@10 = 0.95 is interpolated
//! linearly between the two sweep points around it (bench/peers.py does the same).
//! Env: VECTORFORGE_GLOVE (the .npy), VF_BENCH_BASE (limit base rows),
//! VF_BENCH_EF (the sweep), VF_BENCH_REPS, VF_BENCH_FILTERED=0 (skip filtered
//! search), VF_BENCH_DIR (keep the collection there and reuse it when it already
//! holds the whole base set, so search changes are measured without a rebuild).

use std::time::Instant;

use rayon::prelude::*;
use serde_json::json;
use vectorforge::*;

#[path = "../tests/support/ground_truth.rs"]
mod ground_truth;

use ground_truth::{exact_top, normalized};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time this thread has run, in seconds (Linux; 0 elsewhere).
fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// QPS where recall@10 crosses `target`, interpolated linearly between the two
/// sweep points (ordered by ef) around the first crossing.
fn qps_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let i = points.iter().position(|&(r, _)| r >= target)?;
    let (r1, q1) = points[i];
    if i == 0 || r1 == target {
        return (r1 == target).then_some(q1);
    }
    let (r0, q0) = points[i - 1];
    Some(q0 + (q1 - q0) * (target - r0) / (r1 - r0))
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn bucket(i: usize) -> usize {
    (i * 7919) % 1000
}

fn main() {
    let Ok(path) = std::env::var("VECTORFORGE_GLOVE") else {
        eprintln!("set VECTORFORGE_GLOVE to glove_6B_50d_emb.npy (make bench-ann does)");
        std::process::exit(2);
    };
    let m = npy::read_f32_matrix(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let limit: usize = std::env::var("VF_BENCH_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let queries: Vec<Vec<f32>> = m.held_out_rows(400).map(<[f32]>::to_vec).collect();
    let base: Vec<Vec<f32>> = m.base_rows(400).take(limit).map(<[f32]>::to_vec).collect();
    let base_n: Vec<Vec<f32>> = base.iter().map(|v| normalized(v)).collect();
    drop(m);
    eprintln!(
        "base {} x {}, {} queries; computing ground truth...",
        base.len(),
        base[0].len(),
        queries.len()
    );
    let truth: Vec<Vec<u64>> = queries
        .par_iter()
        .map(|q| exact_top(&base_n, &normalized(q), 10, |_| true))
        .collect();

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::var("VF_BENCH_DIR").map_or_else(|_| tmp.path().to_path_buf(), Into::into);
    let mut cfg = CollectionConfig::new(50, Distance::Cosine);
    cfg.sync = SyncPolicy::Interval { millis: 1000 };
    cfg.background_indexing = false;
    let rss0 = rss_mib();
    let c = Collection::open(&dir, cfg.clone()).unwrap_or_else(|e| panic!("{e}"));
    let info = c.info();
    if info.points == base.len() && info.indexed_vectors == base.len() {
        eprintln!(
            "reusing the collection in {} (build not measured)",
            dir.display()
        );
        search_sweeps(&c, &queries, &truth, &base_n);
        return;
    }
    drop(c);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let c = Collection::open(&dir, cfg).unwrap_or_else(|e| panic!("{e}"));
    c.create_payload_index("bucket", PayloadSchemaType::Integer)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    for (n, chunk) in base.chunks(10_000).enumerate() {
        let pts = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = n * 10_000 + j;
                PointStruct {
                    id: (i as u64).into(),
                    vector: v.clone(),
                    payload: Some(
                        json!({"bucket": bucket(i)})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    ),
                }
            })
            .collect();
        c.upsert(pts).unwrap_or_else(|e| panic!("{e}"));
    }
    let ingest = t.elapsed().as_secs_f64();
    c.build_index();
    let build = t.elapsed().as_secs_f64();
    let rss = rss_mib() - rss0;
    println!("\n### vectorforge build\n");
    println!(
        "| points | threads | ingest (s) | ingest + HNSW build (s) | RSS growth (MiB) | kernels |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {ingest:.1} | {build:.1} | {rss:.0} | {} |",
        base.len(),
        rayon::current_num_threads(),
        distance::best().name
    );
    if std::env::var_os("VF_BENCH_DIR").is_some() {
        c.snapshot().unwrap_or_else(|e| panic!("{e}"));
    }
    search_sweeps(&c, &queries, &truth, &base_n);
}

fn search_sweeps(c: &Collection, queries: &[Vec<f32>], truth: &[Vec<u64>], base_n: &[Vec<f32>]) {
    let efs: Vec<usize> = std::env::var("VF_BENCH_EF")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| {
            vec![
                16, 32, 48, 64, 72, 80, 88, 96, 104, 112, 120, 128, 144, 160, 192, 256,
            ]
        });
    let reps = env_usize("VF_BENCH_REPS", 3).max(1);
    let pass = |ef: usize| {
        let mut hit = 0;
        let t = Instant::now();
        let cpu = thread_cpu_secs();
        for (q, tr) in queries.iter().zip(truth) {
            let r = c
                .search(&SearchRequest {
                    vector: q.clone(),
                    limit: 10,
                    ef: Some(ef),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("{e}"));
            hit += r
                .iter()
                .filter(|p| matches!(p.id, PointId::Num(i) if tr.contains(&i)))
                .count();
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let cpu_qps = queries.len() as f64 / (thread_cpu_secs() - cpu).max(1e-9);
        (hit as f64 / (queries.len() * 10) as f64, qps, cpu_qps)
    };
    pass(efs.iter().copied().max().unwrap_or(128));
    println!("\n### vectorforge search (single thread, k=10, best of {reps} passes)\n");
    println!("| ef | recall@10 | QPS | QPS per CPU-second |");
    println!("|---|---|---|---|");
    let (mut points, mut cpu_points) = (Vec::new(), Vec::new());
    for &ef in &efs {
        let (recall, mut qps, mut cpu_qps) = pass(ef);
        for _ in 1..reps {
            let (_, q, c) = pass(ef);
            qps = qps.max(q);
            cpu_qps = cpu_qps.max(c);
        }
        println!("| {ef} | {recall:.4} | {qps:.0} | {cpu_qps:.0} |");
        points.push((recall, qps));
        cpu_points.push((recall, cpu_qps));
    }
    match (qps_at(&points, 0.95), qps_at(&cpu_points, 0.95)) {
        (Some(q), Some(c)) => println!(
            "\nvectorforge at recall@10 = 0.95 (interpolated): {q:.0} QPS, {c:.0} QPS per CPU-second"
        ),
        _ => println!("\nvectorforge: recall@10 = 0.95 not bracketed by the sweep"),
    }
    if std::env::var("VF_BENCH_FILTERED").is_ok_and(|v| v == "0") {
        return;
    }

    println!(
        "\n### vectorforge filtered search (single thread, default ef, integer range on an indexed field)\n"
    );
    println!("| selectivity | recall@10 | QPS | path |");
    println!("|---|---|---|---|");
    for (label, bound) in [
        ("100% (no filter)", 1000usize),
        ("50%", 500),
        ("10%", 100),
        ("1%", 10),
        ("0.1%", 1),
    ] {
        let filter = (bound < 1000)
            .then(|| {
                Filter::from_json(&json!({"must": [{"key": "bucket", "range": {"lt": bound}}]}))
                    .ok()
            })
            .flatten();
        let keep = move |i: usize| bucket(i) < bound;
        let ftruth: Vec<Vec<u64>> = queries
            .par_iter()
            .map(|q| exact_top(base_n, &normalized(q), 10, keep))
            .collect();
        let mut hit = 0;
        let mut total = 0;
        let t = Instant::now();
        for (q, tr) in queries.iter().zip(&ftruth) {
            let r = c
                .search(&SearchRequest {
                    vector: q.clone(),
                    limit: 10,
                    filter: filter.clone(),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("{e}"));
            hit += r
                .iter()
                .filter(|p| matches!(p.id, PointId::Num(i) if tr.contains(&i)))
                .count();
            total += tr.len();
        }
        let secs = t.elapsed().as_secs_f64();
        let matching = base_n.len() * bound / 1000;
        let path = if matching <= c.config().hnsw.full_scan_threshold {
            "exact scan"
        } else {
            "graph"
        };
        println!(
            "| {label} | {:.4} | {:.0} | {path} |",
            hit as f64 / total.max(1) as f64,
            queries.len() as f64 / secs
        );
    }
}
