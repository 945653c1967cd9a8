//! Runtime reconfiguration (Cluster.MemberAdd/Remove/Update/Promote): checked as etcd
//! checks it, then committed through raft as a configuration change (or, for peer URL
//! updates, as a normal entry) and answered once applied.

use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use raft::prelude::{ConfChange, ConfChangeType};

use super::facade::{raft_err, waited};
use super::EtcdServer;
use crate::cluster::member_id;
use crate::proto::etcdinternal::{internal_request::Request, MemberPeerUrls, StoredMember};
use crate::proto::etcdserverpb::{Member, ResponseHeader};
use crate::rpctypes::EtcdError;

/// A learner may be promoted once it has replicated this share of the leader's log.
const PROMOTE_READY_PERCENT: u64 = 90;

fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for u in urls {
        let ok = url::Url::parse(u).is_ok_and(|p| {
            matches!(p.scheme(), "http" | "https")
                && p.host_str().is_some()
                && p.port_or_known_default().is_some()
                && (p.path().is_empty() || p.path() == "/")
        });
        if !ok {
            return Err(EtcdError::MemberBadUrls);
        }
    }
    Ok(())
}

/// etcd's quorum of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// `--strict-reconfig-check`, as etcd counts it: a voter is started once it has
/// published its name. Adding a voter needs a quorum of the larger cluster started;
/// removing one needs a quorum of the smaller cluster started among the rest. A
/// one-member cluster whose member is started may always add a second voter (growing
/// again after `--force-new-cluster` or a snapshot restore).
fn enough_started(records: &[StoredMember], adding: bool, removing: Option<u64>) -> bool {
    let voters: Vec<&StoredMember> = records.iter().filter(|m| !m.is_learner).collect();
    let started = |m: &&&StoredMember| !m.name.is_empty();
    if adding {
        let n = voters.iter().filter(started).count();
        return (n == 1 && voters.len() == 1) || n >= quorum(voters.len() + 1);
    }
    match removing {
        Some(id) if voters.iter().any(|m| m.id == id) => {
            let rest: Vec<&&StoredMember> = voters.iter().filter(|m| m.id != id).collect();
            rest.iter().filter(|m| !m.name.is_empty()).count() >= quorum(rest.len())
        }
        _ => true,
    }
}

fn to_api(m: &StoredMember) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

impl EtcdServer {
    fn member_header(&self) -> ResponseHeader {
        let mut h = self.header(0);
        h.revision = 0;
        h
    }

    /// Proposes a configuration change and waits until it is applied.
    async fn propose_conf_change(
        &self,
        change_type: ConfChangeType,
        node_id: u64,
        context: Vec<u8>,
    ) -> Result<(), EtcdError> {
        let (id, rx) = self.p.wait.register();
        let mut cc = ConfChange {
            node_id,
            id,
            ..Default::default()
        };
        cc.set_change_type(change_type);
        cc.context = context.into();
        if let Err(e) = self.p.raft.propose_conf_change(cc) {
            self.p.wait.cancel(id);
            return Err(raft_err(e));
        }
        // Apply answers the id; a drop and the request timeout (the registry's sweeps)
        // end the wait too, as for any proposal.
        let applied = waited(rx.await)?;
        applied.result.map(|_| ())
    }

