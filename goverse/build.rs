//! Compiles goverse's own wire protocol (`proto/`) with protox, so building
//! goverse needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [proto_dir.join("node.proto"), proto_dir.join("gate.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_dir])?;
    tonic_prost_build::configure()
        // The well-known types (the gate's `Any`) are pbjson-types', the
        // ones goverse uses everywhere else: one `Any`, with proto3 JSON.
        .extern_path(".google.protobuf.Any", "::pbjson_types::Any")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
