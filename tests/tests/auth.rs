//! Authentication and authorization with the real `etcdctl` (v3.4) as operators use it:
//! `user add`, `auth enable` (which adds the `root` role by itself when missing),
//! `--user name:password`, roles with key permissions, a token used on every member,
//! the state surviving restarts, etcd's error strings; with `--client-cert-auth`, the
//! client certificate's common name as the user.

use std::time::Duration;

use anyhow::Result;
use etcd_tests::certs::Usage;
use etcd_tests::cluster::{ClusterOptions, EtcdCluster};
use etcd_tests::Output;

/// etcdctl's last line of a failed command, for error-string checks.
fn err(o: &Output) -> String {
    assert!(!o.success(), "expected a failure: {o:?}");
    o.combined()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(o.success(), "{o:?}");
    o.stdout
}

/// etcdctl against member `i` as `who` (`--user name:password`, or nobody).
fn run(c: &EtcdCluster, i: usize, who: &[&str], args: &[&str]) -> Output {
    let a: Vec<&str> = args.iter().chain(who).copied().collect();
    c.etcdctl(i, &a)
}

#[test]
fn users_roles_and_permissions_across_members() -> Result<()> {
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    let root = ["--user", "root:rootpw"];
    let alice = ["--user", "alice:alicepw"];
    let with = |who: &[&str], args: &[&str]| -> Vec<String> {
        args.iter().chain(who).map(|s| s.to_string()).collect()
    };

    // Before auth is enabled anyone may do anything, also manage users.
    ok(run(&c, 0, &[], &["put", "/app/seed", "1"]));
    assert!(ok(run(&c, 0, &[], &["user", "add", "root:rootpw"])).contains("User root created"));
    // `auth enable` gets "root user does not have root role", adds the role and grants
    // it, then enables: etcdctl matches the exact message.
    let out = ok(run(&c, 1, &[], &["auth", "enable"]));
    assert!(out.contains("Authentication Enabled"), "{out}");

    // Without credentials, with a wrong password.
    assert!(err(&run(&c, 0, &[], &["put", "k", "v"])).contains("etcdserver: user name is empty"));
    assert!(err(&run(&c, 0, &[], &["get", "k"])).contains("etcdserver: user name is empty"));
    assert!(err(&run(&c, 0, &["--user", "root:nope"], &["get", "k"]))
        .contains("etcdserver: authentication failed, invalid user ID or password"));

    // root sets up alice: read-write under /app/, read-only on /cfg.
    ok(run(&c, 0, &root, &["user", "add", "alice:alicepw"]));
    ok(run(&c, 0, &root, &["role", "add", "app"]));
    ok(run(
        &c,
        0,
        &root,
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "/app/",
            "--prefix",
        ],
    ));
    ok(run(
        &c,
        0,
        &root,
        &["role", "grant-permission", "app", "read", "/cfg"],
    ));
    ok(run(&c, 0, &root, &["user", "grant-role", "alice", "app"]));
    ok(run(&c, 0, &root, &["put", "/cfg", "c1"]));
    let roles = ok(run(&c, 0, &root, &["role", "list"]));
    assert_eq!(
        roles.lines().collect::<Vec<_>>(),
        ["app", "root"],
        "{roles}"
    );
    let perms = ok(run(&c, 0, &root, &["role", "get", "app"]));
    assert!(perms.contains("[/app/, /app0) (prefix /app/)"), "{perms}");

    // alice on every member: her token is handed out through raft.
    for i in 0..3 {
        let key = format!("/app/{i}");
        ok(run(&c, i, &alice, &["put", &key, "v"]));
        let got = ok(run(
            &c,
            i,
            &alice,
            &["get", "/app/", "--prefix", "--keys-only"],
        ));
        assert!(got.contains(&key), "{got}");
        assert_eq!(
            ok(run(&c, i, &alice, &["get", "/cfg", "--print-value-only"])),
            "c1\n"
        );
        assert!(err(&run(&c, i, &alice, &["put", "/cfg", "x"]))
            .contains("etcdserver: permission denied"));
        assert!(
            err(&run(&c, i, &alice, &["get", "/other"])).contains("etcdserver: permission denied")
        );
        assert!(err(&run(&c, i, &alice, &["get", "/", "--prefix"]))
            .contains("etcdserver: permission denied"));
    }
    // A txn is checked as a whole: a compare on a key she cannot read fails it.
    let txn = "value(\"/cfg\") = \"c1\"\n\nput /app/t yes\n\nput /app/t no\n\n";
    let o = c
        .ctl(2)
        .run_stdin(&c.client_url(2), &with(&alice, &["txn"]), txn);
    assert!(o.success(), "{o:?}");
    let txn = "value(\"/secret\") = \"x\"\n\nput /app/t yes\n\nput /app/t no\n\n";
    let o = c
        .ctl(2)
        .run_stdin(&c.client_url(2), &with(&alice, &["txn"]), txn);
    assert!(err(&o).contains("etcdserver: permission denied"));
    ok(run(&c, 1, &alice, &["del", "/app/t"]));

    // She may read her own user and role, not list or change others.
    assert!(ok(run(&c, 0, &alice, &["user", "get", "alice"])).contains("Roles: app"));
    ok(run(&c, 0, &alice, &["role", "get", "app"]));
    assert!(err(&run(&c, 0, &alice, &["user", "list"])).contains("etcdserver: permission denied"));
    assert!(err(&run(&c, 0, &alice, &["user", "add", "eve:x"]))
        .contains("etcdserver: permission denied"));
    assert!(
        err(&run(&c, 0, &alice, &["auth", "disable"])).contains("etcdserver: permission denied")
    );
    // etcd 3.4 answers defrag with code Unknown "auth: permission denied", 3.6 with
    // etcd's PermissionDenied status, which this server uses.
    assert!(err(&run(&c, 0, &alice, &["defrag"])).contains("permission denied"));
    assert!(err(&run(&c, 0, &alice, &["member", "remove", "1234"]))
        .contains("etcdserver: permission denied"));
    assert!(err(&run(&c, 0, &alice, &["member", "remove", "1234"]))
        .contains("etcdserver: permission denied"));

    // etcd's guards and error strings.
    assert!(err(&run(&c, 0, &root, &["user", "delete", "root"]))
        .contains("etcdserver: invalid auth management"));
    assert!(err(&run(&c, 0, &root, &["role", "delete", "root"]))
        .contains("etcdserver: invalid auth management"));
    assert!(err(&run(&c, 0, &root, &["user", "add", "alice:again"]))
        .contains("etcdserver: user name already exists"));
    assert!(
        err(&run(&c, 0, &root, &["user", "grant-role", "alice", "nope"]))
            .contains("etcdserver: role name not found")
    );
    assert!(err(&run(
        &c,
        0,
        &root,
        &["user", "revoke-role", "alice", "root"]
    ))
    .contains("etcdserver: role is not granted to the user"));
    assert!(err(&run(
        &c,
        0,
        &root,
        &["role", "revoke-permission", "app", "/nope"]
    ))
    .contains("etcdserver: permission is not granted to the role"));
    assert!(err(&run(&c, 0, &root, &["user", "get", "bob"]))
        .contains("etcdserver: user name not found"));

    // Users, roles and the flag survive a restart of every member (one killed).
    // (`endpoint health` without a user fails under auth, as with etcd: the members'
    // readiness is polled as alice.)
    c.kill9(2)?;
    c.sigterm(0)?;
    c.sigterm(1)?;
    for i in 0..3 {
        c.spawn(i)?;
    }
    for i in 0..3 {
        etcd_tests::cluster::poll(
            "member serves alice after the restart",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let o = run(&c, i, &alice, &["get", "/cfg", "--print-value-only"]);
                anyhow::ensure!(o.success() && o.stdout == "c1\n", "{o:?}");
                Ok(())
            },
        )?;
    }
    let health = run(&c, 0, &[], &["endpoint", "health"]);
    assert!(err(&health).contains("etcdserver: user name is empty"));
    assert!(err(&run(&c, 2, &[], &["get", "/cfg"])).contains("etcdserver: user name is empty"));
    assert_eq!(
        ok(run(&c, 2, &alice, &["get", "/cfg", "--print-value-only"])),
        "c1\n"
    );

    // Revoking takes the access away at once, on every member.
    ok(run(
        &c,
        0,
        &root,
        &["role", "revoke-permission", "app", "/app/", "--prefix"],
    ));
    for i in 0..3 {
        assert!(err(&run(&c, i, &alice, &["put", "/app/9", "v"]))
            .contains("etcdserver: permission denied"));
    }
    // A new password: the old one fails.
    let o = c.ctl(0).run_stdin(
        &c.client_url(0),
        &with(&root, &["user", "passwd", "alice", "--interactive=false"]),
        "newpw\n",
    );
    assert!(o.success(), "{o:?}");
    assert!(err(&run(&c, 0, &alice, &["get", "/cfg"]))
        .contains("etcdserver: authentication failed, invalid user ID or password"));
    assert_eq!(
        ok(run(
            &c,
            0,
            &["--user", "alice:newpw"],
            &["get", "/cfg", "--print-value-only"]
        )),
        "c1\n"
    );

    // root turns auth off: everyone may write again.
    assert!(ok(run(&c, 0, &root, &["auth", "disable"])).contains("Authentication Disabled"));
    ok(run(&c, 1, &[], &["put", "/other", "free"]));
    Ok(())
}

