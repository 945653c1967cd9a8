//! `etcdserverpb.KV`: validate -> facade -> etcd error; a call slower than
//! `--warning-unary-request-duration` is logged ([`request_stats`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::EtcdServer;

use super::auth::caller;
use super::request_stats::{self, Call, Started};

/// The KV service.
pub struct KvService(pub Arc<EtcdServer>);

impl KvService {
    fn bound(&self) -> std::time::Duration {
        self.0.settings().warning_unary_request_duration
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, r: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let started = Started::of(&r);
        let who = caller(&self.0, &r)?;
        let req = r.into_inner();
        let res = self.0.range(&req, who.as_ref()).await;
        request_stats::log_if_slow(started, self.bound(), Call::Range(&req, res.as_ref().ok()));
        Ok(Response::new(res?))
    }
    async fn put(&self, r: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let started = Started::of(&r);
        let who = caller(&self.0, &r)?;
        let req = r.into_inner();
        let res = self.0.put(&req, who.as_ref()).await;
        request_stats::log_if_slow(started, self.bound(), Call::Put(&req, res.as_ref().ok()));
        Ok(Response::new(res?))
    }
    async fn delete_range(
        &self,
        r: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let started = Started::of(&r);
        let who = caller(&self.0, &r)?;
        let req = r.into_inner();
        let res = self.0.delete_range(&req, who.as_ref()).await;
        request_stats::log_if_slow(
            started,
            self.bound(),
            Call::DeleteRange(&req, res.as_ref().ok()),
        );
        Ok(Response::new(res?))
    }
    async fn txn(&self, r: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let started = Started::of(&r);
        let who = caller(&self.0, &r)?;
        let req = r.into_inner();
        let res = self.0.txn(&req, who.as_ref()).await;
        request_stats::log_if_slow(started, self.bound(), Call::Txn(&req, res.as_ref().ok()));
        Ok(Response::new(res?))
    }
    async fn compact(
        &self,
        r: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let started = Started::of(&r);
        let res = self.0.compact(r.into_inner()).await;
        request_stats::log_if_slow(started, self.bound(), Call::Compact(res.as_ref().ok()));
        Ok(Response::new(res?))
    }
}
