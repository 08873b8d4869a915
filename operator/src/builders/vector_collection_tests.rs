use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::builders::test_support::{spec, stored_meta};

fn vc(spec_json: serde_json::Value) -> VectorCollection {
    let mut vc = VectorCollection::new("docs", spec(spec_json));
    vc.metadata = stored_meta("docs");
    vc
}

fn sample() -> VectorCollection {
    vc(json!({
        "dimension": 384, "distance": "Cosine", "shards": 3, "replicas": 3,
        "payloadIndexes": [{"field": "lang", "type": "keyword"}, {"field": "meta.year", "type": "integer"}],
        "apiKeySecretRef": {"name": "vf-key", "key": "api-key"},
        "storage": {"size": "5Gi", "storageClassName": "fast"}
    }))
}

#[test]
fn one_statefulset_service_and_pdb_per_shard() {
    let children = build(&sample(), &Images::default());
    let names: Vec<_> = children
        .statefulsets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["docs-shard-0", "docs-shard-1", "docs-shard-2"]);
    assert_eq!(children.shard_services.len(), 3);
    assert_eq!(children.pdbs.len(), 3);
    assert_eq!(
        children.client_service.metadata.name.as_deref(),
        Some("docs")
    );
}

#[test]
fn every_child_is_owned_by_the_collection() {
    let children = build(&sample(), &Images::default());
    let metas = children
        .statefulsets
        .iter()
        .map(|o| &o.metadata)
        .chain(children.shard_services.iter().map(|o| &o.metadata))
        .chain(children.pdbs.iter().map(|o| &o.metadata))
        .chain([
            &children.client_service.metadata,
            &children.service_account.metadata,
            &children.role.metadata,
            &children.role_binding.metadata,
        ]);
    for meta in metas {
        let owners = meta.owner_references.as_ref().expect("owner reference");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "VectorCollection");
        assert_eq!(owners[0].uid, "uid-docs");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("ml"));
    }
}

#[test]
fn statefulset_follows_the_workload_contract() {
    let children = build(&sample(), &Images::default());
    let sts = &children.statefulsets[1];
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("docs-shard-1"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(
        selector.get("modelhub.io/shard").map(String::as_str),
        Some("1")
    );

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("docs-vectorforge")
    );
    let c = &pod.containers[0];
    let ports: Vec<_> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [6333, 6334, 6335]);
    let args = c.args.as_ref().unwrap();
    for expected in [
        "--collection=docs",
        "--shard=1",
        "--shards=3",
        "--dimension=384",
        "--distance=Cosine",
        "--data-dir=/data",
        "--payload-index=lang=keyword",
        "--payload-index=meta.year=integer",
        "--wal-sync=always",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected} in {args:?}"
        );
    }
    let env: Vec<_> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for expected in ["POD_NAME", "POD_NAMESPACE", "POD_IP", "VECTORFORGE_API_KEY"] {
        assert!(env.contains(&expected), "missing env {expected}");
    }
    let readiness = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));

    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    let size = &claim_spec
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"];
    assert_eq!(size.0, "5Gi");
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let children = build(&sample(), &Images::default());
    let pod = children.statefulsets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
}

#[test]
fn pdb_keeps_the_raft_quorum() {
    assert_eq!(max_unavailable(1), 0);
    assert_eq!(max_unavailable(2), 0);
    assert_eq!(max_unavailable(3), 1);
    assert_eq!(max_unavailable(5), 2);
    let children = build(&sample(), &Images::default());
    let pdb = children.pdbs[0].spec.as_ref().unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
}

#[test]
fn single_replica_shards_get_no_pdb() {
    let single = vc(json!({"dimension": 8, "distance": "Dot", "shards": 2}));
    let children = build(&single, &Images::default());
    assert!(children.pdbs.is_empty());
    assert_eq!(children.statefulsets.len(), 2);
}

#[test]
fn image_override_and_default() {
    let mut v = sample();
    let default_image = build(&v, &Images::default()).statefulsets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(default_image, Some(Images::default().vectorforge));
    v.spec.image = Some("registry.local/vf:dev".into());
    let image = build(&v, &Images::default()).statefulsets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("registry.local/vf:dev"));
}

#[test]
fn building_is_deterministic() {
    assert_eq!(
        build(&sample(), &Images::default()),
        build(&sample(), &Images::default())
    );
}

#[test]
fn backups_and_restores_reach_the_pods_as_flags_and_secret_env() {
    let c = vc(json!({
        "dimension": 8, "distance": "Cosine", "shards": 2,
        "durability": {"snapshots": {"schedule": "0 * * * *", "retention": 5, "s3": {
            "endpoint": "http://s3.storage:7070", "bucket": "vc-backups", "prefix": "prod",
            "credentialsSecret": "s3-creds"}}},
        "restoreFrom": {"s3": {"bucket": "old", "region": "eu-west-1"}, "collection": "docs-v1"}
    }));
    let sts = &build(&c, &Images::default()).statefulsets[1];
    let container = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let args = container.args.clone().unwrap();
    for want in [
        "--snapshot-schedule=0 * * * *",
        "--snapshot-retention=5",
        "--backup-s3-endpoint=http://s3.storage:7070",
        "--backup-s3-bucket=vc-backups",
        "--backup-s3-prefix=prod",
        "--backup-s3-region=us-east-1",
        "--restore-s3-bucket=old",
        "--restore-s3-region=eu-west-1",
        // the source's namespace defaults to the collection's own
        "--restore-source=ml/docs-v1",
    ] {
        assert!(
            args.contains(&want.to_owned()),
            "{want} missing from {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a.starts_with("--restore-backup")));
    let env = container.env.clone().unwrap();
    let from_secret = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
            .map(|s| (s.name, s.key))
    };
    assert_eq!(
        from_secret("VECTORFORGE_BACKUP_S3_ACCESS_KEY_ID"),
        Some(("s3-creds".into(), "AWS_ACCESS_KEY_ID".into()))
    );
    assert_eq!(
        from_secret("VECTORFORGE_BACKUP_S3_SECRET_ACCESS_KEY"),
        Some(("s3-creds".into(), "AWS_SECRET_ACCESS_KEY".into()))
    );
    // no credentials Secret: the pods' own AWS credentials, no env from a Secret
    assert_eq!(from_secret("VECTORFORGE_RESTORE_S3_ACCESS_KEY_ID"), None);
}
