//! Talking to a running cluster over etcd's gRPC API (the `etcd-client` crate): status of
//! every member, and joining a new member as a learner that is promoted once caught up.

mod connect;
pub mod join;
pub mod status;

pub use connect::Access;

use std::future::Future;
use std::time::Duration;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Certificates or endpoints are unusable.
    #[error("{0}")]
    Access(String),
    /// No endpoint answered.
    #[error("cannot reach {endpoints}: {reason}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// Why.
        reason: String,
    },
    /// A request failed.
    #[error("{what} failed: {reason}")]
    Rpc {
        /// Which request.
        what: &'static str,
        /// etcd's message.
        reason: String,
    },
    /// A voting member already has these peer URLs.
    #[error("member {name} ({id:x}) already has these peer URLs and is a voting member")]
    AlreadyMember {
        /// Its name.
        name: String,
        /// Its ID.
        id: u64,
    },
    /// The learner did not catch up in time.
    #[error("learner {id:x} was not promoted in time: {last}")]
    PromoteTimeout {
        /// Learner ID.
        id: u64,
        /// The last refusal.
        last: String,
    },
    /// An unexpected answer.
    #[error("{0}")]
    Protocol(String),
}

/// Runs one request with a timeout, mapping errors to [`ClusterError::Rpc`].
pub(crate) async fn rpc<T>(
    timeout: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ClusterError::Rpc {
            what,
            reason: format!("no answer within {timeout:?}"),
        }),
        Ok(Err(e)) => Err(ClusterError::Rpc {
            what,
            reason: crate::errtext::chain(&e),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}
