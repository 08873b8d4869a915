//! Child process of the crash test (tests/crash.rs): ingests batches into a
//! collection with `SyncPolicy::Always` and prints one line per acknowledged
//! operation, until it is killed. Usage: vf-crash-child <dir> <first-batch>

use std::io::Write;

use serde_json::json;
use vectorforge::{Collection, CollectionConfig, Distance, PointId, PointStruct};

pub const BATCH: u64 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(first)) = (args.next(), args.next().and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: vf-crash-child <dir> <first-batch>");
        std::process::exit(2);
    };
    let mut cfg = CollectionConfig::new(8, Distance::Euclid);
    cfg.wal_segment_bytes = 16 * 1024;
    let c = match Collection::open(&dir, cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(3);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "READY 0");
    let _ = out.flush();
    for b in first.. {
        let points = (b * BATCH..(b + 1) * BATCH)
            .map(|id| PointStruct {
                id: id.into(),
                vector: (0..8).map(|k| (id * 8 + k) as f32).collect(),
                payload: Some(
                    json!({"batch": b, "id": id})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
            })
            .collect();
        if let Err(e) = c.upsert(points) {
            eprintln!("upsert failed: {e}");
            std::process::exit(4);
        }
        let _ = writeln!(out, "UPSERT {b}");
        let _ = out.flush();
        if b % 3 == 0 {
            let ids: Vec<PointId> = (b * BATCH..(b + 1) * BATCH).map(PointId::from).collect();
            let p = json!({"extra": b}).as_object().cloned().unwrap_or_default();
            if let Err(e) = c.set_payload(ids, p) {
                eprintln!("set_payload failed: {e}");
                std::process::exit(5);
            }
            let _ = writeln!(out, "SET {b}");
            let _ = out.flush();
        }
        if b % 10 == 9
            && let Err(e) = c.snapshot()
        {
            eprintln!("snapshot failed: {e}");
            std::process::exit(6);
        }
    }
}
