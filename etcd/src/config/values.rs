//! Parsers for flag values, following Go's `flag` package and etcd's flag types.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::parse_go_duration;
use crate::auth::jwt::JwtOptions;

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected a boolean (true or false)".to_string()),
    }
}

/// Go's `strconv.ParseUint(s, 0, bits)`: decimal, `0x` hex, `0o`/leading-`0` octal,
/// `0b` binary, `_` digit separators.
pub(crate) fn parse_uint(s: &str, bits: u32) -> Result<u64, String> {
    let (digits, radix) = if let Some(r) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (r, 16)
    } else if let Some(r) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (r, 2)
    } else if let Some(r) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (r, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !cleaned.chars().all(|c| c.is_digit(radix))
    {
        return Err("expected an unsigned integer".to_string());
    }
    let v = u64::from_str_radix(&cleaned, radix).map_err(|_| "value out of range".to_string())?;
    if bits < 64 && v >= (1u64 << bits) {
        return Err("value out of range".to_string());
    }
    Ok(v)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_int(s: &str) -> Result<i64, String> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mag = parse_uint(rest, 64).map_err(|e| e.replace("an unsigned", "an"))?;
    if neg {
        if mag == 1u64 << 63 {
            return Ok(i64::MIN);
        }
        i64::try_from(mag)
            .map(|v| -v)
            .map_err(|_| "value out of range".to_string())
    } else {
        i64::try_from(mag).map_err(|_| "value out of range".to_string())
    }
}

/// A comma-separated list: entries trimmed, empty entries dropped.
pub(crate) fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Like [`parse_list`] but sorted and de-duplicated (etcd's `UniqueStringsValue`).
pub(crate) fn parse_unique_list(s: &str) -> Vec<String> {
    let mut v = parse_list(s);
    v.sort();
    v.dedup();
    v
}

/// The authority (`host:port`) of a `scheme://authority/...` string and what follows it.
fn split_authority(raw: &str) -> Option<(&str, &str)> {
    let after = &raw[raw.find("://")? + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((&after[..end], &after[end..]))
}

/// One URL as etcd's `types.NewURLs` accepts it: scheme `http`, `https`, `unix` or
/// `unixs`; for http(s) an explicit `host:port` and no path.
pub(crate) fn parse_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {
            let (authority, rest) = split_authority(raw).ok_or_else(|| {
                format!("URL address does not have the form \"host:port\": {raw}")
            })?;
            let host_port = authority.rsplit('@').next().unwrap_or(authority);
            let has_port = if let Some(v6) = host_port.strip_prefix('[') {
                v6.split_once(']')
                    .is_some_and(|(_, after)| after.starts_with(':'))
            } else {
                host_port.contains(':')
            };
            if !has_port || url.host_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "URL address does not have the form \"host:port\": {raw}"
                ));
            }
            if !rest.is_empty() && !rest.starts_with('?') && !rest.starts_with('#') {
                return Err(format!("URL must not contain a path: {raw}"));
            }
            Ok(url)
        }
        "unix" | "unixs" => Ok(url),
        _ => Err(format!(
            "URL scheme must be http, https, unix, or unixs: {raw}"
        )),
    }
}

