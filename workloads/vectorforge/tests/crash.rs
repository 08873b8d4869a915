//! Crash test: a child process ingests with `SyncPolicy::Always` and prints each
//! acknowledged operation; we SIGKILL it at random moments, reopen the store and
//! check that every acknowledged point (vector and payload) is there and that no
//! unacknowledged operation is half-applied. `VF_CRASH_ROUNDS` sets the number
//! of rounds (default 50; `make soak-vectorforge` runs more). A child that exits or
//! hangs before printing READY fails the test with a message that says so.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vectorforge::{Collection, CollectionConfig, Distance, PointId};

const BATCH: u64 = 10;
/// How long a child may take to recover and print READY before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Acks {
    upserts: BTreeSet<u64>,
    sets: BTreeSet<u64>,
}

fn verify(dir: &std::path::Path, acks: &Acks, max_batch: u64) -> u64 {
    let mut cfg = CollectionConfig::new(8, Distance::Euclid);
    cfg.wal_segment_bytes = 16 * 1024;
    let c = Collection::open(dir, cfg).unwrap_or_else(|e| panic!("reopen after kill failed: {e}"));
    let mut highest = 0;
    for b in 0..=max_batch {
        let ids: Vec<PointId> = (b * BATCH..(b + 1) * BATCH).map(PointId::from).collect();
        let got = c.retrieve(&ids, true, true);
        if acks.upserts.contains(&b) {
            assert_eq!(
                got.len(),
                BATCH as usize,
                "acknowledged batch {b} lost points"
            );
        }
        assert!(
            got.is_empty() || got.len() == BATCH as usize,
            "batch {b} half-applied: {} points",
            got.len()
        );
        let mut extras = 0;
        for r in &got {
            let PointId::Num(id) = r.id else {
                panic!("unexpected id")
            };
            let want: Vec<f32> = (0..8).map(|k| (id * 8 + k) as f32).collect();
            assert_eq!(
                r.vector.as_ref(),
                Some(&want),
                "point {id} has a wrong vector"
            );
            let p = r.payload.as_ref().expect("payload requested");
            assert_eq!(
                p.get("batch").and_then(|v| v.as_u64()),
                Some(b),
                "point {id} has a wrong payload"
            );
            assert_eq!(p.get("id").and_then(|v| v.as_u64()), Some(id));
            if let Some(e) = p.get("extra") {
                assert_eq!(e.as_u64(), Some(b));
                extras += 1;
            }
        }
        if acks.sets.contains(&b) {
            assert_eq!(
                extras, BATCH as usize,
                "acknowledged set_payload of batch {b} lost"
            );
        }
        assert!(
            extras == 0 || extras == BATCH as usize,
            "set_payload of batch {b} half-applied"
        );
        if !got.is_empty() {
            highest = highest.max(b);
        }
    }
    highest
}

#[test]
fn sigkill_never_loses_acknowledged_writes() {
    let rounds: usize = std::env::var("VF_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("VF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xC0FFEE);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("col");
    let mut acks = Acks::default();
    let mut next = 0u64;
    let mut total_acked = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vf-crash-child"))
            .arg(&dir)
            .arg(next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // kill at a random moment after recovery finished and ingestion started
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok(l) => {
                    let ready = l.starts_with("READY");
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!(
                        "round {round}: the child did not print READY within {READY_TIMEOUT:?} (recovery hung or is far too slow)"
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait child");
                    panic!(
                        "round {round}: the child exited before READY ({status:?}); see its stderr above"
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..120)));
        child.kill().expect("SIGKILL child");
        let status = child.wait().expect("wait child");
        assert!(
            status.code().is_none() || status.code() == Some(0),
            "child failed on its own: {status:?}"
        );
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for l in &lines {
            let (kind, b) = l.split_once(' ').expect("ack line");
            let b: u64 = b.parse().expect("batch number");
            match kind {
                "UPSERT" => acks.upserts.insert(b),
                "SET" => acks.sets.insert(b),
                "READY" => continue,
                other => panic!("unknown ack {other}"),
            };
            total_acked += 1;
        }
        let max_batch = acks
            .upserts
            .iter()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(next)
            + 1;
        let highest = verify(&dir, &acks, max_batch);
        next = highest.max(next) + 1;
        if round % 10 == 0 {
            eprintln!(
                "round {round}: {} batches acknowledged so far",
                acks.upserts.len()
            );
        }
    }
    assert!(
        total_acked > rounds,
        "the child acknowledged too little to test anything ({total_acked})"
    );
}
