//! Reconciles an `InferenceService` into its tinyinfer StatefulSet, Services and budget,
//! and derives its status from the StatefulSet's real status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Observed};
use super::owned::{apply, prune};
use super::vector_collection::rolled_out;
use super::{Context, Error, instrumented, names, patch_status, publish_transitions};
use crate::api::{InferenceService, InferenceServiceStatus, condition_type};
use crate::builders::common::{selector_labels, selector_string};
use crate::builders::inference_service::{self as build, HTTP_PORT, WORKLOAD};

/// Reconcile entry point handed to the kube-runtime `Controller`.
pub async fn reconcile(isvc: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(isvc.clone(), ctx.clone(), reconcile_inner(isvc, ctx)).await
}

async fn reconcile_inner(isvc: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = isvc
        .namespace()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = isvc.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let client = &ctx.client;
    let children = build::build(&isvc, &ctx.images);
    // Every child at once; children unchanged since the last apply cost no write.
    let c = ctx.as_ref();
    let (sts, _, _, _) = tokio::try_join!(
        apply(c, &children.statefulset),
        apply(c, &children.headless_service),
        apply(c, &children.service),
        futures::future::try_join_all(children.pdb.iter().map(|p| apply(c, p))),
    )?;
    // A budget is only kept while there are two replicas or more.
    prune::<PodDisruptionBudget>(c, &ns, &uid, &names(&children.pdb)).await?;

    let previous = isvc.status.clone().unwrap_or_default();
    let status = compute_status(&isvc, &sts, Timestamp::now());
    publish_transitions(
        &ctx,
        isvc.as_ref(),
        &previous.conditions,
        &status.conditions,
    )
    .await;
    if status != previous {
        patch_status(client, isvc.as_ref(), &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Status of `isvc` given its StatefulSet as stored in the API.
pub fn compute_status(
    isvc: &InferenceService,
    sts: &StatefulSet,
    now: Timestamp,
) -> InferenceServiceStatus {
    let previous = isvc.status.clone().unwrap_or_default();
    let desired = isvc.spec.replicas;
    let st = sts.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let rolled = rolled_out(sts, desired);
    let was_ready = conditions::is_true(&previous.conditions, condition_type::READY)
        || conditions::is_true(&previous.conditions, condition_type::DEGRADED);

    let ready_cond = if desired == 0 && st.replicas == 0 {
        Observed::new(
            condition_type::READY,
            true,
            "ScaledToZero",
            "no replicas requested",
        )
    } else if ready >= desired && rolled {
        Observed::new(
            condition_type::READY,
            true,
            "AllReplicasReady",
            format!("{ready}/{desired} replicas ready"),
        )
    } else {
        Observed::new(
            condition_type::READY,
            false,
            "ReplicasNotReady",
            format!("{ready}/{desired} replicas ready"),
        )
    };
    let loaded = if ready > 0 {
        Observed::new(
            condition_type::MODEL_LOADED,
            true,
            "ModelServed",
            format!("{ready} replicas serve the model"),
        )
    } else {
        Observed::new(
            condition_type::MODEL_LOADED,
            false,
            "NoReadyReplica",
            "no replica has the model loaded",
        )
    };
    let progressing = if !rolled {
        Observed::new(
            condition_type::PROGRESSING,
            true,
            "RollingOut",
            "the StatefulSet is being updated",
        )
    } else if ready < desired {
        Observed::new(
            condition_type::PROGRESSING,
            true,
            "WaitingForPods",
            "waiting for replicas to become ready",
        )
    } else {
        Observed::new(
            condition_type::PROGRESSING,
            false,
            "Settled",
            "all replicas run the current spec",
        )
    };
    let degraded = if was_ready && rolled && ready < desired {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "ReplicasUnavailable",
            format!("{ready}/{desired} replicas ready"),
        )
    } else {
        Observed::new(condition_type::DEGRADED, false, "AsExpected", "")
    };

    InferenceServiceStatus {
        observed_generation: isvc.meta().generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![ready_cond, loaded, progressing, degraded],
            isvc.meta().generation,
            now,
        ),
        url: isvc
            .namespace()
            .map(|ns| format!("http://{}.{ns}.svc:{HTTP_PORT}", isvc.name_any())),
        replicas: st.replicas,
        ready_replicas: ready,
        selector: Some(selector_string(&selector_labels(
            WORKLOAD,
            &isvc.name_any(),
        ))),
        loaded_model_version: if ready > 0 && rolled {
            Some(isvc.spec.model.version.clone())
        } else if ready > 0 {
            previous.loaded_model_version
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use serde_json::json;

    use super::*;
    use crate::builders::Images;

    fn isvc(replicas: i32) -> InferenceService {
        let mut isvc = InferenceService::new(
            "mlp",
            serde_json::from_value(json!({"model": {"name": "mlp", "version": "7", "storageUri": "file:///m.onnx"}, "replicas": replicas}))
                .unwrap(),
        );
        isvc.metadata.namespace = Some("ml".into());
        isvc.metadata.uid = Some("u".into());
        isvc.metadata.generation = Some(2);
        isvc
    }

    fn sts(isvc: &InferenceService, replicas: i32, ready: i32) -> StatefulSet {
        let mut sts = build::build(isvc, &Images::default()).statefulset;
        sts.metadata.generation = Some(1);
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(1),
            replicas,
            ready_replicas: Some(ready),
            updated_replicas: Some(replicas),
            ..StatefulSetStatus::default()
        });
        sts
    }

    fn cond(s: &InferenceServiceStatus, t: &str) -> (String, String) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_replicas_make_the_service_ready_with_the_model_version() {
        let i = isvc(2);
        let s = compute_status(&i, &sts(&i, 2, 2), Timestamp::now());
        assert_eq!(
            cond(&s, "Ready"),
            ("True".into(), "AllReplicasReady".into())
        );
        assert_eq!(cond(&s, "ModelLoaded").0, "True");
        assert_eq!(s.loaded_model_version.as_deref(), Some("7"));
        assert_eq!(s.url.as_deref(), Some("http://mlp.ml.svc:8080"));
        assert_eq!((s.replicas, s.ready_replicas), (2, 2));
    }

    #[test]
    fn no_ready_pod_means_model_not_loaded() {
        let i = isvc(1);
        let s = compute_status(&i, &sts(&i, 1, 0), Timestamp::now());
        assert_eq!(cond(&s, "Ready").0, "False");
        assert_eq!(cond(&s, "ModelLoaded").0, "False");
        assert_eq!(cond(&s, "Degraded").0, "False");
        assert_eq!(s.loaded_model_version, None);
    }

    #[test]
    fn scaled_to_zero_is_ready() {
        let i = isvc(0);
        let s = compute_status(&i, &sts(&i, 0, 0), Timestamp::now());
        assert_eq!(cond(&s, "Ready"), ("True".into(), "ScaledToZero".into()));
    }

    #[test]
    fn losing_a_replica_after_ready_is_degraded() {
        let mut i = isvc(3);
        i.status = Some(compute_status(&i, &sts(&i, 3, 3), Timestamp::now()));
        let s = compute_status(&i, &sts(&i, 3, 2), Timestamp::now());
        assert_eq!(
            cond(&s, "Degraded"),
            ("True".into(), "ReplicasUnavailable".into())
        );
        assert_eq!(cond(&s, "ModelLoaded").0, "True");
    }
}
