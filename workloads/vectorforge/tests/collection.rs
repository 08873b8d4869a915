//! Behaviour of a whole collection: writes, reads, bad input, restart, compaction.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use serde_json::json;
use vectorforge::*;

fn payload(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap()
}

fn config(dim: usize, d: Distance) -> CollectionConfig {
    let mut c = CollectionConfig::new(dim, d);
    c.hnsw.full_scan_threshold = 50;
    c
}

fn random_points(n: usize, dim: usize, seed: u64) -> Vec<PointStruct> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| PointStruct {
            id: (i as u64).into(),
            vector: (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect(),
            payload: Some(payload(
                json!({"i": i, "j": i, "group": format!("g{}", i % 10), "even": i % 2 == 0}),
            )),
        })
        .collect()
}

fn search(c: &Collection, v: &[f32], limit: usize, filter: Option<Filter>) -> Vec<ScoredPoint> {
    c.search(&SearchRequest {
        vector: v.to_vec(),
        limit,
        filter,
        with_payload: true,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn upsert_search_retrieve_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), config(4, Distance::Cosine)).unwrap();
    c.upsert(vec![
        PointStruct {
            id: 1.into(),
            vector: vec![1.0, 0.0, 0.0, 0.0],
            payload: Some(payload(json!({"a": 1}))),
        },
        PointStruct {
            id: 2.into(),
            vector: vec![0.0, 2.0, 0.0, 0.0],
            payload: None,
        },
        PointStruct {
            id: PointId::Uuid(uuid::Uuid::from_u128(7)),
            vector: vec![1.0, 1.0, 0.0, 0.0],
            payload: None,
        },
    ])
    .unwrap();
    let r = search(&c, &[1.0, 0.1, 0.0, 0.0], 3, None);
    assert_eq!(r[0].id, 1.into());
    assert!(
        (r[0].score - 0.995).abs() < 0.01,
        "cosine similarity {}",
        r[0].score
    );
    assert_eq!(r[0].payload.as_ref().unwrap()["a"], json!(1));
    // stored cosine vectors are normalised
    let got = c.retrieve(&[2.into(), 99.into()], true, true);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].vector.as_deref(), Some(&[0.0, 1.0, 0.0, 0.0][..]));
    c.delete(vec![1.into()]).unwrap();
    let r = search(&c, &[1.0, 0.1, 0.0, 0.0], 3, None);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|p| p.id != 1.into()));
    // overwrite keeps one live copy
    c.upsert(vec![PointStruct {
        id: 2.into(),
        vector: vec![0.0, 0.0, 1.0, 0.0],
        payload: None,
    }])
    .unwrap();
    assert_eq!(c.count(None), 2);
    assert_eq!(c.info().deleted_vectors, 2);
}

#[test]
fn bad_input_is_rejected_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), config(3, Distance::Cosine)).unwrap();
    let ok = PointStruct {
        id: 1.into(),
        vector: vec![1.0, 2.0, 3.0],
        payload: None,
    };
    let cases = vec![
        (
            PointStruct {
                id: 2.into(),
                vector: vec![1.0, 2.0],
                payload: None,
            },
            "expected 3, got 2",
        ),
        (
            PointStruct {
                id: 2.into(),
                vector: vec![1.0, f32::NAN, 0.0],
                payload: None,
            },
            "non-finite",
        ),
        (
            PointStruct {
                id: 2.into(),
                vector: vec![1.0, f32::INFINITY, 0.0],
                payload: None,
            },
            "non-finite",
        ),
        (
            PointStruct {
                id: 2.into(),
                vector: vec![0.0, 0.0, 0.0],
                payload: None,
            },
            "non-zero",
        ),
        (
            PointStruct {
                id: 1.into(),
                vector: vec![1.0, 2.0, 3.0],
                payload: None,
            },
            "duplicate",
        ),
    ];
    for (bad, msg) in cases {
        let err = c.upsert(vec![ok.clone(), bad]).unwrap_err();
        assert!(err.to_string().contains(msg), "{err}");
    }
    assert_eq!(
        c.count(None),
        0,
        "nothing of a rejected batch may be applied"
    );
    assert_eq!(c.last_seq(), 0);
    assert!(matches!(
        c.search(&SearchRequest {
            vector: vec![1.0],
            limit: 1,
            ..Default::default()
        }),
        Err(Error::WrongQueryDimension { .. })
    ));
    assert!(matches!(
        c.create_payload_index_json("a", &json!("geo")),
        Err(Error::UnknownIndexType(_))
    ));
    assert!(matches!(
        c.create_payload_index("a[", PayloadSchemaType::Keyword),
        Err(Error::InvalidKeyPath { .. })
    ));
    assert!(matches!(
        Filter::from_json(&json!({"must": [{"key": "a"}]})),
        Err(Error::InvalidFilter(_))
    ));
    assert!(matches!(
        Collection::open(
            tmp.path().join("x"),
            CollectionConfig::new(0, Distance::Dot)
        ),
        Err(Error::InvalidDimension(0))
    ));
    drop(c);
    assert!(matches!(
        Collection::open(tmp.path(), config(4, Distance::Cosine)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn payload_operations_and_index_stay_in_step() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), config(2, Distance::Dot)).unwrap();
    c.create_payload_index("color", PayloadSchemaType::Keyword)
        .unwrap();
    c.upsert(vec![
        PointStruct {
            id: 1.into(),
            vector: vec![1.0, 0.0],
            payload: Some(payload(json!({"color": "red", "n": {"x": 1}}))),
        },
        PointStruct {
            id: 2.into(),
            vector: vec![0.0, 1.0],
            payload: Some(payload(json!({"color": "blue"}))),
        },
    ])
    .unwrap();
    let red =
        Filter::from_json(&json!({"must": {"key": "color", "match": {"value": "red"}}})).unwrap();
    assert_eq!(c.count(Some(&red)), 1);
    c.set_payload(vec![2.into()], payload(json!({"color": "red", "size": 3})))
        .unwrap();
    assert_eq!(c.count(Some(&red)), 2);
    c.delete_payload_keys(vec![1.into()], vec!["color".into(), "n.x".into()])
        .unwrap();
    assert_eq!(c.count(Some(&red)), 1);
    assert_eq!(
        c.retrieve(&[1.into()], true, false)[0]
            .payload
            .as_ref()
            .unwrap(),
        &payload(json!({"n": {}}))
    );
    c.overwrite_payload(vec![2.into()], payload(json!({"z": 1})))
        .unwrap();
    assert_eq!(c.count(Some(&red)), 0);
    c.clear_payload(vec![2.into()]).unwrap();
    assert_eq!(
        c.retrieve(&[2.into()], true, false)[0]
            .payload
            .as_ref()
            .unwrap(),
        &Payload::new()
    );
    let empty = Filter::from_json(&json!({"must": {"is_empty": {"key": "color"}}})).unwrap();
    assert_eq!(c.count(Some(&empty)), 2);
}

