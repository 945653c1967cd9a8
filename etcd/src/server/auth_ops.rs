//! The Auth service's operations: changes of users, roles and the auth flag go through
//! raft (apply checks that the caller is `root`); reads are answered locally after a
//! ReadIndex round; Authenticate checks the password here and has the token assigned
//! through raft, so every member knows it.
//!
//! Passwords are hashed (bcrypt, `--bcrypt-cost`) and checked off the async workers;
//! only the hash enters the raft log.

use super::facade::EtcdServer;
use crate::apply::ApplyResponse;
use crate::auth::{hash_password, token, AuthInfo};
use crate::proto::authpb::Permission;
use crate::proto::etcdinternal::{internal_request::Request, InternalAuthenticate};
use crate::proto::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
    ResponseHeader,
};
use crate::rpctypes::EtcdError;

/// Runs the CPU-heavy bcrypt work `f` on the blocking pool.
async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, EtcdError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EtcdError::Internal(e.to_string()))?
}

impl EtcdServer {
    /// Proposes the auth change `req` by `who` (refused at apply unless `who` is root
    /// once auth is enabled) and answers with the header of its revision.
    async fn auth_change(
        &self,
        req: Request,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        let a = self.propose_as(req, who).await?;
        a.result?;
        Ok(self.header(a.revision))
    }

    /// AuthEnable: needs the user `root` with the role `root`.
    pub async fn auth_enable(&self, who: Option<&AuthInfo>) -> Result<ResponseHeader, EtcdError> {
        self.auth_change(Request::AuthEnable(Default::default()), who)
            .await
    }

    /// AuthDisable (root only): every token is forgotten.
    pub async fn auth_disable(&self, who: Option<&AuthInfo>) -> Result<ResponseHeader, EtcdError> {
        self.auth().check_admin(who)?;
        self.auth_change(Request::AuthDisable(Default::default()), who)
            .await
    }

    /// AuthStatus: whether auth is enabled and the auth revision, as of now.
    pub async fn auth_status(&self) -> Result<(ResponseHeader, bool, u64), EtcdError> {
        self.linearizable_barrier().await?;
        let auth = self.auth();
        Ok((self.header(0), auth.is_enabled(), auth.revision()))
    }

