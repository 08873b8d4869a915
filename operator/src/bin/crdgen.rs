//! Writes the CRD YAML rendered from the Rust types into each directory given
//! (default `crds`). A directory named `bases` also gets a `kustomization.yaml` listing
//! them (`config/crd/bases`).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from("crds"));
    }
    let crds = modelhub_operator::crdgen::crds();
    for dir in &dirs {
        std::fs::create_dir_all(dir)?;
        for (file, crd) in &crds {
            std::fs::write(dir.join(file), modelhub_operator::crdgen::render(crd)?)?;
        }
        if dir.file_name().is_some_and(|n| n == "bases") {
            std::fs::write(
                dir.join("kustomization.yaml"),
                modelhub_operator::crdgen::kustomization(),
            )?;
        }
        eprintln!("wrote {} CRDs to {}", crds.len(), dir.display());
    }
    Ok(())
}
