//! `etcdserverpb.Lease`: grant, revoke, keep-alive stream, time-to-live, list.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::EtcdServer;

/// The Lease service.
pub struct LeaseService(pub Arc<EtcdServer>);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

/// Answers one keep-alive request (shared with the JSON gateway).
pub async fn keep_alive_once(
    server: &EtcdServer,
    id: i64,
) -> Result<LeaseKeepAliveResponse, Status> {
    let (header, ttl) = server.lease_renew(id).await?;
    Ok(LeaseKeepAliveResponse {
        header: Some(header),
        id,
        ttl,
    })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        r: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(self.0.lease_grant(r.into_inner()).await?))
    }

    async fn lease_revoke(
        &self,
        r: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = super::auth::caller(&self.0, &r)?;
        Ok(Response::new(
            self.0.lease_revoke(r.into_inner(), who.as_ref()).await?,
        ))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        r: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let server = self.0.clone();
        let input = r.into_inner();
        let out = input.then(move |req| {
            let server = server.clone();
            async move {
                let req = req?;
                keep_alive_once(&server, req.id).await
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        r: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = super::auth::caller(&self.0, &r)?;
        let r = r.into_inner();
        Ok(Response::new(
            self.0
                .lease_time_to_live(r.id, r.keys, who.as_ref())
                .await?,
        ))
    }

    async fn lease_leases(
        &self,
        _r: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.0.lease_leases().await?))
    }
}
