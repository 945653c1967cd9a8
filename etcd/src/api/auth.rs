//! `etcdserverpb.Auth`, and who makes a client request ([`caller`]): the user of its
//! token (gRPC metadata `token`, or `authorization` as the gateway sends it), else,
//! with `--client-cert-auth`, the common name of its verified client certificate.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::AuthInfo;
use crate::proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest,
    AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest,
    AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse,
    AuthStatusRequest, AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest,
    AuthenticateResponse,
};
use crate::rpctypes::EtcdError;
use crate::server::EtcdServer;

/// The common name of the verified client certificate of a request's connection (a
/// TLS connection with `--client-cert-auth` attaches it, an `http` extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCn(pub Arc<str>);

/// Who makes a request with these headers: `None` when auth is disabled (nothing is
/// checked) or the request names nobody; "invalid auth token" for a token this member
/// does not know. A token wins over a certificate, as in etcd.
pub fn caller_of(
    server: &EtcdServer,
    headers: &http::HeaderMap,
    cn: Option<&ClientCn>,
) -> Result<Option<AuthInfo>, EtcdError> {
    let auth = server.auth();
    if !auth.is_enabled() {
        return Ok(None);
    }
    let token = headers
        .get("token")
        .or_else(|| headers.get(http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok());
    if let Some(t) = token {
        return auth.info_from_token(t).map(Some);
    }
    Ok(match cn {
        Some(cn) if server.settings().client_cert_auth && !cn.0.is_empty() => {
            Some(auth.info_for_user(&cn.0))
        }
        _ => None,
    })
}

/// [`caller_of`] a gRPC request.
pub fn caller<T>(server: &EtcdServer, r: &Request<T>) -> Result<Option<AuthInfo>, Status> {
    caller_of(
        server,
        r.metadata().as_ref(),
        r.extensions().get::<ClientCn>(),
    )
    .map_err(Status::from)
}

/// Passes when auth is disabled or the caller of `r` is root (etcd's admin check of
/// member changes, defragment, hashes and snapshots).
pub fn require_admin<T>(server: &EtcdServer, r: &Request<T>) -> Result<(), Status> {
    if !server.auth().is_enabled() {
        return Ok(());
    }
    let who = caller(server, r)?;
    server.auth().check_admin(who.as_ref())?;
    Ok(())
}

/// The Auth service.
pub struct AuthService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        r: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(self.0.auth_enable(who.as_ref()).await?);
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        r: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(self.0.auth_disable(who.as_ref()).await?);
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        _r: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let (header, enabled, auth_revision) = self.0.auth_status().await?;
        Ok(Response::new(AuthStatusResponse {
            header: Some(header),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        r: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let r = r.into_inner();
        let (header, token) = self.0.authenticate(&r.name, &r.password).await?;
        Ok(Response::new(AuthenticateResponse {
            header: Some(header),
            token,
        }))
    }

    async fn user_add(
        &self,
        r: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(self.0.user_add(r.into_inner(), who.as_ref()).await?);
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        r: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let (header, roles) = self.0.user_get(&r.get_ref().name, who.as_ref()).await?;
        Ok(Response::new(AuthUserGetResponse {
            header: Some(header),
            roles,
        }))
    }

    async fn user_list(
        &self,
        r: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let (header, users) = self.0.user_list(who.as_ref()).await?;
        Ok(Response::new(AuthUserListResponse {
            header: Some(header),
            users,
        }))
    }

    async fn user_delete(
        &self,
        r: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let name = r.into_inner().name;
        let header = Some(self.0.user_delete(name, who.as_ref()).await?);
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(
            self.0
                .user_change_password(r.into_inner(), who.as_ref())
                .await?,
        );
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(self.0.user_grant_role(r.into_inner(), who.as_ref()).await?);
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(
            self.0
                .user_revoke_role(r.into_inner(), who.as_ref())
                .await?,
        );
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        r: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(self.0.role_add(r.into_inner().name, who.as_ref()).await?);
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        r: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let (header, perm) = self.0.role_get(&r.get_ref().role, who.as_ref()).await?;
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(header),
            perm,
        }))
    }

    async fn role_list(
        &self,
        r: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let (header, roles) = self.0.role_list(who.as_ref()).await?;
        Ok(Response::new(AuthRoleListResponse {
            header: Some(header),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        r: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(
            self.0
                .role_delete(r.into_inner().role, who.as_ref())
                .await?,
        );
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(
            self.0
                .role_grant_permission(r.into_inner(), who.as_ref())
                .await?,
        );
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let who = caller(&self.0, &r)?;
        let header = Some(
            self.0
                .role_revoke_permission(r.into_inner(), who.as_ref())
                .await?,
        );
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
