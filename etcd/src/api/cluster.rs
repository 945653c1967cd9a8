//! `etcdserverpb.Cluster`: member list (membership changes arrive with clustering).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::rpctypes::EtcdError;
use crate::server::EtcdServer;

/// The Cluster service.
pub struct ClusterService(pub Arc<EtcdServer>);

fn not_yet() -> Status {
    // Runtime reconfiguration is not available in a single-member build.
    EtcdError::NotCapable.to_status()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet())
    }
    async fn member_remove(
        &self,
        _r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet())
    }
    async fn member_update(
        &self,
        _r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet())
    }
    async fn member_list(
        &self,
        r: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let (header, members) = self.0.member_list(r.into_inner().linearizable).await?;
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members,
        }))
    }
    async fn member_promote(
        &self,
        _r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet())
    }
}