    fn peer_urls_taken(&self, urls: &[String], except: u64) -> bool {
        self.p
            .members
            .records()
            .iter()
            .filter(|m| m.id != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// Cluster.MemberAdd: the new member (unstarted: no name, no client URLs) and the
    /// member list after the change.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(ResponseHeader, Member, Vec<Member>), EtcdError> {
        check_urls(&peer_urls)?;
        if self.peer_urls_taken(&peer_urls, 0) {
            return Err(EtcdError::PeerUrlExist);
        }
        let records = self.p.members.records();
        let learners = records.iter().filter(|m| m.is_learner).count();
        if is_learner && learners >= self.settings().max_learners {
            return Err(EtcdError::TooManyLearners);
        }
        if !is_learner
            && self.p.settings.strict_reconfig_check
            && !enough_started(&records, true, None)
        {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = member_id(&peer_urls, &self.p.settings.cluster_token, Some(now));
        if self.p.members.get(id).is_some() {
            return Err(EtcdError::MemberExist);
        }
        let m = StoredMember {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        let kind = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        self.propose_conf_change(kind, id, m.encode_to_vec())
            .await?;
        Ok((self.member_header(), to_api(&m), self.p.members.list()))
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<(ResponseHeader, Vec<Member>), EtcdError> {
        if self.p.members.get(id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        if self.p.settings.strict_reconfig_check
            && !enough_started(&self.p.members.records(), false, Some(id))
        {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        self.propose_conf_change(ConfChangeType::RemoveNode, id, Vec::new())
            .await?;
        Ok((self.member_header(), self.p.members.list()))
    }

    /// Cluster.MemberUpdate: new peer URLs for a member.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<(ResponseHeader, Vec<Member>), EtcdError> {
        check_urls(&peer_urls)?;
        if self.p.members.get(id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        if self.peer_urls_taken(&peer_urls, id) {
            return Err(EtcdError::PeerUrlExist);
        }
        let req = Request::MemberPeerUrls(MemberPeerUrls {
            member_id: id,
            peer_urls,
        });
        self.propose(req).await?.result?;
        Ok((self.member_header(), self.p.members.list()))
    }

    /// Cluster.MemberPromote: a learner becomes a voter once it has caught up with
    /// the leader ("etcdserver: can only promote a learner member which is in sync
    /// with leader" until then).
    pub async fn member_promote(
        &self,
        id: u64,
    ) -> Result<(ResponseHeader, Vec<Member>), EtcdError> {
        let Some(m) = self.p.members.get(id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if !m.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        let progress = match self.p.raft.progress().await.map_err(raft_err)? {
            Some(p) => p,
            None => {
                let timeout = self.p.settings.request_timeout;
                self.with_leader(|link, urls| async move { link.progress(&urls, timeout).await })
                    .await?
            }
        };
        let leader_match = progress.commit.max(1);
        let learner_match = progress.matched.get(&id).copied().unwrap_or(0);
        if learner_match * 100 < leader_match * PROMOTE_READY_PERCENT {
            return Err(EtcdError::LearnerNotReady);
        }
        let mut promoted = m.clone();
        promoted.is_learner = false;
        self.propose_conf_change(ConfChangeType::AddNode, id, promoted.encode_to_vec())
            .await?;
        Ok((self.member_header(), self.p.members.list()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_urls_are_checked_as_etcd_does() {
        for good in [
            "http://10.0.0.1:2380",
            "https://node-1.example:2380",
            "http://[::1]:2380/",
        ] {
            assert!(check_urls(&[good.to_string()]).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.1:2380",
            "unix:///tmp/s",
            "http://host:2380/path",
            "not a url",
        ] {
            assert_eq!(
                check_urls(&[bad.to_string()]),
                Err(EtcdError::MemberBadUrls),
                "{bad}"
            );
        }
        assert_eq!(check_urls(&[]), Err(EtcdError::MemberBadUrls));
    }

    fn m(id: u64, started: bool, learner: bool) -> StoredMember {
        StoredMember {
            id,
            name: if started {
                format!("m{id}")
            } else {
                String::new()
            },
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn strict_reconfig_counts_started_voters() {
        // 3 started voters: a 4th voter may be added (3 >= quorum(4) = 3).
        let three = vec![m(1, true, false), m(2, true, false), m(3, true, false)];
        assert!(enough_started(&three, true, None));
        // 3 voters, one never started: adding another would need 3 started.
        let one_unstarted = vec![m(1, true, false), m(2, true, false), m(3, false, false)];
        assert!(!enough_started(&one_unstarted, true, None));
        // Removing a started voter of 3 with one unstarted leaves 1 of 2 started.
        assert!(!enough_started(&one_unstarted, false, Some(1)));
        // Removing the unstarted one leaves 2 of 2.
        assert!(enough_started(&one_unstarted, false, Some(3)));
        // A started member alone may add a second voter; an unstarted one may not.
        assert!(enough_started(&[m(1, true, false)], true, None));
        assert!(!enough_started(&[m(1, false, false)], true, None));
        // Two voters with one started: adding a third needs 2 started.
        assert!(!enough_started(
            &[m(1, true, false), m(2, false, false)],
            true,
            None
        ));
        // Learners never count, and removing one is always allowed.
        let with_learner = vec![m(1, true, false), m(2, false, true)];
        assert!(enough_started(&with_learner, false, Some(2)));
    }
}
