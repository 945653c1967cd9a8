//! The grpc-gateway JSON API (`/v3/...`) and the plain HTTP endpoints
//! (`/health`, `/version`, `/metrics`, `/livez`, `/readyz`) on the client port.
//!
//! JSON conventions checked: bytes are standard base64, 64-bit integers are
//! strings, zero values are omitted, field names are the proto names.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use etcd_tests::{only_36, EtcdProcess};
use futures::StreamExt;
use serde_json::{json, Value};

fn b64(s: &str) -> String {
    B64.encode(s)
}

struct Gw {
    http: reqwest::Client,
    base: String,
}

impl Gw {
    fn new(etcd: &EtcdProcess) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            base: etcd.client_url(),
        })
    }

    /// POSTs `body` to `path`, returns (status, JSON body).
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let v = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: invalid JSON {text:?}: {e}"))?;
        Ok((status, v))
    }

    /// POSTs and asserts HTTP 200.
    async fn ok(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, v) = self.post(path, body).await?;
        assert_eq!(status, 200, "{path} -> {v}");
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// A JSON string holding a decimal integer (how int64/uint64 are encoded).
#[track_caller]
fn int_str(v: &Value) -> i128 {
    v.as_str()
        .and_then(|s| s.parse::<i128>().ok())
        .unwrap_or_else(|| panic!("expected an integer encoded as a string, got {v}"))
}

