//! The gRPC API (`modelhub.vectorforge.v1.VectorService` and `grpc.health.v1`) against
//! the real `vectorforge` binary, through the generated tonic client.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vectorforge_server::grpc::SERVICE_NAME;
use vectorforge_server::grpc::pb::{self, vector_service_client::VectorServiceClient};

type Client = VectorServiceClient<Channel>;

async fn channel(s: &support::Server) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{}", s.grpc_port))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC port")
}

async fn client(s: &support::Server) -> Client {
    VectorServiceClient::new(channel(s).await).max_decoding_message_size(64 << 20)
}

fn id(n: u64) -> pb::PointId {
    pb::PointId {
        kind: Some(pb::point_id::Kind::Num(n)),
    }
}

fn num(id: &Option<pb::PointId>) -> u64 {
    match id.as_ref().and_then(|i| i.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => *n,
        other => panic!("expected a numeric id, got {other:?}"),
    }
}

fn point(n: u64, vector: Vec<f32>, payload: Value) -> pb::Point {
    pb::Point {
        id: Some(id(n)),
        vector,
        payload_json: payload.to_string(),
        ..Default::default()
    }
}

/// Deterministic pseudo-random vectors (xorshift64*).
struct Rng(u64);

impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.f32()).collect()
    }
}

fn vector_params(size: u64, d: pb::Distance) -> pb::VectorParams {
    pb::VectorParams {
        size,
        distance: d as i32,
        hnsw_config: None,
    }
}

async fn create(c: &mut Client, name: &str, size: u64, d: pb::Distance) {
    c.create_collection(pb::CreateCollectionRequest {
        collection_name: name.into(),
        vector: Some(vector_params(size, d)),
        ..Default::default()
    })
    .await
    .expect("create collection");
}

async fn count(c: &mut Client, name: &str, filter: &str) -> u64 {
    c.count(pb::CountRequest {
        collection_name: name.into(),
        filter_json: filter.into(),
    })
    .await
    .expect("count")
    .into_inner()
    .count
}

