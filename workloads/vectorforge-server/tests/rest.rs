//! The REST API of the real `vectorforge` binary over real sockets: Qdrant-shaped
//! requests and responses, every bad input refused with the right status and nothing
//! applied, auth, body limits, restarts (clean and SIGKILL), snapshots and metrics.

mod support;

use serde_json::{Value, json};
use support::Server;

fn ids(points: &Value) -> Vec<u64> {
    points
        .as_array()
        .expect("a list of points")
        .iter()
        .map(|p| p["id"].as_u64().expect("numeric id"))
        .collect()
}

/// 200 points on a line: "a" at (i, 0), "b" at (1, i, 0.5); payload n, parity, group.
fn seed(s: &Server, name: &str) {
    s.ok(
        "PUT",
        &format!("/collections/{name}"),
        Some(json!({"vectors": {"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}})),
    );
    let points: Vec<Value> = (0..200)
        .map(|i| {
            json!({
                "id": i,
                "vector": {"a": [i as f32, 0.0], "b": [1.0, i as f32, 0.5]},
                "payload": {"n": i, "parity": if i % 2 == 0 { "even" } else { "odd" }, "group": {"id": i % 5}}
            })
        })
        .collect();
    let r = s.ok(
        "PUT",
        &format!("/collections/{name}/points?wait=true"),
        Some(json!({"points": points})),
    );
    assert_eq!(r["status"], "completed");
}

fn count(s: &Server, name: &str) -> u64 {
    s.ok(
        "POST",
        &format!("/collections/{name}/points/count"),
        Some(json!({"exact": true})),
    )["count"]
        .as_u64()
        .expect("count")
}

#[test]
fn named_vectors_search_filter_scroll_and_payload_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    seed(&s, "c");
    assert_eq!(s.ok("GET", "/collections/c/exists", None)["exists"], true);
    let info = s.ok("GET", "/collections/c", None);
    assert_eq!(info["points_count"], 200);
    assert_eq!(info["config"]["params"]["vectors"]["b"]["distance"], "Dot");

    // nearest in "a" to (10.2, 0) with a filter on a nested key: n%5 == 0 → 10, 5 / 15
    let r = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [10.2, 0.0], "using": "a", "limit": 3, "with_payload": ["parity"], "with_vector": ["b"],
                    "filter": {"must": [{"key": "group.id", "match": {"value": 0}}]}})),
    );
    let pts = &r["points"];
    assert_eq!(ids(pts), vec![10, 15, 5]);
    assert_eq!(pts[0]["payload"], json!({"parity": "even"}));
    assert_eq!(pts[0]["vector"], json!({"b": [1.0, 10.0, 0.5]}));
    assert!((pts[0]["score"].as_f64().unwrap() - 0.2).abs() < 1e-4);

    // query by point id excludes the point itself; legacy search with a named vector
    let r = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": {"nearest": 50}, "using": "a", "limit": 2})),
    );
    let mut near = ids(&r["points"]);
    near.sort();
    assert_eq!(near, vec![49, 51]);
    let r = s.ok(
        "POST",
        "/collections/c/points/search",
        Some(json!({"vector": {"name": "b", "vector": [0.0, 1.0, 0.0]}, "limit": 1})),
    );
    assert_eq!(ids(&r), vec![199]);
    let r = s.ok(
        "POST",
        "/collections/c/points/query/batch",
        Some(json!({"searches": [{"query": [3.0, 0.0], "using": "a", "limit": 1}, {"query": [7.0, 0.0], "using": "a", "limit": 1}]})),
    );
    assert_eq!(
        (ids(&r[0]["points"]), ids(&r[1]["points"])),
        (vec![3], vec![7])
    );
    // score threshold on a distance: only points within 1.5 of (100, 0)
    let r = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [100.0, 0.0], "using": "a", "limit": 10, "score_threshold": 1.5})),
    );
    let mut got = ids(&r["points"]);
    got.sort();
    assert_eq!(got, vec![99, 100, 101]);

    // scroll pages cover everything once, in id order
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let r = s.ok(
            "POST",
            "/collections/c/points/scroll",
            Some(json!({"limit": 64, "offset": offset, "with_payload": false})),
        );
        seen.extend(ids(&r["points"]));
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen, (0..200).collect::<Vec<u64>>());

    // payload operations by id and by filter
    s.ok(
        "POST",
        "/collections/c/points/payload?wait=true",
        Some(json!({"payload": {"tag": "x"}, "points": [1, 2]})),
    );
    s.ok(
        "PUT",
        "/collections/c/points/payload",
        Some(json!({"payload": {"only": true}, "points": [3]})),
    );
    s.ok(
        "POST",
        "/collections/c/points/payload/delete",
        Some(json!({"keys": ["parity"], "filter": {"must": [{"key": "n", "range": {"lt": 2}}]}})),
    );
    s.ok(
        "POST",
        "/collections/c/points/payload/clear",
        Some(json!({"points": [4]})),
    );
    let r = s.ok(
        "POST",
        "/collections/c/points",
        Some(json!({"ids": [1, 2, 3, 4, 999], "with_payload": true})),
    );
    assert_eq!(ids(&r), vec![1, 2, 3, 4]);
    assert_eq!(
        r[0]["payload"],
        json!({"n": 1, "group": {"id": 1}, "tag": "x"})
    );
    assert_eq!(r[1]["payload"]["tag"], "x");
    assert_eq!(r[2]["payload"], json!({"only": true}));
    assert_eq!(r[3]["payload"], json!({}));
    // nested key: merged into the object at "group", created where missing
    s.ok(
        "POST",
        "/collections/c/points/payload",
        Some(json!({"payload": {"extra": 1}, "points": [5, 3], "key": "group"})),
    );
    let r = s.ok(
        "POST",
        "/collections/c/points",
        Some(json!({"ids": [5, 3]})),
    );
    assert_eq!(r[0]["payload"]["group"], json!({"id": 0, "extra": 1}));
    assert_eq!(
        r[1]["payload"],
        json!({"only": true, "group": {"extra": 1}})
    );
    let (status, _) = s.call(
        "POST",
        "/collections/c/points/payload",
        Some(json!({"payload": {"x": 1}, "points": [5], "key": "a[].b"})),
    );
    assert_eq!(status, 400);
    let one = s.ok("GET", "/collections/c/points/2", None);
    assert_eq!(one["vector"]["a"], json!([2.0, 0.0]));

    // payload index shows in the schema with its point count
    s.ok(
        "PUT",
        "/collections/c/index?wait=true",
        Some(json!({"field_name": "parity", "field_schema": "keyword"})),
    );
    let schema = &s.ok("GET", "/collections/c", None)["payload_schema"];
    assert_eq!(schema["parity"]["data_type"], "keyword");
    assert_eq!(schema["parity"]["points"], 196); // 0 and 1 lost it above, 3 was overwritten, 4 cleared
    s.ok("DELETE", "/collections/c/index/parity", None);
    assert_eq!(
        s.ok("GET", "/collections/c", None)["payload_schema"],
        json!({})
    );

    // delete by ids and by filter
    s.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"points": [0, 1]})),
    );
    s.ok(
        "POST",
        "/collections/c/points/delete",
        Some(json!({"filter": {"must": [{"key": "n", "range": {"gte": 150}}]}})),
    );
    assert_eq!(count(&s, "c"), 148);
    let (status, _) = s.call("GET", "/collections/c/points/0", None);
    assert_eq!(status, 404);

    assert_eq!(s.ok("DELETE", "/collections/c", None), true);
    assert_eq!(s.ok("GET", "/collections/c/exists", None)["exists"], false);
}

