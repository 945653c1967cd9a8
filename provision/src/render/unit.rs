//! The systemd unit of a member.

use std::path::Path;

use super::formats::to_args;
use super::settings::Setting;

/// How the unit hands the settings to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitConfig {
    /// `ExecStart=etcd --flag=value ...` (works with every etcd version; the default).
    Flags,
    /// `EnvironmentFile=<config-dir>/etcd.env` and a bare `ExecStart=etcd`.
    EnvFile,
    /// `ExecStart=etcd --config-file=<config-dir>/etcd.toml` (this project's etcd only).
    ConfigFile,
}

impl UnitConfig {
    /// Parses `flags`, `env-file` or `config-file`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "flags" => Some(Self::Flags),
            "env-file" => Some(Self::EnvFile),
            "config-file" => Some(Self::ConfigFile),
            _ => None,
        }
    }
}

/// Quotes one word of a systemd command line: `%` and `$` are escaped (`%%`, `$$`), and
/// words with spaces, quotes or backslashes are double-quoted.
pub fn exec_word(w: &str) -> String {
    let escaped = w.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty() || escaped.contains([' ', '\t', '"', '\'', '\\', ';']) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// Inputs of [`render_unit`].
pub struct UnitInput<'a> {
    /// Member name (for the description).
    pub member: &'a str,
    /// The etcd binary.
    pub etcd_bin: &'a Path,
    /// Service user and group.
    pub user: &'a str,
    /// Service group.
    pub group: &'a str,
    /// Data directory (the only writable path under the sandbox).
    pub data_dir: &'a Path,
    /// Config directory (for `EnvFile`/`ConfigFile`).
    pub config_dir: &'a Path,
    /// The member's settings.
    pub settings: &'a [Setting],
    /// How settings are passed.
    pub config: UnitConfig,
}

/// Renders the unit.
///
/// Guarantees: `Type=notify` (etcd reports readiness once it has joined the cluster), so
/// `TimeoutStartSec=infinity` lets a first member wait for quorum while its peers start
/// (start every member of a new cluster at once, or use `systemctl start --no-block`);
/// `Restart=on-failure`, `LimitNOFILE=65536`, runs as the service user, and a sandbox in
/// which only the data directory is writable.
pub fn render_unit(i: &UnitInput<'_>) -> String {
    let bin = exec_word(&i.etcd_bin.display().to_string());
    let mut exec = format!("ExecStart={bin}");
    let mut env_line = String::new();
    match i.config {
        UnitConfig::Flags => {
            for a in to_args(i.settings) {
                exec.push_str(" \\\n    ");
                exec.push_str(&exec_word(&a));
            }
        }
        UnitConfig::EnvFile => {
            env_line = format!(
                "EnvironmentFile={}\n",
                i.config_dir.join("etcd.env").display()
            );
        }
        UnitConfig::ConfigFile => {
            exec.push(' ');
            exec.push_str(&exec_word(&format!(
                "--config-file={}",
                i.config_dir.join("etcd.toml").display()
            )));
        }
    }
    format!(
        "# Written by etcd-provision; changes are overwritten on the next render.
[Unit]
Description=etcd key-value store (member {member})
Documentation=https://etcd.io/docs/
Wants=network-online.target
After=network-online.target local-fs.target time-sync.target

[Service]
Type=notify
User={user}
Group={group}
{env_line}{exec}
Restart=on-failure
RestartSec=5s
# A new cluster's first member reports ready only once a quorum has formed.
TimeoutStartSec=infinity
LimitNOFILE=65536
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths={data_dir}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
",
        member = i.member,
        user = i.user,
        group = i.group,
        data_dir = exec_word(&i.data_dir.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::settings::Value;

    #[test]
    fn flags_are_continued_lines_and_escaped() {
        let settings = vec![
            Setting {
                flag: "name",
                value: Value::Str("c0".into()),
            },
            Setting {
                flag: "data-dir",
                value: Value::Str("/var/lib/etcd 100%".into()),
            },
        ];
        let u = render_unit(&UnitInput {
            member: "c0",
            etcd_bin: Path::new("/usr/local/bin/etcd"),
            user: "etcd",
            group: "etcd",
            data_dir: Path::new("/var/lib/etcd"),
            config_dir: Path::new("/etc/etcd"),
            settings: &settings,
            config: UnitConfig::Flags,
        });
        assert!(u.contains("ExecStart=/usr/local/bin/etcd \\\n    --name=c0 \\\n    \"--data-dir=/var/lib/etcd 100%%\"\n"), "{u}");
        assert!(u.contains("Type=notify\n") && u.contains("User=etcd\n"));
        let u = render_unit(&UnitInput {
            config: UnitConfig::EnvFile,
            settings: &[],
            ..UnitInput {
                member: "c0",
                etcd_bin: Path::new("/usr/local/bin/etcd"),
                user: "etcd",
                group: "etcd",
                data_dir: Path::new("/var/lib/etcd"),
                config_dir: Path::new("/etc/etcd"),
                settings: &[],
                config: UnitConfig::Flags,
            }
        });
        assert!(
            u.contains("EnvironmentFile=/etc/etcd/etcd.env\nExecStart=/usr/local/bin/etcd\n"),
            "{u}"
        );
    }
}