#[test]
fn client_certificate_common_name_is_the_user() -> Result<()> {
    let c = EtcdCluster::start(ClusterOptions::new(1).tls(true))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    // The harness's client certificate is for CN "etcdctl".
    let root = ["--user", "root:rootpw"];
    let run = |who: &[&str], args: &[&str]| {
        let a: Vec<&str> = args.iter().chain(who).copied().collect();
        c.etcdctl(0, &a)
    };
    ok(run(&[], &["user", "add", "root:rootpw"]));
    ok(run(&[], &["auth", "enable"]));
    // No user named after the certificate yet.
    assert!(err(&run(&[], &["put", "k", "v"])).contains("etcdserver: permission denied"));
    ok(run(&root, &["user", "add", "etcdctl", "--no-password"]));
    ok(run(&root, &["role", "add", "kv"]));
    ok(run(
        &root,
        &["role", "grant-permission", "kv", "readwrite", "k"],
    ));
    ok(run(&root, &["user", "grant-role", "etcdctl", "kv"]));
    // The certificate alone names the user now.
    ok(run(&[], &["put", "k", "v"]));
    assert_eq!(ok(run(&[], &["get", "k", "--print-value-only"])), "v\n");
    assert!(err(&run(&[], &["put", "other", "v"])).contains("etcdserver: permission denied"));
    // A user without password cannot log in with one.
    assert!(err(&run(&["--user", "etcdctl:x"], &["get", "k"]))
        .contains("auth: authentication failed, password was given for no password user"));

    // Another certificate of the same CA names another user, who does not exist.
    let ca = c.ca().expect("tls cluster has a CA");
    let dir = c.dir().join("certs");
    let other = ca.leaf_files(
        &dir,
        "other",
        "someone-else",
        &["localhost".to_string(), "127.0.0.1".to_string()],
        Usage::Client,
    )?;
    let ca_file = c.ca_file().expect("ca file");
    let o = etcd_tests::etcdctl::run(
        &c.client_url(0),
        &[
            &format!("--cacert={}", ca_file.display()),
            &format!("--cert={}", other.cert.display()),
            &format!("--key={}", other.key.display()),
            "get",
            "k",
        ],
        None,
    );
    assert!(err(&o).contains("etcdserver: permission denied"));
    // A token wins over the certificate: root with the same certificate.
    ok(run(&root, &["put", "other", "v"]));
    Ok(())
}

