//! The config file formats our `etcd` (and etcd) read: TOML, `ETCD_*` env files, flags.

use super::settings::{Setting, Value};

/// `data-dir` -> `ETCD_DATA_DIR`.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// Quotes an env-file value when it holds anything but plain characters, in the double
/// quoted syntax both systemd's `EnvironmentFile=` and POSIX shells read the same way.
pub fn env_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=@+[]%".contains(&b));
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for ch in v.chars() {
        if matches!(ch, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

fn header(what: &str) -> String {
    format!("# {what}\n# Written by etcd-provision; changes are overwritten on the next render.\n")
}

/// The settings as a TOML config file for our `etcd --config-file` (keys are flag names).
pub fn to_toml(settings: &[Setting], member: &str) -> String {
    let mut out = header(&format!("etcd configuration of member {member}"));
    for s in settings {
        let v = match &s.value {
            Value::Str(x) => toml_string(x),
            Value::Bool(b) => b.to_string(),
            Value::List(l) => format!(
                "[{}]",
                l.iter()
                    .map(|x| toml_string(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(&format!("{} = {v}\n", s.flag));
    }
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The settings as an `ETCD_*` environment file (systemd `EnvironmentFile=`, or
/// `set -a; . file` in a shell).
pub fn to_env(settings: &[Setting], member: &str) -> String {
    let mut out = header(&format!("etcd environment of member {member}"));
    for s in settings {
        out.push_str(&format!(
            "{}={}\n",
            env_name(s.flag),
            env_value(&s.value.flag_text())
        ));
    }
    out
}

/// The settings as `--flag=value` arguments.
pub fn to_args(settings: &[Setting]) -> Vec<String> {
    settings
        .iter()
        .map(|s| format!("--{}={}", s.flag, s.value.flag_text()))
        .collect()
}

/// An `ETCDCTL_*` environment file: API v3, every member's client URL, and (with TLS)
/// the CA and the admin client certificate.
pub fn etcdctl_env(endpoints: &[String], tls: Option<(&str, &str, &str)>) -> String {
    let mut out = header("etcdctl environment: `set -a; . etcdctl.env; set +a`");
    out.push_str("ETCDCTL_API=3\n");
    out.push_str(&format!(
        "ETCDCTL_ENDPOINTS={}\n",
        env_value(&endpoints.join(","))
    ));
    if let Some((ca, cert, key)) = tls {
        out.push_str(&format!("ETCDCTL_CACERT={}\n", env_value(ca)));
        out.push_str(&format!("ETCDCTL_CERT={}\n", env_value(cert)));
        out.push_str(&format!("ETCDCTL_KEY={}\n", env_value(key)));
    }
    out
}

/// Parses an env file written by [`to_env`] or [`etcdctl_env`] back into pairs (comments
/// and blank lines skipped, double quotes and backslash escapes undone).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => {
                let mut s = String::new();
                let mut esc = false;
                for ch in inner.chars() {
                    if esc || ch != '\\' {
                        s.push(ch);
                        esc = false;
                    } else {
                        esc = true;
                    }
                }
                s
            }
            None => v.to_string(),
        };
        out.push((k.to_string(), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Vec<Setting> {
        vec![
            Setting {
                flag: "name",
                value: Value::Str("c0".into()),
            },
            Setting {
                flag: "data-dir",
                value: Value::Str("/var/lib/my etcd".into()),
            },
            Setting {
                flag: "listen-client-urls",
                value: Value::List(vec![
                    "https://10.0.0.1:2379".into(),
                    "https://127.0.0.1:2379".into(),
                ]),
            },
            Setting {
                flag: "client-cert-auth",
                value: Value::Bool(true),
            },
        ]
    }

    #[test]
    fn toml_parses_back_with_native_types() {
        let t: toml::Table = toml::from_str(&to_toml(&settings(), "c0")).unwrap();
        assert_eq!(t["name"].as_str(), Some("c0"));
        assert_eq!(t["client-cert-auth"].as_bool(), Some(true));
        assert_eq!(t["listen-client-urls"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn env_file_round_trips_and_quotes_spaces() {
        let text = to_env(&settings(), "c0");
        assert!(
            text.contains("ETCD_LISTEN_CLIENT_URLS=https://10.0.0.1:2379,https://127.0.0.1:2379\n")
        );
        assert!(text.contains("ETCD_DATA_DIR=\"/var/lib/my etcd\"\n"));
        let pairs = parse_env(&text);
        assert_eq!(
            pairs[1],
            ("ETCD_DATA_DIR".into(), "/var/lib/my etcd".into())
        );
        assert_eq!(pairs[3], ("ETCD_CLIENT_CERT_AUTH".into(), "true".into()));
        assert_eq!(env_value("a\"b$c"), "\"a\\\"b\\$c\"");
    }

    #[test]
    fn args() {
        assert_eq!(to_args(&settings())[3], "--client-cert-auth=true");
    }
}