fn search(name: &str, vector: Vec<f32>, limit: u64) -> pb::SearchRequest {
    pb::SearchRequest {
        collection_name: name.into(),
        vector,
        limit,
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    let e = r.expect_err("the call must fail");
    (e.code(), e.message().to_string())
}

fn euclid(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The `k` nearest ids by Euclidean distance among `keep`, nearest first.
fn brute_force(
    base: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(u64, f32)> {
    let mut all: Vec<(u64, f32)> = (0..base.len())
        .filter(|&i| keep(i))
        .map(|i| (i as u64, euclid(&base[i], q)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.truncate(k);
    all
}

fn payload(p: &str) -> Value {
    serde_json::from_str(p).expect("payload_json is JSON")
}

const DIM: usize = 8;
const N: usize = 3000;
const GROUP_3: &str = r#"{"must": [{"key": "group", "match": {"value": 3}}]}"#;

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_read_delete_and_restart_over_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = support::Server::start(&tmp.path().join("data"), &[]);
    let mut c = client(&s).await;
    create(&mut c, "docs", DIM as u64, pb::Distance::Euclid).await;
    c.create_payload_index(pb::CreatePayloadIndexRequest {
        collection_name: "docs".into(),
        field_name: "group".into(),
        field_type: pb::PayloadSchemaType::Integer as i32,
    })
    .await
    .unwrap();

    // streaming upsert: 6 messages of 500 points, only the first names the collection
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base: Vec<Vec<f32>> = (0..N).map(|_| rng.vector(DIM)).collect();
    let messages: Vec<pb::UpsertRequest> = base
        .chunks(500)
        .enumerate()
        .map(|(m, chunk)| pb::UpsertRequest {
            collection_name: if m == 0 { "docs".into() } else { String::new() },
            points: chunk
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let i = (m * 500 + j) as u64;
                    point(
                        i,
                        v.clone(),
                        json!({"group": i % 10, "name": format!("p{i}")}),
                    )
                })
                .collect(),
        })
        .collect();
    let done = c
        .upsert_stream(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.points, done.messages), (N as u64, 6));
    assert!(done.operation_id > 0);
    assert_eq!(count(&mut c, "docs", "").await, N as u64);
    assert_eq!(count(&mut c, "docs", GROUP_3).await, 300);

    // exact search equals brute force, ids and scores; HNSW search finds nearly all of them
    let mut found = 0;
    for _ in 0..20 {
        let q = rng.vector(DIM);
        let truth = brute_force(&base, &q, 10, |_| true);
        let exact = c
            .search(pb::SearchRequest {
                exact: true,
                ..search("docs", q.clone(), 10)
            })
            .await
            .unwrap()
            .into_inner()
            .result;
        let got: Vec<u64> = exact.iter().map(|p| num(&p.id)).collect();
        assert_eq!(got, truth.iter().map(|t| t.0).collect::<Vec<_>>());
        for (p, t) in exact.iter().zip(&truth) {
            assert!(
                (p.score - t.1).abs() < 1e-4,
                "score {} vs brute force {}",
                p.score,
                t.1
            );
        }
        let approx = c
            .search(search("docs", q.clone(), 10))
            .await
            .unwrap()
            .into_inner()
            .result;
        found += approx.iter().filter(|p| got.contains(&num(&p.id))).count();
        // filtered exact search
        let filtered = c
            .search(pb::SearchRequest {
                exact: true,
                filter_json: GROUP_3.into(),
                ..search("docs", q.clone(), 5)
            })
            .await
            .unwrap()
            .into_inner()
            .result;
        let truth: Vec<u64> = brute_force(&base, &q, 5, |i| i % 10 == 3)
            .iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(
            filtered.iter().map(|p| num(&p.id)).collect::<Vec<_>>(),
            truth
        );
    }
    assert!(found >= 180, "HNSW recall@10 {found}/200");

    // payload and vector come back with a hit
    let hit = c
        .search(pb::SearchRequest {
            with_payload: true,
            with_vectors: true,
            ..search("docs", base[42].clone(), 1)
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .remove(0);
    assert_eq!(num(&hit.id), 42);
    assert_eq!(
        payload(&hit.payload_json),
        json!({"group": 2, "name": "p42"})
    );
    assert_eq!(hit.vector, base[42]);

    // batch search streams one result per query, in order
    let searches: Vec<pb::SearchRequest> = (0..50)
        .map(|i| pb::SearchRequest {
            exact: true,
            ..search("", base[i * 7].clone(), 1)
        })
        .collect();
    let mut stream = c
        .search_batch(pb::SearchBatchRequest {
            collection_name: "docs".into(),
            searches,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(r) = stream.message().await.unwrap() {
        assert_eq!(r.index, n);
        assert_eq!(num(&r.result[0].id), u64::from(n) * 7);
        n += 1;
    }
    assert_eq!(n, 50);

    // get: in the order asked, missing ids skipped
    let got = c
        .get(pb::GetRequest {
            collection_name: "docs".into(),
            ids: vec![id(7), id(999_999), id(5)],
            with_payload: true,
            with_vectors: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(
        got.iter().map(|p| num(&p.id)).collect::<Vec<_>>(),
        vec![7, 5]
    );
    assert_eq!(payload(&got[1].payload_json)["name"], "p5");
    assert_eq!(got[0].vector, base[7]);
    let bare = c
        .get(pb::GetRequest {
            collection_name: "docs".into(),
            ids: vec![id(7)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    assert!(bare[0].payload_json.is_empty() && bare[0].vector.is_empty());

    // scroll pages through a filter in id order
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let page = c
            .scroll(pb::ScrollRequest {
                collection_name: "docs".into(),
                filter_json: GROUP_3.into(),
                limit: 120,
                offset: offset.take(),
                with_payload: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for p in &page.result {
            assert_eq!(payload(&p.payload_json)["group"], 3);
            seen.push(num(&p.id));
        }
        match page.next_page_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..N as u64).filter(|i| i % 10 == 3).collect::<Vec<_>>()
    );

    // delete by ids, then by filter
    let del = |sel| pb::DeleteRequest {
        collection_name: "docs".into(),
        selector: Some(sel),
    };
    c.delete(del(pb::delete_request::Selector::Ids(pb::PointIdList {
        ids: vec![id(0), id(1), id(2)],
    })))
    .await
    .unwrap();
    assert_eq!(count(&mut c, "docs", "").await, N as u64 - 3);
    let group_9 = r#"{"must": [{"key": "group", "match": {"value": 9}}]}"#;
    c.delete(del(pb::delete_request::Selector::FilterJson(
        group_9.into(),
    )))
    .await
    .unwrap();
    let left = N as u64 - 3 - 300;
    assert_eq!(count(&mut c, "docs", "").await, left);
    assert_eq!(count(&mut c, "docs", group_9).await, 0);

    // collection info and list
    let info = c
        .get_collection(pb::GetCollectionRequest {
            collection_name: "docs".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.points_count, left);
    assert_eq!(
        info.vector,
        Some(vector_params(DIM as u64, pb::Distance::Euclid))
    );
    assert_eq!(info.payload_indexes.len(), 1);
    assert_eq!(info.payload_indexes[0].field_name, "group");
    assert_eq!(
        info.payload_indexes[0].field_type,
        pb::PayloadSchemaType::Integer as i32
    );
    let names = c
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    assert_eq!(names, vec!["docs".to_string()]);

    // every call is in the metrics with its code
    let (status, body) = s.raw("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&body);
    for method in ["UpsertStream", "Search", "SearchBatch", "Scroll", "Delete"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("vectorforge_grpc_requests_total")
                    && l.contains(&format!("method=\"{method}\""))
                    && l.contains("code=\"Ok\"")),
            "{method} missing from metrics:\n{metrics}"
        );
    }

    // a restart keeps every acknowledged write
    let q = rng.vector(DIM);
    let before = c
        .search(pb::SearchRequest {
            exact: true,
            ..search("docs", q.clone(), 10)
        })
        .await
        .unwrap()
        .into_inner();
    drop(c);
    tokio::task::block_in_place(|| s.restart());
    let mut c = client(&s).await;
    assert_eq!(count(&mut c, "docs", "").await, left);
    let after = c
        .search(pb::SearchRequest {
            exact: true,
            ..search("docs", q, 10)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after);
    let p = c
        .get(pb::GetRequest {
            collection_name: "docs".into(),
            ids: vec![id(5)],
            with_payload: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(
        payload(&p[0].payload_json),
        json!({"group": 5, "name": "p5"})
    );

    // delete the collection
    let deleted = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.delete_collection(pb::DeleteCollectionRequest {
                collection_name: "docs".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .deleted
        }
    };
    assert!(deleted(&mut c).await);
    assert!(!deleted(&mut c).await);
    let (code, _) = code(
        c.get_collection(pb::GetCollectionRequest {
            collection_name: "docs".into(),
        })
        .await,
    );
    assert_eq!(code, Code::NotFound);
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_vectors_over_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &[]);
    let mut c = client(&s).await;
    c.create_collection(pb::CreateCollectionRequest {
        collection_name: "multi".into(),
        named_vectors: BTreeMap::from([
            ("text".to_string(), vector_params(4, pb::Distance::Cosine)),
            ("image".to_string(), vector_params(3, pb::Distance::Euclid)),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    let vectors = |i: u64| {
        BTreeMap::from([
            (
                "text".to_string(),
                pb::Vector {
                    data: vec![1.0, i as f32, 0.5, -1.0],
                },
            ),
            (
                "image".to_string(),
                pb::Vector {
                    data: vec![i as f32, 0.0, 1.0],
                },
            ),
        ])
    };
    let points: Vec<pb::Point> = (0..100)
        .map(|i| pb::Point {
            id: Some(id(i)),
            vectors: vectors(i),
            payload_json: json!({"i": i}).to_string(),
            ..Default::default()
        })
        .collect();
    c.upsert(pb::UpsertRequest {
        collection_name: "multi".into(),
        points,
    })
    .await
    .unwrap();
    assert_eq!(count(&mut c, "multi", "").await, 100);

    let near = |using: &str, v: Vec<f32>| pb::SearchRequest {
        using: using.into(),
        exact: true,
        with_vectors: true,
        ..search("multi", v, 3)
    };
    let hits = c
        .search(near("image", vec![41.8, 0.0, 1.0]))
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(
        hits.iter().map(|h| num(&h.id)).collect::<Vec<_>>(),
        vec![42, 41, 43]
    );
    assert_eq!(hits[0].vectors["image"].data, vec![42.0, 0.0, 1.0]);
    // cosine vectors are stored normalised (as Qdrant does)
    let text = &hits[0].vectors["text"].data;
    let norm = (1.0f32 + 42.0 * 42.0 + 0.25 + 1.0).sqrt();
    assert!(
        text.iter()
            .zip([1.0, 42.0, 0.5, -1.0])
            .all(|(a, b)| (a - b / norm).abs() < 1e-5),
        "{text:?}"
    );
    assert!(hits[0].vector.is_empty());
    let hits = c
        .search(near("text", vec![1.0, 7.0, 0.5, -1.0]))
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(num(&hits[0].id), 7);

    // only the vectors asked for
    let got = c
        .get(pb::GetRequest {
            collection_name: "multi".into(),
            ids: vec![id(3)],
            vector_names: vec!["image".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(got[0].vectors.keys().collect::<Vec<_>>(), vec!["image"]);

    // batch search in a named space
    let searches = (0..5)
        .map(|i| near("image", vec![i as f32 * 10.0, 0.0, 1.0]))
        .collect();
    let mut stream = c
        .search_batch(pb::SearchBatchRequest {
            collection_name: "multi".into(),
            searches,
        })
        .await
        .unwrap()
        .into_inner();
    let mut firsts = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        firsts.push(num(&r.result[0].id));
    }
    assert_eq!(firsts, vec![0, 10, 20, 30, 40]);

    // the info lists both spaces
    let info = c
        .get_collection(pb::GetCollectionRequest {
            collection_name: "multi".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(info.vector.is_none());
    assert_eq!(
        info.named_vectors["image"],
        vector_params(3, pb::Distance::Euclid)
    );
    assert_eq!(
        info.named_vectors["text"],
        vector_params(4, pb::Distance::Cosine)
    );

    // a missing space, an unknown space, no space: refused, nothing applied
    let only_text = pb::Point {
        id: Some(id(500)),
        vectors: BTreeMap::from([("text".to_string(), pb::Vector { data: vec![1.0; 4] })]),
        ..Default::default()
    };
    let unnamed = pb::Point {
        id: Some(id(501)),
        vector: vec![1.0; 3],
        ..Default::default()
    };
    let mut unknown = pb::Point {
        id: Some(id(502)),
        vectors: vectors(502),
        ..Default::default()
    };
    unknown
        .vectors
        .insert("audio".into(), pb::Vector { data: vec![1.0] });
    for bad in [only_text, unnamed, unknown] {
        let n = num(&bad.id);
        let (code, msg) = code(
            c.upsert(pb::UpsertRequest {
                collection_name: "multi".into(),
                points: vec![bad],
            })
            .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains(&n.to_string()), "{msg}");
    }
    assert_eq!(count(&mut c, "multi", "").await, 100);
    for using in ["", "audio"] {
        let (code, msg) = code(c.search(near(using, vec![1.0, 0.0, 1.0])).await);
        assert_eq!(code, Code::InvalidArgument, "{using:?}: {msg}");
    }
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_the_right_code_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &[]);
    let mut c = client(&s).await;
    create(&mut c, "c", 4, pb::Distance::Cosine).await;
    let good: Vec<pb::Point> = (0..10)
        .map(|i| point(i, vec![1.0, i as f32, 0.0, 1.0], json!({"i": i})))
        .collect();
    c.upsert(pb::UpsertRequest {
        collection_name: "c".into(),
        points: good,
    })
    .await
    .unwrap();
    let snapshot = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.scroll(pb::ScrollRequest {
                collection_name: "c".into(),
                limit: 100,
                with_payload: true,
                with_vectors: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let before = snapshot(&mut c).await;

    // upserts: one bad point refuses the whole request; the error names the point
    let fresh = |n: u64| point(n, vec![1.0, 2.0, 3.0, 4.0], json!({}));
    let cases: Vec<(&str, pb::Point, &str)> = vec![
        (
            "wrong dimension",
            point(103, vec![1.0, 2.0, 3.0], json!({})),
            "103",
        ),
        (
            "zero vector under cosine",
            point(103, vec![0.0; 4], json!({})),
            "103",
        ),
        (
            "NaN component",
            point(103, vec![1.0, f32::NAN, 0.0, 0.0], json!({})),
            "103",
        ),
        (
            "payload not an object",
            pb::Point {
                payload_json: "[1, 2]".into(),
                ..fresh(103)
            },
            "103",
        ),
        (
            "payload not JSON",
            pb::Point {
                payload_json: "{oops".into(),
                ..fresh(103)
            },
            "103",
        ),
        (
            "no id",
            pb::Point {
                id: None,
                ..fresh(103)
            },
            "points[3]",
        ),
        (
            "bad uuid",
            pb::Point {
                id: Some(pb::PointId {
                    kind: Some(pb::point_id::Kind::Uuid("not-a-uuid".into())),
                }),
                ..fresh(103)
            },
            "not-a-uuid",
        ),
        (
            "no vector",
            pb::Point {
                vector: vec![],
                ..fresh(103)
            },
            "103",
        ),
        ("duplicate id", fresh(100), "100"),
    ];
    for (what, bad, named) in cases {
        let points = vec![fresh(100), fresh(101), fresh(102), bad];
        let (code, msg) = code(
            c.upsert(pb::UpsertRequest {
                collection_name: "c".into(),
                points,
            })
            .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{what}: {msg}");
        assert!(msg.contains(named), "{what}: {msg:?} should name {named}");
    }
    assert_eq!(snapshot(&mut c).await, before);

    // unknown collection: NOT_FOUND everywhere
    let nf = "nope".to_string();
    let expect_nf = |r: (Code, String)| assert_eq!(r.0, Code::NotFound, "{}", r.1);
    expect_nf(code(
        c.upsert(pb::UpsertRequest {
            collection_name: nf.clone(),
            points: vec![fresh(1)],
        })
        .await,
    ));
    expect_nf(code(
        c.upsert_stream(futures::stream::iter(vec![pb::UpsertRequest {
            collection_name: nf.clone(),
            points: vec![fresh(1)],
        }]))
        .await,
    ));
    expect_nf(code(c.search(search("nope", vec![1.0; 4], 3)).await));
    expect_nf(code(
        c.search_batch(pb::SearchBatchRequest {
            collection_name: nf.clone(),
            searches: vec![search("", vec![1.0; 4], 3)],
        })
        .await,
    ));
    expect_nf(code(
        c.count(pb::CountRequest {
            collection_name: nf.clone(),
            ..Default::default()
        })
        .await,
    ));
    expect_nf(code(
        c.get(pb::GetRequest {
            collection_name: nf.clone(),
            ids: vec![id(1)],
            ..Default::default()
        })
        .await,
    ));
    expect_nf(code(
        c.scroll(pb::ScrollRequest {
            collection_name: nf.clone(),
            ..Default::default()
        })
        .await,
    ));
    expect_nf(code(
        c.delete(pb::DeleteRequest {
            collection_name: nf.clone(),
            selector: Some(pb::delete_request::Selector::Ids(pb::PointIdList {
                ids: vec![id(1)],
            })),
        })
        .await,
    ));
    expect_nf(code(
        c.get_collection(pb::GetCollectionRequest {
            collection_name: nf.clone(),
        })
        .await,
    ));
    expect_nf(code(
        c.create_payload_index(pb::CreatePayloadIndexRequest {
            collection_name: nf.clone(),
            field_name: "i".into(),
            field_type: pb::PayloadSchemaType::Integer as i32,
        })
        .await,
    ));

    // malformed filters: INVALID_ARGUMENT, nothing deleted
    for bad in [
        "{not json",
        "[1]",
        r#"{"must": [{"key": "i", "bogus": 1}]}"#,
        r#"{"maybe": []}"#,
    ] {
        let inv = |r: (Code, String)| assert_eq!(r.0, Code::InvalidArgument, "{bad}: {}", r.1);
        inv(code(
            c.count(pb::CountRequest {
                collection_name: "c".into(),
                filter_json: bad.into(),
            })
            .await,
        ));
        inv(code(
            c.scroll(pb::ScrollRequest {
                collection_name: "c".into(),
                filter_json: bad.into(),
                ..Default::default()
            })
            .await,
        ));
        inv(code(
            c.search(pb::SearchRequest {
                filter_json: bad.into(),
                ..search("c", vec![1.0; 4], 3)
            })
            .await,
        ));
        inv(code(
            c.delete(pb::DeleteRequest {
                collection_name: "c".into(),
                selector: Some(pb::delete_request::Selector::FilterJson(bad.into())),
            })
            .await,
        ));
    }
    let (code_, _) = code(
        c.delete(pb::DeleteRequest {
            collection_name: "c".into(),
            selector: None,
        })
        .await,
    );
    assert_eq!(code_, Code::InvalidArgument);

    // bad searches
    for (what, bad) in [
        ("wrong dimension", search("c", vec![1.0; 3], 3)),
        ("no vector", search("c", vec![], 3)),
        ("limit too large", search("c", vec![1.0; 4], 1_000_000)),
        (
            "hnsw_ef 0",
            pb::SearchRequest {
                hnsw_ef: Some(0),
                ..search("c", vec![1.0; 4], 3)
            },
        ),
        (
            "unknown vector name",
            pb::SearchRequest {
                using: "x".into(),
                ..search("c", vec![1.0; 4], 3)
            },
        ),
    ] {
        let (code, msg) = code(c.search(bad).await);
        assert_eq!(code, Code::InvalidArgument, "{what}: {msg}");
    }
    // a bad search in a batch fails the call before any result
    let searches = vec![
        search("", vec![1.0; 4], 1),
        search("", vec![1.0; 4], 1),
        search("", vec![1.0; 5], 1),
    ];
    let (code_, msg) = code(
        c.search_batch(pb::SearchBatchRequest {
            collection_name: "c".into(),
            searches,
        })
        .await,
    );
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("searches[2]"), "{msg}");

    // bad collections
    let vp = vector_params(4, pb::Distance::Dot);
    for (what, req, want) in [
        (
            "exists",
            pb::CreateCollectionRequest {
                collection_name: "c".into(),
                vector: Some(vp),
                ..Default::default()
            },
            Code::AlreadyExists,
        ),
        (
            "bad name",
            pb::CreateCollectionRequest {
                collection_name: "../x".into(),
                vector: Some(vp),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "no vectors",
            pb::CreateCollectionRequest {
                collection_name: "d".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "no distance",
            pb::CreateCollectionRequest {
                collection_name: "d".into(),
                vector: Some(pb::VectorParams { distance: 0, ..vp }),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "size 0",
            pb::CreateCollectionRequest {
                collection_name: "d".into(),
                vector: Some(pb::VectorParams { size: 0, ..vp }),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ] {
        let (code, msg) = code(c.create_collection(req).await);
        assert_eq!(code, want, "{what}: {msg}");
    }
    let names = c
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    assert_eq!(names, vec!["c".to_string()]);
    let (code_, _) = code(
        c.create_payload_index(pb::CreatePayloadIndexRequest {
            collection_name: "c".into(),
            field_name: "i".into(),
            field_type: 0,
        })
        .await,
    );
    assert_eq!(code_, Code::InvalidArgument);

    assert_eq!(snapshot(&mut c).await, before);
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stream_message_stops_the_ingest_and_earlier_batches_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &[]);
    let mut c = client(&s).await;
    create(&mut c, "c", 4, pb::Distance::Dot).await;
    let batch = |m: u64| pb::UpsertRequest {
        collection_name: if m == 0 { "c".into() } else { String::new() },
        points: (m * 100..(m + 1) * 100)
            .map(|i| point(i, vec![1.0, i as f32, 0.0, 1.0], json!({"m": m})))
            .collect(),
    };
    let mut bad = batch(2);
    bad.points[50].vector.pop(); // point 250 has 3 dimensions
    let (code_, msg) = code(
        c.upsert_stream(futures::stream::iter(vec![
            batch(0),
            batch(1),
            bad,
            batch(3),
        ]))
        .await,
    );
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    for part in ["message 2", "point 250", "200 points", "stay applied"] {
        assert!(msg.contains(part), "{msg:?} should say {part:?}");
    }
    assert_eq!(count(&mut c, "c", "").await, 200);
    let got = c
        .get(pb::GetRequest {
            collection_name: "c".into(),
            ids: vec![id(199), id(200), id(300)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(
        got.iter().map(|p| num(&p.id)).collect::<Vec<_>>(),
        vec![199]
    );

    // a stream that switches collection is refused at that message
    create(&mut c, "other", 4, pb::Distance::Dot).await;
    let switch = pb::UpsertRequest {
        collection_name: "other".into(),
        ..batch(5)
    };
    let (code_, msg) = code(
        c.upsert_stream(futures::stream::iter(vec![batch(0), switch]))
            .await,
    );
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    assert_eq!(count(&mut c, "other", "").await, 0);

    // an empty stream applies nothing and says so
    let none = c
        .upsert_stream(futures::stream::iter(Vec::<pb::UpsertRequest>::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        none,
        pb::UpsertStreamResponse {
            points: 0,
            messages: 0,
            operation_id: 0
        }
    );
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &["--max-request-bytes=65536"]);
    let mut c = client(&s).await;
    create(&mut c, "c", 32, pb::Distance::Dot).await;
    let batch = |from: u64, n: u64| pb::UpsertRequest {
        collection_name: "c".into(),
        points: (from..from + n)
            .map(|i| point(i, vec![i as f32 + 1.0; 32], json!({})))
            .collect(),
    };
    let too_big = |r: (Code, String)| {
        assert!(
            matches!(r.0, Code::OutOfRange | Code::ResourceExhausted),
            "{:?}: {}",
            r.0,
            r.1
        );
    };
    // ~140 bytes a point: 1000 points are about 140 KB
    too_big(code(c.upsert(batch(0, 1000)).await));
    assert_eq!(count(&mut c, "c", "").await, 0);
    c.upsert(batch(0, 100)).await.unwrap();
    too_big(code(
        c.upsert_stream(futures::stream::iter(vec![
            batch(100, 10),
            batch(200, 1000),
        ]))
        .await,
    ));
    assert_eq!(count(&mut c, "c", "").await, 110);
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_guards_every_vector_call_but_not_health() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &["--api-key=s3cret"]);
    let mut c = client(&s).await;
    let with = |header: &'static str, value: &str, name: &str| {
        let mut r = Request::new(pb::CreateCollectionRequest {
            collection_name: name.into(),
            vector: Some(vector_params(4, pb::Distance::Dot)),
            ..Default::default()
        });
        r.metadata_mut().insert(header, value.parse().unwrap());
        r
    };
    for (header, value) in [
        ("api-key", "wrong"),
        ("api-key", ""),
        ("authorization", "Bearer wrong"),
        ("authorization", "s3cret"),
    ] {
        let (code_, msg) = code(c.create_collection(with(header, value, "a")).await);
        assert_eq!(code_, Code::Unauthenticated, "{header}: {value}: {msg}");
    }
    let (code_, _) = code(c.list_collections(pb::ListCollectionsRequest {}).await);
    assert_eq!(code_, Code::Unauthenticated);
    let (code_, _) = code(
        c.upsert_stream(futures::stream::iter(vec![pb::UpsertRequest::default()]))
            .await,
    );
    assert_eq!(code_, Code::Unauthenticated);
    // nothing was created
    let (status, body) = s.call_with("GET", "/collections", None, Some("s3cret"));
    assert_eq!(status, 200);
    assert_eq!(body["result"]["collections"], json!([]));

    c.create_collection(with("api-key", "s3cret", "a"))
        .await
        .unwrap();
    c.create_collection(with("authorization", "Bearer s3cret", "b"))
        .await
        .unwrap();
    let mut list = Request::new(pb::ListCollectionsRequest {});
    list.metadata_mut()
        .insert("api-key", "s3cret".parse().unwrap());
    assert_eq!(
        c.list_collections(list)
            .await
            .unwrap()
            .into_inner()
            .collections,
        vec!["a", "b"]
    );

    // health needs no key
    let mut h = HealthClient::new(channel(&s).await);
    let st = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(st, ServingStatus::Serving as i32);
}

// multi-threaded: the blocking server helpers must not starve the client connections
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_then_not_serving_on_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let s = support::Server::start(&tmp.path().join("data"), &[]);
    let mut h = HealthClient::new(channel(&s).await);
    for service in ["", SERVICE_NAME] {
        let st = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(st, ServingStatus::Serving as i32, "{service:?}");
    }
    let (code_, _) = code(
        h.check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await,
    );
    assert_eq!(code_, Code::NotFound);

    // a watcher sees NOT_SERVING once SIGTERM starts the drain
    let mut watch = h
        .watch(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);
    let mut s = s;
    let stopper = tokio::task::spawn_blocking(move || {
        s.stop();
        s
    });
    let next = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a status update within 20 s");
    assert_eq!(
        next.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    drop(watch);
    drop(h);
    let _stopped = stopper.await.unwrap();
}
