//! A distributed collection on loopback: real `vectorforge` processes, one per shard,
//! finding each other with `--peer`, beside a single-node server with the same points
//! as the reference. Every request may go to any pod; answers must equal the single
//! node's. (Shards of several Raft-replicated pods: tests/replication.rs.)

mod support;

use serde_json::{Value, json};
use support::{Server, free_port};

const DIM: usize = 8;
const N: u64 = 600;

fn vector(i: u64) -> Vec<f32> {
    // deterministic, spread out: a small LCG per point
    let mut x = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..DIM)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn points(range: std::ops::Range<u64>) -> Value {
    let pts: Vec<Value> = range
        .map(|i| {
            json!({"id": i, "vector": vector(i), "payload": {"n": i, "parity": if i % 2 == 0 { "even" } else { "odd" }}})
        })
        .collect();
    json!({ "points": pts })
}

struct Fleet {
    pods: Vec<Server>,
    /// (shard, internal port) of each pod
    places: Vec<(u32, u16)>,
    reference: Server,
    _tmp: tempfile::TempDir,
}

fn base_args(shards: u32) -> Vec<String> {
    vec![
        "--collection=docs".into(),
        format!("--dimension={DIM}"),
        "--distance=Cosine".into(),
        format!("--shards={shards}"),
        "--payload-index=parity=keyword".into(),
    ]
}

