//! Watch options that need server flags: `fragment` (large responses split under
//! `--max-request-bytes` + 512 KiB) and periodic `progress_notify`
//! (`--watch-progress-notify-interval`).

use std::time::Duration;

use base64::Engine as _;
use etcd_client::WatchOptions;
use etcd_tests::util::next_watch;
use etcd_tests::{EtcdOptions, EtcdProcess, Harness};
use futures::StreamExt;
use serde_json::{json, Value};

const VALUE_BYTES: usize = 8000;
const KEYS: usize = 100;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Reads JSON lines from a gateway watch until `want` events arrived in total.
async fn read_events(resp: reqwest::Response, want: usize) -> anyhow::Result<Vec<Value>> {
    let mut body = resp.bytes_stream();
    let mut buf = Vec::<u8>::new();
    let mut responses = Vec::new();
    let mut events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events < want {
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if text.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&text)?;
            let r = v["result"].clone();
            events += r["events"].as_array().map_or(0, |a| a.len());
            if r["events"].is_array() {
                responses.push(r);
            }
        }
        if events >= want {
            break;
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| anyhow::anyhow!("watch stalled after {events} events"))?;
        match chunk {
            Some(c) => buf.extend_from_slice(&c?),
            None => anyhow::bail!("watch stream ended after {events} events"),
        }
    }
    Ok(responses)
}

async fn watch_history(etcd: &EtcdProcess, fragment: bool) -> anyhow::Result<Vec<Value>> {
    let http = reqwest::Client::new();
    let resp = http
        .post(etcd.http_url("/v3/watch"))
        .timeout(Duration::from_secs(30))
        .json(&json!({"create_request": {
            "key": b64(b"big/"), "range_end": b64(b"big0"),
            "start_revision": "2", "fragment": fragment
        }}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    read_events(resp, KEYS).await
}

fn revisions(responses: &[Value]) -> Vec<i64> {
    responses
        .iter()
        .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            e["kv"]["mod_revision"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_splits_large_replay_only_when_asked() -> anyhow::Result<()> {
    // Limit = max-request-bytes + 512 KiB = 540,672 bytes; the replay below is ~800 KB.
    let etcd = EtcdProcess::start(EtcdOptions::default().arg("--max-request-bytes=16384"))?;
    let mut c = etcd.client().await?;
    let value = vec![b'v'; VALUE_BYTES];
    for i in 0..KEYS {
        c.put(format!("big/{i:03}"), value.clone(), None).await?; // revs 2..=101
    }
    let want: Vec<i64> = (2..2 + KEYS as i64).collect();

    let whole = watch_history(&etcd, false).await?;
    assert_eq!(whole.len(), 1, "without fragment: one response");
    assert_eq!(revisions(&whole), want);
    assert!(whole[0].get("fragment").is_none());

    let parts = watch_history(&etcd, true).await?;
    assert!(
        parts.len() >= 2,
        "fragmented into several responses: {}",
        parts.len()
    );
    let (last, rest) = parts.split_last().expect("parts");
    for p in rest {
        assert_eq!(
            p["fragment"],
            json!(true),
            "every part but the last is a fragment"
        );
        let size = serde_json::to_string(p)?.len();
        assert!(size < 2 * 540_672, "part too large: {size}");
    }
    assert!(
        last.get("fragment").is_none(),
        "the last part ends the message"
    );
    assert_eq!(revisions(&parts), want, "no event lost or reordered");
    let ids: Vec<&Value> = parts.iter().map(|p| &p["watch_id"]).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "all parts belong to one watcher"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notify_every_interval_while_idle() -> anyhow::Result<()> {
    // etcd 3.6 name; the 3.4 reference only knows the experimental one.
    let flag = if Harness::is_reference() {
        "--experimental-watch-progress-notify-interval=500ms"
    } else {
        "--watch-progress-notify-interval=500ms"
    };
    let etcd = EtcdProcess::start(EtcdOptions::default().arg(flag))?;
    let mut c = etcd.client().await?;
    c.put("p", "1", None).await?; // rev 2
    let mut plain = c.watch("q", None).await?;
    let created = next_watch(&mut plain, Duration::from_secs(5)).await?;
    assert!(created.created());
    let mut stream = c
        .watch("p", Some(WatchOptions::new().with_progress_notify()))
        .await?;
    let created = next_watch(&mut stream, Duration::from_secs(5)).await?;
    assert!(created.created());
    let id = created.watch_id();

    // Idle: a progress notification (no events, current revision) arrives.
    let p = next_watch(&mut stream, Duration::from_secs(5)).await?;
    assert!(
        p.events().is_empty() && !p.created() && !p.canceled(),
        "{p:?}"
    );
    assert_eq!(p.watch_id(), id);
    assert_eq!(p.header().map(|h| h.revision()), Some(2));

    // A write to another key moves the revision; the next notification reports it.
    c.put("other", "x", None).await?; // rev 3
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let p = next_watch(&mut stream, Duration::from_secs(5)).await?;
        assert!(p.events().is_empty(), "no events for key p: {p:?}");
        if p.header().map(|h| h.revision()) == Some(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress at rev 3"
        );
    }

    // A watcher that did not ask for progress gets nothing.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), plain.message()).await;
    assert!(
        quiet.is_err(),
        "unexpected message without progress_notify: {quiet:?}"
    );
    Ok(())
}
