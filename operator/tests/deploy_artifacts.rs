//! Keeps the two deploy paths (kustomize `config/` and the Helm chart) in step.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `rules:` blocks of a multi-document RBAC file, in order.
fn rules_blocks(text: &str) -> Vec<String> {
    text.split("\n---\n")
        .filter_map(|doc| doc.find("\nrules:").map(|i| doc[i..].trim().to_owned()))
        .collect()
}

#[test]
fn helm_rbac_rules_match_kustomize_rbac_rules() {
    let kustomize = rules_blocks(&read("config/rbac/role.yaml"));
    let helm = rules_blocks(&read("charts/modelhub/templates/rbac.yaml"));
    assert_eq!(kustomize.len(), 2, "ClusterRole and leader-election Role");
    assert_eq!(
        helm, kustomize,
        "charts/modelhub/templates/rbac.yaml drifted from config/rbac/role.yaml"
    );
}

#[test]
fn crd_kustomization_lists_every_crd() {
    assert_eq!(
        read("config/crd/bases/kustomization.yaml"),
        modelhub_operator::crdgen::kustomization()
    );
}
