//! Writes the CRD YAML rendered from the Rust types into each directory given
//! (default `crds`). The first directory also gets a `kustomization.yaml` listing them,
//! for `config/crd`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from("crds"));
    }
    let crds = modelhub_operator::crdgen::crds();
    for (i, dir) in dirs.iter().enumerate() {
        std::fs::create_dir_all(dir)?;
        for (file, crd) in &crds {
            std::fs::write(dir.join(file), modelhub_operator::crdgen::render(crd)?)?;
        }
        if i == 0 {
            std::fs::write(
                dir.join("kustomization.yaml"),
                modelhub_operator::crdgen::kustomization(),
            )?;
        }
        eprintln!("wrote {} CRDs to {}", crds.len(), dir.display());
    }
    Ok(())
}
