//! Scheduled snapshots, backups to a real S3-compatible server (versitygw) and restores
//! from them, with real `vectorforge` processes on loopback: a 2-shard collection
//! backs up on a 2-second schedule with retention 2; its backup restores into one
//! shard and into three (every point found, equal to the original); a corrupted
//! archive in the bucket is refused and leaves the restoring pod unready.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use support::{Server, free_port};

const DIM: usize = 8;
const N: u64 = 400;
const BUCKET: &str = "backups";
const PREFIX: &str = "it";

fn vector(i: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 31 + d as u64 * 7) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn s3_flags(s3: &S3Server, what: &str) -> Vec<String> {
    vec![
        format!("--{what}-s3-endpoint={}", s3.endpoint()),
        format!("--{what}-s3-bucket={BUCKET}"),
        format!("--{what}-s3-prefix={PREFIX}"),
        format!("--{what}-s3-access-key-id={ACCESS_KEY}"),
        format!("--{what}-s3-secret-access-key={SECRET_KEY}"),
    ]
}

/// Pods of `shards` one-replica shards of `collection` (static peers), each with
/// `extra` flags; started in order, each waited for with `start`.
fn shards(
    dir: &std::path::Path,
    collection: &str,
    shards: u32,
    extra: &[String],
    start: fn(&std::path::Path, &[&str]) -> Server,
) -> Vec<Server> {
    let ports: Vec<u16> = (0..shards).map(|_| free_port()).collect();
    (0..shards)
        .map(|i| {
            let mut args = vec![
                format!("--collection={collection}"),
                format!("--dimension={DIM}"),
                "--distance=Cosine".into(),
                format!("--shards={shards}"),
                format!("--shard={i}"),
                format!("--raft-port={}", ports[i as usize]),
            ];
            for (j, p) in ports.iter().enumerate() {
                if j != i as usize {
                    args.push(format!("--peer={j}=127.0.0.1:{p}"));
                }
            }
            args.extend(extra.iter().cloned());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            start(&dir.join(format!("{collection}-{i}")), &refs)
        })
        .collect()
}

/// Backup ids in the bucket → (shard → manifest).
fn backups(s3: &S3Server) -> BTreeMap<String, BTreeMap<u64, Value>> {
    let mut out: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    for key in s3.keys(BUCKET, &format!("{PREFIX}/default/docs")) {
        if key.ends_with(".json") {
            let m: Value = serde_json::from_slice(&s3.read(BUCKET, &key)).unwrap();
            let id = m["id"].as_str().unwrap().to_owned();
            out.entry(id)
                .or_default()
                .insert(m["shard"].as_u64().unwrap(), m);
        }
    }
    out
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scheduled_snapshots(pod: &Server, collection: &str) -> Vec<String> {
    let list = pod.ok("GET", &format!("/collections/{collection}/snapshots"), None);
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| n.contains("-scheduled-"))
        .map(str::to_owned)
        .collect()
}

/// Every point by id through `pod` (the coordinator), with payload and vector.
fn all_points(pod: &Server, collection: &str) -> BTreeMap<u64, Value> {
    let ids: Vec<u64> = (0..N).collect();
    let got = pod.ok(
        "POST",
        &format!("/collections/{collection}/points"),
        Some(json!({"ids": ids, "with_payload": true, "with_vector": true})),
    );
    got.as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p.clone()))
        .collect()
}

fn same_points(a: &BTreeMap<u64, Value>, b: &BTreeMap<u64, Value>) {
    assert_eq!(a.len(), b.len());
    for (id, p) in a {
        let q = &b[id];
        assert_eq!(p["payload"], q["payload"], "payload of {id}");
        let (va, vb) = (
            p["vector"].as_array().unwrap(),
            q["vector"].as_array().unwrap(),
        );
        assert_eq!(va.len(), vb.len());
        for (x, y) in va.iter().zip(vb) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() < 1e-6, "vector of {id}: {x} vs {y}");
        }
    }
}

