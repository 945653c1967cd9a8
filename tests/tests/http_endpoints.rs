//! The HTTP endpoints etcd serves next to gRPC on the client port (and on
//! `--listen-metrics-urls`): `/health`, `/livez`, `/readyz`, `/version`,
//! `/metrics`; plus the gRPC health service (checked with curl over h2c,
//! since the test crate has no generated health client).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_tests::ports::free_port;
use etcd_tests::{EtcdOptions, EtcdProcess};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// GET `url` over HTTP/1.1 (the test client has no HTTP/2): (status, headers, body).
fn get(url: &str) -> Result<(u16, reqwest::header::HeaderMap, String)> {
    rt().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let resp = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(
            resp.version() == reqwest::Version::HTTP_11,
            "GET {url} not over HTTP/1.1"
        );
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Ok((status, headers, resp.text().await?))
    })
}

/// The content-type of a response's headers ("" if none).
fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The value of an unlabelled sample line `name <value>` in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn check_metrics(page: &str) {
    assert_eq!(
        sample(page, "etcd_server_has_leader"),
        Some(1.0),
        "etcd_server_has_leader 1"
    );
    assert_eq!(
        sample(page, "etcd_server_is_leader"),
        Some(1.0),
        "etcd_server_is_leader 1"
    );
    let db =
        sample(page, "etcd_mvcc_db_total_size_in_bytes").expect("etcd_mvcc_db_total_size_in_bytes");
    assert!(db > 0.0, "db size {db}");
    assert!(
        page.lines()
            .any(|l| l.starts_with("etcd_disk_wal_fsync_duration_seconds_bucket{le=")),
        "etcd_disk_wal_fsync_duration_seconds_bucket missing"
    );
    let committed = sample(page, "etcd_server_proposals_committed_total")
        .expect("etcd_server_proposals_committed_total");
    assert!(
        committed >= 2.0,
        "proposals committed after a put: {committed}"
    );
    let rss = sample(page, "process_resident_memory_bytes").expect("process_resident_memory_bytes");
    assert!(rss > 1e6, "rss {rss}");
    assert!(
        page.contains("# TYPE etcd_server_has_leader gauge"),
        "TYPE lines present"
    );
}

#[test]
fn health_livez_readyz_version() -> Result<()> {
    let etcd = EtcdProcess::start_default()?;

    let (status, headers, body) = get(&etcd.http_url("/health"))?;
    assert_eq!(status, 200, "{body}");
    let ct = content_type(&headers);
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let j: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(j["health"], "true", "{body}");
    assert_eq!(j["reason"], "", "{body}");
    let (status, _, body) = get(&etcd.http_url("/health?serializable=true"))?;
    assert_eq!(
        (status, body.contains(r#""health":"true""#)),
        (200, true),
        "{body}"
    );

    for path in ["/livez", "/readyz"] {
        let (status, _, body) = get(&etcd.http_url(path))?;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{path}");
    }
    let (status, _, body) = get(&etcd.http_url("/livez?verbose"))?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines().any(|l| l == "[+]serializable_read ok"),
        "{body}"
    );
    assert_eq!(body.lines().last(), Some("livez check passed"), "{body}");
    let (status, _, body) = get(&etcd.http_url("/readyz?verbose"))?;
    assert_eq!(status, 200, "{body}");
    for check in ["data_corruption", "serializable_read", "linearizable_read"] {
        assert!(
            body.lines().any(|l| l == format!("[+]{check} ok")),
            "{check}: {body}"
        );
    }
    assert_eq!(body.lines().last(), Some("readyz check passed"), "{body}");
    // One check by name, and excluding a check.
    let (status, _, body) = get(&etcd.http_url("/readyz/linearizable_read"))?;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(&etcd.http_url("/readyz?verbose&exclude=linearizable_read"))?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines()
            .any(|l| l == "[+]linearizable_read excluded: ok"),
        "{body}"
    );
    assert!(
        !body.lines().any(|l| l == "[+]linearizable_read ok"),
        "{body}"
    );
    let (status, _, _) = get(&etcd.http_url("/readyz/no_such_check"))?;
    assert_eq!(status, 404);

    let (status, _, body) = get(&etcd.http_url("/version"))?;
    assert_eq!(status, 200);
    let j: serde_json::Value = serde_json::from_str(&body)?;
    let server = j["etcdserver"].as_str().unwrap_or_default();
    assert!(server.starts_with("3.6."), "etcdserver {server:?}: {body}");
    let cluster = j["etcdcluster"].as_str().unwrap_or_default();
    assert!(
        cluster.starts_with("3.6"),
        "etcdcluster {cluster:?}: {body}"
    );
    Ok(())
}

