//! HTTPS fetching with reqwest: optional private CA, a progress bar on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::DownloadError;

/// Builds the HTTP client: rustls with the web PKI roots, plus `ca_file` when given.
pub fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, DownloadError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("etcd-provision/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| DownloadError::CaFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| DownloadError::CaFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(DownloadError::CaFile {
                path: path.to_path_buf(),
                reason: "no certificate in file".into(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| DownloadError::Http {
        url: String::new(),
        reason: crate::errtext::chain(&e),
    })
}

async fn get(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, DownloadError> {
    let http = |reason: String| DownloadError::Http {
        url: url.to_string(),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(crate::errtext::chain(&e)))?;
    if !resp.status().is_success() {
        return Err(http(format!("HTTP {}", resp.status())));
    }
    Ok(resp)
}

/// Fetches a small text document (SHA256SUMS).
pub async fn text(client: &reqwest::Client, url: &str) -> Result<String, DownloadError> {
    get(client, url)
        .await?
        .text()
        .await
        .map_err(|e| DownloadError::Http {
            url: url.to_string(),
            reason: crate::errtext::chain(&e),
        })
}

/// Streams `url` into `out`, returning the SHA-256 (hex) of what was written. Shows a
/// progress bar when stderr is a terminal.
pub async fn to_file(
    client: &reqwest::Client,
    url: &str,
    out: &mut std::fs::File,
) -> Result<String, DownloadError> {
    let resp = get(client, url).await?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(resp.content_length().unwrap_or(0));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        Some(bar)
    } else {
        None
    };
    let mut hasher = Sha256::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| DownloadError::Http {
            url: url.to_string(),
            reason: crate::errtext::chain(&e),
        })?;
        hasher.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| DownloadError::Io(e.to_string()))?;
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.sync_all()
        .map_err(|e| DownloadError::Io(e.to_string()))?;
    Ok(hex::encode(hasher.finalize()))
}
