//! Bootstrapping a cluster from ExecStart-style flags: the first of three fresh
//! members reports `READY=1` (sd-notify) only once a quorum elected a leader;
//! startup flags that contradict each other fail with a message naming the
//! problem; raft traffic from a member of another cluster is refused with a log
//! line; `--peer-auto-tls` peers form a cluster over self-signed TLS; members fast-forward
//! their election clocks once two peers answer (`--initial-election-tick-advance`), and
//! without that no leader comes before a whole election timeout.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_tests::extra::{run_etcd, RawEtcd};
use etcd_tests::ports::free_port;

/// One member's ports and flags.
struct Spec {
    name: String,
    client: u16,
    peer: u16,
}

impl Spec {
    fn new(name: &str) -> Self {
        Spec {
            name: name.to_string(),
            client: free_port(),
            peer: free_port(),
        }
    }

    fn peer_url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.peer)
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    fn flags(&self, etcd: &RawEtcd, cluster: &str, token: &str, scheme: &str) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.client);
        vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", etcd.path("data")),
            format!("--listen-peer-urls={}", self.peer_url(scheme)),
            format!("--initial-advertise-peer-urls={}", self.peer_url(scheme)),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--initial-cluster={cluster}"),
            format!("--initial-cluster-token={token}"),
            "--initial-cluster-state=new".to_string(),
        ]
    }
}

fn initial_cluster(specs: &[Spec], scheme: &str) -> String {
    specs
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url(scheme)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Datagrams received on `sock` within `within`, stopping early at one that holds
/// the line `needle`.
fn datagrams(sock: &UnixDatagram, needle: &str, within: Duration) -> Result<(Vec<String>, bool)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((got, false));
        }
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == needle);
                got.push(msg);
                if hit {
                    return Ok((got, true));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[test]
fn first_member_reports_ready_only_with_a_quorum() -> Result<()> {
    let specs: Vec<Spec> = ["b1", "b2", "b3"].iter().map(|n| Spec::new(n)).collect();
    let cluster = initial_cluster(&specs, "http");
    let mut first = RawEtcd::new()?;
    let sock_path = first.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let sock_env = sock_path.display().to_string();
    first.spawn(
        &specs[0].flags(&first, &cluster, "boot-ready", "http"),
        &[("NOTIFY_SOCKET", sock_env.as_str())],
    )?;
    // Alone, it cannot elect a leader: no READY=1, and it does not serve.
    let (early, ready) = datagrams(&sock, "READY=1", Duration::from_secs(4))?;
    assert!(
        !ready,
        "READY=1 without a quorum: {early:?}\n{}",
        first.log_tail(20)
    );
    assert!(first.is_running(), "{}", first.log_tail(20));
    let get = etcd_tests::etcdctl::run(
        &specs[0].endpoint(),
        &["get", "k", "--command-timeout=2s"],
        None,
    );
    assert!(
        !get.success(),
        "a linearizable read without a quorum: {get:?}"
    );

    // A second member makes a quorum: READY=1 follows, and the member serves.
    let mut second = RawEtcd::new()?;
    second.spawn(
        &specs[1].flags(&second, &cluster, "boot-ready", "http"),
        &[],
    )?;
    let (msgs, ready) = datagrams(&sock, "READY=1", Duration::from_secs(20))?;
    assert!(
        ready,
        "no READY=1 after quorum: {msgs:?}\n{}",
        first.log_tail(30)
    );
    let put = etcd_tests::etcdctl::run(&specs[0].endpoint(), &["put", "k", "v"], None);
    assert_eq!(put.ok(), "OK\n");
    Ok(())
}

#[test]
fn contradicting_startup_flags_fail_naming_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = Spec::new("a");
    let b = Spec::new("b");
    let data = dir.path().join("data").display().to_string();
    let client = format!("http://127.0.0.1:{}", a.client);
    let base = |name: &str, advertise: &str, cluster: &str| -> Vec<String> {
        vec![
            format!("--name={name}"),
            format!("--data-dir={data}"),
            format!("--listen-peer-urls={}", a.peer_url("http")),
            format!("--initial-advertise-peer-urls={advertise}"),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--initial-cluster={cluster}"),
        ]
    };
    // This member's name is not in --initial-cluster.
    let cluster = format!("b={}", b.peer_url("http"));
    let args = base("a", &a.peer_url("http"), &cluster);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_etcd(&args, &[], dir.path(), Duration::from_secs(20));
    assert!(!out.status.success(), "started anyway: {}", out.stderr);
    assert!(
        out.stderr
            .contains("couldn't find local name \"a\" in the initial cluster"),
        "{}",
        out.stderr
    );
    // The name is there, but with other peer URLs than it advertises.
    let cluster = format!("a={},b={}", b.peer_url("http"), a.peer_url("http"));
    let args = base("a", &a.peer_url("http"), &cluster);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_etcd(&args, &[], dir.path(), Duration::from_secs(20));
    assert!(!out.status.success(), "started anyway: {}", out.stderr);
    assert!(
        out.stderr.contains("--initial-cluster has a="),
        "names the mismatch: {}",
        out.stderr
    );
    Ok(())
}