/// `layout[i]` is the shard of pod i.
fn fleet(shards: u32, layout: &[u32]) -> Fleet {
    let tmp = tempfile::tempdir().unwrap();
    let places: Vec<(u32, u16)> = layout.iter().map(|s| (*s, free_port())).collect();
    let mut pods = Vec::new();
    for (i, (shard, port)) in places.iter().enumerate() {
        let mut args = base_args(shards);
        args.push(format!("--shard={shard}"));
        args.push(format!("--raft-port={port}"));
        for (j, (s, p)) in places.iter().enumerate() {
            if j != i {
                args.push(format!("--peer={s}=127.0.0.1:{p}"));
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        pods.push(Server::start(&tmp.path().join(format!("pod{i}")), &refs));
    }
    let single = base_args(1);
    let refs: Vec<&str> = single.iter().map(String::as_str).collect();
    let reference = Server::start(&tmp.path().join("single"), &refs);
    Fleet {
        pods,
        places,
        reference,
        _tmp: tmp,
    }
}

fn upsert(s: &Server, body: &Value) {
    let r = s.ok(
        "PUT",
        "/collections/docs/points?wait=true",
        Some(body.clone()),
    );
    assert_eq!(r["status"], "completed");
}

/// Points this pod holds itself (its own gauge, not a coordinated count).
fn local_points(s: &Server) -> u64 {
    let (status, body) = s.raw("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find(|l| l.starts_with("vectorforge_collection_points{") && l.contains("\"docs\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no points gauge in:\n{text}"))
}

fn count(s: &Server, filter: Option<Value>) -> u64 {
    let mut body = json!({"exact": true});
    if let Some(f) = filter {
        body["filter"] = f;
    }
    s.ok("POST", "/collections/docs/points/count", Some(body))["count"]
        .as_u64()
        .unwrap()
}

/// Ids and scores (rounded) of a list of points.
fn hits(v: &Value) -> Vec<(Value, i64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list of points: {v}"))
        .iter()
        .map(|p| {
            let score = p["score"].as_f64().map_or(0, |s| (s * 1e5).round() as i64);
            (p["id"].clone(), score)
        })
        .collect()
}

#[test]
fn three_shards_answer_like_one_node() {
    let f = fleet(3, &[0, 1, 2]);
    let (a, b, c) = (&f.pods[0], &f.pods[1], &f.pods[2]);
    // writes through different pods land on the owning shards
    upsert(a, &points(0..300));
    upsert(b, &points(300..N));
    upsert(&f.reference, &points(0..N));
    let per_pod: Vec<u64> = f.pods.iter().map(local_points).collect();
    assert_eq!(per_pod.iter().sum::<u64>(), N, "{per_pod:?}");
    for n in &per_pod {
        assert!((150..250).contains(n), "uneven shards: {per_pod:?}");
    }
    for pod in &f.pods {
        assert_eq!(count(pod, None), N);
    }
    let even = json!({"must": [{"key": "parity", "match": {"value": "even"}}]});
    assert_eq!(count(c, Some(even.clone())), N / 2);

    // searches: exact, so that the merged answer must equal the single node's
    for q in [3u64, 77, 512] {
        for (offset, filter) in [(0, None), (4, None), (2, Some(even.clone()))] {
            let mut body = json!({"vector": vector(q + 1000), "limit": 7, "offset": offset,
                "params": {"exact": true}, "with_payload": true});
            if let Some(flt) = &filter {
                body["filter"] = flt.clone();
            }
            let want = f.reference.ok(
                "POST",
                "/collections/docs/points/search",
                Some(body.clone()),
            );
            for pod in &f.pods {
                let got = pod.ok(
                    "POST",
                    "/collections/docs/points/search",
                    Some(body.clone()),
                );
                assert_eq!(hits(&got), hits(&want), "query {q} offset {offset}");
            }
        }
        // by a stored point (its vector lives on one shard); the point is left out
        let body = json!({"query": q, "limit": 5, "params": {"exact": true}});
        let want = f
            .reference
            .ok("POST", "/collections/docs/points/query", Some(body.clone()));
        let got = b.ok("POST", "/collections/docs/points/query", Some(body));
        assert_eq!(hits(&got["points"]), hits(&want["points"]));
    }
    // a batch of searches is answered in order
    let batch = json!({"searches": [
        {"vector": vector(1), "limit": 3, "params": {"exact": true}},
        {"vector": vector(2), "limit": 2, "params": {"exact": true}, "filter": even}
    ]});
    let want = f.reference.ok(
        "POST",
        "/collections/docs/points/search/batch",
        Some(batch.clone()),
    );
    let got = c.ok("POST", "/collections/docs/points/search/batch", Some(batch));
    for i in 0..2 {
        assert_eq!(hits(&got[i]), hits(&want[i]));
    }

    // scroll pages through every shard in id order, like the single node
    let mut offset = Value::Null;
    let mut seen = 0;
    loop {
        let body = json!({"limit": 64, "offset": offset, "with_payload": false});
        let want = f.reference.ok(
            "POST",
            "/collections/docs/points/scroll",
            Some(body.clone()),
        );
        let got = c.ok("POST", "/collections/docs/points/scroll", Some(body));
        assert_eq!(hits(&got["points"]), hits(&want["points"]));
        assert_eq!(got["next_page_offset"], want["next_page_offset"]);
        seen += got["points"].as_array().unwrap().len();
        offset = got["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen as u64, N);

    // retrieve keeps the order asked and skips missing ids
    let got = a.ok(
        "POST",
        "/collections/docs/points",
        Some(json!({"ids": [500, 5, 99999, 77], "with_payload": true})),
    );
    let ids: Vec<u64> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![500, 5, 77]);
    assert_eq!(got[0]["payload"]["n"], 500);

    // writes by filter reach every shard; by ids only the owners
    let small = json!({"must": [{"key": "n", "range": {"lt": 100}}]});
    b.ok(
        "POST",
        "/collections/docs/points/delete?wait=true",
        Some(json!({"filter": small})),
    );
    assert_eq!(count(a, None), N - 100);
    c.ok(
        "POST",
        "/collections/docs/points/payload?wait=true",
        Some(json!({"payload": {"tag": "x"}, "points": [150, 450, 599]})),
    );
    let tagged = json!({"must": [{"key": "tag", "match": {"value": "x"}}]});
    assert_eq!(count(a, Some(tagged)), 3);

    // collection info adds up the shards; a payload index is created on all of them
    a.ok(
        "PUT",
        "/collections/docs/index?wait=true",
        Some(json!({"field_name": "n", "field_schema": "integer"})),
    );
    let info = c.ok("GET", "/collections/docs", None);
    assert_eq!(info["points_count"], N - 100);
    assert_eq!(info["payload_schema"]["n"]["points"], N - 100, "{info}");

    // a bad point rejects the whole batch before any shard applies a part
    let mut bad = points(1000..1010);
    bad["points"][7]["vector"] = json!([1.0, 2.0]);
    let (status, body) = b.call("PUT", "/collections/docs/points?wait=true", Some(bad));
    assert_eq!(status, 400, "{body}");
    assert_eq!(count(a, None), N - 100);

    // collections of a distributed server are declared, not created over the API
    let (status, body) = a.call(
        "PUT",
        "/collections/other",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("VectorCollection"), "{body}");
    let (status, _) = a.call("DELETE", "/collections/docs", None);
    assert_eq!(status, 400);
}

#[test]
fn a_missing_shard_fails_requests_by_name_and_nothing_is_lost() {
    let mut f = fleet(2, &[0, 1]);
    upsert(&f.pods[0], &points(0..200));
    f.pods[1].kill();
    let (status, body) = f.pods[0].call(
        "POST",
        "/collections/docs/points/count",
        Some(json!({"exact": true})),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("shard 1"), "{body}");
    let (status, _) = f.pods[0].call(
        "POST",
        "/collections/docs/points/search",
        Some(json!({"vector": vector(1), "limit": 3})),
    );
    assert_eq!(status, 503);
    f.pods[1].restart();
    assert_eq!(count(&f.pods[0], None), 200);
    assert_eq!(count(&f.pods[1], None), 200);
    let _ = &f.places;
}