#[test]
fn restart_recovers_snapshot_plus_wal_without_rebuilding_the_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(8, Distance::Euclid);
    cfg.background_indexing = false;
    let pts = random_points(600, 8, 1);
    {
        let c = Collection::open(tmp.path(), cfg.clone()).unwrap();
        c.create_payload_index("group", PayloadSchemaType::Keyword)
            .unwrap();
        c.upsert(pts[..400].to_vec()).unwrap();
        c.build_index();
        c.snapshot().unwrap();
        c.upsert(pts[400..].to_vec()).unwrap();
        c.delete(vec![5.into(), 450.into()]).unwrap();
        c.set_payload(vec![6.into()], payload(json!({"tag": "x"})))
            .unwrap();
    }
    let c = Collection::open(tmp.path(), cfg.clone()).unwrap();
    let info = c.info();
    assert_eq!(info.points, 598);
    assert_eq!(
        info.indexed_vectors, 400,
        "the graph comes from the snapshot"
    );
    assert_eq!(
        info.indexed_fields,
        vec![("group".to_string(), PayloadSchemaType::Keyword)]
    );
    assert!(c.retrieve(&[5.into(), 450.into()], false, false).is_empty());
    let p6 = c.retrieve(&[6.into()], true, true);
    assert_eq!(p6[0].payload.as_ref().unwrap()["tag"], json!("x"));
    assert_eq!(p6[0].vector.as_ref().unwrap(), &pts[6].vector);
    // points of the WAL tail (scored exactly) are always their own nearest neighbour;
    // graph points nearly always (a parallel HNSW build can leave a rare node poorly
    // linked, so this is a recall bound, not an identity)
    let live = |p: &&PointStruct| p.id != 5.into() && p.id != 450.into();
    for p in pts[400..].iter().filter(live) {
        assert_eq!(search(&c, &p.vector, 1, None)[0].id, p.id);
    }
    let graph: Vec<&PointStruct> = pts[..400].iter().filter(live).collect();
    let found = graph
        .iter()
        .filter(|p| search(&c, &p.vector, 1, None)[0].id == p.id)
        .count();
    assert!(
        found * 100 >= graph.len() * 95,
        "{found}/{} graph points found themselves",
        graph.len()
    );
    let g3 =
        Filter::from_json(&json!({"must": {"key": "group", "match": {"value": "g3"}}})).unwrap();
    assert_eq!(c.count(Some(&g3)), 60);
    assert_eq!(c.last_seq(), 5);
}

