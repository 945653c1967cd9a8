//! etcd's authentication and authorization: users with bcrypt passwords, roles with key
//! permissions, the `root` user and role, simple tokens, and the checks every client
//! request passes when authentication is enabled.
//!
//! Guarantees:
//! - The state (enabled flag, revision, users, roles) lives in the `meta` column family
//!   under `auth_*` keys, changed only by applied entries, in the entry's own batch: every
//!   member holds the same state at the same applied index, and a snapshot carries it.
//! - Every change of users or roles, and disabling auth, advances the auth revision
//!   (from 1; enabling does not, as in etcd). A request checked against an older revision than the store's is refused with
//!   "etcdserver: revision of auth store is old", so a revoked permission cannot be used
//!   by a request already in flight.
//! - With authentication disabled every check passes at the cost of one atomic load.
//! - `root` (a user holding the role `root`) may do everything; the `root` role needs no
//!   permissions and cannot be deleted, nor taken from `root`, while auth is enabled.

pub mod jwt;
pub mod perm;
pub mod requests;
pub mod token;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use prost::Message as _;

use crate::proto::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use crate::rpctypes::EtcdError;
use crate::storage::{prefix_end, Batch, Cf, Snapshot, Storage, StorageError};

pub use token::SimpleTokens;

/// The user every permission check lets through once it holds the role [`ROOT`].
pub const ROOT: &str = "root";

const ENABLED_KEY: &[u8] = b"auth_enabled";
const REVISION_KEY: &[u8] = b"auth_revision";
const USER_PREFIX: &[u8] = b"auth_user/";
const ROLE_PREFIX: &[u8] = b"auth_role/";

/// Who makes a request: a user name and the auth revision it was checked at when the
/// request arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user (from a token or a client certificate's common name).
    pub user: String,
    /// The auth store's revision when the request arrived.
    pub revision: u64,
}

/// Which access a request needs to a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Range, watch, compare, prev_kv.
    Read,
    /// Put, delete, lease revoke of attached keys.
    Write,
}

#[derive(Default)]
struct State {
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

/// How tokens are made and read (`--auth-token`).
pub enum TokenProvider {
    /// etcd's simple tokens, living this long after their last use (`--auth-token-ttl`).
    Simple(Duration),
    /// Signed JWTs.
    Jwt(jwt::JwtTokens),
}

/// The auth state of this member and the tokens it knows.
pub struct AuthStore {
    enabled: AtomicBool,
    state: RwLock<State>,
    tokens: SimpleTokens,
    jwt: Option<jwt::JwtTokens>,
}

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

impl AuthStore {
    /// The auth state `storage` holds (disabled, revision 1, nobody, on a fresh data
    /// dir), handing out tokens of `provider`.
    pub fn load(storage: &Storage, provider: TokenProvider) -> Result<Self, StorageError> {
        let (ttl, jwt) = match provider {
            TokenProvider::Simple(ttl) => (ttl, None),
            TokenProvider::Jwt(j) => (Duration::ZERO, Some(j)),
        };
        let store = AuthStore {
            enabled: AtomicBool::new(false),
            state: RwLock::new(State::default()),
            tokens: SimpleTokens::new(ttl),
            jwt,
        };
        store.reload(storage)?;
        Ok(store)
    }

