//! Generates the Raft transport (server and client) from proto/raft.proto, using the
//! vendored protoc when PROTOC is not set (protoc is not installed on build machines).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=proto/raft.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_protos(&["proto/raft.proto"], &["proto"])?;
    Ok(())
}