#[test]
fn scheduled_backups_restore_into_any_shard_count_and_corruption_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"), &[BUCKET]);

    // A 2-shard collection snapshotting every 2 s, keeping 2, uploading each.
    let mut flags = vec![
        "--snapshot-schedule=*/2 * * * * *".to_owned(),
        "--snapshot-retention=2".to_owned(),
    ];
    flags.extend(s3_flags(&s3, "backup"));
    let source = shards(tmp.path(), "docs", 2, &flags, Server::start);
    let pts: Vec<Value> = (0..N)
        .map(|i| json!({"id": i, "vector": vector(i), "payload": {"n": i, "tag": format!("t{}", i % 5)}}))
        .collect();
    source[0].ok(
        "PUT",
        "/collections/docs/points?wait=true",
        Some(json!({"points": pts})),
    );
    let original = all_points(&source[1], "docs");
    assert_eq!(original.len(), N as usize);

    // A complete backup holding every point appears in the bucket.
    let complete_with_all = |s3: &S3Server| {
        backups(s3).into_iter().rev().find_map(|(id, m)| {
            let points: u64 = m.values().map(|v| v["points"].as_u64().unwrap()).sum();
            (m.len() == 2 && points == N).then_some(id)
        })
    };
    wait_for("a complete backup with every point", 60, || {
        complete_with_all(&s3)
    });
    let first = backups(&s3).keys().next().cloned().unwrap();
    // Retention: older backups leave the bucket and the pods' volumes.
    wait_for("the oldest backup to be pruned", 30, || {
        let ids = backups(&s3);
        (!ids.contains_key(&first) && ids.len() <= 3).then_some(())
    });
    for pod in &source {
        let local = wait_for("local retention", 30, || {
            let l = scheduled_snapshots(pod, "docs");
            (l.len() <= 2 && !l.iter().any(|n| n.contains(&first))).then_some(l)
        });
        assert!(!local.is_empty());
    }

    let metrics =
        String::from_utf8(source[0].raw("GET", "/metrics", None, &[]).unwrap().1).unwrap();
    for want in [
        "vectorforge_backups_total{result=\"ok\",step=\"snapshot\"}",
        "vectorforge_backups_total{result=\"ok\",step=\"upload\"}",
        "vectorforge_backup_last_success_timestamp_seconds",
    ] {
        assert!(metrics.contains(want), "{want} missing from /metrics");
    }

    // The source stops (its backups would roll over the ones restored from).
    drop(source);
    let full = complete_with_all(&s3).expect("a complete backup");

    // Restore into a single node (another name) and into three shards.
    let mut restore = s3_flags(&s3, "restore");
    restore.push("--restore-source=default/docs".into());
    restore.push(format!("--restore-backup={full}"));
    let single_args: Vec<String> = [
        "--collection=copy".to_owned(),
        format!("--dimension={DIM}"),
        "--distance=Cosine".into(),
    ]
    .into_iter()
    .chain(restore.iter().cloned())
    .collect();
    let refs: Vec<&str> = single_args.iter().map(String::as_str).collect();
    let single = Server::start(&tmp.path().join("single"), &refs);
    same_points(&original, &all_points(&single, "copy"));
    let three = shards(tmp.path(), "wide", 3, &restore, Server::start);
    for pod in &three {
        same_points(&original, &all_points(pod, "wide"));
    }
    // (retrieve routes each id to the shard it hashes to: a point restored onto
    // another shard would be missing here)

    // The newest complete backup is taken when none is named.
    let newest_args: Vec<String> = single_args
        .iter()
        .filter(|a| !a.starts_with("--restore-backup"))
        .map(|a| a.replace("--collection=copy", "--collection=newest"))
        .collect();
    let refs: Vec<&str> = newest_args.iter().map(String::as_str).collect();
    let newest = Server::start(&tmp.path().join("newest"), &refs);
    assert_eq!(all_points(&newest, "newest").len(), N as usize);

    // A corrupted archive: the restore refuses it, the pod stays unready.
    let key = s3
        .keys(BUCKET, &format!("{PREFIX}/default/docs/{full}"))
        .into_iter()
        .find(|k| k.ends_with("shard-0-of-2.snapshot"))
        .unwrap();
    s3.corrupt(BUCKET, &key);
    let bad_args: Vec<String> = single_args
        .iter()
        .map(|a| a.replace("--collection=copy", "--collection=bad"))
        .collect();
    let refs: Vec<&str> = bad_args.iter().map(String::as_str).collect();
    let bad = Server::launch(&tmp.path().join("bad"), &refs);
    wait_for("the refusal in the log", 30, || {
        bad.logs().contains("manifest says").then_some(())
    });
    let (status, _) = bad.call("GET", "/readyz", None);
    assert_eq!(status, 503, "a pod whose restore failed must stay unready");
    let (status, body) = bad.call("POST", "/collections/bad/points/count", Some(json!({})));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["count"], 0,
        "nothing of the bad archive was loaded"
    );
}
