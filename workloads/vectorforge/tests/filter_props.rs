//! Property test: for random payloads and random filters, a collection with
//! payload indexes (bitmap answers) and one without (payload scan) return
//! exactly the points that `filter::check` accepts, through scroll and count.

use proptest::prelude::*;
use serde_json::{Value, json};
use vectorforge::*;

fn payload_strategy() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec!["red", "green", "blue"])),
        prop::option::of(0i64..20),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["a", "b", "c", "d"]),
            0..3,
        )),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(color, n, tags, flag, null_x)| {
            let mut m = serde_json::Map::new();
            if let Some(c) = color {
                m.insert("color".into(), json!(c));
            }
            if let Some(n) = n {
                m.insert("n".into(), json!(n));
                m.insert(
                    "nested".into(),
                    json!({"n": n, "items": [{"k": n % 3}, {"k": 5}]}),
                );
            }
            if let Some(t) = tags {
                m.insert("tags".into(), json!(t));
            }
            if let Some(f) = flag {
                m.insert("flag".into(), json!(f));
            }
            if null_x {
                m.insert("x".into(), Value::Null);
            }
            Value::Object(m)
        })
}

fn condition_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["red", "green", "blue", "pink"]).prop_map(|c| json!({"key": "color", "match": {"value": c}})),
        (0i64..20, 0i64..20).prop_map(|(a, b)| json!({"key": "n", "range": {"gte": a.min(b), "lt": a.max(b)}})),
        (0i64..20).prop_map(|a| json!({"key": "nested.n", "range": {"gt": a}})),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 0..3)
            .prop_map(|v| json!({"key": "tags", "match": {"any": v}})),
        prop::collection::vec(prop::sample::select(vec!["a", "b"]), 0..2)
            .prop_map(|v| json!({"key": "tags", "match": {"except": v}})),
        any::<bool>().prop_map(|b| json!({"key": "flag", "match": {"value": b}})),
        prop::sample::select(vec!["tags", "color", "x", "n"]).prop_map(|k| json!({"is_empty": {"key": k}})),
        prop::sample::select(vec!["x", "color"]).prop_map(|k| json!({"is_null": {"key": k}})),
        (0usize..4).prop_map(|c| json!({"key": "tags", "values_count": {"gte": c}})),
        (0i64..3).prop_map(|k| json!({"nested": {"key": "nested.items", "filter": {"must": [{"key": "k", "match": {"value": k}}]}}})),
        prop::collection::vec(0u64..40, 0..5).prop_map(|ids| json!({"has_id": ids})),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Value> {
    let leaf = (
        prop::collection::vec(condition_strategy(), 0..3),
        prop::collection::vec(condition_strategy(), 0..3),
        prop::collection::vec(condition_strategy(), 0..2),
    )
        .prop_map(|(must, should, must_not)| json!({"must": must, "should": should, "must_not": must_not}));
    leaf.prop_recursive(2, 8, 3, |inner| {
        (
            prop::collection::vec(inner, 1..3),
            prop::collection::vec(condition_strategy(), 0..2),
            0usize..3,
        )
            .prop_map(|(subs, conds, min)| {
                let mut all = subs.clone();
                all.extend(conds);
                json!({"must": subs, "min_should": {"conditions": all, "min_count": min}})
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn index_and_scan_agree(payloads in prop::collection::vec(payload_strategy(), 1..40), filters in prop::collection::vec(filter_strategy(), 1..6)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = CollectionConfig::new(2, Distance::Dot);
        cfg.sync = SyncPolicy::Interval { millis: 1000 };
        cfg.background_indexing = false;
        let indexed = Collection::open(tmp.path().join("i"), cfg.clone()).unwrap();
        let plain = Collection::open(tmp.path().join("p"), cfg).unwrap();
        for (k, t) in [("color", PayloadSchemaType::Keyword), ("n", PayloadSchemaType::Integer),
                       ("nested.n", PayloadSchemaType::Float), ("tags", PayloadSchemaType::Keyword),
                       ("flag", PayloadSchemaType::Bool)] {
            indexed.create_payload_index(k, t).unwrap();
        }
        let points: Vec<PointStruct> = payloads.iter().enumerate().map(|(i, p)| PointStruct {
            id: (i as u64).into(), vector: vec![1.0, i as f32], payload: p.as_object().cloned(),
        }).collect();
        indexed.upsert(points.clone()).unwrap();
        plain.upsert(points.clone()).unwrap();
        // a deleted point must never match
        indexed.delete(vec![0.into()]).unwrap();
        plain.delete(vec![0.into()]).unwrap();
        for fj in filters {
            let f = Filter::from_json(&fj).unwrap();
            let want: Vec<PointId> = points.iter().skip(1)
                .filter(|p| filter::check(&f, p.payload.as_ref(), Some(p.id)))
                .map(|p| p.id).collect();
            for c in [&indexed, &plain] {
                let got: Vec<PointId> = c.scroll(&ScrollRequest { filter: Some(f.clone()), limit: 1000, ..Default::default() })
                    .points.iter().map(|r| r.id).collect();
                prop_assert_eq!(&got, &want, "filter {}", fj);
                prop_assert_eq!(c.count(Some(&f)), want.len());
            }
        }
    }
}
