//! Writes the CRD YAML files rendered from the Rust types: `crdgen [DIR]` (default `crds`).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".to_owned()));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in modelhub_operator::crdgen::crds() {
        let path = dir.join(file);
        std::fs::write(&path, modelhub_operator::crdgen::render(&crd)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
