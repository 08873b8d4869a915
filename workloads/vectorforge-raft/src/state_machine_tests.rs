//! Tests of the state-machine adapter's start-up: resolving a snapshot install that a
//! crash interrupted (recorded in sm_meta.json, finished or not in the state machine).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use openraft::{CommittedLeaderId, Membership as RaftMembership};

use super::*;

/// A state machine that only remembers its durable index.
struct Counter(AtomicU64);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl StateMachine for Counter {
    type Error = Never;
    fn apply(&self, index: u64, _: &[u8]) -> Result<Vec<u8>, Never> {
        self.0.store(index, Ordering::SeqCst);
        Ok(Vec::new())
    }
    fn applied_index(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn build_snapshot(&self, path: &Path) -> Result<u64, Never> {
        let _ = std::fs::write(path, b"");
        Ok(self.applied_index())
    }
    fn install_snapshot(&self, _: &Path, index: u64) -> Result<(), Never> {
        self.0.store(index, Ordering::SeqCst);
        Ok(())
    }
}

fn meta(index: u64, voters: &[u64]) -> Meta {
    let log_id = LogId::new(CommittedLeaderId::new(2, 0), index);
    let nodes: BTreeMap<u64, Node> = voters
        .iter()
        .map(|v| (*v, Node::new(format!("n{v}"))))
        .collect();
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    Meta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(
            Some(log_id),
            RaftMembership::new(vec![voters], nodes),
        ),
        snapshot_id: format!("s{index}"),
    }
}

/// sm_meta.json as a crash left it: a snapshot recorded as being installed.
async fn reopen(sm_index: u64, snapshot: Option<Meta>, installing: Meta) -> (Option<u64>, SmMeta) {
    let d = tempfile::tempdir().unwrap();
    let log = LogStore::open(&d.path().join("log"), 1 << 20).unwrap();
    let m = SmMeta {
        memberships: Vec::new(),
        snapshot_sm_index: snapshot
            .as_ref()
            .and_then(|s| s.last_log_id)
            .map_or(0, |l| l.index),
        snapshot,
        installing: Some(installing),
    };
    files::write_json_synced(&d.path().join("sm_meta.json"), &m).unwrap();
    let sm = Arc::new(Counter(AtomicU64::new(sm_index)));
    let mut store = SmStore::open(d.path(), sm, log).unwrap();
    let (applied, membership) = store.applied_state().await.unwrap();
    let saved: SmMeta = files::read_json(&d.path().join("sm_meta.json"))
        .unwrap()
        .unwrap();
    if let Some(a) = applied {
        assert_eq!(membership.log_id().map(|l| l.index), Some(a.index));
    }
    (applied.map(|a| a.index), saved)
}

#[tokio::test]
async fn an_install_the_state_machine_finished_is_promoted_at_start() {
    let (applied, saved) = reopen(50, Some(meta(10, &[0, 1])), meta(50, &[0, 1, 2])).await;
    assert_eq!(applied, Some(50));
    assert!(saved.installing.is_none());
    assert_eq!(
        saved.snapshot.and_then(|s| s.last_log_id).map(|l| l.index),
        Some(50)
    );
    assert_eq!(saved.snapshot_sm_index, 50);
    assert_eq!(saved.memberships.len(), 1);
}

#[tokio::test]
async fn an_install_the_state_machine_did_not_finish_is_dropped_at_start() {
    let (applied, saved) = reopen(10, Some(meta(10, &[0, 1])), meta(50, &[0, 1, 2])).await;
    assert_eq!(applied, Some(10), "back at the previous snapshot");
    assert!(saved.installing.is_none());
    assert_eq!(
        saved.snapshot.and_then(|s| s.last_log_id).map(|l| l.index),
        Some(10)
    );
}