fn brute(
    pts: &[PointStruct],
    q: &[f32],
    k: usize,
    keep: impl Fn(&PointStruct) -> bool,
) -> Vec<PointId> {
    let mut v: Vec<(f32, PointId)> = pts
        .iter()
        .filter(|p| keep(p))
        .map(|p| {
            (
                p.vector
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>(),
                p.id,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v.into_iter().take(k).map(|x| x.1).collect()
}

#[test]
fn filtered_search_recall_at_every_selectivity() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(16, Distance::Euclid);
    cfg.hnsw.full_scan_threshold = 100;
    let c = Collection::open(tmp.path(), cfg).unwrap();
    let pts = random_points(5000, 16, 2);
    c.create_payload_index("i", PayloadSchemaType::Integer)
        .unwrap();
    c.upsert(pts.clone()).unwrap();
    c.build_index();
    let queries = random_points(30, 16, 3);
    for (sel, indexed_key) in [
        (0.005, "i"),
        (0.05, "i"),
        (0.3, "i"),
        (0.3, "unindexed"),
        (0.8, "i"),
    ] {
        let bound = (5000.0 * sel) as i64;
        let key = if indexed_key == "i" { "i" } else { "j" };
        let f =
            Filter::from_json(&json!({"must": [{"key": key, "range": {"lt": bound}}]})).unwrap();
        let mut hit = 0;
        for q in &queries {
            let truth = brute(
                &pts,
                &q.vector,
                10,
                |p| matches!(p.id, PointId::Num(n) if (n as i64) < bound),
            );
            let got = search(&c, &q.vector, 10, Some(f.clone()));
            assert!(
                got.iter()
                    .all(|p| matches!(p.id, PointId::Num(n) if (n as i64) < bound))
            );
            hit += got.iter().filter(|p| truth.contains(&p.id)).count();
        }
        let recall = hit as f64 / (queries.len() * 10) as f64;
        assert!(
            recall >= 0.95,
            "selectivity {sel} on {key}: recall {recall}"
        );
    }
}

#[test]
fn compaction_reclaims_deleted_points_and_keeps_results() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(8, Distance::Euclid);
    let pts = random_points(1500, 8, 4);
    {
        let c = Collection::open(tmp.path(), cfg.clone()).unwrap();
        c.create_payload_index("even", PayloadSchemaType::Bool)
            .unwrap();
        c.upsert(pts.clone()).unwrap();
        c.build_index();
        let gone: Vec<PointId> = pts
            .iter()
            .filter(|p| matches!(p.id, PointId::Num(n) if n % 3 == 0))
            .map(|p| p.id)
            .collect();
        c.delete(gone).unwrap();
        assert_eq!(c.compact().unwrap(), 500);
        let info = c.info();
        assert_eq!(
            (info.points, info.stored_vectors, info.deleted_vectors),
            (1000, 1000, 0)
        );
    }
    let c = Collection::open(tmp.path(), cfg).unwrap();
    let alive: Vec<PointStruct> = pts
        .iter()
        .filter(|p| matches!(p.id, PointId::Num(n) if n % 3 != 0))
        .cloned()
        .collect();
    let even =
        Filter::from_json(&json!({"must": {"key": "even", "match": {"value": true}}})).unwrap();
    assert_eq!(
        c.count(Some(&even)),
        alive
            .iter()
            .filter(|p| matches!(p.id, PointId::Num(n) if n % 2 == 0))
            .count()
    );
    let mut hit = 0;
    for q in alive.iter().step_by(40) {
        let truth = brute(&alive, &q.vector, 10, |_| true);
        hit += search(&c, &q.vector, 10, None)
            .iter()
            .filter(|p| truth.contains(&p.id))
            .count();
    }
    let total = alive.iter().step_by(40).count() * 10;
    assert!(hit as f64 / total as f64 >= 0.95);
}

#[test]
fn scroll_pages_by_id_and_score_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), config(2, Distance::Euclid)).unwrap();
    c.upsert(
        (0..25u64)
            .map(|i| PointStruct {
                id: i.into(),
                vector: vec![i as f32, 0.0],
                payload: None,
            })
            .collect(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let page = c.scroll(&ScrollRequest {
            limit: 10,
            offset,
            ..Default::default()
        });
        seen.extend(page.points.iter().map(|r| r.id));
        match page.next_page_offset {
            Some(o) => offset = Some(o),
            None => break,
        }
    }
    assert_eq!(seen, (0..25u64).map(PointId::from).collect::<Vec<_>>());
    let r = c
        .search(&SearchRequest {
            vector: vec![0.0, 0.0],
            limit: 25,
            score_threshold: Some(3.5),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.len(), 4);
    let r = c
        .search(&SearchRequest {
            vector: vec![0.0, 0.0],
            limit: 5,
            offset: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        r.iter().map(|p| p.id).collect::<Vec<_>>(),
        (2..7u64).map(PointId::from).collect::<Vec<_>>()
    );
}

#[test]
fn concurrent_search_while_inserting() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collection::open(tmp.path(), config(8, Distance::Dot)).unwrap();
    let pts = random_points(4000, 8, 5);
    std::thread::scope(|s| {
        for w in 0..2 {
            let c = &c;
            let pts = &pts;
            s.spawn(move || {
                for chunk in pts.chunks(100).skip(w).step_by(2) {
                    c.upsert(chunk.to_vec()).unwrap();
                }
            });
        }
        for t in 0..3 {
            let c = &c;
            let pts = &pts;
            s.spawn(move || {
                for q in pts.iter().skip(t).step_by(50) {
                    let r = search(c, &q.vector, 5, None);
                    let ids: HashSet<PointId> = r.iter().map(|p| p.id).collect();
                    assert_eq!(ids.len(), r.len(), "duplicates in results");
                }
            });
        }
    });
    assert_eq!(c.count(None), 4000);
}
