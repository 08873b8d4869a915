//! Generates the OIP v2 gRPC messages, client and server from proto/grpc_service.proto,
//! using the vendored protoc when PROTOC is not set (protoc is not installed on build
//! machines). Two passes: messages + client with prost's codec, then the server alone
//! (messages taken from the first pass) with the strict codec, so a malformed request is
//! the client's error while a malformed response stays the server's.

use std::path::PathBuf;

const PROTO: &str = "proto/grpc_service.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed={PROTO}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .bytes(".")
        .compile_protos(&[PROTO], &["proto"])?;
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(".inference", "crate::grpc::pb")
        .codec_path("crate::grpc::codec::StrictCodec")
        .compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