    /// Replaces the state with what `storage` holds (after a snapshot from the leader);
    /// tokens are kept while authentication stays enabled.
    pub fn reload(&self, storage: &Storage) -> Result<(), StorageError> {
        let mut st = State {
            revision: storage
                .get(Cf::Meta, REVISION_KEY)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(1),
            ..State::default()
        };
        let enabled = storage.get(Cf::Meta, ENABLED_KEY)?.as_deref() == Some(&[1u8][..]);
        storage.for_each(
            Cf::Meta,
            USER_PREFIX,
            prefix_end(USER_PREFIX).as_deref(),
            |_, v| {
                if let Ok(u) = User::decode(v) {
                    st.users
                        .insert(String::from_utf8_lossy(&u.name).into_owned(), u);
                }
                true
            },
        )?;
        storage.for_each(
            Cf::Meta,
            ROLE_PREFIX,
            prefix_end(ROLE_PREFIX).as_deref(),
            |_, v| {
                if let Ok(r) = Role::decode(v) {
                    st.roles
                        .insert(String::from_utf8_lossy(&r.name).into_owned(), r);
                }
                true
            },
        )?;
        *self.write() = st;
        if !enabled {
            self.tokens.clear();
        }
        self.enabled.store(enabled, Ordering::Release);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether authentication is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The auth revision (advanced by every change of users or roles and by disabling).
    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    // ---- identities ----

    /// The caller a token names: the token's user at the current revision, or "invalid
    /// auth token" for a token this member does not know (expired, never issued, its
    /// user deleted or given a new password, auth disabled since).
    pub fn info_from_token(&self, token: &str) -> Result<AuthInfo, EtcdError> {
        if let Some(j) = &self.jwt {
            // A JWT names the revision it was issued at.
            return match j.verify(token) {
                Some((user, revision)) => Ok(AuthInfo { user, revision }),
                None => {
                    tracing::warn!("invalid auth token");
                    Err(EtcdError::InvalidAuthToken)
                }
            };
        }
        match self.tokens.user_of(token) {
            Some(user) => Ok(AuthInfo {
                user,
                revision: self.revision(),
            }),
            None => {
                tracing::warn!(token, "invalid auth token");
                Err(EtcdError::InvalidAuthToken)
            }
        }
    }

    /// The caller a verified client certificate names (its common name is the user).
    pub fn info_for_user(&self, user: &str) -> AuthInfo {
        AuthInfo {
            user: user.to_string(),
            revision: self.revision(),
        }
    }

    /// Checks `password` for the user `name`: the revision it was checked at, or
    /// "authentication is not enabled", "authentication failed, invalid user ID or
    /// password" (unknown user, wrong password), or etcd's "password was given for no
    /// password user".
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        if !self.is_enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let (hash, revision) = {
            let st = self.read();
            let Some(u) = st.users.get(name) else {
                return Err(EtcdError::AuthFailed);
            };
            if u.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            (
                String::from_utf8_lossy(&u.password).into_owned(),
                st.revision,
            )
        };
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(EtcdError::AuthFailed),
        }
    }

    // ---- checks ----

    /// Passes when auth is disabled or `who` holds the `root` role; else "user name is
    /// empty" (no caller), "user name not found", "permission denied".
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let who = match who {
            Some(w) if !w.user.is_empty() => w,
            _ => return Err(EtcdError::UserEmpty),
        };
        let st = self.read();
        match st.users.get(&who.user) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if has_root_role(u) => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// Passes when auth is disabled, or `who` may `access` every key of
    /// `key`/`range_end` (etcd's key range conventions) at the current revision; else
    /// "user name is empty", "revision of auth store is old" or "permission denied".
    pub fn check_range(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let st = self.read();
        self.check_in(&st, who, &[(key, range_end)], access)
    }

    /// [`check_range`](Self::check_range) of several ranges under one lock: all must
    /// pass.
    pub fn check_ranges(
        &self,
        who: Option<&AuthInfo>,
        ranges: &[(&[u8], &[u8])],
        access: Access,
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() || ranges.is_empty() {
            return Ok(());
        }
        let st = self.read();
        self.check_in(&st, who, ranges, access)
    }

