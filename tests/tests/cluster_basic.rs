//! A 3-member cluster with TLS on client and peer URLs and client-cert-auth
//! on both, started from ExecStart-style flags: replication, `member list`,
//! `endpoint status --cluster`, `endpoint health --cluster`, and refusal of
//! clients and peers without a trusted certificate, of a peer whose certificate is
//! revoked (`--peer-crl-file`), of one not valid for `--peer-cert-allowed-hostname` and
//! of one whose certificate does not name the address it connects from (unless
//! `--peer-skip-client-san-verification`).

use std::time::Duration;

use anyhow::Result;
use etcd_tests::certs::{Ca, CertFiles, Usage};
use etcd_tests::cluster::{poll, AddedMember, ClusterOptions, EtcdCluster};
use etcd_tests::extra::etcdctl_raw;

fn tls_cluster() -> Result<EtcdCluster> {
    EtcdCluster::start(ClusterOptions::new(3).tls(true))
}

/// A TLS cluster whose members run with `arg` too; the flag `acted_on` must not be
/// reported as having no effect.
fn tls_cluster_with(arg: &str, acted_on: &str) -> Result<EtcdCluster> {
    let c = EtcdCluster::start(ClusterOptions::new(3).tls(true).arg(arg))?;
    etcd_tests::util::assert_acted_on(&c.log(0), acted_on);
    Ok(c)
}

