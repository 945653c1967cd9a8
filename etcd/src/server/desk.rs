//! The leader's answers to followers' forwarded work ([`LeaderDesk`]): lease
//! keep-alives and remaining TTLs (leases count down on the leader only) and the
//! replication progress that learner promotion is checked against.

use std::sync::Arc;

use tonic::Status;

use super::EtcdServer;
use crate::raft::transport::LeaderDesk;
use crate::raft::ReplicationProgress;
use crate::rpctypes::EtcdError;

/// The desk of one member; refuses with "etcdserver: not leader" unless it leads.
pub(super) struct Desk(pub(super) Arc<EtcdServer>);

impl Desk {
    fn must_lead(&self) -> Result<(), Status> {
        if self.0.raft().status().is_leader() {
            Ok(())
        } else {
            Err(EtcdError::NotLeader.to_status())
        }
    }
}

#[tonic::async_trait]
impl LeaderDesk for Desk {
    async fn lease_renew(&self, id: i64) -> Result<i64, Status> {
        self.must_lead()?;
        self.0.lease_renew_local(id).map_err(|e| e.to_status())
    }

    async fn lease_ttl(&self, id: i64) -> Result<(i64, i64), Status> {
        self.must_lead()?;
        Ok(self.0.lease_ttl_local(id))
    }

    async fn progress(&self) -> Result<ReplicationProgress, Status> {
        match self.0.raft().progress().await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(EtcdError::NotLeader.to_status()),
            Err(_) => Err(EtcdError::Stopped.to_status()),
        }
    }

    async fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), Status> {
        let r = self.0.hash_kv(revision).await.map_err(|e| e.to_status())?;
        Ok((r.hash, r.compact_revision, r.hash_revision))
    }
}
