//! The `mehr.v1` gRPC API.
//!
//! Messages, clients and servers are generated from `proto/mehr/v1/*.proto` at build time.
//! [`FILE_DESCRIPTOR_SET`] is the encoded descriptor set the daemon serves through gRPC server
//! reflection, so tools such as `grpcurl` work without a copy of the `.proto` files.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Version 1 of the Mehr daemon API.
pub mod v1 {
    tonic::include_proto!("mehr.v1");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every `mehr.v1` file (with comments).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mehr_descriptor.bin"));
