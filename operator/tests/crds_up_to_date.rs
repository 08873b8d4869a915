//! Fails when `crds/` (and the Helm chart's copy) drift from the Rust types: run
//! `make crds` after changing anything under `operator/src/api`.

use std::path::Path;

fn check_dir(dir: &Path) {
    for (file, crd) in modelhub_operator::crdgen::crds() {
        let path = dir.join(file);
        let expected = modelhub_operator::crdgen::render(&crd).expect("CRD renders");
        let actual = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `make crds`", path.display()));
        assert!(
            actual == expected,
            "{} is out of date with operator/src/api; run `make crds`",
            path.display()
        );
    }
}

#[test]
fn committed_crds_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    check_dir(&root.join("crds"));
    check_dir(&root.join("charts/modelhub/crds"));
    check_dir(&root.join("config/crd/bases"));
}

#[test]
fn every_crd_is_structural_and_described() {
    for (file, crd) in modelhub_operator::crdgen::crds() {
        let yaml = modelhub_operator::crdgen::render(&crd).unwrap();
        assert!(
            !yaml.contains("anyOf"),
            "{file}: anyOf makes the schema non-structural"
        );
        assert!(
            !yaml.contains("oneOf"),
            "{file}: oneOf makes the schema non-structural"
        );
        assert!(
            !yaml.contains("format: uint"),
            "{file}: unsigned formats are not Kubernetes formats"
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status subresource"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["modelhub".to_owned()][..]),
            "{file}: category"
        );
        let spec = &version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["spec"];
        for (field, schema) in spec.properties.as_ref().unwrap() {
            assert!(
                schema.description.as_ref().is_some_and(|d| !d.is_empty()),
                "{file}: spec.{field} has no description"
            );
        }
    }
}
