//! Generates the gRPC server/client code and the protojson (gateway) serde
//! impls from the project's own `.proto` files.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = out.join("etcd_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        // Peer traffic carries raft messages and snapshot data: zero-copy slices.
        .bytes(".etcdpeer")
        // Watch events share a key-value among every watcher they go to: cloning one
        // is two reference-count increments, not two allocations and copies.
        .bytes(".mvccpb.KeyValue")
        .compile_protos(
            &[
                "proto/rpc.proto",
                "proto/kv.proto",
                "proto/auth.proto",
                "proto/internal.proto",
                "proto/peer.proto",
            ],
            &["proto"],
        )?;
    let bytes = std::fs::read(&descriptor)?;
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