/// The etcd-client crate (which authenticates and sends the token in `token` metadata)
/// and the JSON gateway (token in `Authorization`): watches of keys the user may not
/// read are refused with etcd's cancel reason while the stream lives on; lease revokes
/// and lease attachments need write access to the lease's keys; AuthStatus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_leases_and_the_gateway_under_auth() -> Result<()> {
    use etcd_client::{Client, ConnectOptions, Permission, PutOptions, WatchOptions};
    use etcd_tests::grpc::{assert_status, Code};
    use etcd_tests::util::next_watch;
    const T: Duration = Duration::from_secs(10);

    let etcd = etcd_tests::EtcdProcess::start_default()?;
    let mut anon = etcd.client().await?;
    anon.user_add("root", "rootpw", None).await?;
    anon.user_grant_role("root", "root").await?;
    anon.user_add("w", "wpw", None).await?;
    anon.role_add("r").await?;
    anon.role_grant_permission("r", Permission::read_write("/w/").with_prefix())
        .await?;
    anon.user_grant_role("w", "r").await?;
    anon.auth_enable().await?;
    assert_status(
        anon.put("/w/x", "y", None).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );

    let as_user = |name: &str, pw: &str| {
        ConnectOptions::new()
            .with_user(name, pw)
            .with_timeout(Duration::from_secs(15))
    };
    let mut w = Client::connect([etcd.client_url()], Some(as_user("w", "wpw"))).await?;
    let mut root = Client::connect([etcd.client_url()], Some(as_user("root", "rootpw"))).await?;

    // Watches: allowed prefix created; a forbidden key refused, the stream still serves.
    let mut s = w
        .watch("/w/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created() && !created.canceled(), "{created:?}");
    s.watch("/secret", None).await?;
    let refused = next_watch(&mut s, T).await?;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(
        refused.cancel_reason(),
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    w.put("/w/a", "1", None).await?;
    let ev = next_watch(&mut s, T).await?;
    assert_eq!(ev.watch_id(), created.watch_id());
    assert_eq!(ev.events().len(), 1);

    // Leases: the user may not revoke a lease holding a key it cannot write, nor attach
    // a key of its own to it.
    let lease = root.lease_grant(60, None).await?.id();
    root.put("/secret", "s", Some(PutOptions::new().with_lease(lease)))
        .await?;
    assert_status(
        w.lease_revoke(lease).await,
        Code::PermissionDenied,
        "etcdserver: permission denied",
    );
    assert_status(
        w.put("/w/b", "1", Some(PutOptions::new().with_lease(lease)))
            .await,
        Code::PermissionDenied,
        "etcdserver: permission denied",
    );
    root.lease_revoke(lease).await?;
    assert!(root.get("/secret", None).await?.kvs().is_empty());

    // The JSON gateway: a token from /v3/auth/authenticate in `Authorization`.
    let http = reqwest::Client::builder().timeout(T).build()?;
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut r = http
            .post(format!("{}{path}", etcd.client_url()))
            .json(&body);
        if let Some(t) = token {
            r = r.header("Authorization", t);
        }
        async move {
            let r = r.send().await?;
            let status = r.status().as_u16();
            let v: serde_json::Value = serde_json::from_str(&r.text().await?)?;
            anyhow::Ok((status, v))
        }
    };
    let (st, v) = post(
        "/v3/auth/authenticate",
        None,
        serde_json::json!({"name": "w", "password": "wpw"}),
    )
    .await?;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    assert!(token.contains('.'), "{v}");
    let put = serde_json::json!({"key": "L3cvZw==", "value": "MQ=="}); // /w/g = 1
    let (st, v) = post("/v3/kv/put", Some(&token), put.clone()).await?;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post("/v3/kv/put", None, put).await?;
    assert_eq!(
        (st, v["message"].as_str()),
        (400, Some("etcdserver: user name is empty"))
    );
    let (st, v) = post(
        "/v3/kv/put",
        Some("bogus.1"),
        serde_json::json!({"key": "eA=="}),
    )
    .await?;
    assert_eq!(
        (st, v["message"].as_str()),
        (401, Some("etcdserver: invalid auth token"))
    );
    etcd_tests::only_36!("/v3/auth/status (etcd 3.5+)", {
        let (st, v) = post("/v3/auth/status", None, serde_json::json!({})).await?;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["enabled"], serde_json::json!(true), "{v}");
    });
    Ok(())
}