#[test]
fn bad_input_gets_the_right_status_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--max-request-bytes=65536"]);
    seed(&s, "c");
    let err = |method: &str, path: &str, body: Option<Value>, want: u16| {
        let (status, v) = s.call(method, path, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(v["result"].is_null(), "{v}");
        let msg = v["status"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {v}"))
            .to_string();
        assert!(!msg.is_empty());
        msg
    };
    // wrong dimension (second point) → whole batch refused
    let m = err(
        "PUT",
        "/collections/c/points",
        Some(json!({"points": [
        {"id": 500, "vector": {"a": [1.0, 1.0], "b": [1.0, 1.0, 1.0]}},
        {"id": 501, "vector": {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}}]})),
        400,
    );
    assert!(m.contains("dimension"), "{m}");
    // missing named vector, unknown vector name, NaN-like junk, bad id
    err(
        "PUT",
        "/collections/c/points",
        Some(json!({"points": [{"id": 502, "vector": {"a": [1.0, 1.0]}}]})),
        400,
    );
    err(
        "PUT",
        "/collections/c/points",
        Some(
            json!({"points": [{"id": 503, "vector": {"a": [1.0, 1.0], "b": [1.0, 1.0, 1.0], "zz": [1.0]}}]}),
        ),
        400,
    );
    err(
        "PUT",
        "/collections/c/points",
        Some(
            json!({"points": [{"id": "not-a-uuid", "vector": {"a": [1.0, 1.0], "b": [1.0, 1.0, 1.0]}}]}),
        ),
        400,
    );
    assert_eq!(count(&s, "c"), 200);
    // unknown collection and point
    err(
        "POST",
        "/collections/nope/points/count",
        Some(json!({})),
        404,
    );
    err("GET", "/collections/nope", None, 404);
    err("GET", "/collections/c/points/12345", None, 404);
    // malformed filter JSON (syntax and shape)
    let (status, v) = s
        .raw(
            "POST",
            "/collections/c/points/count",
            Some(b"{\"filter\": {\"must\": [}"),
            &[],
        )
        .map(|(st, b)| (st, String::from_utf8_lossy(&b).into_owned()))
        .unwrap();
    assert_eq!(status, 400, "{v}");
    assert!(v.contains("JSON"), "{v}");
    err(
        "POST",
        "/collections/c/points/delete",
        Some(json!({"filter": {"must": [{"key": "n", "range": {"lt": "abc"}}]}})),
        400,
    );
    assert_eq!(count(&s, "c"), 200);
    // query in a vector space that does not exist, wrong query dimension
    err(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [1.0, 0.0], "using": "zz"})),
        400,
    );
    err(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [1.0], "using": "a"})),
        400,
    );
    // duplicate collection, bad name, bad params
    err(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
        409,
    );
    err(
        "PUT",
        "/collections/..bad",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
        400,
    );
    err(
        "PUT",
        "/collections/d",
        Some(json!({"vectors": {"size": 0, "distance": "Dot"}})),
        400,
    );
    err(
        "PUT",
        "/collections/d",
        Some(json!({"vectors": {"size": 2, "distance": "Hamming"}})),
        400,
    );
    assert_eq!(s.ok("GET", "/collections/d/exists", None)["exists"], false);
    // oversized body → 413, nothing applied
    let big: Vec<Value> = (1000..3000)
        .map(|i| json!({"id": i, "vector": {"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}}))
        .collect();
    err(
        "PUT",
        "/collections/c/points",
        Some(json!({"points": big})),
        413,
    );
    assert_eq!(count(&s, "c"), 200);
    err("GET", "/no/such/route", None, 404);
}

#[test]
fn api_key_guards_everything_but_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--api-key=topsecret"]);
    let body = json!({"vectors": {"size": 2, "distance": "Dot"}});
    let (status, v) = s.call("PUT", "/collections/k", Some(body.clone()));
    assert_eq!(status, 401, "{v}");
    let (status, _) = s.call_with("PUT", "/collections/k", Some(body.clone()), Some("wrong"));
    assert_eq!(status, 401);
    let (status, _) = s.call_with("GET", "/collections", None, Some("topsecre"));
    assert_eq!(status, 401);
    assert_eq!(
        s.call_with("GET", "/collections/k/exists", None, Some("topsecret"))
            .1["result"]["exists"],
        false
    );
    let (status, _) = s.call_with("PUT", "/collections/k", Some(body), Some("topsecret"));
    assert_eq!(status, 200);
    let (status, _) = s
        .raw(
            "GET",
            "/collections",
            None,
            &[("authorization", "Bearer topsecret")],
        )
        .unwrap();
    assert_eq!(status, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(s.raw("GET", open, None, &[]).unwrap().0, 200, "{open}");
    }
}

#[test]
fn data_survives_clean_restarts_and_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start(&tmp.path().join("data"), &[]);
    seed(&s, "c");
    s.ok(
        "PUT",
        "/collections/plain",
        Some(json!({"vectors": {"size": 2, "distance": "Cosine"}})),
    );
    s.ok("PUT", "/collections/plain/points", Some(json!({"batch": {"ids": [1, 2, 3], "vectors": [[1, 0], [0, 1], [1, 1]], "payloads": [{"k": "a"}, {"k": "b"}, {"k": "a"}]}})));
    s.ok(
        "PUT",
        "/collections/plain/index",
        Some(json!({"field_name": "k", "field_schema": {"type": "keyword"}})),
    );
    let q = json!({"query": [20.1, 0.0], "using": "a", "limit": 5});
    let before = ids(&s.ok("POST", "/collections/c/points/query", Some(q.clone()))["points"]);

    s.restart();
    let mut names: Vec<String> = s.ok("GET", "/collections", None)["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["c", "plain"]);
    assert_eq!(count(&s, "c"), 200);
    assert_eq!(
        ids(&s.ok("POST", "/collections/c/points/query", Some(q.clone()))["points"]),
        before
    );
    assert_eq!(
        s.ok("GET", "/collections/plain", None)["payload_schema"]["k"]["points"],
        3
    );

    // acknowledged writes survive SIGKILL (WAL + journal replay)
    s.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"points": [20]})),
    );
    s.ok(
        "PUT",
        "/collections/plain/points?wait=true",
        Some(json!({"points": [{"id": 4, "vector": [2, 1], "payload": {"k": "c"}}]})),
    );
    s.kill();
    let s = Server::start(&s.data_dir, &[]);
    assert_eq!(count(&s, "c"), 199);
    assert_eq!(count(&s, "plain"), 4);
    let after = ids(&s.ok("POST", "/collections/c/points/query", Some(q))["points"]);
    assert_eq!(before, vec![20, 21, 19, 22, 18]);
    assert_eq!(after, vec![21, 19, 22, 18, 23]);
    // both vector spaces agree after the crash
    let r = s.ok(
        "POST",
        "/collections/c/points/search",
        Some(json!({"vector": {"name": "b", "vector": [0.0, 1.0, 0.0]}, "limit": 200})),
    );
    assert_eq!(r.as_array().unwrap().len(), 199);
}