#[track_caller]
fn assert_header(h: &Value, revision: i64) {
    assert!(int_str(&h["cluster_id"]) > 0, "{h}");
    assert!(int_str(&h["member_id"]) > 0, "{h}");
    assert_eq!(h["revision"], json!(revision.to_string()), "{h}");
    assert!(int_str(&h["raft_term"]) >= 1, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_range_delete() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let gw = Gw::new(&etcd)?;

    let v = gw
        .ok("/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}))
        .await?;
    assert_header(&v["header"], 2);
    assert!(v.get("prev_kv").is_none(), "{v}");

    let v = gw.ok("/v3/kv/range", json!({"key": "Zm9v"})).await?;
    assert_header(&v["header"], 2);
    assert_eq!(
        v["kvs"],
        json!([{"key": "Zm9v", "create_revision": "2", "mod_revision": "2",
                "version": "1", "value": "YmFy"}])
    );
    assert_eq!(v["count"], "1");
    assert!(v.get("more").is_none());

    for k in ["p/1", "p/2", "p/3"] {
        gw.ok("/v3/kv/put", json!({"key": b64(k), "value": b64("v")}))
            .await?;
    }
    // Prefix range with a limit; the enum is given by name.
    let v = gw
        .ok(
            "/v3/kv/range",
            json!({"key": b64("p/"), "range_end": b64("p0"), "limit": 2,
                   "sort_order": "DESCEND", "keys_only": true}),
        )
        .await?;
    assert_eq!(v["more"], json!(true));
    assert_eq!(v["count"], "3");
    let keys: Vec<&str> = v["kvs"]
        .as_array()
        .expect("kvs")
        .iter()
        .map(|kv| kv["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, [b64("p/3"), b64("p/2")]);
    assert!(v["kvs"][0].get("value").is_none(), "keys_only: {v}");
    // int64 request fields are accepted as strings too.
    let v = gw
        .ok(
            "/v3/kv/range",
            json!({"key": "Zm9v", "revision": "2", "count_only": true}),
        )
        .await?;
    assert_eq!(v["count"], "1");
    assert!(v.get("kvs").is_none());

    let v = gw
        .ok(
            "/v3/kv/deleterange",
            json!({"key": b64("p/"), "range_end": b64("p0"), "prev_kv": true}),
        )
        .await?;
    assert_header(&v["header"], 6);
    assert_eq!(v["deleted"], "3");
    assert_eq!(v["prev_kvs"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["prev_kvs"][0]["key"], b64("p/1"));
    assert_eq!(v["prev_kvs"][0]["mod_revision"], "3");

    // /v3beta/ is an alias of /v3/.
    let v = gw.ok("/v3beta/kv/range", json!({"key": "Zm9v"})).await?;
    assert_eq!(v["kvs"][0]["value"], "YmFy");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_txn_and_errors() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let gw = Gw::new(&etcd)?;
    gw.ok("/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}))
        .await?;

    let v = gw
        .ok(
            "/v3/kv/txn",
            json!({
                "compare": [{"target": "VALUE", "key": "Zm9v", "value": "YmFy"}],
                "success": [{"request_put": {"key": "Zm9v", "value": b64("baz")}}],
                "failure": [{"request_range": {"key": "Zm9v"}}],
            }),
        )
        .await?;
    assert_header(&v["header"], 3);
    assert_eq!(v["succeeded"], json!(true));
    assert_eq!(
        v["responses"],
        json!([{"response_put": {"header": {"revision": "3"}}}])
    );

    // Same compare again now fails; the range in the failure branch runs.
    let v = gw
        .ok(
            "/v3/kv/txn",
            json!({
                "compare": [{"target": "VALUE", "key": "Zm9v", "result": "EQUAL",
                             "value": "YmFy"}],
                "success": [{"request_put": {"key": "Zm9v", "value": "YmFy"}}],
                "failure": [{"request_range": {"key": "Zm9v"}}],
            }),
        )
        .await?;
    assert!(v.get("succeeded").is_none(), "false is omitted: {v}");
    assert_eq!(
        v["responses"][0]["response_range"]["kvs"][0]["value"],
        b64("baz")
    );
    assert_eq!(v["responses"][0]["response_range"]["count"], "1");

    // Errors: HTTP 400 with the gRPC code and message (3.4 adds "error",
    // 3.6 adds "details"; both carry "code" and "message").
    let (status, v) = gw.post("/v3/kv/range", json!({"key": ""})).await?;
    assert_eq!(status, 400);
    assert_eq!(v["code"], json!(3));
    assert_eq!(v["message"], "etcdserver: key is not provided");
    let (status, v) = gw
        .post("/v3/kv/range", json!({"key": "Zm9v", "revision": "1000"}))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(v["code"], json!(11));
    assert_eq!(
        v["message"],
        "etcdserver: mvcc: required revision is a future revision"
    );
    let (status, v) = gw.post("/v3/lease/revoke", json!({"ID": "12345"})).await?;
    assert_eq!(status, 404);
    assert_eq!(v["code"], json!(5));
    assert_eq!(v["message"], "etcdserver: requested lease not found");

    // Compaction through the gateway.
    let v = gw.ok("/v3/kv/compaction", json!({"revision": "3"})).await?;
    assert_header(&v["header"], 3);
    let (status, v) = gw
        .post("/v3/kv/range", json!({"key": "Zm9v", "revision": "2"}))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(v["code"], json!(11));
    assert_eq!(
        v["message"],
        "etcdserver: mvcc: required revision has been compacted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_maintenance_cluster() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let gw = Gw::new(&etcd)?;

    let v = gw.ok("/v3/lease/grant", json!({"TTL": 30})).await?;
    assert_header(&v["header"], 1);
    let id = v["ID"].as_str().expect("ID is a string").to_string();
    assert!(id.parse::<i64>().is_ok_and(|i| i > 0), "{v}");
    assert_eq!(v["TTL"], "30");

    gw.ok(
        "/v3/kv/put",
        json!({"key": b64("leased"), "value": b64("x"), "lease": id}),
    )
    .await?;
    let v = gw
        .ok("/v3/lease/timetolive", json!({"ID": id, "keys": true}))
        .await?;
    assert_eq!(v["ID"], json!(id));
    assert_eq!(v["grantedTTL"], "30");
    assert!((25..=30).contains(&int_str(&v["TTL"])), "{v}");
    assert_eq!(v["keys"], json!([b64("leased")]));
    let v = gw.ok("/v3/lease/leases", json!({})).await?;
    assert_eq!(v["leases"], json!([{"ID": id}]));
    let v = gw.ok("/v3/lease/revoke", json!({"ID": id})).await?;
    assert_header(&v["header"], 3);
    let v = gw.ok("/v3/kv/range", json!({"key": b64("leased")})).await?;
    assert!(v.get("kvs").is_none(), "revoked lease deleted its key: {v}");

    let v = gw.ok("/v3/maintenance/status", json!({})).await?;
    assert_header(&v["header"], 3);
    let member_id = v["header"]["member_id"].clone();
    assert_eq!(v["leader"], member_id, "single member is leader: {v}");
    assert!(int_str(&v["dbSize"]) > 0, "{v}");
    assert!(int_str(&v["raftIndex"]) > 0, "{v}");
    assert!(int_str(&v["raftTerm"]) >= 1, "{v}");
    let version = v["version"].as_str().expect("version").to_string();
    only_36!("gateway Status.version is 3.6.x", {
        assert!(version.starts_with("3.6."), "{v}");
    });
    only_36!("gateway Status.storageVersion is 3.6.0", {
        assert_eq!(v["storageVersion"], "3.6.0", "{v}");
    });

    let v = gw.ok("/v3/cluster/member/list", json!({})).await?;
    assert_eq!(
        v["members"],
        json!([{"ID": member_id, "name": "e2e", "peerURLs": [etcd.peer_url()],
                "clientURLs": [etcd.client_url()]}])
    );
    assert!(
        v["header"].get("revision").is_none(),
        "member responses have no revision"
    );

    let v = gw.ok("/v3/maintenance/alarm", json!({})).await?;
    assert!(v.get("alarms").is_none(), "no alarms: {v}");
    only_36!("Alarm responses carry a filled header", {
        assert_header(&v["header"], 3);
    });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let gw = Gw::new(&etcd)?;
    gw.ok("/v3/kv/put", json!({"key": "Zm9v", "value": "MQ=="}))
        .await?; // rev 2

    let resp = gw
        .http
        .post(format!("{}/v3/watch", gw.base))
        .timeout(Duration::from_secs(30))
        .json(&json!({"create_request": {"key": "Zm9v", "prev_kv": true}}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::<u8>::new();
    let mut lines = Vec::<Value>::new();
    let mut put_done = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while lines.len() < 2 {
        // Split complete lines out of the buffer.
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if !text.is_empty() {
                lines.push(serde_json::from_str(&text)?);
            }
        }
        if lines.len() == 1 && !put_done {
            // Created; now write something to be watched.
            gw.ok("/v3/kv/put", json!({"key": "Zm9v", "value": "Mg=="}))
                .await?; // rev 3
            put_done = true;
        }
        if lines.len() >= 2 {
            break;
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| anyhow::anyhow!("watch stream stalled; lines so far: {lines:?}"))?;
        match chunk {
            Some(c) => buf.extend_from_slice(&c?),
            None => anyhow::bail!("watch stream ended; lines so far: {lines:?}"),
        }
    }
    let created = &lines[0]["result"];
    assert_header(&created["header"], 2);
    assert_eq!(created["created"], json!(true));
    assert!(
        created.get("watch_id").is_none(),
        "watch id 0 is omitted: {created}"
    );
    let ev = &lines[1]["result"];
    assert_header(&ev["header"], 3);
    assert_eq!(
        ev["events"],
        json!([{
            "kv": {"key": "Zm9v", "create_revision": "2", "mod_revision": "3",
                   "version": "2", "value": "Mg=="},
            "prev_kv": {"key": "Zm9v", "create_revision": "2", "mod_revision": "2",
                        "version": "1", "value": "MQ=="}
        }])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_version_metrics() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let gw = Gw::new(&etcd)?;

    let (status, body) = gw.get("/health").await?;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["health"], "true");
    only_36!("/health includes an empty reason", {
        assert_eq!(v, json!({"health": "true", "reason": ""}));
    });
    let r = gw.http.post(format!("{}/health", gw.base)).send().await?;
    assert_eq!(r.status().as_u16(), 405, "/health only allows GET");

    let (status, body) = gw.get("/version").await?;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body)?;
    let server = v["etcdserver"].as_str().expect("etcdserver").to_string();
    let cluster = v["etcdcluster"].as_str().expect("etcdcluster").to_string();
    assert!(server.starts_with("3."), "{v}");
    assert!(cluster.starts_with("3.") && cluster.ends_with(".0"), "{v}");
    only_36!("/version reports 3.6 and a storage version", {
        assert!(server.starts_with("3.6."), "{v}");
        assert_eq!(cluster, "3.6.0");
        assert_eq!(v["storage"], "3.6.0", "{v}");
    });

    let (status, body) = gw.get("/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|l| l == "etcd_server_has_leader 1"),
        "/metrics lacks `etcd_server_has_leader 1`"
    );
    assert!(body.contains("# TYPE etcd_server_has_leader gauge"));

    only_36!("/livez and /readyz answer ok", {
        for path in ["/livez", "/readyz"] {
            let (status, body) = gw.get(path).await?;
            assert_eq!((status, body.as_str()), (200, "ok\n"), "{path}");
        }
        let (status, body) = gw.get("/readyz?verbose").await?;
        assert_eq!(status, 200);
        assert!(body.contains("[+]linearizable_read ok"), "{body}");
    });
    Ok(())
}
