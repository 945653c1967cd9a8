use super::*;
use crate::storage::Durability;

fn open() -> (tempfile::TempDir, Storage, AuthStore) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let auth = AuthStore::load(
        &storage,
        crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(300)),
    )
    .unwrap();
    (dir, storage, auth)
}

/// Runs `f` with a batch and writes it, as apply does.
fn apply<T>(storage: &Storage, f: impl FnOnce(&mut Batch<'_>) -> T) -> T {
    let mut b = storage.batch();
    let r = f(&mut b);
    storage.write(b, Durability::Synced).unwrap();
    r
}

fn perm(t: PermType, key: &str, end: &str) -> Permission {
    Permission {
        perm_type: t as i32,
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
    }
}

fn who(a: &AuthStore, user: &str) -> AuthInfo {
    a.info_for_user(user)
}

/// root with the root role, alice with role `r` (read-write on `foo`..`fop`, read on
/// `bar`), auth enabled.
fn setup(s: &Storage, a: &AuthStore) {
    let h = hash_password("pw", 4).unwrap();
    apply(s, |b| {
        a.user_add("root", &h, None, b).unwrap();
        a.user_grant_role("root", ROOT, b).unwrap();
        a.user_add("alice", &h, None, b).unwrap();
        a.role_add("r", b).unwrap();
        a.role_grant_permission("r", perm(PermType::Readwrite, "foo", "fop"), b)
            .unwrap();
        a.role_grant_permission("r", perm(PermType::Read, "bar", ""), b)
            .unwrap();
        a.user_grant_role("alice", "r", b).unwrap();
        a.enable(b).unwrap();
    });
}

#[test]
fn enable_needs_root_with_root_role() {
    let (_d, s, a) = open();
    assert_eq!(a.revision(), 1);
    assert_eq!(apply(&s, |b| a.enable(b)), Err(EtcdError::RootUserNotExist));
    let h = hash_password("pw", 4).unwrap();
    apply(&s, |b| a.user_add("root", &h, None, b)).unwrap();
    assert_eq!(apply(&s, |b| a.enable(b)), Err(EtcdError::RootRoleNotExist));
    apply(&s, |b| a.user_grant_role("root", ROOT, b)).unwrap();
    let rev = a.revision();
    assert_eq!(rev, 3, "user add and grant advance the revision");
    apply(&s, |b| a.enable(b)).unwrap();
    assert!(a.is_enabled());
    assert_eq!(a.revision(), rev, "enabling does not advance it");
    apply(&s, |b| a.enable(b)).unwrap();
    // While enabled, root and its role stay.
    assert_eq!(
        apply(&s, |b| a.user_delete(ROOT, b)),
        Err(EtcdError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&s, |b| a.user_revoke_role(ROOT, ROOT, b)),
        Err(EtcdError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&s, |b| a.role_delete(ROOT, b)),
        Err(EtcdError::InvalidAuthMgmt)
    );
    apply(&s, |b| a.disable(b));
    assert!(!a.is_enabled());
    assert_eq!(a.revision(), rev + 1);
}

#[test]
fn user_and_role_errors() {
    let (_d, s, a) = open();
    let h = hash_password("pw", 4).unwrap();
    assert_eq!(
        apply(&s, |b| a.user_add("", &h, None, b)),
        Err(EtcdError::UserEmpty)
    );
    apply(&s, |b| a.user_add("u", &h, None, b)).unwrap();
    assert_eq!(
        apply(&s, |b| a.user_add("u", &h, None, b)),
        Err(EtcdError::UserAlreadyExist)
    );
    assert_eq!(
        apply(&s, |b| a.user_grant_role("u", "nope", b)),
        Err(EtcdError::RoleNotFound)
    );
    assert_eq!(
        apply(&s, |b| a.user_grant_role("x", "r", b)),
        Err(EtcdError::UserNotFound)
    );
    assert_eq!(apply(&s, |b| a.role_add("", b)), Err(EtcdError::RoleEmpty));
    apply(&s, |b| a.role_add("r", b)).unwrap();
    assert_eq!(
        apply(&s, |b| a.role_add("r", b)),
        Err(EtcdError::RoleAlreadyExist)
    );
    assert_eq!(
        apply(&s, |b| a.user_revoke_role("u", "r", b)),
        Err(EtcdError::RoleNotGranted)
    );
    let rev = a.revision();
    apply(&s, |b| a.user_grant_role("u", "r", b)).unwrap();
    apply(&s, |b| a.user_grant_role("u", "r", b)).unwrap();
    assert_eq!(
        a.revision(),
        rev + 1,
        "a second grant of the role is a no-op"
    );
    assert_eq!(
        apply(&s, |b| a.role_revoke_permission("r", b"k", b"", b)),
        Err(EtcdError::PermissionNotGranted)
    );
    apply(&s, |b| {
        a.role_grant_permission("r", perm(PermType::Read, "k", ""), b)
    })
    .unwrap();
    apply(&s, |b| {
        a.role_grant_permission("r", perm(PermType::Write, "k", ""), b)
    })
    .unwrap();
    assert_eq!(
        a.role_get("r").unwrap(),
        vec![perm(PermType::Write, "k", "")],
        "the same key and range end: the type is replaced"
    );
    // Deleting a role takes it from its holders.
    apply(&s, |b| a.role_delete("r", b)).unwrap();
    assert_eq!(a.user_get("u").unwrap(), Vec::<String>::new());
    assert_eq!(a.role_get("r"), Err(EtcdError::RoleNotFound));
    assert_eq!(a.user_list(), vec!["u".to_string()]);
}

#[test]
fn passwords_and_tokens() {
    let (_d, s, a) = open();
    assert_eq!(
        a.check_password("root", "pw"),
        Err(EtcdError::AuthNotEnabled)
    );
    setup(&s, &a);
    let rev = a.check_password("alice", "pw").unwrap();
    assert_eq!(rev, a.revision());
    assert_eq!(a.check_password("alice", "no"), Err(EtcdError::AuthFailed));
    assert_eq!(a.check_password("bob", "pw"), Err(EtcdError::AuthFailed));
    let t = a.authenticate("alice", "abcdefghijklmnop", 42).unwrap();
    assert_eq!(t, "abcdefghijklmnop.42");
    assert_eq!(a.info_from_token(&t).unwrap().user, "alice");
    assert_eq!(
        a.info_from_token("abcdefghijklmnop.43"),
        Err(EtcdError::InvalidAuthToken)
    );
    // A new password forgets the user's tokens.
    let h = hash_password("new", 4).unwrap();
    apply(&s, |b| a.user_change_password("alice", &h, b)).unwrap();
    assert_eq!(a.info_from_token(&t), Err(EtcdError::InvalidAuthToken));
    assert_eq!(a.check_password("alice", "pw"), Err(EtcdError::AuthFailed));
    a.check_password("alice", "new").unwrap();
    // A user without password cannot authenticate.
    apply(&s, |b| {
        a.user_add("np", "", Some(UserAddOptions { no_password: true }), b)
    })
    .unwrap();
    assert_eq!(a.check_password("np", ""), Err(EtcdError::NoPasswordUser));
    assert_eq!(a.authenticate("np", "x", 1), Err(EtcdError::AuthFailed));
    // Disabling forgets every token.
    let t = a.authenticate("root", "p", 50).unwrap();
    apply(&s, |b| a.disable(b));
    assert_eq!(a.info_from_token(&t), Err(EtcdError::InvalidAuthToken));
    assert_eq!(
        a.authenticate("root", "p", 51),
        Err(EtcdError::AuthNotEnabled)
    );
}

#[test]
fn permission_checks() {
    let (_d, s, a) = open();
    // Disabled: everything passes, also without a caller.
    a.check_range(None, b"x", b"", Access::Write).unwrap();
    a.check_admin(None).unwrap();
    setup(&s, &a);
    let alice = who(&a, "alice");
    let root = who(&a, "root");
    assert_eq!(
        a.check_range(None, b"foo", b"", Access::Read),
        Err(EtcdError::UserEmpty)
    );
    a.check_range(Some(&root), b"\0", b"\0", Access::Write)
        .unwrap();
    a.check_range(Some(&alice), b"foo", b"", Access::Write)
        .unwrap();
    a.check_range(Some(&alice), b"foo/x", b"foo/y", Access::Read)
        .unwrap();
    a.check_range(Some(&alice), b"bar", b"", Access::Read)
        .unwrap();
    assert_eq!(
        a.check_range(Some(&alice), b"bar", b"", Access::Write),
        Err(EtcdError::PermissionDenied)
    );
    assert_eq!(
        a.check_range(Some(&alice), b"foo", b"\0", Access::Read),
        Err(EtcdError::PermissionDenied)
    );
    a.check_ranges(Some(&alice), &[(b"foo", b""), (b"bar", b"")], Access::Read)
        .unwrap();
    assert_eq!(
        a.check_ranges(Some(&alice), &[(b"foo", b""), (b"baz", b"")], Access::Read),
        Err(EtcdError::PermissionDenied)
    );
    let ghost = who(&a, "ghost");
    assert_eq!(
        a.check_range(Some(&ghost), b"foo", b"", Access::Read),
        Err(EtcdError::PermissionDenied)
    );
    // Admin.
    a.check_admin(Some(&root)).unwrap();
    assert_eq!(
        a.check_admin(Some(&alice)),
        Err(EtcdError::PermissionDenied)
    );
    assert_eq!(a.check_admin(Some(&ghost)), Err(EtcdError::UserNotFound));
    assert_eq!(a.check_admin(None), Err(EtcdError::UserEmpty));
    assert!(a.has_role(Some(&alice), "r"));
    assert!(!a.has_role(Some(&alice), ROOT));
    // A change of roles after the caller was checked: its request is refused.
    apply(&s, |b| a.role_add("other", b)).unwrap();
    assert_eq!(
        a.check_range(Some(&alice), b"foo", b"", Access::Read),
        Err(EtcdError::AuthOldRevision)
    );
    a.check_range(Some(&who(&a, "alice")), b"foo", b"", Access::Read)
        .unwrap();
    // Revoking the permission takes the access away.
    apply(&s, |b| a.role_revoke_permission("r", b"foo", b"fop", b)).unwrap();
    assert_eq!(
        a.check_range(Some(&who(&a, "alice")), b"foo", b"", Access::Read),
        Err(EtcdError::PermissionDenied)
    );
    assert_eq!(
        a.role_get(ROOT).err(),
        Some(EtcdError::RoleNotFound),
        "root's role record was never added"
    );
}

#[test]
fn state_survives_reopen_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        let a = AuthStore::load(
            &s,
            crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(300)),
        )
        .unwrap();
        setup(&s, &a);
        apply(&s, |b| a.role_add(ROOT, b)).unwrap();
    }
    let s = Storage::open(dir.path()).unwrap();
    let a = AuthStore::load(
        &s,
        crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(300)),
    )
    .unwrap();
    assert!(a.is_enabled());
    assert_eq!(a.revision(), 9);
    assert_eq!(a.user_list(), vec!["alice".to_string(), "root".to_string()]);
    assert_eq!(a.role_list(), vec!["r".to_string(), ROOT.to_string()]);
    assert_eq!(
        a.role_get("r").unwrap(),
        vec![
            perm(PermType::Read, "bar", ""),
            perm(PermType::Readwrite, "foo", "fop")
        ]
    );
    assert_eq!(
        a.role_get(ROOT).unwrap(),
        vec![perm(PermType::Readwrite, "", "\0")]
    );
    a.check_password("alice", "pw").unwrap();
    // A snapshot from a leader where auth was disabled again.
    apply(&s, |b| a.disable(b));
    let other = AuthStore::load(
        &s,
        crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(300)),
    )
    .unwrap();
    let t = other.authenticate("alice", "p", 1);
    assert_eq!(t, Err(EtcdError::AuthNotEnabled));
    a.reload(&s).unwrap();
    assert!(!a.is_enabled());
}