#[test]
fn metrics_on_client_and_metrics_urls() -> Result<()> {
    let port = free_port();
    let metrics_url = format!("http://127.0.0.1:{port}");
    let etcd = EtcdProcess::start(
        EtcdOptions::default().arg(format!("--listen-metrics-urls={metrics_url}")),
    )?;
    assert_eq!(etcd.etcdctl_ok(&["put", "k", "v"]), "OK\n");

    let (status, headers, page) = get(&etcd.http_url("/metrics"))?;
    assert_eq!(status, 200);
    let ct = content_type(&headers);
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    check_metrics(&page);

    let (status, _, page) = get(&format!("{metrics_url}/metrics"))?;
    assert_eq!(status, 200);
    check_metrics(&page);
    // etcd serves /health on the metrics listener too.
    let (status, _, body) = get(&format!("{metrics_url}/health"))?;
    assert_eq!(
        (status, body.contains(r#""health":"true""#)),
        (200, true),
        "{body}"
    );
    // The metrics listener is HTTP only: no etcd gRPC API there.
    let o = etcd_tests::etcdctl::run(
        &format!("127.0.0.1:{port}"),
        &["get", "k", "--dial-timeout=2s", "--command-timeout=2s"],
        None,
    );
    o.assert_failure();
    Ok(())
}

/// The value of the sample line that starts with `prefix` (name plus labels).
fn labelled(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The metrics that explain write performance move with the writes: raft-log fsyncs,
/// backend commits, committed/applied proposals, apply duration per op, mvcc counters;
/// nothing is left pending once every request was answered.
#[test]
fn write_path_metrics_move_with_writes() -> Result<()> {
    let etcd = EtcdProcess::start(EtcdOptions::default())?;
    let (_, _, before) = get(&etcd.http_url("/metrics"))?;
    for i in 0..5 {
        assert_eq!(etcd.etcdctl_ok(&["put", &format!("k{i}"), "v"]), "OK\n");
    }
    etcd.etcdctl_ok(&["get", "k0"]);
    // etcd commits its backend every 100 ms: give the last commit time to happen.
    let commits = |page: &str| labelled(page, "etcd_disk_backend_commit_duration_seconds_count ");
    let mut after = String::new();
    for _ in 0..30 {
        after = get(&etcd.http_url("/metrics"))?.2;
        if commits(&after) > commits(&before) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let grew_by = |name: &str, n: f64| {
        let b = labelled(&before, name).unwrap_or(0.0);
        let a = labelled(&after, name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(a >= b + n, "{name}: {b} -> {a}");
    };
    let grew = |name: &str| grew_by(name, 5.0);
    grew("etcd_disk_wal_fsync_duration_seconds_count ");
    // etcd commits its backend in batches (every 100 ms): at least one.
    grew_by("etcd_disk_backend_commit_duration_seconds_count ", 1.0);
    grew("etcd_server_proposals_committed_total ");
    grew("etcd_server_proposals_applied_total ");
    assert_eq!(sample(&after, "etcd_server_proposals_pending"), Some(0.0));
    etcd_tests::only_36!("3.5 metric names", {
        grew(r#"etcd_server_apply_duration_seconds_count{op="Put",success="true",version="v3"} "#);
        grew("etcd_mvcc_put_total ");
        assert!(sample(&after, "etcd_mvcc_range_total").unwrap_or(0.0) >= 1.0);
    });
    Ok(())
}

/// One unary gRPC call with curl over h2c: returns (grpc-status, response
/// message bytes without the 5-byte frame header, the response's headers and
/// trailers as curl printed them).
fn grpc_call(
    port: u16,
    path: &str,
    message: &[u8],
    dir: &std::path::Path,
) -> Result<(String, Vec<u8>, String)> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(message);
    let req = dir.join("req.bin");
    let resp = dir.join("resp.bin");
    let hdr = dir.join("hdr.txt");
    std::fs::write(&req, &frame)?;
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--http2-prior-knowledge",
            "-X",
            "POST",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--data-binary")
        .arg(format!("@{}", req.display()))
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg(&resp)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .context("run curl")?;
    anyhow::ensure!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -D writes the headers and, for HTTP/2, the trailers.
    let headers = std::fs::read_to_string(&hdr)?;
    let status = headers
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("no grpc-status in {headers}"))?;
    let body = std::fs::read(&resp)?;
    let msg = if body.len() >= 5 {
        body[5..].to_vec()
    } else {
        Vec::new()
    };
    Ok((status, msg, headers))
}

#[test]
fn grpc_health_service() -> Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let dir = tempfile::tempdir()?;
    // HealthCheckRequest{service: ""} -> HealthCheckResponse{status: SERVING (1)}.
    let (status, msg, _) = grpc_call(
        etcd.client_port(),
        "/grpc.health.v1.Health/Check",
        &[],
        dir.path(),
    )?;
    assert_eq!(status, "0");
    assert_eq!(msg, vec![0x08, 0x01], "status SERVING");
    // An unknown service name: NOT_FOUND (5), as grpc-go's health server.
    let mut req = vec![0x0a, 4];
    req.extend_from_slice(b"nope");
    let (status, _, _) = grpc_call(
        etcd.client_port(),
        "/grpc.health.v1.Health/Check",
        &req,
        dir.path(),
    )?;
    assert_eq!(status, "5");
    Ok(())
}

/// gRPC responses carry no `date` header, as etcd's grpc-go server sends none (it
/// was per-response work for both sides); HTTP/1.1 responses keep theirs.
#[test]
fn grpc_responses_have_no_date_header_http1_ones_do() -> Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let dir = tempfile::tempdir()?;
    // RangeRequest{key: "a"}.
    let (status, _, headers) = grpc_call(
        etcd.client_port(),
        "/etcdserverpb.KV/Range",
        &[0x0a, 0x01, b'a'],
        dir.path(),
    )?;
    assert_eq!(status, "0");
    let has_date = |h: &str| {
        h.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("date:"))
    };
    assert!(
        headers.contains("content-type: application/grpc"),
        "{headers}"
    );
    assert!(
        !has_date(&headers),
        "a date header on a gRPC response:\n{headers}"
    );
    let (status, h1, _) = get(&etcd.http_url("/health"))?;
    assert_eq!(status, 200);
    assert!(
        h1.contains_key(reqwest::header::DATE),
        "no date header on an HTTP/1.1 response: {h1:?}"
    );
    Ok(())
}

/// `grpc_server_*{grpc_type,grpc_service,grpc_method[,grpc_code]}` of one method, for a
/// line prefix.
fn grpc_series(name: &str, kind: &str, service: &str, method: &str, code: Option<&str>) -> String {
    let code = code
        .map(|c| format!(r#"grpc_code="{c}","#))
        .unwrap_or_default();
    format!(
        r#"{name}{{{code}grpc_method="{method}",grpc_service="{service}",grpc_type="{kind}"}} "#
    )
}

/// etcd's gRPC server metrics (go-grpc-prometheus's names and labels) count calls as etcd
/// 3.4 counts them for the same etcdctl commands: started, handled by code (an error's
/// code included; a watch the client closed is `Canceled`), messages received and sent;
/// every served method's series exist before any call; the handling-time histogram only
/// with `--metrics=extensive`.
#[test]
fn grpc_server_metrics_count_calls_like_etcd() -> Result<()> {
    let etcd = EtcdProcess::start(EtcdOptions::default())?;
    let kv = |name: &str, method: &str, code: Option<&str>| {
        grpc_series(name, "unary", "etcdserverpb.KV", method, code)
    };
    let watch = |name: &str, code: Option<&str>| {
        grpc_series(name, "bidi_stream", "etcdserverpb.Watch", "Watch", code)
    };
    let snap = |name: &str, code: Option<&str>| {
        grpc_series(
            name,
            "server_stream",
            "etcdserverpb.Maintenance",
            "Snapshot",
            code,
        )
    };
    let (_, _, before) = get(&etcd.http_url("/metrics"))?;
    // Every served method has its series at zero before its first call.
    for code in ["OK", "DataLoss", "Unauthenticated"] {
        assert_eq!(
            labelled(
                &before,
                &kv("grpc_server_handled_total", "Compact", Some(code))
            ),
            Some(0.0),
            "Compact/{code} not pre-registered"
        );
    }
    assert!(
        !before.contains("grpc_server_handling_seconds"),
        "handling histogram exported without --metrics=extensive"
    );
    let at = |page: &str, prefix: &str| labelled(page, prefix).unwrap_or(0.0);

    assert_eq!(etcd.etcdctl_ok(&["put", "a", "1"]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["put", "b", "1"]), "OK\n");
    etcd.etcdctl_ok(&["get", "a"]);
    let future = etcd.etcdctl(&["get", "a", "--rev=99"]);
    future.assert_failure();
    let path = etcd.dir().join("metrics.snap");
    etcd.etcdctl_ok(&["snapshot", "save", etcd_tests::etcdctl::path_arg(&path)]);

    let watcher = etcd_tests::EtcdctlChild::spawn(&etcd.endpoint(), &["watch", "a"]);
    // The watch's "created" response is its first message sent.
    let mut page = String::new();
    for _ in 0..50 {
        page = get(&etcd.http_url("/metrics"))?.2;
        if at(&page, &watch("grpc_server_msg_sent_total", None))
            > at(&before, &watch("grpc_server_msg_sent_total", None))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(etcd.etcdctl_ok(&["put", "a", "2"]), "OK\n");
    let lines = watcher.expect_lines(3, Duration::from_secs(10));
    assert_eq!(lines, ["PUT", "a", "2"]);
    drop(watcher);
    for _ in 0..50 {
        page = get(&etcd.http_url("/metrics"))?.2;
        if at(&page, &watch("grpc_server_handled_total", Some("Canceled")))
            > at(
                &before,
                &watch("grpc_server_handled_total", Some("Canceled")),
            )
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let grew = |prefix: &str| at(&page, prefix) - at(&before, prefix);
    assert_eq!(grew(&kv("grpc_server_started_total", "Put", None)), 3.0);
    assert_eq!(
        grew(&kv("grpc_server_handled_total", "Put", Some("OK"))),
        3.0
    );
    assert_eq!(
        grew(&kv("grpc_server_msg_received_total", "Put", None)),
        3.0
    );
    assert_eq!(grew(&kv("grpc_server_msg_sent_total", "Put", None)), 3.0);
    // The failed range: started, received, handled as OutOfRange, nothing sent.
    assert_eq!(grew(&kv("grpc_server_started_total", "Range", None)), 2.0);
    assert_eq!(
        grew(&kv("grpc_server_handled_total", "Range", Some("OK"))),
        1.0
    );
    assert_eq!(
        grew(&kv(
            "grpc_server_handled_total",
            "Range",
            Some("OutOfRange")
        )),
        1.0
    );
    assert_eq!(
        grew(&kv("grpc_server_msg_received_total", "Range", None)),
        2.0
    );
    assert_eq!(grew(&kv("grpc_server_msg_sent_total", "Range", None)), 1.0);
    // The snapshot: one request, its chunks, OK.
    assert_eq!(grew(&snap("grpc_server_started_total", None)), 1.0);
    assert_eq!(grew(&snap("grpc_server_handled_total", Some("OK"))), 1.0);
    assert_eq!(grew(&snap("grpc_server_msg_received_total", None)), 1.0);
    assert!(grew(&snap("grpc_server_msg_sent_total", None)) >= 1.0);
    // The watch: its create request, "created" and the event, Canceled when etcdctl died.
    assert_eq!(grew(&watch("grpc_server_started_total", None)), 1.0);
    assert_eq!(grew(&watch("grpc_server_msg_received_total", None)), 1.0);
    assert_eq!(grew(&watch("grpc_server_msg_sent_total", None)), 2.0);
    assert_eq!(
        grew(&watch("grpc_server_handled_total", Some("Canceled"))),
        1.0
    );
    assert_eq!(grew(&watch("grpc_server_handled_total", Some("OK"))), 0.0);
    drop(etcd);

    // --metrics=extensive adds the handling-time histogram, per method.
    let etcd = EtcdProcess::start(EtcdOptions::default().arg("--metrics=extensive"))?;
    assert_eq!(etcd.etcdctl_ok(&["put", "a", "1"]), "OK\n");
    let (_, _, page) = get(&etcd.http_url("/metrics"))?;
    assert_eq!(
        labelled(
            &page,
            &kv("grpc_server_handling_seconds_count", "Put", None)
        ),
        Some(1.0),
        "no handling histogram for Put"
    );
    assert!(
        page.contains(r#"grpc_server_handling_seconds_bucket{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary",le="0.005"}"#),
        "no buckets"
    );
    etcd_tests::util::assert_acted_on(&etcd.stderr_log(), "--metrics");
    Ok(())
}
