//! Per-member health, leader and revision.

use etcd_client::Client;

use super::{connect::Access, rpc, ClusterError};

/// What one member reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Member ID.
    pub id: u64,
    /// Name (empty while an added member has not started).
    pub name: String,
    /// Client URLs it advertises.
    pub client_urls: Vec<String>,
    /// It is a learner.
    pub is_learner: bool,
    /// Answered a status request and a linearizable read.
    pub healthy: bool,
    /// It is the leader.
    pub is_leader: bool,
    /// Store revision.
    pub revision: i64,
    /// Raft index.
    pub raft_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Server version.
    pub version: String,
    /// Why it is unhealthy (empty when healthy).
    pub error: String,
}

async fn one(
    access: &Access,
    urls: &[String],
) -> Result<(etcd_client::StatusResponse, bool), ClusterError> {
    let mut c: Client = access.with_endpoints(urls.to_vec()).connect().await?;
    let st = rpc(access.timeout, "status", c.status()).await?;
    // A linearizable read proves the member can reach a quorum (what etcdctl's health does).
    let read_ok = rpc(access.timeout, "health read", c.get("health", None))
        .await
        .is_ok();
    Ok((st, read_ok))
}

/// Lists the members and asks each one (on its own client URLs) for its status.
///
/// Guarantees: one entry per member in member-list order; an unreachable member is listed
/// unhealthy with the reason rather than failing the whole call.
pub async fn cluster_status(access: &Access) -> Result<Vec<MemberStatus>, ClusterError> {
    let mut client = access.connect().await?;
    let members = rpc(access.timeout, "member list", client.member_list()).await?;
    let mut out = Vec::new();
    for m in members.members() {
        let mut s = MemberStatus {
            id: m.id(),
            name: m.name().to_string(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
            healthy: false,
            is_leader: false,
            revision: 0,
            raft_index: 0,
            raft_term: 0,
            version: String::new(),
            error: String::new(),
        };
        if m.client_urls().is_empty() {
            s.error = "not started".into();
            out.push(s);
            continue;
        }
        match one(access, m.client_urls()).await {
            Ok((st, read_ok)) => {
                s.is_leader = st.leader() == m.id();
                s.revision = st.header().map(|h| h.revision()).unwrap_or_default();
                s.raft_index = st.raft_index();
                s.raft_term = st.raft_term();
                s.version = st.version().to_string();
                let errors = st.errors().join("; ");
                // A learner refuses linearizable reads; its health is its status answer.
                s.healthy = errors.is_empty() && (read_ok || s.is_learner);
                s.error = if !errors.is_empty() {
                    errors
                } else if !s.healthy {
                    "linearizable read failed (no quorum?)".into()
                } else {
                    String::new()
                };
            }
            Err(e) => s.error = e.to_string(),
        }
        out.push(s);
    }
    Ok(out)
}

/// A table of member statuses for a terminal.
pub fn format_table(statuses: &[MemberStatus]) -> String {
    let mut out = format!(
        "{:<16} {:<16} {:<8} {:<7} {:<7} {:>9} {:>10} {:<8} {}\n",
        "ID",
        "NAME",
        "ROLE",
        "LEADER",
        "HEALTH",
        "REVISION",
        "RAFT-INDEX",
        "VERSION",
        "CLIENT-URLS"
    );
    for s in statuses {
        out.push_str(&format!(
            "{:<16x} {:<16} {:<8} {:<7} {:<7} {:>9} {:>10} {:<8} {}{}\n",
            s.id,
            if s.name.is_empty() { "-" } else { &s.name },
            if s.is_learner { "learner" } else { "voter" },
            if s.is_leader { "yes" } else { "no" },
            if s.healthy { "healthy" } else { "DOWN" },
            s.revision,
            s.raft_index,
            s.version,
            s.client_urls.join(","),
            if s.error.is_empty() {
                String::new()
            } else {
                format!("  ({})", s.error)
            },
        ));
    }
    out
}
