//! Small helpers shared by the API tests.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::{Client, GetResponse, KeyValue, WatchResponse, WatchStream};

/// The keys of `resp`, lossily decoded as UTF-8, in response order.
pub fn keys(resp: &GetResponse) -> Vec<String> {
    resp.kvs().iter().map(key_of).collect()
}

/// `(key, value)` pairs of `resp`, lossily decoded as UTF-8.
pub fn pairs(resp: &GetResponse) -> Vec<(String, String)> {
    resp.kvs()
        .iter()
        .map(|kv| (key_of(kv), String::from_utf8_lossy(kv.value()).into_owned()))
        .collect()
}

/// The key of `kv`, lossily decoded.
pub fn key_of(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

/// The header revision of a `Range` on a key nobody uses: the store's current revision.
pub async fn current_revision(client: &mut Client) -> Result<i64> {
    let r = client.get("\u{1}e2e-revision-probe", None).await?;
    Ok(r.header()
        .context("range response without header")?
        .revision())
}

/// The next message on a watch stream, failing after `timeout` or when the
/// stream ends.
pub async fn next_watch(stream: &mut WatchStream, timeout: Duration) -> Result<WatchResponse> {
    match tokio::time::timeout(timeout, stream.message()).await {
        Err(_) => anyhow::bail!("no watch response within {timeout:?}"),
        Ok(Err(e)) => Err(e).context("watch stream error"),
        Ok(Ok(None)) => anyhow::bail!("watch stream ended"),
        Ok(Ok(Some(r))) => Ok(r),
    }
}

/// Asserts that no watch response arrives within `quiet`.
pub async fn expect_no_watch(stream: &mut WatchStream, quiet: Duration) -> Result<()> {
    match tokio::time::timeout(quiet, stream.message()).await {
        Err(_) => Ok(()),
        Ok(r) => anyhow::bail!("unexpected watch message: {r:?}"),
    }
}

/// Panics if a line of the server's `log` says `flag` "is accepted but has no effect yet":
/// for tests of flags the server acts on.
pub fn assert_acted_on(log: &str, flag: &str) {
    let said = log
        .lines()
        .find(|l| l.contains(flag) && l.contains("has no effect"));
    assert!(
        said.is_none(),
        "{flag} is acted on, yet the log says otherwise: {}",
        said.unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "--metrics is acted on")]
    fn a_no_effect_warning_for_the_flag_fails() {
        let log =
            r#"{"level":"warn","msg":"flag is accepted but has no effect yet","flag":"--metrics"}"#;
        super::assert_acted_on(log, "--metrics");
    }

    #[test]
    fn other_flags_warnings_pass() {
        let log = r#"{"level":"warn","msg":"flag is accepted but has no effect yet","flag":"--enable-pprof"}"#;
        super::assert_acted_on(log, "--metrics");
    }
}
