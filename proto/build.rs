//! Compiles `mehr/v1/*.proto` with protox (pure Rust, so no system `protoc` is needed) and
//! generates the tonic clients and servers. The encoded descriptor set is kept for server
//! reflection, with source info so that `grpcurl describe` shows the comments.

use std::{env, fs, io, path::PathBuf};

use prost::Message as _;

fn main() -> io::Result<()> {
    let proto_root = PathBuf::from("mehr/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&proto_root)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=mehr/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::Compiler::new(["."])
        .map_err(io::Error::other)?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)
        .map_err(|e| io::Error::other(e.to_string()))?
        .file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out_dir.join("mehr_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".mehr.v1")
        .compile_fds(descriptors)
}
