//! What the operator writes, against the real API server: a reconcile of an object
//! that nothing changed makes no child write, and the status fields a collection's own
//! pods report stay theirs.
//!
//! The first test drives the reconcile directly with a `Context` of its own (its own
//! cache of children, watching only the test's namespace, and its own metrics), so the
//! counts it reads are its reconciles' alone while the e2e operator runs beside it.

use std::sync::Arc;

use futures::channel::mpsc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use modelhub_operator::api::VectorCollection;
use modelhub_operator::builders::Images;
use modelhub_operator::builders::vector_collection::build;
use modelhub_operator::controllers::owned::{Owned, Triggers};
use modelhub_operator::controllers::{Context, vector_collection};
use modelhub_operator::metrics::Metrics;
use serde_json::json;

use crate::harness::{client, namespace, sample, wait_for};

/// `modelhub_operator_child_applies_total{result}` summed over the kinds.
fn applies(metrics: &Metrics, result: &str) -> u64 {
    metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "modelhub_operator_child_applies_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "result" && l.value() == result)
        })
        .map(|m| m.get_counter().value() as u64)
        .sum()
}

/// A reconcile context of the test's own, its cache watching `ns`.
fn own_context(client: &Client, ns: &str) -> (Arc<Context>, Arc<Metrics>) {
    let (owned, writers) = Owned::new();
    let owned = Arc::new(owned);
    // Child events would queue reconciles of a controller; this test has none.
    let triggers = Triggers {
        vector_collections: mpsc::unbounded().0,
        inference_services: mpsc::unbounded().0,
        traffic_policies: mpsc::unbounded().0,
    };
    tokio::spawn(owned.clone().watch(
        client.clone(),
        Some(ns.to_owned()),
        writers.children,
        triggers,
    ));
    let metrics = Arc::new(Metrics::new().expect("metrics registry"));
    let reporter = Reporter {
        controller: "modelhub-e2e-writes".to_owned(),
        instance: None,
    };
    let ctx = Context::new(
        client.clone(),
        Images::default(),
        metrics.clone(),
        reporter,
        owned,
    );
    (Arc::new(ctx), metrics)
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn a_reconcile_of_an_unchanged_collection_writes_no_child() {
    let client = client().await;
    let ns = namespace(&client, "writes").await;
    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), &ns);
    let vc: VectorCollection = sample("vectorcollection.yaml", "VectorCollection");
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create the sample VectorCollection");
    let current = || async {
        Arc::new(
            vcs.get(&vc.name_any())
                .await
                .expect("read the VectorCollection"),
        )
    };
    let built = build(&*current().await, &Images::default());
    let children = 3 + built.statefulsets.len() + built.shard_services.len() + 1 + built.pdbs.len();
    let (ctx, metrics) = own_context(&client, &ns);

    // This process has applied nothing yet: the first reconcile writes every child.
    vector_collection::reconcile(current().await, ctx.clone())
        .await
        .expect("first reconcile");
    assert_eq!(applies(&metrics, "applied"), children as u64);

    // Once the cache has seen what it applied, a reconcile writes nothing.
    wait_for("a reconcile that skips every child", || async {
        let before = applies(&metrics, "applied");
        vector_collection::reconcile(current().await, ctx.clone())
            .await
            .ok()?;
        (applies(&metrics, "applied") == before).then_some(())
    })
    .await;
    for round in 0..3 {
        let (applied, skipped) = (applies(&metrics, "applied"), applies(&metrics, "skipped"));
        vector_collection::reconcile(current().await, ctx.clone())
            .await
            .expect("reconcile");
        assert_eq!(
            applies(&metrics, "applied"),
            applied,
            "round {round}: no child written"
        );
        assert_eq!(
            applies(&metrics, "skipped"),
            skipped + children as u64,
            "round {round}: every child skipped"
        );
    }

    // A spec change is written again: the shard StatefulSets carry the new ef.
    let patch = json!({"spec": {"hnsw": {"ef": 80}}});
    vcs.patch(
        &vc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .expect("patch hnsw.ef");
    let applied = applies(&metrics, "applied");
    vector_collection::reconcile(current().await, ctx.clone())
        .await
        .expect("reconcile after the edit");
    assert_eq!(
        applies(&metrics, "applied"),
        applied + built.statefulsets.len() as u64,
        "only the StatefulSets change with hnsw.ef"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn status_fields_reported_by_the_pods_stay_theirs() {
    let client = client().await;
    let ns = namespace(&client, "status-owners").await;
    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), &ns);
    let vc: VectorCollection = sample("vectorcollection.yaml", "VectorCollection");
    let name = vc.name_any();
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create the sample VectorCollection");
    wait_for("the operator's status with both shards", || async {
        let vc = vcs.get(&name).await.ok()?;
        (vc.status?.shards.len() == 2).then_some(())
    })
    .await;

    // What a shard's pods will report, with their own field manager and no force: the
    // API server refuses it if the operator owns these fields.
    let report = |points: i64, leader: &str| {
        let body = json!({
            "apiVersion": "modelhub.io/v1alpha1", "kind": "VectorCollection",
            "status": {"points": points, "shards": [{"index": 0, "leader": leader}]},
        });
        let vcs = vcs.clone();
        let name = name.clone();
        async move {
            vcs.patch_status(
                &name,
                &PatchParams::apply("vectorforge"),
                &Patch::Apply(&body),
            )
            .await
        }
    };
    report(42, "docs-shard-0-1")
        .await
        .expect("the pods' first report");

    // The operator rewrites its part of the status after a spec change...
    let patch = json!({"spec": {"hnsw": {"ef": 96}}});
    let edited = vcs
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch hnsw.ef");
    let generation = edited.metadata.generation;
    wait_for("the operator's status of the new generation", || async {
        let vc = vcs.get(&name).await.ok()?;
        (vc.status?.observed_generation == generation).then_some(())
    })
    .await;
    let vc = vcs.get(&name).await.expect("read the VectorCollection");
    let status = vc.status.clone().expect("status");
    assert_eq!(status.points, Some(42), "the pods' count survives");
    assert_eq!(
        status.shards[0].leader.as_deref(),
        Some("docs-shard-0-1"),
        "the pods' leader survives"
    );
    assert_eq!(status.shards.len(), 2, "the operator's shard entries stay");

    // ... without taking the pods' fields over: their next report needs no force.
    report(43, "docs-shard-0-2")
        .await
        .expect("the pods' second report (no conflict with the operator)");
    let operator_fields = vc
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("modelhub-operator"))
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.fields_v1.as_ref())
        .map(|f| serde_json::to_string(&f.0).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !operator_fields.contains("f:points") && !operator_fields.contains("f:leader"),
        "the operator owns none of the pods' fields: {operator_fields}"
    );
}