#[test]
fn tls_cluster_replicates_and_reports_membership() -> Result<()> {
    let c = tls_cluster()?;

    // A write on one member reads back linearizably on every member.
    for (writer, key) in [(0, "basic/a"), (1, "basic/b"), (2, "basic/c")] {
        let value = format!("written-on-{}", c.name(writer));
        assert_eq!(c.put(writer, key, &value).ok(), "OK\n");
        for i in 0..3 {
            assert_eq!(
                c.get_value(i, key, "l")?.as_deref(),
                Some(value.as_str()),
                "{key} on {}",
                c.name(i)
            );
        }
    }
    // The same through a client that knows all three endpoints.
    let o = c.etcdctl_endpoints(
        0,
        &c.endpoints(),
        &["get", "basic/", "--prefix", "--keys-only"],
    );
    assert_eq!(o.ok(), "basic/a\n\nbasic/b\n\nbasic/c\n\n");

    // member list, from every member: 3 started voters with names and URLs.
    let mut ids = Vec::new();
    for via in 0..3 {
        let mut list = c.member_list(via)?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(list.len(), 3, "member list via {}: {list:?}", c.name(via));
        for (i, m) in list.iter().enumerate() {
            assert_eq!(m.name, c.name(i));
            assert_eq!(m.peer_urls, vec![c.peer_url(i)], "{m:?}");
            assert_eq!(m.client_urls, vec![c.client_url(i)], "{m:?}");
            assert!(!m.is_learner, "{m:?}");
            assert_ne!(m.id, 0);
        }
        let these: Vec<u64> = list.iter().map(|m| m.id).collect();
        if via == 0 {
            ids = these;
        } else {
            assert_eq!(these, ids, "every member lists the same IDs");
        }
    }
    // Each member's own ID (Status header) is the one member list gives it.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(c.member_id(i)?, *id, "ID of {}", c.name(i));
    }
    // The table form: `<hex id>, started, <name>, <peer url>, <client url>, false`.
    let table = c.etcdctl(1, &["member", "list"]).ok();
    for (i, id) in ids.iter().enumerate() {
        let line = format!(
            "{id:x}, started, {}, {}, {}, false",
            c.name(i),
            c.peer_url(i),
            c.client_url(i)
        );
        assert!(
            table.lines().any(|l| l == line),
            "member list lacks {line:?}:\n{table}"
        );
    }

    // endpoint status --cluster: one leader, one term, one cluster ID.
    let v = c
        .etcdctl(2, &["endpoint", "status", "--cluster", "-w", "json"])
        .json();
    let entries = v.as_array().expect("array");
    assert_eq!(entries.len(), 3, "{v}");
    let mut endpoints: Vec<String> = entries
        .iter()
        .map(|e| e["Endpoint"].as_str().unwrap_or("").to_string())
        .collect();
    endpoints.sort();
    let mut want: Vec<String> = (0..3).map(|i| c.client_url(i)).collect();
    want.sort();
    assert_eq!(endpoints, want, "--cluster uses the advertised client URLs");
    let leaders: Vec<u64> = entries
        .iter()
        .map(|e| e["Status"]["leader"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        leaders.iter().all(|&l| l != 0 && l == leaders[0]),
        "one leader: {v}"
    );
    let is_leader = entries
        .iter()
        .filter(|e| e["Status"]["header"]["member_id"].as_u64() == Some(leaders[0]))
        .count();
    assert_eq!(is_leader, 1, "exactly one member is the leader: {v}");
    let terms: Vec<u64> = entries
        .iter()
        .map(|e| e["Status"]["raftTerm"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        terms.iter().all(|&t| t > 0 && t == terms[0]),
        "same raft term: {v}"
    );
    let clusters: Vec<u64> = entries
        .iter()
        .map(|e| e["Status"]["header"]["cluster_id"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        clusters.iter().all(|&x| x != 0 && x == clusters[0]),
        "same cluster ID: {v}"
    );
    // The table form marks exactly one member as leader (5th column "true").
    let table = c.etcdctl(0, &["endpoint", "status", "--cluster"]).ok();
    let leader_rows = table
        .lines()
        .filter(|l| l.split(", ").nth(4) == Some("true"))
        .count();
    assert_eq!(leader_rows, 1, "{table}");
    // The harness agrees.
    let l = c.wait_for_leader(Duration::from_secs(5))?;
    assert_eq!(c.member_id(l)?, leaders[0]);

    // endpoint health --cluster: every member healthy (3.4 prints on stderr).
    let o = c.etcdctl(0, &["endpoint", "health", "--cluster"]);
    o.assert_success();
    for i in 0..3 {
        let line = format!("{} is healthy", c.client_url(i));
        assert!(o.combined().contains(&line), "{}", o.combined());
    }
    Ok(())
}

#[test]
fn tls_cluster_refuses_clients_without_trusted_certificate() -> Result<()> {
    let c = tls_cluster()?;
    assert_eq!(c.put(0, "secret", "v").ok(), "OK\n");
    let ca = c.ca_file().expect("tls").display().to_string();
    let ep = format!("--endpoints={}", c.client_url(1));
    let base = [ep.as_str(), "--dial-timeout=2s", "--command-timeout=3s"];

    // No client certificate.
    let mut args = base.to_vec();
    let cacert = format!("--cacert={ca}");
    args.extend([cacert.as_str(), "get", "secret"]);
    let o = etcdctl_raw(&args);
    o.assert_failure();
    assert!(!o.stdout.contains('v'), "{}", o.combined());
    eprintln!("no client certificate: {}", o.combined().trim());

    // A client certificate from another CA.
    let rogue = Ca::new("rogue CA")?;
    let files = rogue.leaf_files(
        c.dir(),
        "rogue-client",
        "etcdctl",
        &["127.0.0.1".to_string()],
        Usage::Client,
    )?;
    let cert = format!("--cert={}", files.cert_str());
    let key = format!("--key={}", files.key_str());
    let mut args = base.to_vec();
    args.extend([
        cacert.as_str(),
        cert.as_str(),
        key.as_str(),
        "get",
        "secret",
    ]);
    let o = etcdctl_raw(&args);
    o.assert_failure();
    assert!(!o.stdout.contains('v'), "{}", o.combined());
    eprintln!("rogue client certificate: {}", o.combined().trim());

    // Plain HTTP on the TLS client port.
    let plain = format!("--endpoints=http://127.0.0.1:{}", c.client_port(1));
    let o = etcdctl_raw(&[
        plain.as_str(),
        "--dial-timeout=2s",
        "--command-timeout=3s",
        "get",
        "secret",
    ]);
    o.assert_failure();
    assert!(!o.stdout.contains('v'), "{}", o.combined());
    Ok(())
}

#[test]
fn peer_without_trusted_certificate_cannot_join() -> Result<()> {
    let mut c = tls_cluster()?;
    let added = c.add_member(0, "m4", true)?;
    let i = added.index;
    // Replace the new member's peer certificate by one from another CA.
    let rogue = Ca::new("rogue peer CA")?;
    let sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        c.host(i).to_string(),
    ];
    let dir = c.member_dir(i).to_path_buf();
    rogue.leaf_files(&dir, "peer", "m4", &sans, Usage::Both)?;

    cannot_join(&mut c, &added, "an untrusted certificate")
}

/// Gives the added member `m4` a new peer certificate from the cluster's CA with `sans`.
fn reissue_peer_certificate(
    c: &EtcdCluster,
    added: &AddedMember,
    sans: &[String],
) -> Result<CertFiles> {
    let dir = c.member_dir(added.index);
    let ca = c.ca().expect("a TLS cluster has a CA");
    ca.leaf_files(dir, "peer", "m4", sans, Usage::Both)
}

/// Starts the added member and checks that it never becomes a working member (it exits
/// or stays unready), the cluster never sees it start (its entry stays unnamed) and the
/// original members still serve writes.
fn cannot_join(c: &mut EtcdCluster, added: &AddedMember, why: &str) -> Result<()> {
    let i = added.index;
    c.spawn(i)?;
    let joined = c.wait_ready(i, Duration::from_secs(8));
    assert!(joined.is_err(), "a peer with {why} joined");
    eprintln!(
        "peer with {why}: {}",
        joined.err().map(|e| format!("{e:#}")).unwrap_or_default()
    );
    let list = c.member_list(0)?;
    let m = list
        .iter()
        .find(|m| m.id == added.id)
        .expect("the new member is listed after member add");
    assert!(
        m.name.is_empty(),
        "the new member must not have published itself: {m:?}"
    );
    assert!(m.client_urls.is_empty(), "{m:?}");
    poll(
        "write after the join attempt",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let o = c.put(1, "after-join-attempt", "ok");
            if o.success() {
                Ok(())
            } else {
                anyhow::bail!("{}", o.combined())
            }
        },
    )?;
    c.kill9(i)
}