#[test]
fn raft_traffic_from_another_cluster_is_refused() -> Result<()> {
    let specs: Vec<Spec> = ["c1", "c2", "c3"].iter().map(|n| Spec::new(n)).collect();
    let cluster = initial_cluster(&specs, "http");
    let mut members = Vec::new();
    for s in &specs {
        let mut e = RawEtcd::new()?;
        e.spawn(&s.flags(&e, &cluster, "cluster-one", "http"), &[])?;
        members.push(e);
    }
    for m in &mut members {
        m.wait_ready(Duration::from_secs(30))?;
    }
    // A member of another cluster (another token) that lists c2's peer URL as one
    // of its own peers: its raft messages reach c2 with the wrong cluster ID.
    let intruder = Spec::new("x");
    let other = format!(
        "x={},c2={}",
        intruder.peer_url("http"),
        specs[1].peer_url("http")
    );
    let mut x = RawEtcd::new()?;
    x.spawn(&intruder.flags(&x, &other, "cluster-two", "http"), &[])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !members[1].logs().contains("cluster ID mismatch") {
        if Instant::now() > deadline {
            bail!(
                "c2 never logged a cluster ID mismatch\n{}\n--- intruder ---\n{}",
                members[1].log_tail(20),
                x.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The cluster is unaffected: three members, writes work.
    let put = etcd_tests::etcdctl::run(&specs[1].endpoint(), &["put", "k", "v"], None);
    assert_eq!(put.ok(), "OK\n");
    let list = etcd_tests::etcdctl::run(&specs[0].endpoint(), &["member", "list"], None);
    assert_eq!(list.ok().lines().count(), 3, "{}", list.ok());
    Ok(())
}

#[test]
fn peer_auto_tls_members_form_a_cluster() -> Result<()> {
    let specs: Vec<Spec> = ["t1", "t2", "t3"].iter().map(|n| Spec::new(n)).collect();
    let cluster = initial_cluster(&specs, "https");
    let mut members = Vec::new();
    for s in &specs {
        let mut e = RawEtcd::new()?;
        let mut flags = s.flags(&e, &cluster, "auto-tls", "https");
        flags.push("--peer-auto-tls".to_string());
        e.spawn(&flags, &[])?;
        members.push(e);
    }
    for m in &mut members {
        m.wait_ready(Duration::from_secs(30))?;
    }
    let put = etcd_tests::etcdctl::run(&specs[0].endpoint(), &["put", "k", "tls"], None);
    assert_eq!(put.ok(), "OK\n");
    for s in &specs {
        let got =
            etcd_tests::etcdctl::run(&s.endpoint(), &["get", "k", "--print-value-only"], None);
        assert_eq!(got.ok(), "tls\n", "read on {}", s.name);
    }
    let list = etcd_tests::etcdctl::run(&specs[0].endpoint(), &["member", "list"], None);
    assert!(
        list.ok().lines().all(|l| l.contains("https://127.0.0.1:")),
        "peer URLs are https: {}",
        list.ok()
    );
    Ok(())
}

/// Starts three fresh members of one cluster with a 10 s election timeout (100 ticks of
/// 100 ms) and `extra` flags, logging with zap (etcd 3.4 logs the tick advance only
/// there).
fn three_with_long_elections(token: &str, extra: &[&str]) -> Result<(Vec<Spec>, Vec<RawEtcd>)> {
    let specs: Vec<Spec> = ["e1", "e2", "e3"].iter().map(|n| Spec::new(n)).collect();
    let cluster = initial_cluster(&specs, "http");
    let mut members = Vec::new();
    for s in &specs {
        let mut e = RawEtcd::new()?;
        let mut flags = s.flags(&e, &cluster, token, "http");
        flags.push("--heartbeat-interval=100".to_string());
        flags.push("--election-timeout=10000".to_string());
        flags.push("--logger=zap".to_string());
        flags.extend(extra.iter().map(|f| f.to_string()));
        e.spawn(&flags, &[])?;
        members.push(e);
    }
    Ok((specs, members))
}

/// The leader a member reports (0: none known), from `etcdctl endpoint status`.
fn leader_seen_by(spec: &Spec) -> u64 {
    let out = etcd_tests::etcdctl::run(
        &spec.endpoint(),
        &["endpoint", "status", "-w", "json", "--command-timeout=2s"],
        None,
    );
    if !out.success() {
        return 0;
    }
    out.json()[0]["Status"]["leader"].as_u64().unwrap_or(0)
}

/// Waits until some member reports a leader.
fn wait_for_a_leader(specs: &[Spec], members: &mut [RawEtcd], within: Duration) -> Result<u64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(l) = specs.iter().map(leader_seen_by).find(|&l| l != 0) {
            return Ok(l);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no leader within {within:?}\n{}", members[0].log_tail(20))
}

/// `--initial-election-tick-advance` (on by default): once two other members answer,
/// each member fast-forwards its election clock by all but two of its 100 election
/// ticks, and the cluster elects a leader.
#[test]
fn members_fast_forward_election_ticks_once_two_peers_answer() -> Result<()> {
    let (specs, mut members) = three_with_long_elections("tick-advance", &[])?;
    for m in &mut members {
        m.wait_log("fast-forwarding", Duration::from_secs(30))?;
        let logs = m.logs();
        if !etcd_tests::bins::is_reference() {
            let line = logs
                .lines()
                .find(|l| l.contains("fast-forwarding election ticks"))
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            assert!(
                v["forward_ticks"] == 98 && v["active_remote_members"] == 2,
                "advance not as etcd's (98 of 100 ticks, two peers): {line}"
            );
        }
        assert!(
            !logs.contains("skipping initial election tick advance"),
            "{}",
            m.log_tail(20)
        );
    }
    wait_for_a_leader(&specs, &mut members, Duration::from_secs(60))?;
    Ok(())
}

/// With `--initial-election-tick-advance=false` nothing is fast-forwarded: no member can
/// campaign before a whole election timeout (10 s) has passed since it started, so there
/// is no leader in the first 5 s; one is elected after that.
#[test]
fn without_the_advance_no_leader_comes_before_a_full_election_timeout() -> Result<()> {
    let started = Instant::now();
    let (specs, mut members) = three_with_long_elections(
        "no-tick-advance",
        &["--initial-election-tick-advance=false"],
    )?;
    for m in &mut members {
        m.wait_log(
            "skipping initial election tick advance",
            Duration::from_secs(30),
        )?;
    }
    while started.elapsed() < Duration::from_secs(5) {
        for s in &specs {
            assert_eq!(
                leader_seen_by(s),
                0,
                "a leader before 10 s\n{}",
                members[0].log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_a_leader(&specs, &mut members, Duration::from_secs(60))?;
    for m in &members {
        assert!(!m.logs().contains("fast-forwarding"), "{}", m.log_tail(20));
    }
    Ok(())
}

/// A member with a data dir keeps its identity: restarted with different initial-*
/// flags (another token, `existing`), it comes back as the same member of the same
/// cluster, as in etcd.
#[test]
fn existing_data_dir_wins_over_initial_flags() -> Result<()> {
    use etcd_tests::cluster::{ClusterOptions, EtcdCluster};
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    let id = c.member_id(0)?;
    let cluster_id = c.status(0)?.cluster_id;
    c.sigterm(0)?;
    let flags: Vec<String> = c
        .flags(0)
        .iter()
        .map(|f| match f.as_str() {
            "new" => "existing".to_string(),
            t if t == c.token() => "another-token".to_string(),
            other => other.to_string(),
        })
        .collect();
    assert!(flags.contains(&"another-token".to_string()), "{flags:?}");
    c.set_flags(0, flags);
    c.restart(0)?;
    assert_eq!(c.member_id(0)?, id, "same member ID");
    assert_eq!(c.status(0)?.cluster_id, cluster_id, "same cluster");
    assert_eq!(c.put(0, "k", "v").ok(), "OK\n");
    assert_eq!(c.member_list(1)?.len(), 3);
    Ok(())
}
