//! Adding a member as a learner and promoting it once it has caught up.

use std::time::{Duration, Instant};

use crate::render::RunningMember;

use super::{connect::Access, rpc, ClusterError};

/// The result of [`add_learner`].
#[derive(Debug, Clone)]
pub struct Added {
    /// The new (or already added) member's ID.
    pub id: u64,
    /// The membership after the add, the new member included.
    pub members: Vec<RunningMember>,
    /// False when a learner with these peer URLs already existed (idempotent re-run).
    pub newly_added: bool,
}

fn running(members: &[etcd_client::Member]) -> Vec<RunningMember> {
    members
        .iter()
        .map(|m| RunningMember {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
        })
        .collect()
}

/// Adds a learner with `peer_urls`, unless one with those URLs exists already.
///
/// Guarantees: re-running for the same peer URLs returns the existing learner instead of
/// adding a second one; a started voting member with those URLs is an error
/// ([`ClusterError::AlreadyMember`]).
pub async fn add_learner(
    access: &Access,
    name: &str,
    peer_urls: &[String],
) -> Result<Added, ClusterError> {
    let mut c = access.connect().await?;
    let list = rpc(access.timeout, "member list", c.member_list()).await?;
    if let Some(m) = list
        .members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| peer_urls.contains(u)))
    {
        if m.is_learner() || m.name().is_empty() {
            return Ok(Added {
                id: m.id(),
                members: running(list.members()),
                newly_added: false,
            });
        }
        return Err(ClusterError::AlreadyMember {
            name: m.name().to_string(),
            id: m.id(),
        });
    }
    let opts = etcd_client::MemberAddOptions::new().with_is_learner();
    let resp = rpc(
        access.timeout,
        "member add",
        c.member_add(peer_urls, Some(opts)),
    )
    .await?;
    let id = resp
        .member()
        .map(|m| m.id())
        .ok_or_else(|| ClusterError::Protocol("member add returned no member".into()))?;
    tracing::info!(member = name, id = format!("{id:x}"), "added as learner");
    Ok(Added {
        id,
        members: running(resp.member_list()),
        newly_added: true,
    })
}

/// Promotes learner `id`, retrying while it catches up, for at most `wait`.
///
/// Guarantees: returns Ok once the member is a voter (also when it already was); a member
/// that does not catch up in time is [`ClusterError::PromoteTimeout`].
pub async fn promote(access: &Access, id: u64, wait: Duration) -> Result<(), ClusterError> {
    let deadline = Instant::now() + wait;
    let mut last = String::new();
    while Instant::now() < deadline {
        match access.connect().await {
            Ok(mut c) => {
                let list = rpc(access.timeout, "member list", c.member_list()).await?;
                match list.members().iter().find(|m| m.id() == id) {
                    None => {
                        return Err(ClusterError::Protocol(format!(
                            "member {id:x} is not in the cluster"
                        )))
                    }
                    Some(m) if !m.is_learner() => return Ok(()),
                    Some(_) => {}
                }
                match rpc(access.timeout, "member promote", c.member_promote(id)).await {
                    Ok(_) => {
                        tracing::info!(id = format!("{id:x}"), "promoted to voting member");
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tracing::debug!(%last, "learner not ready for promotion yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ClusterError::PromoteTimeout { id, last })
}

/// A member found by peer URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Member ID.
    pub id: u64,
    /// It is still a learner.
    pub is_learner: bool,
}

/// The member whose peer URLs include one of `peer_urls`, if any. Read-only.
pub async fn find_by_peer_url(
    access: &Access,
    peer_urls: &[String],
) -> Result<Option<Found>, ClusterError> {
    let mut c = access.connect().await?;
    let list = rpc(access.timeout, "member list", c.member_list()).await?;
    Ok(list
        .members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| peer_urls.contains(u)))
        .map(|m| Found {
            id: m.id(),
            is_learner: m.is_learner(),
        }))
}