    /// Authenticate: checks the password against the latest users (after a ReadIndex
    /// round) and has a token assigned through raft; retried when users or roles
    /// changed in between, as etcd does.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> Result<(ResponseHeader, String), EtcdError> {
        self.linearizable_barrier().await?;
        loop {
            let auth = self.auth().clone();
            let (n, pw) = (name.to_string(), password.to_string());
            let checked = off_workers(move || auth.check_password(&n, &pw)).await?;
            let req = Request::Authenticate(InternalAuthenticate {
                name: name.to_string(),
                simple_token_prefix: token::new_prefix(),
            });
            let a = self.propose(req).await?;
            let token = match a.result? {
                ApplyResponse::Token(t) => t,
                other => return Err(EtcdError::Internal(format!("unexpected {other:?}"))),
            };
            if checked == self.auth().revision() {
                return Ok((self.header(a.revision), token));
            }
            tracing::info!(
                user = name,
                "revision when password checked became stale; retrying"
            );
        }
    }

    /// UserAdd (root only): the password is hashed here, the raft log holds the hash.
    pub async fn user_add(
        &self,
        mut req: AuthUserAddRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth().check_admin(who)?;
        if req.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            let (pw, cost) = (
                std::mem::take(&mut req.password),
                self.settings().bcrypt_cost,
            );
            req.hashed_password = off_workers(move || hash_password(&pw, cost)).await?;
        }
        req.password.clear();
        self.auth_change(Request::UserAdd(req), who).await
    }

    /// UserDelete (root only; `root` itself stays while auth is enabled).
    pub async fn user_delete(
        &self,
        name: String,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth().check_admin(who)?;
        self.auth_change(
            Request::UserDelete(crate::proto::etcdserverpb::AuthUserDeleteRequest { name }),
            who,
        )
        .await
    }

    /// UserChangePassword (root only): hashed here; the user's tokens are forgotten.
    pub async fn user_change_password(
        &self,
        mut req: AuthUserChangePasswordRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth().check_admin(who)?;
        if req.hashed_password.is_empty() {
            let (pw, cost) = (
                std::mem::take(&mut req.password),
                self.settings().bcrypt_cost,
            );
            req.hashed_password = off_workers(move || hash_password(&pw, cost)).await?;
        }
        req.password.clear();
        self.auth_change(Request::UserChangePassword(req), who)
            .await
    }

    /// UserGrantRole (root only).
    pub async fn user_grant_role(
        &self,
        req: AuthUserGrantRoleRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth_change(Request::UserGrantRole(req), who).await
    }

    /// UserRevokeRole (root only).
    pub async fn user_revoke_role(
        &self,
        req: AuthUserRevokeRoleRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth_change(Request::UserRevokeRole(req), who).await
    }

    /// RoleAdd (root only).
    pub async fn role_add(
        &self,
        name: String,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        let req = crate::proto::etcdserverpb::AuthRoleAddRequest { name };
        self.auth_change(Request::RoleAdd(req), who).await
    }

    /// RoleDelete (root only): also taken from every user holding it.
    pub async fn role_delete(
        &self,
        role: String,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        let req = crate::proto::etcdserverpb::AuthRoleDeleteRequest { role };
        self.auth_change(Request::RoleDelete(req), who).await
    }

    /// RoleGrantPermission (root only). A permission's range must hold keys: "invalid
    /// auth management" otherwise, as in etcd.
    pub async fn role_grant_permission(
        &self,
        req: AuthRoleGrantPermissionRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        let Some(p) = &req.perm else {
            return Err(EtcdError::PermissionNotGiven);
        };
        if !valid_permission_range(p) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        self.auth_change(Request::RoleGrantPermission(req), who)
            .await
    }

    /// RoleRevokePermission (root only) of the permission on exactly that range.
    pub async fn role_revoke_permission(
        &self,
        req: AuthRoleRevokePermissionRequest,
        who: Option<&AuthInfo>,
    ) -> Result<ResponseHeader, EtcdError> {
        self.auth_change(Request::RoleRevokePermission(req), who)
            .await
    }

    /// UserGet: root, or the user asking about itself.
    pub async fn user_get(
        &self,
        name: &str,
        who: Option<&AuthInfo>,
    ) -> Result<(ResponseHeader, Vec<String>), EtcdError> {
        self.linearizable_barrier().await?;
        if who.is_none_or(|w| w.user != name) {
            self.auth().check_admin(who)?;
        }
        Ok((self.header(0), self.auth().user_get(name)?))
    }

    /// UserList (root only).
    pub async fn user_list(
        &self,
        who: Option<&AuthInfo>,
    ) -> Result<(ResponseHeader, Vec<String>), EtcdError> {
        self.linearizable_barrier().await?;
        self.auth().check_admin(who)?;
        Ok((self.header(0), self.auth().user_list()))
    }

    /// RoleGet: root, or a holder of the role.
    pub async fn role_get(
        &self,
        role: &str,
        who: Option<&AuthInfo>,
    ) -> Result<(ResponseHeader, Vec<Permission>), EtcdError> {
        self.linearizable_barrier().await?;
        if !self.auth().has_role(who, role) {
            self.auth().check_admin(who)?;
        }
        Ok((self.header(0), self.auth().role_get(role)?))
    }

    /// RoleList (root only).
    pub async fn role_list(
        &self,
        who: Option<&AuthInfo>,
    ) -> Result<(ResponseHeader, Vec<String>), EtcdError> {
        self.linearizable_barrier().await?;
        self.auth().check_admin(who)?;
        Ok((self.header(0), self.auth().role_list()))
    }
}

/// etcd's check of a granted range: a key, and no end, an end after the key, or "\0".
fn valid_permission_range(p: &Permission) -> bool {
    !p.key.is_empty() && (p.range_end.is_empty() || p.range_end == [0] || p.range_end > p.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_ranges() {
        let p = |k: &str, e: &str| Permission {
            perm_type: 0,
            key: k.into(),
            range_end: e.into(),
        };
        assert!(valid_permission_range(&p("a", "")));
        assert!(valid_permission_range(&p("a", "b")));
        assert!(valid_permission_range(&p("\0", "\0")));
        assert!(!valid_permission_range(&p("", "")));
        assert!(!valid_permission_range(&p("b", "a")));
        assert!(!valid_permission_range(&p("a", "a")));
    }
}
