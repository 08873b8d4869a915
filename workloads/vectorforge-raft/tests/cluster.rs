//! Raft groups on 127.0.0.1 with real files: replication, leader failover, catch-up by
//! snapshot, full restart, membership changes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use vectorforge_raft::{NodeError, Role};

const T: Duration = Duration::from_secs(15);

fn assert_same_state(c: &Cluster) {
    let mut it = c.nodes.values();
    let first = it.next().expect("a node").sm.items();
    for n in it {
        assert_eq!(n.sm.items(), first, "node {} differs", n.node.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_1000_proposals_and_a_follower_names_the_leader() {
    let mut c = Cluster::new();
    c.start_group(&[0, 1, 2]).await;
    let leader = c.leader(T).await;
    assert_eq!(
        c.get(leader).node.metrics().voters,
        BTreeSet::from([0, 1, 2])
    );

    let started = Instant::now();
    let last = c.propose_many(leader, "a", 1000, 64).await;
    let took = started.elapsed();
    println!(
        "1000 proposals (64 in flight) on 3 nodes, fsync per append: {:?}, {:.0} proposals/s",
        took,
        1000.0 / took.as_secs_f64()
    );
    let started = Instant::now();
    let last_seq = c.propose_many(leader, "s", 100, 1).await;
    println!(
        "100 sequential proposals: {:?} each",
        started.elapsed() / 100
    );
    assert!(last_seq > last);

    c.wait_applied(last_seq, T).await;
    assert_same_state(&c);
    assert_eq!(c.get(0).sm.items().len(), 1100);

    let follower = *c
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    match c.get(follower).node.propose(b"x".to_vec()).await {
        Err(NodeError::NotLeader { leader: Some(l) }) => {
            assert_eq!(l.id, leader);
            assert_eq!(l.addr.as_deref(), Some(c.get(leader).addr.as_str()));
        }
        other => panic!("expected NotLeader naming {leader}, got {other:?}"),
    }
    assert!(matches!(
        c.get(follower).node.ensure_linearizable().await,
        Err(NodeError::NotLeader { .. })
    ));
    let read_at = c
        .get(leader)
        .node
        .ensure_linearizable()
        .await
        .expect("leader read");
    assert!(read_at >= last_seq);

    let m = c.get(leader).node.metrics();
    assert_eq!(m.role, Role::Leader);
    assert_eq!(m.replication.len(), 2);
    for p in m.replication.values() {
        assert!(p.lag <= 1, "followers caught up: {p:?}");
    }
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_shutdown_elects_a_new_leader_and_proposals_resume() {
    let mut c = Cluster::new();
    c.start_group(&[0, 1, 2]).await;
    let old = c.leader(T).await;
    let before = c.propose_many(old, "b", 100, 10).await;
    let term = c.get(old).node.metrics().term;

    c.wait_applied(before, T).await;
    let stopped_at = Instant::now();
    c.stop(old).await;
    let new = c.leader(T).await;
    let elected = stopped_at.elapsed();
    assert_ne!(new, old);
    assert!(c.get(new).node.metrics().term > term);
    let after = c.propose_many(new, "c", 100, 10).await;
    let resumed = stopped_at.elapsed();
    println!(
        "leader {old} stopped: node {new} leads after {elected:?}; 100 proposals done after {resumed:?}"
    );
    assert!(resumed < Duration::from_secs(15));
    c.wait_applied(after, T).await;
    assert_same_state(&c);
    assert_eq!(c.get(new).sm.items().len(), 200);

    // the old leader comes back as a follower and catches up from its log
    c.start(old).await;
    c.wait_applied(after, T).await;
    assert_same_state(&c);
    assert_eq!(c.get(old).node.metrics().leader, Some(new));
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_restart_keeps_every_acknowledged_proposal_and_the_term() {
    let mut c = Cluster::new();
    // snapshots every 100 entries: the restart goes through snapshot + log
    c.config = common::snapshotting_config;
    c.start_group(&[0, 1, 2]).await;
    let leader = c.leader(T).await;
    let last = c.propose_many(leader, "d", 300, 30).await;
    let acked: Vec<Vec<u8>> = c.get(leader).sm.commands();
    assert_eq!(acked.len(), 300);
    let votes: Vec<_> = c
        .nodes
        .values()
        .map(|n| n.node.raft().metrics().borrow().vote)
        .collect();
    c.wait_applied(last, T).await;
    for n in c.nodes.values() {
        // automatic snapshots, and the log purged behind them
        n.node
            .raft()
            .wait(Some(T))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= 200) && m.purged.is_some(),
                "automatic snapshot",
            )
            .await
            .unwrap();
    }
    for id in [0, 1, 2] {
        c.stop(id).await;
    }

    for (id, before) in [0, 1, 2].into_iter().zip(votes) {
        c.start(id).await;
        // the vote (term, voted for) came back from disk: reported as soon as the node
        // runs, well before an election could produce one (>= 300 ms)
        let m = c
            .get(id)
            .node
            .raft()
            .wait(Some(Duration::from_millis(200)))
            .metrics(|m| m.vote == before, "vote loaded")
            .await;
        assert!(
            m.is_ok(),
            "node {id}: vote {before} not loaded after restart"
        );
        assert!(before.leader_id().term >= 1);
    }
    // restarted nodes initialize again: a no-op for an existing group
    let members = c.members();
    for n in c.nodes.values() {
        assert!(!n.node.initialize(members.clone()).await.unwrap());
    }
    let leader = c.leader(T).await;
    c.wait_applied(last, T).await;
    for n in c.nodes.values() {
        assert_eq!(
            n.sm.commands(),
            acked,
            "node {} lost acknowledged writes",
            n.node.id()
        );
    }
    let more = c.propose_many(leader, "e", 50, 10).await;
    c.wait_applied(more, T).await;
    assert_same_state(&c);
    assert_eq!(c.get(0).sm.items().len(), 350);
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_after_a_purge_catches_up_through_install_snapshot() {
    let mut c = Cluster::new();
    c.start_group(&[0, 1, 2]).await;
    let leader = c.leader(T).await;
    let first = c.propose_many(leader, "f", 100, 20).await;
    c.wait_applied(first, T).await;
    let down = *c
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    let stopped = c.stop(down).await;
    assert_eq!(
        stopped
            .sm
            .installs
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    let last = c.propose_many(leader, "g", 500, 50).await;
    c.wait_applied(last, T).await;
    for n in c.nodes.values() {
        n.node.trigger_snapshot().await.unwrap();
    }
    for n in c.nodes.values() {
        n.node
            .raft()
            .wait(Some(T))
            .metrics(
                |m| {
                    m.snapshot.is_some_and(|s| s.index >= last)
                        && m.purged.is_some_and(|p| p.index >= last)
                },
                "snapshot built and log purged",
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    c.start(down).await;
    c.wait_applied(last, T).await;
    println!(
        "node {down} caught up 500 entries by snapshot in {:?}",
        started.elapsed()
    );
    let back = c.get(down);
    assert_eq!(
        back.sm.installs.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "caught up by InstallSnapshot"
    );
    assert!(
        back.node
            .metrics()
            .snapshot_index
            .is_some_and(|s| s >= last)
    );
    assert_same_state(&c);
    assert_eq!(back.sm.items().len(), 600);

    // and it takes part in replication afterwards
    let more = c.propose_many(leader, "h", 20, 5).await;
    c.wait_applied(more, T).await;
    assert_same_state(&c);

    // restarting it again starts from its installed snapshot
    c.stop(down).await;
    c.start(down).await;
    c.wait_applied(more, T).await;
    assert_same_state(&c);
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_joins_is_promoted_and_a_member_is_removed() {
    let mut c = Cluster::new();
    c.start_group(&[0, 1, 2]).await;
    let leader = c.leader(T).await;
    let before = c.propose_many(leader, "i", 200, 20).await;

    let addr = c.start(3).await;
    // a new pod calls initialize with the shard's members: not the lowest id, a no-op
    assert!(!c.get(3).node.initialize(c.members()).await.unwrap());
    c.get(leader)
        .node
        .add_learner(3, addr, true)
        .await
        .expect("learner added");
    let m = c.get(leader).node.metrics();
    assert_eq!(m.learners, BTreeSet::from([3]));
    assert!(m.replication.contains_key(&3));
    c.get(leader)
        .node
        .raft()
        .wait(Some(T))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&3).copied().flatten())
                    .is_some_and(|l| l.index >= before)
            },
            "learner matched",
        )
        .await
        .expect("the leader sees the learner caught up");
    c.wait_applied(before, T).await;
    assert_eq!(c.get(3).node.metrics().role, Role::Learner);

    c.get(leader)
        .node
        .change_membership(BTreeSet::from([0, 1, 2, 3]))
        .await
        .expect("promoted");
    assert_eq!(
        c.get(leader).node.metrics().voters,
        BTreeSet::from([0, 1, 2, 3])
    );

    let removed = *c
        .nodes
        .keys()
        .find(|id| **id != leader && **id != 3)
        .expect("a member");
    c.get(leader).node.remove(removed).await.expect("removed");
    let m = c.get(leader).node.metrics();
    let expected: BTreeSet<u64> = [0, 1, 2, 3].into_iter().filter(|i| *i != removed).collect();
    assert_eq!(m.voters, expected);
    assert!(m.learners.is_empty());
    assert!(!m.replication.contains_key(&removed));
    c.stop(removed).await;

    let after = c.propose_many(leader, "j", 100, 20).await;
    c.wait_applied(after, T).await;
    assert_same_state(&c);
    assert_eq!(c.get(3).sm.items().len(), 300);
    for id in c.nodes.keys().copied().collect::<Vec<_>>() {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_machine_that_lost_its_tail_is_replayed_from_the_log() {
    let mut c = Cluster::new();
    c.start_group(&[0, 1, 2]).await;
    let leader = c.leader(T).await;
    let last = c.propose_many(leader, "k", 200, 20).await;
    c.wait_applied(last, T).await;
    let want = c.get(leader).sm.items();
    let victim = *c
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    c.stop(victim).await;

    // as an engine that syncs lazily: the last 80 applied commands never reached its disk
    let list = c.dir(victim).join("sm").join("list.bin");
    let kept = common::ListSm::open(&c.dir(victim).join("sm")).items()[..120].to_vec();
    let bytes: Vec<u8> = kept
        .iter()
        .flat_map(|(i, cmd)| {
            let mut r = i.to_le_bytes().to_vec();
            r.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
            r.extend_from_slice(cmd);
            r
        })
        .collect();
    std::fs::write(&list, bytes).unwrap();
    assert_eq!(
        common::ListSm::open(&c.dir(victim).join("sm"))
            .items()
            .len(),
        120
    );

    c.start(victim).await;
    c.wait_applied(last, T).await;
    assert_eq!(c.get(victim).sm.items(), want, "re-applied from the log");
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_address_reaching_another_group_is_refused() {
    // node 2 of another group listens where group A believes its node 2 is (a pod IP
    // reused by another shard)
    let mut b = Cluster::new();
    b.config = common::other_group_config;
    let b_addr = b.start(2).await;

    let mut a = Cluster::new();
    a.start(0).await;
    a.start(1).await;
    a.resolver.set(2, b_addr.clone());
    let mut members = a.members();
    members.insert(2, b_addr);
    assert!(a.get(0).node.initialize(members).await.unwrap());
    let leader = a.leader(T).await;
    let last = a.propose_many(leader, "z", 50, 10).await;
    a.wait_applied(last, T).await;

    let m = b.get(2).node.metrics();
    assert_eq!(
        (m.term, m.last_log_index),
        (0, None),
        "the other group's node was left alone"
    );
    assert!(b.get(2).sm.items().is_empty());
    let progress = &a.get(leader).node.metrics().replication[&2];
    assert_eq!(progress.matched, None);
    assert!(progress.lag >= last);
    for id in [0, 1] {
        a.stop(id).await;
    }
    b.stop(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_group_crashed_mid_write_keeps_every_acknowledged_proposal() {
    use std::sync::{Arc, Mutex};
    let mut c = Cluster::new();
    let rts: Vec<tokio::runtime::Runtime> = (0..3)
        .map(|_| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
        .collect();
    for (id, rt) in rts.iter().enumerate() {
        c.start_in(id as u64, rt.handle()).await;
    }
    let members = c.members();
    for n in c.nodes.values() {
        n.node.initialize(members.clone()).await.unwrap();
    }
    let leader = c.leader(T).await;

    // propose in the background, 32 at a time, remembering what was acknowledged
    // (log index, command) of every acknowledged proposal
    type Acked = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;
    let acked: Acked = Arc::default();
    let raft = c.get(leader).node.raft().clone();
    let acked2 = acked.clone();
    let proposer = tokio::spawn(async move {
        for round in 0.. {
            let futs = (0..32).map(|k| {
                let cmd = format!("crash-{round}-{k}").into_bytes();
                let raft = raft.clone();
                async move { (raft.client_write(cmd.clone()).await, cmd) }
            });
            let mut failed = false;
            for (r, cmd) in futures::future::join_all(futs).await {
                match r {
                    Ok(r) => acked2.lock().unwrap().push((r.data.index, cmd)),
                    Err(_) => failed = true,
                }
            }
            if failed {
                return;
            }
        }
    });
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // crash every node while writes are in flight
    for (id, rt) in rts.into_iter().enumerate() {
        c.forget(id as u64);
        tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(2)))
            .await
            .unwrap();
    }
    tokio::time::timeout(T, proposer).await.unwrap().unwrap();
    let acked = acked.lock().unwrap().clone();
    let last = acked.iter().map(|(i, _)| *i).max().unwrap();
    println!(
        "{} proposals acknowledged before the crash (last index {last})",
        acked.len()
    );

    for id in [0, 1, 2] {
        c.start(id).await;
    }
    c.leader(T).await;
    c.wait_applied(last, T).await;
    for n in c.nodes.values() {
        let items = n.sm.items();
        for a in &acked {
            assert!(
                items.contains(a),
                "node {} lost acknowledged {a:?}",
                n.node.id()
            );
        }
    }
    let leader = c.leader(T).await;
    let more = c.propose_many(leader, "after", 10, 10).await;
    c.wait_applied(more, T).await;
    assert_same_state(&c);
    for id in [0, 1, 2] {
        c.stop(id).await;
    }
}