/// A comma-separated URL list, sorted and de-duplicated by their etcd spelling
/// (etcd's `UniqueURLs`). Empty entries are skipped, so `""` is an empty list.
pub(crate) fn parse_urls(s: &str) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        urls.push(parse_url(raw)?);
    }
    urls.sort_by_key(super::etcd_url_string);
    urls.dedup_by(|a, b| super::etcd_url_string(a) == super::etcd_url_string(b));
    Ok(urls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("yes").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn go_integers() {
        assert_eq!(parse_uint("10000", 64), Ok(10000));
        assert_eq!(parse_uint("0x10", 64), Ok(16));
        assert_eq!(parse_uint("010", 64), Ok(8));
        assert_eq!(parse_uint("1_000", 64), Ok(1000));
        assert_eq!(parse_uint("0", 64), Ok(0));
        assert!(parse_uint("-1", 64).is_err());
        assert!(parse_uint("abc", 64).is_err());
        assert!(parse_uint("4294967296", 32).is_err());
        assert_eq!(parse_uint("4294967295", 32), Ok(u64::from(u32::MAX)));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("+5"), Ok(5));
        assert!(parse_int("9223372036854775808").is_err());
    }

    #[test]
    fn urls() {
        let v = parse_urls("http://b:2379, http://a:2379,http://a:2379").unwrap();
        let s: Vec<String> = v.iter().map(super::super::etcd_url_string).collect();
        assert_eq!(s, ["http://a:2379", "http://b:2379"]);
        assert!(parse_urls("").unwrap().is_empty());
        assert!(parse_url("http://[::1]:2379").is_ok());
        assert!(parse_url("unix://localhost:2379").is_ok());
        assert!(parse_url("http://localhost")
            .unwrap_err()
            .contains("host:port"));
        assert!(parse_url("http://localhost:2379/x")
            .unwrap_err()
            .contains("path"));
        assert!(parse_url("ftp://localhost:21")
            .unwrap_err()
            .contains("scheme"));
        assert!(parse_url("localhost:2379").is_err());
    }
}

/// Parses `--auth-token`: `Ok(None)` for `simple`, the options of `jwt,pub-key=<file>,
/// priv-key=<file>,sign-method=<alg>[,ttl=<duration>]` (etcd's names; the files are read
/// when the server starts). Errors name the bad option.
pub fn parse_auth_token(value: &str) -> Result<Option<JwtOptions>, String> {
    let mut parts = value.split(',').map(str::trim);
    match parts.next() {
        Some("simple") => return Ok(None),
        Some("jwt") => {}
        other => {
            return Err(format!(
                "unknown token type {:?} (must be simple or jwt)",
                other.unwrap_or("")
            ))
        }
    }
    let (mut pub_key, mut priv_key, mut method, mut ttl) = (None, None, None, None);
    for p in parts.filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("jwt option {p:?} is not key=value"))?;
        match k {
            "pub-key" => pub_key = Some(PathBuf::from(v)),
            "priv-key" => priv_key = Some(PathBuf::from(v)),
            "sign-method" => {
                if crate::auth::jwt::algorithm(v).is_none() {
                    return Err(format!("jwt sign-method {v:?} is not supported"));
                }
                method = Some(v.to_string());
            }
            "ttl" => ttl = Some(parse_go_duration(v).map_err(|e| format!("jwt ttl {v:?}: {e}"))?),
            _ => return Err(format!("unknown jwt option {k:?}")),
        }
    }
    Ok(Some(JwtOptions {
        pub_key: pub_key.ok_or("jwt needs pub-key=<file>")?,
        priv_key,
        sign_method: method.ok_or("jwt needs sign-method=<algorithm>")?,
        ttl: ttl.unwrap_or(Duration::from_secs(300)),
    }))
}

#[cfg(test)]
mod auth_token_tests {
    use super::*;

    #[test]
    fn options_are_parsed_as_etcd_names_them() {
        assert_eq!(parse_auth_token("simple"), Ok(None));
        let o = parse_auth_token("jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256,ttl=10m")
            .unwrap()
            .unwrap();
        assert_eq!(o.pub_key, PathBuf::from("/k.pub"));
        assert_eq!(o.priv_key, Some(PathBuf::from("/k")));
        assert_eq!(o.ttl, Duration::from_secs(600));
        let o = parse_auth_token("jwt,pub-key=/k.pub,sign-method=ES256")
            .unwrap()
            .unwrap();
        assert_eq!((o.priv_key, o.ttl), (None, Duration::from_secs(300)));
        for (bad, says) in [
            ("oauth", "unknown token type"),
            ("jwt,sign-method=RS256", "pub-key"),
            ("jwt,pub-key=/k", "sign-method"),
            ("jwt,pub-key=/k,sign-method=XX1", "not supported"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=soon", "ttl"),
            (
                "jwt,pub-key=/k,sign-method=RS256,color=red",
                "unknown jwt option",
            ),
        ] {
            let e = parse_auth_token(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
