//! Generated protobuf types and gRPC service stubs, with etcd's package names.
#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

/// `mvccpb`: key-value records and watch events.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// `etcdserverpb`: the client API services and messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// `etcdinternal`: the replicated command encoding.
pub mod etcdinternal {
    tonic::include_proto!("etcdinternal");
}

/// `etcdpeer`: member-to-member raft transport.
pub mod etcdpeer {
    tonic::include_proto!("etcdpeer");
}
