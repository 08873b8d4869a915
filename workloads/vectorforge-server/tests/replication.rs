//! Raft-replicated shards on loopback: real `vectorforge` processes, every pod of a
//! shard in its shard's Raft group (`--replicas`, `--ordinal`, `--peer S/O=...`).
//! Writes go to any pod and are proposed on the shard leader; pods are SIGKILLed,
//! leaders included, while writers run; every acknowledged write must be readable on
//! every pod afterwards, and the pods of a shard must end identical.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, free_port};

const DIM: usize = 4;

fn vector(i: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 7 + d as u64 * 13) % 101) as f32 / 10.0)
        .collect()
}

fn point(i: u64) -> Value {
    json!({"id": i, "vector": vector(i), "payload": {"n": i}})
}

struct Group {
    pods: Vec<Server>,
    /// shard of each pod
    shard_of: Vec<u32>,
    _tmp: tempfile::TempDir,
}

/// `shards × replicas` pods, pod index = shard * replicas + ordinal.
fn group(shards: u32, replicas: u32) -> Group {
    let tmp = tempfile::tempdir().unwrap();
    let mut places = Vec::new();
    for s in 0..shards {
        for o in 0..replicas {
            places.push((s, o, free_port()));
        }
    }
    let mut pods = Vec::new();
    // start them all before waiting for any: a pod is Ready only once its group has a
    // leader, which needs a majority of the shard's pods
    let mut args_of = Vec::new();
    for (i, (shard, ordinal, port)) in places.iter().enumerate() {
        let mut args = vec![
            "--collection=docs".to_string(),
            format!("--dimension={DIM}"),
            "--distance=Euclid".into(),
            format!("--shards={shards}"),
            format!("--replicas={replicas}"),
            format!("--shard={shard}"),
            format!("--ordinal={ordinal}"),
            format!("--raft-port={port}"),
            "--payload-index=n=integer".into(),
        ];
        for (j, (s, o, p)) in places.iter().enumerate() {
            if j != i {
                args.push(format!("--peer={s}/{o}=127.0.0.1:{p}"));
            }
        }
        args_of.push(args);
    }
    let dirs: Vec<_> = (0..places.len())
        .map(|i| tmp.path().join(format!("pod{i}")))
        .collect();
    let handles: Vec<_> = args_of
        .into_iter()
        .zip(dirs)
        .map(|(args, dir)| {
            std::thread::spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                Server::start(&dir, &refs)
            })
        })
        .collect();
    for h in handles {
        pods.push(h.join().expect("a pod started"));
    }
    Group {
        pods,
        shard_of: places.iter().map(|p| p.0).collect(),
        _tmp: tmp,
    }
}

fn cluster(s: &Server) -> Value {
    s.ok("GET", "/cluster", None)
}

