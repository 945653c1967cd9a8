//! etcd's client-visible errors (etcd's `rpctypes`): every error a request can end in,
//! with the exact message string and gRPC status code etcd uses. Clients (the Go
//! client, etcdctl, kube-apiserver) match on these strings, so they are byte-identical
//! to etcd's and pinned by a unit test.

use tonic::Code;

/// An error a client request can end in. `Display` is etcd's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// Range/Put/DeleteRange/Compare without a key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// ignore_value/ignore_lease on a missing key; an empty RequestOp.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// ignore_value together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// ignore_lease together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More compares or ops than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Overlapping writes in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// Unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// Revision below the compaction point.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// Revision above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// NOSPACE alarm active or quota exceeded.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Unknown lease.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// Lease ID already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// Lease TTL above 9,000,000,000 s.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// Watch stream canceled by the client.
    #[error("etcdserver: watch canceled")]
    WatchCanceled,
    /// Member ID already in the cluster.
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    /// Peer URLs already used by a member.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    /// A reconfiguration would lose quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    /// Unparsable member URLs.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Unknown member ID.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Promote of a voting member.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promote of a learner that is behind.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// More learners than `--max-learners`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Peer from another cluster.
    #[error("etcdserver: cluster ID mismatch")]
    ClusterIdMismatch,
    /// Request above `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// Apply lags commit by too much.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// Authenticate while authentication is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// AuthEnable without a user `root`.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while `root` lacks the role `root`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// No user name: an empty one, or a request without credentials under auth.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// Unknown user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// Unknown role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// RoleAdd without a name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Authenticate with an unknown user or a wrong password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Authenticate of a user added with `--no-password` (etcd answers it with code
    /// Unknown and its auth package's text).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// RoleGrantPermission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// The caller may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not hold.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// A token this member does not know (expired, revoked, never issued).
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Deleting `root` or its role, or an invalid permission range.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// Users or roles changed after the request was checked.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// No leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Request that needs the leader sent to a follower.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Leadership changed while the request waited.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// Feature not supported by this cluster version.
    #[error("etcdserver: not capable")]
    NotCapable,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A consensus operation did not finish in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Timed out waiting for the applied index.
    #[error("etcdserver: request timed out, waiting for the applied index took too long")]
    TimeoutWaitAppliedIndex,
    /// Learners serve only serializable reads and status.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// MoveLeader to an unknown or unsuitable member.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Downgrade is not supported.
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    /// The request was canceled.
    #[error("etcdserver: request canceled")]
    Canceled,
    /// Corrupt store detected.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// Anything else: reported as `Unknown` with its own message, as etcd does.
    #[error("{0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC status code etcd answers this error with.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | MemberBadUrls | RequestTooLarge | UserEmpty | RoleEmpty
            | AuthFailed | PermissionNotGiven | InvalidAuthMgmt | AuthOldRevision => {
                Code::InvalidArgument
            }
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | ClusterIdMismatch
            | AuthNotEnabled
            | RootUserNotExist
            | RootRoleNotExist
            | UserAlreadyExist
            | UserNotFound
            | RoleAlreadyExist
            | RoleNotFound
            | RoleNotGranted
            | PermissionNotGranted
            | NotLeader
            | NotCapable
            | NotSupportedForLearner
            | BadLeaderTransferee
            | NoInflightDowngrade => Code::FailedPrecondition,
            WatchCanceled | Canceled => Code::Cancelled,
            NoLeader | LeaderChanged | Stopped | Timeout | TimeoutWaitAppliedIndex => {
                Code::Unavailable
            }
            Corrupt => Code::DataLoss,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            Internal(_) | NoPasswordUser => Code::Unknown,
        }
    }

    /// The error as a gRPC status (etcd's message, etcd's code).
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        e.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every message and code against etcd's rpctypes table.
    #[test]
    fn messages_and_codes_match_etcd() {
        use EtcdError::*;
        let table: &[(EtcdError, Code, &str)] = &[
            (
                EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                LeaseExist,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (WatchCanceled, Code::Cancelled, "etcdserver: watch canceled"),
            (
                MemberExist,
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                PeerUrlExist,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                MemberNotEnoughStarted,
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                MemberNotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                TooManyLearners,
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                ClusterIdMismatch,
                Code::FailedPrecondition,
                "etcdserver: cluster ID mismatch",
            ),
            (
                RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (
                RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                UserAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            (
                UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                UserNotFound,
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            ),
            (
                RoleAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            (
                RoleNotFound,
                Code::FailedPrecondition,
                "etcdserver: role name not found",
            ),
            (
                RoleEmpty,
                Code::InvalidArgument,
                "etcdserver: role name is empty",
            ),
            (
                AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                PermissionNotGiven,
                Code::InvalidArgument,
                "etcdserver: permission not given",
            ),
            (
                PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                RoleNotGranted,
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            (
                PermissionNotGranted,
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (
                InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                InvalidAuthMgmt,
                Code::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
            (
                AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            (
                NoPasswordUser,
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            (NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (
                NotLeader,
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (
                LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                NotCapable,
                Code::FailedPrecondition,
                "etcdserver: not capable",
            ),
            (Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (
                TimeoutWaitAppliedIndex,
                Code::Unavailable,
                "etcdserver: request timed out, waiting for the applied index took too long",
            ),
            (
                NotSupportedForLearner,
                Code::FailedPrecondition,
                "etcdserver: rpc not supported for learner",
            ),
            (
                BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                NoInflightDowngrade,
                Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
            (Canceled, Code::Cancelled, "etcdserver: request canceled"),
            (Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
        ];
        for (err, code, msg) in table {
            assert_eq!(err.to_string(), *msg, "{err:?}");
            assert_eq!(err.code(), *code, "{err:?}");
            let st = err.to_status();
            assert_eq!(st.message(), *msg);
            assert_eq!(st.code(), *code);
        }
        assert_eq!(Internal("boom".into()).code(), Code::Unknown);
    }
}
