//! Generates the ModelHub vector API (server and client) from proto/vectorforge.proto
//! and the shard-to-shard API from proto/shard.proto, using the vendored protoc when PROTOC is not set (protoc is not installed on build
//! machines).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=proto/vectorforge.proto");
    println!("cargo:rerun-if-changed=proto/shard.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // named vectors map onto the server's BTreeMap<String, Vec<f32>>
        .btree_map(".")
        .compile_protos(
            &["proto/vectorforge.proto", "proto/shard.proto"],
            &["proto"],
        )?;
    Ok(())
}
