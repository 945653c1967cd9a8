//! `etcdserverpb.Cluster`: member list and runtime reconfiguration.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::require_admin;
use crate::proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::EtcdServer;

/// The Cluster service.
pub struct ClusterService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        require_admin(&self.0, &r)?;
        let r = r.into_inner();
        let (header, member, members) = self.0.member_add(r.peer_ur_ls, r.is_learner).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(header),
            member: Some(member),
            members,
        }))
    }
    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        require_admin(&self.0, &r)?;
        let (header, members) = self.0.member_remove(r.into_inner().id).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(header),
            members,
        }))
    }
    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        require_admin(&self.0, &r)?;
        let r = r.into_inner();
        let (header, members) = self.0.member_update(r.id, r.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(header),
            members,
        }))
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
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        require_admin(&self.0, &r)?;
        let (header, members) = self.0.member_promote(r.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(header),
            members,
        }))
    }
}