/// The subject CN of the certificate served on `host:port` (a client certificate
/// is presented, as `--peer-client-cert-auth` demands).
fn served_cn(addr: &str, ca: &str, cert: &str, key: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -CAfile {ca} -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(text.contains("CN"), "no certificate from {addr}: {text}");
    Ok(text.trim().to_string())
}

/// Peer certificate files replaced on disk are served to the next peer connection,
/// without a restart, and the cluster keeps replicating.
#[test]
fn peer_certificate_files_are_reread_for_new_connections() -> Result<()> {
    let c = tls_cluster()?;
    let ca = c.ca().expect("a TLS cluster has a CA");
    let ca_file = c.ca_file().expect("CA file").display().to_string();
    let other = c.member_dir(1);
    let (cert, key) = (
        other.join("peer.pem").display().to_string(),
        other.join("peer-key.pem").display().to_string(),
    );
    let addr = c
        .peer_url(0)
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let before = served_cn(&addr, &ca_file, &cert, &key)?;
    assert!(!before.contains("rotated-peer"), "{before}");

    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let (pem, key_pem) = ca.leaf("rotated-peer", &sans, Usage::Both)?;
    let dir = c.member_dir(0);
    std::fs::write(dir.join("peer-key.pem.new"), key_pem)?;
    std::fs::write(dir.join("peer.pem.new"), pem)?;
    std::fs::rename(dir.join("peer-key.pem.new"), dir.join("peer-key.pem"))?;
    std::fs::rename(dir.join("peer.pem.new"), dir.join("peer.pem"))?;

    let after = served_cn(&addr, &ca_file, &cert, &key)?;
    assert!(
        after.contains("rotated-peer"),
        "new certificate served: {after}"
    );
    // Replication goes on (member 0 dials its peers with the new certificate too).
    assert_eq!(c.put(0, "rotated", "yes").ok(), "OK\n");
    for i in 0..3 {
        assert_eq!(c.get_value(i, "rotated", "l")?.as_deref(), Some("yes"));
    }
    Ok(())
}

