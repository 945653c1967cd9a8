//! Release downloads: fetch `etcd-vX.Y.Z-linux-amd64.tar.gz` over HTTPS, verify it against
//! `SHA256SUMS` or a pinned digest, keep it in a cache for offline reuse, and take the
//! binaries out.
//!
//! A missing `SHA256SUMS` entry is a hard error (etcd's own file once lacked the
//! linux-amd64 line); a mismatch leaves neither a cached tarball nor extracted binaries.

mod extract;
mod fetch;
pub mod sums;

pub use extract::{binaries, install_binaries, BINARIES};

use std::path::{Path, PathBuf};

use crate::fsx::{self, FsError};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached or answered with an error.
    #[error("cannot fetch {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The `--ca-file` could not be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `SHA256SUMS` has no line for the tarball.
    #[error("{sums_url} has no entry for {file}; refusing an unverified download")]
    MissingEntry {
        /// Where the sums came from.
        sums_url: String,
        /// The tarball name.
        file: String,
    },
    /// The tarball's digest is not the expected one.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {actual}; nothing was installed")]
    Mismatch {
        /// The tarball name.
        file: String,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Offline mode without what it needs in the cache.
    #[error("offline: {0} is not in the cache")]
    NotCached(PathBuf),
    /// The tarball is not what a release looks like.
    #[error("bad release tarball: {reason}")]
    BadTarball {
        /// What is wrong.
        reason: String,
    },
    /// Local file trouble.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Other local I/O trouble.
    #[error("I/O error: {0}")]
    Io(String),
}

/// What to download and how to verify it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Version without `v`.
    pub version: String,
    /// Base URL (`<base>/v<ver>/<file>`).
    pub base_url: String,
    /// Pinned digest; without it `<base>/v<ver>/SHA256SUMS` is used.
    pub sha256: Option<String>,
    /// Extra trusted CA (a private mirror).
    pub ca_file: Option<PathBuf>,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Use only the cache, never the network.
    pub offline: bool,
}

impl Request {
    /// `etcd-v<ver>-linux-amd64.tar.gz`.
    pub fn file_name(&self) -> String {
        format!("etcd-v{}-linux-amd64.tar.gz", self.version)
    }

    /// The directory inside the tarball: `etcd-v<ver>-linux-amd64`.
    pub fn top_dir(&self) -> String {
        format!("etcd-v{}-linux-amd64", self.version)
    }

    fn url(&self, file: &str) -> String {
        format!(
            "{}/v{}/{file}",
            self.base_url.trim_end_matches('/'),
            self.version
        )
    }

    fn cache_path(&self, file: &str) -> PathBuf {
        self.cache_dir.join(format!("v{}", self.version)).join(file)
    }
}

/// A verified tarball in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its path in the cache.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// It came from the cache (no download).
    pub from_cache: bool,
}

async fn expected_digest(
    req: &Request,
    client: Option<&reqwest::Client>,
) -> Result<String, DownloadError> {
    if let Some(d) = &req.sha256 {
        return Ok(d.to_ascii_lowercase());
    }
    let sums_cache = req.cache_path("SHA256SUMS");
    let sums_url = req.url("SHA256SUMS");
    let text = match client {
        None => {
            let bytes = fsx::read_optional(&sums_cache)?
                .ok_or_else(|| DownloadError::NotCached(sums_cache.clone()))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some(c) => {
            let text = fetch::text(c, &sums_url).await?;
            if let Some(parent) = sums_cache.parent() {
                fsx::ensure_dir(parent, 0o755)?;
            }
            fsx::write_file(&sums_cache, text.as_bytes(), 0o644)?;
            text
        }
    };
    sums::lookup(&text, &req.file_name()).ok_or(DownloadError::MissingEntry {
        sums_url,
        file: req.file_name(),
    })
}

/// Makes sure a verified copy of the release tarball is in the cache.
///
/// Guarantees: the returned file's SHA-256 equals the expected digest; a cached copy that
/// verifies is reused without downloading; a download is written to a temporary file and
/// moved into the cache only after it verifies, so a mismatch leaves no tarball behind.
pub async fn fetch(req: &Request) -> Result<Fetched, DownloadError> {
    let client = if req.offline {
        None
    } else {
        Some(fetch::client(req.ca_file.as_deref())?)
    };
    let expected = expected_digest(req, client.as_ref()).await?;
    let file = req.file_name();
    let cached = req.cache_path(&file);
    if let Some(data) = fsx::read_optional(&cached)? {
        let actual = sums::sha256_hex(&data);
        if actual == expected {
            tracing::info!(path = %cached.display(), "using cached release");
            return Ok(Fetched {
                path: cached,
                sha256: actual,
                from_cache: true,
            });
        }
        tracing::warn!(path = %cached.display(), "cached release does not match the expected digest; downloading again");
    }
    let Some(client) = client else {
        return Err(DownloadError::NotCached(cached));
    };
    let dir = cached.parent().unwrap_or(Path::new("."));
    fsx::ensure_dir(dir, 0o755)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".download.")
        .tempfile_in(dir)
        .map_err(|e| FsError::new("create temporary file in", dir, e))?;
    let url = req.url(&file);
    tracing::info!(%url, "downloading");
    let actual = fetch::to_file(&client, &url, tmp.as_file_mut()).await?;
    if actual != expected {
        return Err(DownloadError::Mismatch {
            file,
            expected,
            actual,
        });
    }
    tmp.persist(&cached)
        .map_err(|e| FsError::new("rename into", &cached, e.error))?;
    Ok(Fetched {
        path: cached,
        sha256: actual,
        from_cache: false,
    })
}

/// Fetches (or reuses) the release and writes its binaries into `dest`.
///
/// Guarantees: nothing is written to `dest` unless the tarball verified and holds `etcd`.
pub async fn fetch_and_extract(
    req: &Request,
    dest: &Path,
) -> Result<(Fetched, Vec<PathBuf>), DownloadError> {
    let fetched = fetch(req).await?;
    let data = std::fs::read(&fetched.path).map_err(|e| FsError::new("read", &fetched.path, e))?;
    // Verify again what is actually read (the cache could change underfoot).
    let actual = sums::sha256_hex(&data);
    if actual != fetched.sha256 {
        return Err(DownloadError::Mismatch {
            file: req.file_name(),
            expected: fetched.sha256,
            actual,
        });
    }
    let bins = binaries(&data, &req.top_dir())?;
    let changed = install_binaries(&bins, dest)?;
    Ok((fetched, changed))
}
