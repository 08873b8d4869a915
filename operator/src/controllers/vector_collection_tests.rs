use k8s_openapi::api::apps::v1::StatefulSetStatus;
use serde_json::json;

use super::*;
use crate::builders::Images;

fn vc(shards: i32, replicas: i32) -> VectorCollection {
    let mut vc = VectorCollection::new(
        "docs",
        serde_json::from_value(
            json!({"dimension": 4, "distance": "Dot", "shards": shards, "replicas": replicas}),
        )
        .unwrap(),
    );
    vc.metadata.namespace = Some("ml".into());
    vc.metadata.uid = Some("u1".into());
    vc.metadata.generation = Some(3);
    vc
}

/// The shard StatefulSets as the API would return them, with `ready` ready pods each.
fn shard_sets(vc: &VectorCollection, ready: &[i32]) -> Vec<StatefulSet> {
    let mut sets = build::build(vc, &Images::default()).statefulsets;
    for (sts, r) in sets.iter_mut().zip(ready) {
        sts.metadata.generation = Some(1);
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(1),
            replicas: vc.spec.replicas,
            ready_replicas: Some(*r),
            updated_replicas: Some(vc.spec.replicas),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..StatefulSetStatus::default()
        });
    }
    sets
}

fn cond<'a>(
    status: &'a VectorCollectionStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn all_shards_ready_means_ready_and_settled() {
    let vc = vc(2, 3);
    let status = compute_status(&vc, &shard_sets(&vc, &[3, 3]), Timestamp::now());
    assert_eq!(status.ready_shards, 2);
    assert_eq!(cond(&status, "Ready").status, "True");
    assert_eq!(cond(&status, "Progressing").status, "False");
    assert_eq!(cond(&status, "Degraded").status, "False");
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.replicas, 3);
    assert_eq!(status.endpoint.as_deref(), Some("http://docs.ml.svc:6333"));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=docs,app.kubernetes.io/name=vectorforge")
    );
    assert_eq!(
        status.shards[1],
        ShardStatus {
            index: 1,
            replicas: 3,
            ready_replicas: 3,
            ..ShardStatus::default()
        }
    );
}

#[test]
fn a_new_collection_is_progressing_not_degraded() {
    let vc = vc(2, 3);
    let status = compute_status(&vc, &shard_sets(&vc, &[0, 1]), Timestamp::now());
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(cond(&status, "Progressing").status, "True");
    assert_eq!(cond(&status, "Progressing").reason, "WaitingForPods");
    assert_eq!(cond(&status, "Degraded").status, "False");
}

#[test]
fn losing_quorum_after_being_ready_is_degraded() {
    let mut vc = vc(2, 3);
    let ready = compute_status(&vc, &shard_sets(&vc, &[3, 3]), Timestamp::now());
    vc.status = Some(ready);
    let status = compute_status(&vc, &shard_sets(&vc, &[3, 1]), Timestamp::now());
    let degraded = cond(&status, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "QuorumLost");
    assert!(degraded.message.contains('1'), "{}", degraded.message);

    let minority_down = compute_status(&vc, &shard_sets(&vc, &[3, 2]), Timestamp::now());
    assert_eq!(
        cond(&minority_down, "Degraded").reason,
        "ReplicasUnavailable"
    );
}

#[test]
fn statefulset_mid_rollout_is_progressing() {
    let vc = vc(1, 3);
    let mut sets = shard_sets(&vc, &[3]);
    if let Some(st) = sets[0].status.as_mut() {
        st.update_revision = Some("r2".into());
    }
    assert!(!rolled_out(&sets[0], 3));
    let status = compute_status(&vc, &sets, Timestamp::now());
    assert_eq!(cond(&status, "Progressing").reason, "RollingOut");
}

#[test]
fn statefulset_without_status_is_not_rolled_out() {
    let vc = vc(1, 1);
    let sts = build::build(&vc, &Images::default()).statefulsets.remove(0);
    assert!(!rolled_out(&sts, 1));
}

#[test]
fn a_schedule_that_does_not_parse_is_refused_with_the_reason() {
    let mut c = vc(1, 1);
    c.spec.durability.snapshots.schedule = Some("0 */6 * * *".into());
    assert_eq!(invalid_spec(&c), None);
    c.spec.durability.snapshots.schedule = Some("99 * * * *".into());
    let problem = invalid_spec(&c).expect("minute 99 refused");
    assert!(problem.contains("\"99 * * * *\""), "{problem}");
    let status = refused_status(&c, problem, Timestamp::now());
    let ready = cond(&status, condition_type::READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("last accepted spec"),
        "{}",
        ready.message
    );
}

#[test]
fn a_restoring_collection_says_which_shards_are_loading() {
    let mut c = vc(2, 1);
    c.spec.restore_from = Some(
        serde_json::from_value(json!({"s3": {"bucket": "old"}, "collection": "docs-v1"})).unwrap(),
    );
    c.status = Some(VectorCollectionStatus {
        shards: vec![ShardStatus {
            index: 0,
            restored_from: Some("20261204T060000Z".into()),
            ..ShardStatus::default()
        }],
        ..VectorCollectionStatus::default()
    });
    let status = compute_status(&c, &shard_sets(&c, &[1, 0]), Timestamp::now());
    let progressing = cond(&status, condition_type::PROGRESSING);
    assert_eq!(progressing.reason, "Restoring");
    assert!(
        progressing.message.ends_with("docs-v1: 1"),
        "{}",
        progressing.message
    );
    // what the pods report stays theirs
    assert!(status.shards.iter().all(|s| s.restored_from.is_none()));
}