#[test]
fn snapshots_can_be_created_listed_downloaded_and_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    seed(&s, "c");
    let snap = s.ok("POST", "/collections/c/snapshots", None);
    let name = snap["name"].as_str().unwrap().to_string();
    assert!(snap["size"].as_u64().unwrap() > 0);
    let listed = s.ok("GET", "/collections/c/snapshots", None);
    assert_eq!(listed[0]["name"], name.as_str());
    let (status, archive) = s
        .raw(
            "GET",
            &format!("/collections/c/snapshots/{name}"),
            None,
            &[],
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(archive.len() as u64, snap["size"].as_u64().unwrap());

    // change the collection, then recover the snapshot from its file location
    s.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"filter": {"must": [{"key": "parity", "match": {"value": "odd"}}]}})),
    );
    assert_eq!(count(&s, "c"), 100);
    let path = s.data_dir.join("snapshots/c").join(&name);
    let (status, v) = s.call(
        "PUT",
        "/collections/c/snapshots/recover",
        Some(json!({"location": format!("file://{}", path.display()), "checksum": "00"})),
    );
    assert_eq!(status, 400, "checksum mismatch must be refused: {v}");
    assert_eq!(count(&s, "c"), 100);
    s.ok(
        "PUT",
        "/collections/c/snapshots/recover",
        Some(
            json!({"location": format!("file://{}", path.display()), "checksum": snap["checksum"]}),
        ),
    );
    assert_eq!(count(&s, "c"), 200);
    let (status, _) = s.call(
        "PUT",
        "/collections/c/snapshots/recover",
        Some(json!({"location": "file:///etc/passwd"})),
    );
    assert_eq!(status, 400);

    // upload the downloaded archive as a new collection (multipart)
    let boundary = "vfboundary42";
    let mut body = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"snapshot\"; filename=\"s.snapshot\"\r\ncontent-type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(&archive);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let len = body.len().to_string();
    let (status, out) = raw_with_type(&s, "/collections/copy/snapshots/upload", &body, &ct, &len);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    assert_eq!(count(&s, "copy"), 200);
    let r = s.ok(
        "POST",
        "/collections/copy/points/query",
        Some(json!({"query": [10.0, 0.0], "using": "a", "limit": 1})),
    );
    assert_eq!(ids(&r["points"]), vec![10]);
    // a corrupt upload changes nothing
    let mut bad = body.clone();
    let mid = bad.len() / 2;
    bad.truncate(mid);
    bad.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let len = bad.len().to_string();
    let (status, _) = raw_with_type(&s, "/collections/copy/snapshots/upload", &bad, &ct, &len);
    assert_eq!(status, 400);
    assert_eq!(count(&s, "copy"), 200);

    s.ok("DELETE", &format!("/collections/c/snapshots/{name}"), None);
    assert_eq!(s.ok("GET", "/collections/c/snapshots", None), json!([]));
}