fn leader_of(g: &Group, shard: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, p) in g.pods.iter().enumerate() {
            if g.shard_of[i] == shard
                && p.raw("GET", "/readyz", None, &[]).is_ok_and(|r| r.0 == 200)
                && cluster(p)["raft_info"]["role"] == "Leader"
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "shard {shard} has no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Points this pod holds itself.
fn local_points(s: &Server) -> u64 {
    let (_, body) = s.raw("GET", "/metrics", None, &[]).unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("vectorforge_collection_points{collection=\"docs\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn upsert(s: &Server, ids: std::ops::Range<u64>) -> (u16, Value) {
    let pts: Vec<Value> = ids.map(point).collect();
    s.call(
        "PUT",
        "/collections/docs/points?wait=true",
        Some(json!({"points": pts})),
    )
}

/// Waits until every pod of each shard holds the same number of points as the others
/// of its shard, and returns the total.
fn converged(g: &Group) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut per_shard = std::collections::BTreeMap::<u32, BTreeSet<u64>>::new();
        for (i, p) in g.pods.iter().enumerate() {
            per_shard
                .entry(g.shard_of[i])
                .or_default()
                .insert(local_points(p));
        }
        if per_shard.values().all(|s| s.len() == 1) {
            return per_shard.values().filter_map(|s| s.first()).sum();
        }
        assert!(
            Instant::now() < deadline,
            "replicas never converged: {per_shard:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_shard_group_replicates_and_survives_its_leader() {
    let mut g = group(1, 3);
    let leader = leader_of(&g, 0);
    let follower = (leader + 1) % 3;
    // a write through a follower is forwarded to the leader
    let (status, body) = upsert(&g.pods[follower], 0..200);
    assert_eq!(status, 200, "{body}");
    assert_eq!(converged(&g), 200);
    // the payload index the flags ask for is created through the log on every pod
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in &g.pods {
        loop {
            let info = p.ok("GET", "/collections/docs", None);
            if info["payload_schema"]["n"]["data_type"] == "integer" {
                break;
            }
            assert!(Instant::now() < deadline, "no payload index: {info}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // kill the leader: writes through another pod resume once a new one is elected
    g.pods[leader].kill();
    let killed = Instant::now();
    let other = (leader + 1) % 3;
    let (status, body) = upsert(&g.pods[other], 200..300);
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "first write after killing the leader acknowledged after {:?}",
        killed.elapsed()
    );
    let new_leader = leader_of(&g, 0);
    assert_ne!(new_leader, leader);
    // the killed pod comes back and catches up from the log
    g.pods[leader].restart();
    assert_eq!(converged(&g), 300);
    let n = g.pods[leader].ok(
        "POST",
        "/collections/docs/points/count",
        Some(json!({"exact": true})),
    );
    assert_eq!(n["count"], 300);

    // a stopped follower misses writes and catches up after its restart
    let f = (new_leader + 1) % 3;
    g.pods[f].stop();
    let (status, _) = upsert(&g.pods[new_leader], 300..400);
    assert_eq!(status, 200);
    g.pods[f].restart();
    assert_eq!(converged(&g), 400);
}

#[test]
fn acknowledged_writes_survive_kills_of_any_pod_under_concurrent_writers() {
    let mut g = group(2, 3);
    for s in 0..2 {
        leader_of(&g, s);
    }
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rounds = 6;
    for round in 0..rounds {
        // kill one pod (every other round a leader), write meanwhile through the others
        let victim = if round % 2 == 0 {
            leader_of(&g, (round / 2 % 2) as u32)
        } else {
            (round * 5) % g.pods.len()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ports: Vec<u16> = g
            .pods
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, p)| p.http_port)
            .collect();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (stop, acked, next, ports) =
                    (stop.clone(), acked.clone(), next.clone(), ports.clone());
                std::thread::spawn(move || {
                    let mut k = w;
                    while !stop.load(Ordering::Relaxed) {
                        let from = next.fetch_add(10, Ordering::Relaxed);
                        let port = ports[k % ports.len()];
                        k += 1;
                        let pts: Vec<Value> = (from..from + 10).map(point).collect();
                        let body = serde_json::to_vec(&json!({"points": pts})).unwrap();
                        if let Ok((200, _)) = support::request(
                            port,
                            "PUT",
                            "/collections/docs/points?wait=true",
                            Some(&body),
                            &[],
                        ) {
                            acked.lock().unwrap().extend(from..from + 10);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400));
        g.pods[victim].kill();
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        g.pods[victim].restart();
    }
    let total = converged(&g);
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    // nothing acknowledged is missing, on any pod
    let ids: Vec<u64> = acked.iter().copied().collect();
    for (i, p) in g.pods.iter().enumerate() {
        let got = p.ok(
            "POST",
            "/collections/docs/points",
            Some(json!({"ids": ids, "with_payload": true})),
        );
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), ids.len(), "pod {i} misses acknowledged points");
        for pt in got {
            // no value that was never written
            assert_eq!(pt["payload"]["n"], pt["id"], "{pt}");
        }
    }
    // points of unacknowledged writes may exist (the ack was lost), never others
    assert!(total >= acked.len() as u64 && total <= next.load(Ordering::Relaxed));
    eprintln!(
        "{} acknowledged points over {rounds} kills, {total} stored",
        acked.len()
    );
}

#[test]
fn a_frozen_pod_does_not_hold_up_reads_of_its_shard() {
    // a follower of shard 1 stops answering (SIGSTOP) without closing its connections:
    // reads of shard 1 through shard 0's pods are hedged to another pod after 100 ms
    let g = group(2, 3);
    let (status, body) = upsert(&g.pods[0], 0..100);
    assert_eq!(status, 200, "{body}");
    assert_eq!(converged(&g), 100);
    let leader = leader_of(&g, 1);
    let frozen = (3..6).find(|i| *i != leader).unwrap_or(3);
    g.pods[frozen].pause();
    let started = Instant::now();
    for _ in 0..6 {
        for reader in 0..3 {
            let n = g.pods[reader].ok(
                "POST",
                "/collections/docs/points/count",
                Some(json!({"exact": true})),
            );
            assert_eq!(n["count"], 100);
        }
    }
    // without hedging a call to the frozen pod would wait for the request timeout (60 s)
    eprintln!("18 reads with a frozen pod: {:?}", started.elapsed());
    g.pods[frozen].resume();
}

#[test]
fn a_pod_cut_off_from_its_majority_cannot_commit() {
    // two of the three pods stop answering (SIGSTOP: their sockets stay open, nothing
    // answers, as behind a network cut); the third cannot commit a write on its own
    let g = group(1, 3);
    let (status, _) = upsert(&g.pods[0], 0..50);
    assert_eq!(status, 200);
    assert_eq!(converged(&g), 50);
    let alone = leader_of(&g, 0);
    let others: Vec<usize> = (0..3).filter(|i| *i != alone).collect();
    for i in &others {
        g.pods[*i].pause();
    }
    let started = Instant::now();
    let (status, body) = upsert(&g.pods[alone], 50..60);
    assert_eq!(status, 503, "a minority acknowledged a write: {body}");
    assert!(body.to_string().contains("no quorum"), "{body}");
    eprintln!(
        "the cut-off write failed with {status} after {:?}",
        started.elapsed()
    );
    // nothing was applied on its side
    assert_eq!(local_points(&g.pods[alone]), 50);
    for i in &others {
        g.pods[*i].resume();
    }
    // healed: writes commit again and every pod ends with the same points
    let (status, body) = upsert(&g.pods[alone], 60..70);
    assert_eq!(status, 200, "{body}");
    let total = converged(&g);
    // the cut-off batch may commit after the heal (its outcome was unknown), never half
    assert!(total == 60 || total == 70, "{total}");
}
