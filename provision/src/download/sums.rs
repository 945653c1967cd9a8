//! `SHA256SUMS` files and digests.

use sha2::{Digest, Sha256};

/// The digest of `file` listed in a `SHA256SUMS` text (`<hex>  <name>` or `<hex> *<name>`
/// per line), lowercase; `None` when no line names it.
pub fn lookup(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let digest = parts.next()?;
        let name = parts.next()?.trim_start_matches('*');
        let base = name.rsplit('/').next().unwrap_or(name);
        (base == file && digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| digest.to_ascii_lowercase())
    })
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entries_in_both_styles() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let sums =
            format!("{a}  etcd-v3.5.17-darwin-amd64.zip\n{b} *./etcd-v3.5.17-linux-amd64.tar.gz\n");
        assert_eq!(
            lookup(&sums, "etcd-v3.5.17-linux-amd64.tar.gz"),
            Some("b".repeat(64))
        );
        assert_eq!(lookup(&sums, "etcd-v3.5.17-linux-arm64.tar.gz"), None);
        assert_eq!(
            lookup(
                "short  etcd-v3.5.17-linux-amd64.tar.gz",
                "etcd-v3.5.17-linux-amd64.tar.gz"
            ),
            None
        );
    }

    #[test]
    fn digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