fn raw_with_type(s: &Server, path: &str, body: &[u8], ct: &str, len: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: {ct}\r\ncontent-length: {len}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out[split + 4..].to_vec())
}

#[test]
fn metrics_count_requests_and_describe_collections() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        &tmp.path().join("data"),
        &[
            "--collection=boot",
            "--dimension=3",
            "--distance=Dot",
            "--payload-index=lang=keyword",
        ],
    );
    // the collection named on the command line exists with its payload index
    let info = s.ok("GET", "/collections/boot", None);
    assert_eq!(info["config"]["params"]["vectors"]["size"], 3);
    assert_eq!(info["payload_schema"]["lang"]["data_type"], "keyword");
    s.ok(
        "PUT",
        "/collections/boot/points",
        Some(json!({"points": [{"id": 1, "vector": [1, 2, 3]}]})),
    );
    let _ = s.call("GET", "/collections/missing", None);
    let (status, body) = s.raw("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"vectorforge_http_requests_total{method="PUT",route="/collections/{collection_name}/points",status="200"} 1"#), "{text}");
    assert!(
        text.contains(r#"route="/collections/{collection_name}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"vectorforge_collection_points{collection="boot"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("vectorforge_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"vectorforge_collection_wal_lag_operations{collection="boot"}"#),
        "{text}"
    );
}

#[test]
fn quantized_collections_search_on_codes_and_rescore() {
    let tmp = tempfile::tempdir().unwrap();
    // the start collection quantized by flag, another one by Qdrant's quantization_config
    let s = Server::start(
        &tmp.path().join("data"),
        &[
            "--collection=flagged",
            "--dimension=16",
            "--distance=Dot",
            "--quantization=int8",
            "--quantization-quantile=0.99",
        ],
    );
    let info = s.ok("GET", "/collections/flagged", None);
    assert_eq!(
        info["config"]["quantization_config"]["scalar"]["type"], "int8",
        "{info}"
    );
    s.ok(
        "PUT",
        "/collections/q",
        Some(json!({"vectors": {"size": 16, "distance": "Euclid"}, "quantization_config": {"binary": {"always_ram": true}}})),
    );
    let info = s.ok("GET", "/collections/q", None);
    assert_eq!(
        info["config"]["quantization_config"],
        json!({"binary": {"always_ram": true}})
    );
    // a deterministic spread of 3,000 points (codes are trained from 1,000 on)
    let vec_of = |i: u64| -> Vec<f32> {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    // binary codes of 16 dimensions are 16 bits: they need far more candidates
    for (name, oversampling) in [("flagged", 4.0), ("q", 100.0)] {
        for chunk in 0..3u64 {
            let pts: Vec<Value> = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| json!({"id": i, "vector": vec_of(i)}))
                .collect();
            s.ok(
                "PUT",
                &format!("/collections/{name}/points?wait=true"),
                Some(json!({"points": pts})),
            );
        }
        let search = |params: Value| {
            s.ok(
                "POST",
                &format!("/collections/{name}/points/search"),
                Some(json!({"vector": vec_of(123_456), "limit": 5, "params": params})),
            )
        };
        let exact = search(json!({"exact": true}));
        let coded = search(
            json!({"hnsw_ef": 256, "quantization": {"rescore": true, "oversampling": oversampling}}),
        );
        let f32_only = search(json!({"hnsw_ef": 256, "quantization": {"ignore": true}}));
        // rescored hits carry exact scores: the best one is the exact best one
        assert_eq!(coded[0]["id"], exact[0]["id"], "{name}: {coded} vs {exact}");
        let (a, b) = (
            coded[0]["score"].as_f64().unwrap(),
            exact[0]["score"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{name}: {a} vs {b}");
        assert_eq!(f32_only[0]["id"], exact[0]["id"]);
        // a bad search parameter is a clear 400
        let (status, body) = s.call(
            "POST",
            &format!("/collections/{name}/points/search"),
            Some(json!({"vector": vec_of(1), "limit": 5, "params": {"quantization": {"oversampling": "x"}}})),
        );
        assert_eq!(status, 400, "{body}");
    }
    // quantization of an existing collection cannot change; product quantization is refused
    let (status, _) = s.call(
        "PATCH",
        "/collections/q",
        Some(json!({"quantization_config": {"scalar": {"type": "int8"}}})),
    );
    assert_eq!(status, 400);
    let (status, body) = s.call(
        "PUT",
        "/collections/pq",
        Some(json!({"vectors": {"size": 16, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x16"}}})),
    );
    assert_eq!(status, 400);
    assert!(body.to_string().contains("product quantization"), "{body}");
}