/// `--peer-crl-file`: a new member whose peer certificate the cluster's CA revoked (the
/// members read the list again for each connection) cannot join; the cluster keeps
/// serving. The same against etcd 3.4.
#[test]
fn peer_with_revoked_certificate_cannot_join() -> Result<()> {
    let crl_dir = tempfile::tempdir()?;
    let crl = crl_dir.path().join("peer-crl.pem");
    let opts = ClusterOptions::new(3)
        .tls(true)
        .arg(format!("--peer-crl-file={}", crl.display()));
    let mut c = EtcdCluster::prepare(opts)?;
    let ca = c.ca().expect("a TLS cluster has a CA");
    std::fs::write(&crl, ca.crl(&[])?)?;
    for i in c.indexes() {
        c.spawn(i)?;
    }
    for i in c.indexes() {
        c.wait_ready(i, Duration::from_secs(30))?;
    }
    etcd_tests::util::assert_acted_on(&c.log(0), "--peer-crl-file");

    let added = c.add_member(0, "m4", true)?;
    let i = added.index;
    let sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        c.host(i).to_string(),
    ];
    let peer = reissue_peer_certificate(&c, &added, &sans)?;
    let ca = c.ca().expect("a TLS cluster has a CA");
    let revoked = ca.crl(&[peer.serial])?;
    std::fs::write(crl_dir.path().join("new.pem"), revoked)?;
    std::fs::rename(crl_dir.path().join("new.pem"), &crl)?;

    cannot_join(&mut c, &added, "a revoked certificate")
}

/// `--peer-cert-allowed-hostname`: members accept peers whose certificates are valid for
/// the named host; a new member whose certificate (from the same CA) is not cannot join.
/// The same against etcd 3.4.
#[test]
fn peer_without_allowed_hostname_cannot_join() -> Result<()> {
    let mut c = tls_cluster_with(
        "--peer-cert-allowed-hostname=localhost",
        "--peer-cert-allowed-hostname",
    )?;
    let added = c.add_member(0, "m4", true)?;
    // Its peer certificate names its address but not `localhost`.
    let sans = vec!["127.0.0.1".to_string(), c.host(added.index).to_string()];
    reissue_peer_certificate(&c, &added, &sans)?;
    cannot_join(&mut c, &added, "a certificate for another host")
}

/// A member added on 127.0.0.2 with a peer certificate for 127.0.0.2 only: the members
/// verify its server certificate when they call it, but its own calls come from
/// 127.0.0.1, which the certificate does not name.
fn add_member_whose_certificate_names_another_address(c: &mut EtcdCluster) -> Result<AddedMember> {
    let added = c.add_member_on(0, "m4", true, Some("127.0.0.2"))?;
    let sans = vec![c.host(added.index).to_string()];
    assert_eq!(sans, ["127.0.0.2"]);
    reissue_peer_certificate(c, &added, &sans)?;
    Ok(added)
}

/// By default, as etcd does, members refuse a peer connection whose client certificate
/// is not valid for the address it comes from: the new member cannot join. The same
/// against etcd 3.4.
#[test]
fn peer_whose_certificate_names_another_address_cannot_join() -> Result<()> {
    let mut c = tls_cluster()?;
    let added = add_member_whose_certificate_names_another_address(&mut c)?;
    cannot_join(&mut c, &added, "a certificate for another address")?;
    let log = c.log(0);
    assert!(
        log.contains("valid for") && log.contains("127.0.0.2") && log.contains("not 127.0.0.1"),
        "member 0 says why it refused the connection:\n{log}"
    );
    Ok(())
}

/// `--peer-skip-client-san-verification` on the members (given by the name etcd 3.4 and
/// 3.5 know, `--experimental-peer-skip-client-san-verification`): the same new member
/// joins and replicates. The same against etcd 3.4.
#[test]
fn peer_skip_client_san_verification_lets_that_member_join() -> Result<()> {
    let mut c = tls_cluster_with(
        "--experimental-peer-skip-client-san-verification",
        "--peer-skip-client-san-verification",
    )?;
    let added = add_member_whose_certificate_names_another_address(&mut c)?;
    let i = added.index;
    c.spawn(i)?;
    c.wait_ready(i, Duration::from_secs(30))?;
    assert_eq!(c.put(0, "joined-from-127.0.0.2", "yes").ok(), "OK\n");
    poll(
        "the new member has the write",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || match c.get_value(i, "joined-from-127.0.0.2", "s")? {
            Some(v) if v == "yes" => Ok(()),
            other => anyhow::bail!("{other:?}"),
        },
    )?;
    Ok(())
}