/// `--auth-token jwt,pub-key=...,priv-key=...,sign-method=RS256` as etcd's docs set it up
/// (keys made with openssl): tokens are JWTs naming the user and the auth revision,
/// verified by every member; a change of users or roles makes an older token fail with
/// "revision of auth store is old", and etcdctl, which authenticates per call, goes on.
#[test]
fn jwt_tokens_signed_by_one_member_serve_on_all() -> Result<()> {
    use base64::Engine as _;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("jwt.key");
    let public = dir.path().join("jwt.pub");
    let sh = |args: &[&str]| -> Result<()> {
        let o = std::process::Command::new("openssl").args(args).output()?;
        anyhow::ensure!(o.status.success(), "openssl {args:?}: {o:?}");
        Ok(())
    };
    let (key_s, pub_s) = (key.to_str().unwrap_or(""), public.to_str().unwrap_or(""));
    sh(&["genrsa", "-out", key_s, "2048"])?;
    sh(&["rsa", "-in", key_s, "-pubout", "-out", pub_s])?;
    let flag =
        format!("--auth-token=jwt,pub-key={pub_s},priv-key={key_s},sign-method=RS256,ttl=10m");
    let c = EtcdCluster::start(ClusterOptions::new(3).arg(flag))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    let root = ["--user", "root:rootpw"];
    ok(run(&c, 0, &[], &["user", "add", "root:rootpw"]));
    ok(run(&c, 0, &[], &["auth", "enable"]));
    ok(run(&c, 1, &root, &["put", "k", "v"]));
    assert_eq!(
        ok(run(&c, 2, &root, &["get", "k", "--print-value-only"])),
        "v\n"
    );

    // The token, from the gateway of member 0, used on member 2.
    let curl = |i: usize, path: &str, token: Option<&str>, body: &str| -> Result<String> {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-X", "POST", "-d", body]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: {t}")]);
        }
        let o = cmd.arg(format!("{}{path}", c.client_url(i))).output()?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let auth = curl(
        0,
        "/v3/auth/authenticate",
        None,
        r#"{"name":"root","password":"rootpw"}"#,
    )?;
    let v: serde_json::Value = serde_json::from_str(&auth)?;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])?;
    let claims: serde_json::Value = serde_json::from_slice(&claims)?;
    assert_eq!(claims["username"], "root", "{claims}");
    assert!(
        claims["revision"].as_u64().is_some() && claims["exp"].as_u64().is_some(),
        "{claims}"
    );
    let put = r#"{"key":"ag==","value":"MQ=="}"#; // j = 1
    let out = curl(2, "/v3/kv/put", Some(&token), put)?;
    assert!(out.contains("\"header\""), "{out}");
    let forged = format!("{}.{}.{}", parts[0], parts[1], "AAAA");
    let out = curl(2, "/v3/kv/put", Some(&forged), put)?;
    assert!(out.contains("etcdserver: invalid auth token"), "{out}");

    // A change of roles: the token's revision is old now; a new login works.
    ok(run(&c, 0, &root, &["role", "add", "r"]));
    let out = curl(1, "/v3/kv/put", Some(&token), put)?;
    assert!(
        out.contains("etcdserver: revision of auth store is old"),
        "{out}"
    );
    ok(run(&c, 1, &root, &["put", "k", "w"]));
    Ok(())
}