    fn check_in(
        &self,
        st: &State,
        who: Option<&AuthInfo>,
        ranges: &[(&[u8], &[u8])],
        access: Access,
    ) -> Result<(), EtcdError> {
        let who = match who {
            Some(w) if !w.user.is_empty() => w,
            _ => return Err(EtcdError::UserEmpty),
        };
        if who.revision < st.revision {
            tracing::warn!(
                user = %who.user,
                request_revision = who.revision,
                revision = st.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(EtcdError::AuthOldRevision);
        }
        let Some(user) = st.users.get(&who.user) else {
            return Err(EtcdError::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let wanted = |t: i32| {
            matches!(
                (PermType::try_from(t), access),
                (Ok(PermType::Readwrite), _)
                    | (Ok(PermType::Read), Access::Read)
                    | (Ok(PermType::Write), Access::Write)
            )
        };
        let perms: Vec<(&[u8], &[u8])> = user
            .roles
            .iter()
            .filter_map(|r| st.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
            .filter(|p| wanted(p.perm_type))
            .map(|p| (p.key.as_slice(), p.range_end.as_slice()))
            .collect();
        for (key, range_end) in ranges {
            if !perm::covers(perms.iter().copied(), key, range_end) {
                return Err(EtcdError::PermissionDenied);
            }
        }
        Ok(())
    }

    /// Whether `who` holds `role` (a user may read a role of its own without `root`).
    pub fn has_role(&self, who: Option<&AuthInfo>, role: &str) -> bool {
        let Some(who) = who else { return false };
        let st = self.read();
        st.users
            .get(&who.user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // ---- reads ----

    /// The roles of user `name`, or "user name not found".
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        let st = self.read();
        st.users
            .get(name)
            .map(|u| u.roles.clone())
            .ok_or(EtcdError::UserNotFound)
    }

    /// Every user's name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.read().users.keys().cloned().collect()
    }

    /// The permissions of role `name` (`root`: read-write on every key), or "role name
    /// not found".
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        let st = self.read();
        let role = st.roles.get(name).ok_or(EtcdError::RoleNotFound)?;
        if name == ROOT {
            return Ok(vec![Permission {
                perm_type: PermType::Readwrite as i32,
                key: vec![],
                range_end: vec![0],
            }]);
        }
        Ok(role.key_permission.clone())
    }

    /// Every role's name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.read().roles.keys().cloned().collect()
    }

    // ---- changes (apply only) ----

    fn commit_revision(&self, st: &mut State, batch: &mut Batch<'_>) {
        st.revision += 1;
        batch.put(Cf::Meta, REVISION_KEY, &st.revision.to_be_bytes());
    }

    fn put_user(st: &mut State, u: User, batch: &mut Batch<'_>) {
        let name = String::from_utf8_lossy(&u.name).into_owned();
        batch.put(Cf::Meta, &key(USER_PREFIX, &name), &u.encode_to_vec());
        st.users.insert(name, u);
    }

    /// Changes the user `name` (else "user name not found") with `f`, which sees the
    /// rest of the state; when `f` answers `Ok(true)` the user is written and the
    /// revision advances, `Ok(false)` changes nothing. Returns `f`'s answer.
    fn update_user(
        &self,
        name: &str,
        batch: &mut Batch<'_>,
        f: impl FnOnce(&State, &mut User) -> Result<bool, EtcdError>,
    ) -> Result<bool, EtcdError> {
        let mut st = self.write();
        let mut user = st.users.get(name).cloned().ok_or(EtcdError::UserNotFound)?;
        let changed = f(&st, &mut user)?;
        if changed {
            Self::put_user(&mut st, user, batch);
            self.commit_revision(&mut st, batch);
        }
        Ok(changed)
    }

    /// [`update_user`](Self::update_user) for the role `name` ("role name not found").
    fn update_role(
        &self,
        name: &str,
        batch: &mut Batch<'_>,
        f: impl FnOnce(&mut Role) -> Result<(), EtcdError>,
    ) -> Result<(), EtcdError> {
        let mut st = self.write();
        let mut role = st.roles.get(name).cloned().ok_or(EtcdError::RoleNotFound)?;
        f(&mut role)?;
        Self::put_role(&mut st, role, batch);
        self.commit_revision(&mut st, batch);
        Ok(())
    }

    fn put_role(st: &mut State, r: Role, batch: &mut Batch<'_>) {
        let name = String::from_utf8_lossy(&r.name).into_owned();
        batch.put(Cf::Meta, &key(ROLE_PREFIX, &name), &r.encode_to_vec());
        st.roles.insert(name, r);
    }

    /// AuthEnable: needs the user `root` holding the role `root` ("root user does not
    /// exist" / "root user does not have root role"); enabling twice changes nothing.
    pub fn enable(&self, batch: &mut Batch<'_>) -> Result<(), EtcdError> {
        if self.is_enabled() {
            tracing::info!("authentication is already enabled; ignored auth enable request");
            return Ok(());
        }
        let st = self.read();
        let root = st.users.get(ROOT).ok_or(EtcdError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        batch.put(Cf::Meta, ENABLED_KEY, &[1]);
        self.enabled.store(true, Ordering::Release);
        tracing::info!(revision = st.revision, "enabled authentication");
        Ok(())
    }

    /// AuthDisable: every token is forgotten.
    pub fn disable(&self, batch: &mut Batch<'_>) {
        if !self.is_enabled() {
            return;
        }
        let mut st = self.write();
        batch.put(Cf::Meta, ENABLED_KEY, &[0]);
        self.commit_revision(&mut st, batch);
        self.enabled.store(false, Ordering::Release);
        self.tokens.clear();
        tracing::info!(revision = st.revision, "disabled authentication");
    }

    /// Authenticate, after the proposer checked the password: assigns the simple token
    /// `<prefix>.<index>` (or signs a JWT) to `name` if auth is still enabled and the
    /// user still has a password (the proposer retries when the revision moved
    /// meanwhile).
    pub fn authenticate(&self, name: &str, prefix: &str, index: u64) -> Result<String, EtcdError> {
        if !self.is_enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let st = self.read();
        match st.users.get(name) {
            Some(u) if !u.options.as_ref().is_some_and(|o| o.no_password) => {}
            _ => return Err(EtcdError::AuthFailed),
        }
        if let Some(j) = &self.jwt {
            return j.assign(name, st.revision).ok_or_else(|| {
                EtcdError::Internal("this member cannot sign jwt tokens (no priv-key)".into())
            });
        }
        let token = format!("{prefix}.{index}");
        self.tokens.assign(token.clone(), name);
        tracing::debug!(user = name, "authenticated a user");
        Ok(token)
    }

    /// UserAdd with an already hashed password (`hash`; ignored for `no_password`).
    pub fn user_add(
        &self,
        name: &str,
        hash: &str,
        options: Option<UserAddOptions>,
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let mut st = self.write();
        if st.users.contains_key(name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let no_password = options.as_ref().is_some_and(|o| o.no_password);
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if no_password {
                vec![]
            } else {
                hash.as_bytes().to_vec()
            },
            roles: vec![],
            options,
        };
        Self::put_user(&mut st, user, batch);
        self.commit_revision(&mut st, batch);
        tracing::info!(user = name, "added a user");
        Ok(())
    }

    /// UserDelete; `root` cannot be deleted while auth is enabled ("invalid auth
    /// management"). The user's tokens are forgotten.
    pub fn user_delete(&self, name: &str, batch: &mut Batch<'_>) -> Result<(), EtcdError> {
        if self.is_enabled() && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut st = self.write();
        if st.users.remove(name).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        batch.delete(Cf::Meta, &key(USER_PREFIX, name));
        self.commit_revision(&mut st, batch);
        self.tokens.invalidate_user(name);
        tracing::info!(user = name, "deleted a user");
        Ok(())
    }

    /// UserChangePassword with an already hashed password; the user's tokens are
    /// forgotten.
    pub fn user_change_password(
        &self,
        name: &str,
        hash: &str,
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        self.update_user(name, batch, |_, user| {
            user.password = hash.as_bytes().to_vec();
            Ok(true)
        })?;
        self.tokens.invalidate_user(name);
        tracing::info!(user = name, "changed a password of a user");
        Ok(())
    }

    /// UserGrantRole (`root` needs no role record); granting a role held already
    /// changes nothing.
    pub fn user_grant_role(
        &self,
        name: &str,
        role: &str,
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        let granted = self.update_user(name, batch, |st, user| {
            if role != ROOT && !st.roles.contains_key(role) {
                return Err(EtcdError::RoleNotFound);
            }
            if user.roles.iter().any(|r| r == role) {
                return Ok(false);
            }
            user.roles.push(role.to_string());
            user.roles.sort();
            Ok(true)
        })?;
        if granted {
            tracing::info!(user = name, role, "granted a role to a user");
        } else {
            tracing::info!(user = name, role, "ignored grant of a role the user has");
        }
        Ok(())
    }

    /// UserRevokeRole; `root` keeps the role `root` while auth is enabled.
    pub fn user_revoke_role(
        &self,
        name: &str,
        role: &str,
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        if self.is_enabled() && name == ROOT && role == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        self.update_user(name, batch, |_, user| {
            let before = user.roles.len();
            user.roles.retain(|r| r != role);
            if user.roles.len() == before {
                return Err(EtcdError::RoleNotGranted);
            }
            Ok(true)
        })?;
        tracing::info!(user = name, role, "revoked a role from a user");
        Ok(())
    }

    /// RoleAdd.
    pub fn role_add(&self, name: &str, batch: &mut Batch<'_>) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        let mut st = self.write();
        if st.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: vec![],
        };
        Self::put_role(&mut st, role, batch);
        self.commit_revision(&mut st, batch);
        tracing::info!(role = name, "created a role");
        Ok(())
    }

    /// RoleDelete; also taken from every user holding it. `root` stays while auth is
    /// enabled.
    pub fn role_delete(&self, name: &str, batch: &mut Batch<'_>) -> Result<(), EtcdError> {
        if self.is_enabled() && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut st = self.write();
        if st.roles.remove(name).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        batch.delete(Cf::Meta, &key(ROLE_PREFIX, name));
        let holders: Vec<User> = st
            .users
            .values()
            .filter(|u| u.roles.iter().any(|r| r == name))
            .cloned()
            .collect();
        for mut u in holders {
            u.roles.retain(|r| r != name);
            Self::put_user(&mut st, u, batch);
        }
        self.commit_revision(&mut st, batch);
        tracing::info!(role = name, "deleted a role");
        Ok(())
    }

    /// RoleGrantPermission: a permission on the same key and range end is replaced
    /// (its type changes), others are kept sorted by key.
    pub fn role_grant_permission(
        &self,
        name: &str,
        perm: Permission,
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        self.update_role(name, batch, |role| {
            match role
                .key_permission
                .iter_mut()
                .find(|p| p.key == perm.key && p.range_end == perm.range_end)
            {
                Some(p) => p.perm_type = perm.perm_type,
                None => {
                    role.key_permission.push(perm);
                    role.key_permission
                        .sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                }
            }
            Ok(())
        })?;
        tracing::info!(role = name, "granted/updated a permission to a role");
        Ok(())
    }

    /// RoleRevokePermission of the permission on exactly `key`/`range_end`.
    pub fn role_revoke_permission(
        &self,
        name: &str,
        key_: &[u8],
        range_end: &[u8],
        batch: &mut Batch<'_>,
    ) -> Result<(), EtcdError> {
        self.update_role(name, batch, |role| {
            let before = role.key_permission.len();
            role.key_permission
                .retain(|p| !(p.key == key_ && p.range_end == range_end));
            if role.key_permission.len() == before {
                return Err(EtcdError::PermissionNotGranted);
            }
            Ok(())
        })?;
        tracing::info!(role = name, "revoked a permission on range");
        Ok(())
    }
}

/// Writes an imported auth state (a restored etcd backup's) into `batch`: the enabled
/// flag, the revision (at least 1), users and roles as they were, passwords being etcd's
/// bcrypt hashes already.
pub fn import_records(
    batch: &mut Batch<'_>,
    enabled: bool,
    revision: u64,
    users: &[User],
    roles: &[Role],
) {
    batch.put(Cf::Meta, ENABLED_KEY, &[u8::from(enabled)]);
    batch.put(Cf::Meta, REVISION_KEY, &revision.max(1).to_be_bytes());
    for u in users {
        let name = String::from_utf8_lossy(&u.name);
        batch.put(Cf::Meta, &key(USER_PREFIX, &name), &u.encode_to_vec());
    }
    for r in roles {
        let name = String::from_utf8_lossy(&r.name);
        batch.put(Cf::Meta, &key(ROLE_PREFIX, &name), &r.encode_to_vec());
    }
}

/// The auth state as a storage snapshot holds it, for a backup in etcd's layout: the
/// enabled flag, the revision, and every user and role as `(name, encoded authpb record)`
/// in name order.
#[derive(Debug, Default)]
pub struct StoredAuth {
    /// Whether authentication is enabled.
    pub enabled: bool,
    /// The auth revision (1 when never changed).
    pub revision: u64,
    /// Users: name and encoded `authpb.User`.
    pub users: Vec<(Vec<u8>, Vec<u8>)>,
    /// Roles: name and encoded `authpb.Role`.
    pub roles: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads the auth state of `snap` (see [`StoredAuth`]).
pub fn stored(snap: &Snapshot<'_>) -> Result<StoredAuth, StorageError> {
    let enabled = snap.get(Cf::Meta, ENABLED_KEY)?.is_some_and(|v| v == [1]);
    let revision = snap
        .get(Cf::Meta, REVISION_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(1, u64::from_be_bytes);
    let mut out = StoredAuth {
        enabled,
        revision,
        ..Default::default()
    };
    for (prefix, list) in [(USER_PREFIX, &mut out.users), (ROLE_PREFIX, &mut out.roles)] {
        snap.for_each(Cf::Meta, prefix, prefix_end(prefix).as_deref(), |k, v| {
            list.push((k[prefix.len()..].to_vec(), v.to_vec()));
            true
        })?;
    }
    Ok(out)
}

/// A bcrypt hash of `password` at `cost` (`--bcrypt-cost`), as etcd stores it.
pub fn hash_password(password: &str, cost: u32) -> Result<String, EtcdError> {
    bcrypt::hash(password, cost).map_err(|e| EtcdError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests;
