//! Leader-only work reached through any member: [`LeaderDesk`] is what the leader
//! answers on its peer listener, [`LeaderLink`] is how a follower asks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Status;

use super::connect::{connect, parse_peer_url, PeerClientTls, TransportOptions};
use super::TransportError;
use crate::proto::etcdpeer::peer_client::PeerClient;
use crate::proto::etcdpeer::{LeaseRenewRequest, LeaseTtlRequest, ProgressRequest};
use crate::raft::node::ReplicationProgress;

/// What the leader does for followers. Errors are gRPC statuses carrying etcd's
/// message (the follower hands them to its client unchanged).
#[tonic::async_trait]
pub trait LeaderDesk: Send + Sync + 'static {
    /// Renews lease `id`; its TTL, or 0 if it does not exist.
    async fn lease_renew(&self, id: i64) -> Result<i64, Status>;
    /// Remaining and granted TTL of lease `id`; remaining -1 if it does not exist.
    async fn lease_ttl(&self, id: i64) -> Result<(i64, i64), Status>;
    /// The leader's replication progress.
    async fn progress(&self) -> Result<ReplicationProgress, Status>;
    /// The key-value store's hash at `revision` (0: the current one) as
    /// `(hash, compact revision, revision)`; any member answers, not only the leader.
    async fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), Status>;
}

/// Calls the leader's [`LeaderDesk`] over the peer URLs. Keeps one channel per URL.
///
/// Guarantee: every call ends within the given timeout; an unreachable leader is an
/// `Unavailable` status.
pub struct LeaderLink {
    cluster_id: u64,
    tls: Option<PeerClientTls>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl LeaderLink {
    /// A link for members of `cluster_id`, presenting `tls` on `https` peer URLs.
    pub fn new(cluster_id: u64, tls: Option<PeerClientTls>) -> Arc<Self> {
        Arc::new(LeaderLink {
            cluster_id,
            tls,
            channels: Mutex::new(HashMap::new()),
        })
    }

    async fn client(&self, urls: &[String]) -> Result<PeerClient<Channel>, Status> {
        let cached = {
            let ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            urls.iter().find_map(|u| ch.get(u).cloned())
        };
        if let Some(c) = cached {
            return Ok(PeerClient::new(c));
        }
        let opts = TransportOptions {
            connect_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let mut last = String::from("the leader has no peer URL");
        for u in urls {
            let url = match parse_peer_url(u) {
                Ok(url) => url,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match connect(&url, self.tls.as_ref(), &opts).await {
                Ok(c) => {
                    self.channels
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(u.clone(), c.clone());
                    return Ok(PeerClient::new(c));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(Status::unavailable(last))
    }

    fn forget(&self, urls: &[String]) {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for u in urls {
            ch.remove(u);
        }
    }

    async fn call<T, F, Fut>(&self, urls: &[String], timeout: Duration, f: F) -> Result<T, Status>
    where
        F: FnOnce(PeerClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let work = async {
            let c = self.client(urls).await?;
            f(c).await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(s)) => {
                if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown {
                    self.forget(urls);
                }
                Err(s)
            }
            Err(_) => {
                self.forget(urls);
                Err(Status::deadline_exceeded(
                    "the leader did not answer in time",
                ))
            }
        }
    }

    /// Renews lease `id` on the leader reachable at `urls`.
    pub async fn lease_renew(
        &self,
        urls: &[String],
        id: i64,
        timeout: Duration,
    ) -> Result<i64, Status> {
        let cid = self.cluster_id;
        self.call(urls, timeout, |mut c| async move {
            Ok(c.lease_renew(LeaseRenewRequest {
                cluster_id: cid,
                id,
            })
            .await?
            .into_inner()
            .ttl)
        })
        .await
    }

    /// Remaining and granted TTL of lease `id` as the leader counts it.
    pub async fn lease_ttl(
        &self,
        urls: &[String],
        id: i64,
        timeout: Duration,
    ) -> Result<(i64, i64), Status> {
        let cid = self.cluster_id;
        self.call(urls, timeout, |mut c| async move {
            let r = c
                .lease_time_to_live(LeaseTtlRequest {
                    cluster_id: cid,
                    id,
                })
                .await?
                .into_inner();
            Ok((r.ttl, r.granted_ttl))
        })
        .await
    }

    /// The leader's replication progress.
    pub async fn progress(
        &self,
        urls: &[String],
        timeout: Duration,
    ) -> Result<ReplicationProgress, Status> {
        let cid = self.cluster_id;
        self.call(urls, timeout, |mut c| async move {
            let r = c
                .progress(ProgressRequest { cluster_id: cid })
                .await?
                .into_inner();
            Ok(ReplicationProgress {
                commit: r.commit,
                matched: r.matched.into_iter().collect(),
            })
        })
        .await
    }
}

/// Refuses a request of another cluster.
pub(super) fn check_cluster(local: u64, remote: u64) -> Result<(), Status> {
    if local == remote {
        Ok(())
    } else {
        Err(Status::failed_precondition(
            "etcdserver: cluster ID mismatch",
        ))
    }
}

/// The desk of a member that cannot serve leader work (no desk configured).
pub(super) struct NoDesk;

#[tonic::async_trait]
impl LeaderDesk for NoDesk {
    async fn lease_renew(&self, _id: i64) -> Result<i64, Status> {
        Err(Status::failed_precondition("etcdserver: not leader"))
    }
    async fn lease_ttl(&self, _id: i64) -> Result<(i64, i64), Status> {
        Err(Status::failed_precondition("etcdserver: not leader"))
    }
    async fn progress(&self) -> Result<ReplicationProgress, Status> {
        Err(Status::failed_precondition("etcdserver: not leader"))
    }
    async fn hash_kv(&self, _revision: i64) -> Result<(u32, i64, i64), Status> {
        Err(Status::unimplemented(
            "no key-value store on this peer service",
        ))
    }
}

/// Keeps `TransportError` in use for callers mapping connection failures.
impl From<TransportError> for Status {
    fn from(e: TransportError) -> Self {
        Status::unavailable(e.to_string())
    }
}
