//! `make bench-ingest`: durable ingest throughput (acknowledged points per
//! second) with `SyncPolicy::Always` (1 and 16 concurrent writers; concurrent
//! writers share fsyncs through group commit) and `Interval`. Background graph
//! indexing runs as usual. 50-d vectors (GloVe when VECTORFORGE_GLOVE is set).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use vectorforge::*;

fn run(
    vectors: &[Vec<f32>],
    sync: SyncPolicy,
    writers: usize,
    batch: usize,
    budget: Duration,
) -> (usize, f64) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = CollectionConfig::new(50, Distance::Cosine);
    cfg.sync = sync;
    let c = Collection::open(tmp.path(), cfg).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let c = &c;
                s.spawn(move || {
                    let mut n = 0usize;
                    let mut next = w * batch;
                    while start.elapsed() < budget && next < vectors.len() {
                        let pts = (next..(next + batch).min(vectors.len()))
                            .map(|i| PointStruct {
                                id: (i as u64).into(),
                                vector: vectors[i].clone(),
                                payload: None,
                            })
                            .collect::<Vec<_>>();
                        n += pts.len();
                        c.upsert(pts).unwrap_or_else(|e| panic!("{e}"));
                        next += writers * batch;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    (total, total as f64 / start.elapsed().as_secs_f64())
}

fn main() {
    let vectors: Vec<Vec<f32>> = match std::env::var("VECTORFORGE_GLOVE") {
        Ok(p) => {
            let m =
                npy::read_f32_matrix(std::path::Path::new(&p)).unwrap_or_else(|e| panic!("{e}"));
            (0..m.rows.min(200_000))
                .map(|i| m.row(i).to_vec())
                .collect()
        }
        Err(_) => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            (0..200_000)
                .map(|_| (0..50).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect()
        }
    };
    let budget = Duration::from_secs(8);
    println!(
        "\n### vectorforge durable ingest (50-d, {} s per row at most)\n",
        budget.as_secs()
    );
    println!("| sync | writers | points per upsert | points | points/s |");
    println!("|---|---|---|---|---|");
    for (name, sync, writers, batch) in [
        ("always", SyncPolicy::Always, 1, 1),
        ("always", SyncPolicy::Always, 16, 1),
        ("always", SyncPolicy::Always, 1, 100),
        ("always", SyncPolicy::Always, 16, 100),
        (
            "interval 100ms",
            SyncPolicy::Interval { millis: 100 },
            1,
            100,
        ),
        (
            "interval 100ms",
            SyncPolicy::Interval { millis: 100 },
            16,
            100,
        ),
    ] {
        let (n, rate) = run(&vectors, sync, writers, batch, budget);
        println!("| {name} | {writers} | {batch} | {n} | {rate:.0} |");
    }
}
