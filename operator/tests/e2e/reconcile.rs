//! The samples reconcile into the right children; scaling and spec edits flow through
//! the API; deleting a resource garbage-collects its children; status follows the
//! children.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use modelhub_operator::api::{InferenceService, TrafficPolicy, VectorCollection};
use serde_json::json;

use crate::harness::{
    client, kubectl, namespace, sample, sorted_names, wait_exists, wait_for, wait_gone,
};

fn args_of(sts: &StatefulSet) -> Vec<String> {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

fn replicas_of(sts: &StatefulSet) -> Option<i32> {
    sts.spec.as_ref().and_then(|s| s.replicas)
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn crds_are_installed_and_explained() {
    let (ok, out) = kubectl(&["explain", "vc.spec.shards"]);
    assert!(ok, "{out}");
    assert!(out.contains("Number of shards"), "{out}");
    let (ok, out) = kubectl(&["explain", "isvc.spec.batching.maxQueueDelay"]);
    assert!(ok && out.contains("Longest a request waits"), "{out}");
    let (ok, out) = kubectl(&["api-resources", "--categories=modelhub", "-o", "name"]);
    assert!(ok, "{out}");
    for r in [
        "vectorcollections.modelhub.io",
        "inferenceservices.modelhub.io",
        "trafficpolicies.modelhub.io",
    ] {
        assert!(out.contains(r), "{r} missing from category modelhub: {out}");
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn vector_collection_sample_reconciles_scales_and_is_garbage_collected() {
    let client = client().await;
    let ns = namespace(&client, "vc").await;
    let vcs: Api<VectorCollection> = Api::namespaced(client.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);

    let vc: VectorCollection = sample("vectorcollection.yaml", "VectorCollection");
    vcs.create(&PostParams::default(), &vc)
        .await
        .expect("create sample vc");

    // Children of 2 shards x 3 replicas.
    let shard1 = wait_exists(&sts, "docs-shard-1").await;
    assert_eq!(replicas_of(&shard1), Some(3));
    let args = args_of(&shard1);
    for expected in [
        "--shard=1",
        "--shards=2",
        "--dimension=384",
        "--distance=Cosine",
        "--payload-index=meta.views=integer",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected}: {args:?}"
        );
    }
    let claim = &shard1
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        claim
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "1Gi"
    );
    wait_exists(&sts, "docs-shard-0").await;
    let headless = wait_exists(&svcs, "docs-shard-0").await;
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    wait_exists(&svcs, "docs").await;
    let pdb = wait_exists(&pdbs, "docs-shard-0").await;
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    wait_exists(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        "docs-vectorforge",
    )
    .await;
    wait_exists(
        &Api::<Role>::namespaced(client.clone(), &ns),
        "docs-vectorforge",
    )
    .await;
    wait_exists(
        &Api::<RoleBinding>::namespaced(client.clone(), &ns),
        "docs-vectorforge",
    )
    .await;
    // The controller-manager turned the StatefulSet into pods.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("shard pods", || async {
        let list = pods
            .list(&ListParams::default().labels("modelhub.io/shard=1"))
            .await
            .ok()?;
        (list.items.len() == 3).then_some(())
    })
    .await;

    // kubectl scale writes spec.replicas through the /scale subresource.
    let (ok, out) = kubectl(&["-n", &ns, "scale", "vc/docs", "--replicas=5"]);
    assert!(ok, "{out}");
    wait_for("shards scaled to 5 replicas", || async {
        let s = sts.get("docs-shard-0").await.ok()?;
        (replicas_of(&s) == Some(5)).then_some(())
    })
    .await;
    let pdb = wait_for("pdb allows 2 down", || async {
        let p = pdbs.get("docs-shard-1").await.ok()?;
        (p.spec.as_ref()?.max_unavailable
            == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2)))
        .then_some(p)
    })
    .await;
    assert_eq!(pdb.name_any(), "docs-shard-1");

    // The operator skips applying children it has already applied unchanged; edits by
    // anyone else are still put back: a hand-scaled shard StatefulSet returns to the
    // spec and a deleted Service is created again.
    let (ok, out) = kubectl(&["-n", &ns, "scale", "sts/docs-shard-1", "--replicas=1"]);
    assert!(ok, "{out}");
    wait_for("hand-scaled shard restored to 5 replicas", || async {
        let s = sts.get("docs-shard-1").await.ok()?;
        (replicas_of(&s) == Some(5)).then_some(())
    })
    .await;
    svcs.delete("docs", &DeleteParams::default())
        .await
        .expect("delete client service");
    wait_for("client service created again", || async {
        let s = svcs.get("docs").await.ok()?;
        s.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;

    // The shard count is refused by the API server (no resharding yet), the rest stays.
    let err = vcs
        .patch(
            "docs",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"shards": 3}})),
        )
        .await
        .expect_err("shards changed");
    assert!(err.to_string().contains("shards is immutable"), "{err}");
    // One replica per shard: the budgets (nothing to protect) are deleted as orphans.
    let (ok, out) = kubectl(&["-n", &ns, "scale", "vc/docs", "--replicas=1"]);
    assert!(ok, "{out}");
    wait_gone(&pdbs, "docs-shard-0").await;
    wait_gone(&pdbs, "docs-shard-1").await;
    assert_eq!(
        sorted_names(sts.list(&ListParams::default()).await.unwrap()),
        ["docs-shard-0", "docs-shard-1"]
    );

    // Deleting the collection garbage-collects every child (controller-manager's GC).
    vcs.delete("docs", &DeleteParams::foreground())
        .await
        .expect("delete vc");
    wait_gone(&sts, "docs-shard-0").await;
    wait_gone(&svcs, "docs").await;
    wait_gone(&pdbs, "docs-shard-0").await;
    wait_for("pods garbage-collected", || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Marks every pod of `selector` Running and Ready, as a kubelet would once the
/// containers pass their readiness probes (no node runs pods in this cluster yet).
async fn make_pods_ready(client: &Client, ns: &str, selector: &str, expected: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = wait_for("pods to mark ready", || async {
        let l = pods
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?;
        (l.items.len() == expected).then_some(l)
    })
    .await;
    for pod in list {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {
            "phase": "Running",
            "podIP": "127.0.0.42",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now}
            ]
        }});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .expect("patch pod status");
    }
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn inference_service_status_follows_its_pods_and_scale_flows_through_the_api() {
    let client = client().await;
    let ns = namespace(&client, "isvc").await;
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let isvc: InferenceService = sample("inferenceservice.yaml", "InferenceService");
    isvcs
        .create(&PostParams::default(), &isvc)
        .await
        .expect("create isvc");

    let s = wait_exists(&sts, "minilm").await;
    assert_eq!(replicas_of(&s), Some(1));
    wait_exists(&Api::<Service>::namespaced(client.clone(), &ns), "minilm").await;
    wait_exists(
        &Api::<Service>::namespaced(client.clone(), &ns),
        "minilm-headless",
    )
    .await;

    // Not ready while the pod is pending.
    let status = wait_for("isvc status", || async {
        let i = isvcs.get("minilm").await.ok()?;
        let st = i.status?;
        (st.observed_generation == i.metadata.generation).then_some(st)
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(
        condition(&status.conditions, "ModelLoaded").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://minilm.{ns}.svc:8080").as_str())
    );

    // The pod becomes ready: the StatefulSet counts it, the service becomes Ready.
    make_pods_ready(&client, &ns, "app.kubernetes.io/instance=minilm", 1).await;
    let status = wait_for("isvc ready", || async {
        let st = isvcs.get("minilm").await.ok()?.status?;
        (condition(&st.conditions, "Ready")?.0 == "True").then_some(st)
    })
    .await;
    assert_eq!(status.ready_replicas, 1);
    assert_eq!(
        condition(&status.conditions, "ModelLoaded").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(status.loaded_model_version.as_deref(), Some("1"));

    // kubectl scale within the scaling bounds reaches the StatefulSet, and the
    // generation the status describes advances.
    let (ok, out) = kubectl(&["-n", &ns, "scale", "isvc/minilm", "--replicas=3"]);
    assert!(ok, "{out}");
    wait_for("sts scaled to 3", || async {
        (replicas_of(&sts.get("minilm").await.ok()?) == Some(3)).then_some(())
    })
    .await;
    let i = wait_for("observedGeneration advances", || async {
        let i = isvcs.get("minilm").await.ok()?;
        (i.status.as_ref()?.observed_generation == i.metadata.generation).then_some(i)
    })
    .await;
    assert!(i.metadata.generation.unwrap_or(0) >= 2);
    // With more than one replica the pods get a disruption budget (none at 1 replica).
    wait_exists(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        "minilm",
    )
    .await;
    assert_eq!(
        condition(&i.status.unwrap().conditions, "Ready").map(|c| c.0),
        Some("False".into())
    );

    // Outside the bounds the API server refuses the scale with the CEL message.
    let (ok, out) = kubectl(&["-n", &ns, "scale", "isvc/minilm", "--replicas=9"]);
    assert!(!ok, "scale beyond maxReplicas must be refused");
    assert!(out.contains("spec.replicas must lie within"), "{out}");

    // Events were published for the transitions.
    let (ok, out) = kubectl(&[
        "-n",
        &ns,
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=minilm",
        "-o",
        "name",
    ]);
    assert!(ok && !out.trim().is_empty(), "no events for minilm: {out}");
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn traffic_policy_sample_gets_a_gateway_and_effective_weights() {
    let client = client().await;
    let ns = namespace(&client, "tp").await;
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let tp: TrafficPolicy = sample("trafficpolicy.yaml", "TrafficPolicy");
    tps.create(&PostParams::default(), &tp)
        .await
        .expect("create tp");

    let d = wait_exists(&deployments, "embeddings-gateway").await;
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("embeddings-gateway")
    );
    assert!(
        pod.containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--policy=embeddings".to_owned())
    );
    wait_exists(
        &Api::<Service>::namespaced(client.clone(), &ns),
        "embeddings",
    )
    .await;
    wait_exists(
        &Api::<Role>::namespaced(client.clone(), &ns),
        "embeddings-gateway",
    )
    .await;

    // The backend InferenceService does not exist: Degraded with a clear reason.
    let st = wait_for("tp status", || async {
        tps.get("embeddings").await.ok()?.status
    })
    .await;
    assert_eq!(st.weights_summary.as_deref(), Some("stable=100"));
    assert_eq!(
        condition(&st.conditions, "Degraded"),
        Some(("True".into(), "BackendNotFound".into()))
    );

    // Once the backend exists the policy is no longer degraded.
    let isvc: InferenceService = sample("inferenceservice.yaml", "InferenceService");
    Api::<InferenceService>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &isvc)
        .await
        .expect("create backend isvc");
    wait_for("tp not degraded", || async {
        let st = tps.get("embeddings").await.ok()?.status?;
        (condition(&st.conditions, "Degraded")?.0 == "False").then_some(())
    })
    .await;

    // A split edit changes the effective weights the gateways watch.
    tps.patch(
        "embeddings",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"backends": [
            {"name": "stable", "service": "minilm", "weight": 80},
            {"name": "canary", "service": "minilm", "weight": 20}
        ]}})),
    )
    .await
    .expect("edit weights");
    wait_for("weights 80/20", || async {
        let st = tps.get("embeddings").await.ok()?.status?;
        (st.weights_summary.as_deref() == Some("stable=80,canary=20")).then_some(())
    })
    .await;

    tps.delete("embeddings", &DeleteParams::foreground())
        .await
        .expect("delete tp");
    wait_gone(&deployments, "embeddings-gateway").await;
}
