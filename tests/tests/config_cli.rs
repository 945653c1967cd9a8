//! Configuration from the command line, `ETCD_*` environment variables and a
//! TOML `--config-file`, observed on running servers: precedence (flag, then
//! env, then file, then default), error messages naming the flag/key at fault,
//! flags that are accepted with a warning, and `--version`.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use etcd_tests::extra::{run_etcd, RawEtcd};
use etcd_tests::ports::free_port;

/// `--listen-client-urls`/`--advertise-client-urls` flags on a free port.
fn url_flags(port: u16) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    vec![
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
    ]
}

fn member_name(port: u16) -> String {
    let o = etcd_tests::etcdctl::run(
        &format!("127.0.0.1:{port}"),
        &["member", "list", "-w", "json"],
        None,
    );
    let j = o.json();
    j["members"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no member name in {j}"))
        .to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts a server in a fresh directory with the name given (or not) by flag,
/// environment and config file; returns the name `member list` reports and the
/// `*.etcd` directories created in the working directory.
fn name_from(
    flag: Option<&str>,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<(String, Vec<String>)> {
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let mut args = url_flags(port);
    if let Some(n) = flag {
        args.push(format!("--name={n}"));
    }
    let cfg = etcd.dir().join("etcd.toml");
    if let Some(n) = file {
        std::fs::write(&cfg, format!("name = \"{n}\"\n"))?;
        args.push(format!("--config-file={}", cfg.display()));
    }
    let env: Vec<(&str, &str)> = env.map(|n| vec![("ETCD_NAME", n)]).unwrap_or_default();
    etcd.start(&args, &env)?;
    let name = member_name(port);
    let dirs = entries(etcd.dir())
        .into_iter()
        .filter(|e| e.ends_with(".etcd"))
        .collect();
    Ok((name, dirs))
}

#[test]
fn name_flag_beats_env_and_file() -> Result<()> {
    let (name, dirs) = name_from(Some("from-flag"), Some("from-env"), Some("from-file"))?;
    assert_eq!(name, "from-flag");
    assert_eq!(
        dirs,
        vec!["from-flag.etcd"],
        "default data dir follows the winning name"
    );
    Ok(())
}

#[test]
fn name_env_beats_file() -> Result<()> {
    let (name, dirs) = name_from(None, Some("from-env"), Some("from-file"))?;
    assert_eq!(name, "from-env");
    assert_eq!(dirs, vec!["from-env.etcd"]);
    Ok(())
}

#[test]
fn name_file_beats_default() -> Result<()> {
    let (name, dirs) = name_from(None, None, Some("from-file"))?;
    assert_eq!(name, "from-file");
    assert_eq!(dirs, vec!["from-file.etcd"]);
    Ok(())
}

#[test]
fn name_default() -> Result<()> {
    let (name, dirs) = name_from(None, None, None)?;
    assert_eq!(name, "default");
    assert_eq!(dirs, vec!["default.etcd"]);
    Ok(())
}

#[test]
fn data_dir_precedence() -> Result<()> {
    // env beats file.
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let cfg = etcd.dir().join("etcd.toml");
    std::fs::write(&cfg, format!("data-dir = \"{}\"\n", etcd.path("file-dir")))?;
    let mut args = url_flags(port);
    args.push(format!("--config-file={}", cfg.display()));
    let env_dir = etcd.path("env-dir");
    etcd.start(&args, &[("ETCD_DATA_DIR", env_dir.as_str())])?;
    assert!(
        Path::new(&env_dir).join("member").is_dir(),
        "env data dir used"
    );
    assert!(
        !etcd.dir().join("file-dir").exists(),
        "file data dir unused: {:?}",
        entries(etcd.dir())
    );
    assert!(!etcd.dir().join("default.etcd").exists());
    etcd.sigterm()?;

    // flag beats env and file; the config file also comes from the environment.
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let cfg = etcd.dir().join("etcd.toml");
    std::fs::write(&cfg, format!("data-dir = \"{}\"\n", etcd.path("file-dir")))?;
    let mut args = url_flags(port);
    args.push(format!("--data-dir={}", etcd.path("flag-dir")));
    let env_dir = etcd.path("env-dir");
    let cfg_s = cfg.display().to_string();
    etcd.start(
        &args,
        &[
            ("ETCD_DATA_DIR", env_dir.as_str()),
            ("ETCD_CONFIG_FILE", cfg_s.as_str()),
        ],
    )?;
    assert!(
        etcd.dir().join("flag-dir").join("member").is_dir(),
        "flag data dir used"
    );
    assert_eq!(
        entries(etcd.dir())
            .into_iter()
            .filter(|e| e.ends_with("-dir") || e.ends_with(".etcd"))
            .collect::<Vec<_>>(),
        vec!["flag-dir"]
    );

    // file beats default.
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let cfg = etcd.dir().join("etcd.toml");
    std::fs::write(&cfg, format!("data-dir = \"{}\"\n", etcd.path("file-dir")))?;
    let mut args = url_flags(port);
    args.push(format!("--config-file={}", cfg.display()));
    etcd.start(&args, &[])?;
    assert!(
        etcd.dir().join("file-dir").join("member").is_dir(),
        "file data dir used"
    );
    assert!(!etcd.dir().join("default.etcd").exists());
    Ok(())
}

#[test]
fn listen_client_urls_from_env() -> Result<()> {
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = etcd.path("data");
    etcd.start(
        &[format!("--data-dir={data}")],
        &[
            ("ETCD_LISTEN_CLIENT_URLS", url.as_str()),
            ("ETCD_ADVERTISE_CLIENT_URLS", url.as_str()),
        ],
    )?;
    let endpoint = format!("127.0.0.1:{port}");
    assert_eq!(
        etcd_tests::etcdctl::run(&endpoint, &["put", "k", "v"], None).ok(),
        "OK\n"
    );
    let j = etcd_tests::etcdctl::run(&endpoint, &["member", "list", "-w", "json"], None).json();
    assert_eq!(j["members"][0]["clientURLs"], serde_json::json!([url]));
    Ok(())
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn bad_value_names_the_flag() {
    let d = scratch();
    let o = run_etcd(
        &["--snapshot-count", "abc"],
        &[],
        d.path(),
        Duration::from_secs(10),
    );
    o.assert_failure();
    assert!(
        o.stderr.contains("--snapshot-count"),
        "stderr must name --snapshot-count: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("abc"),
        "stderr shows the bad value: {}",
        o.stderr
    );
    assert!(
        entries(d.path()).is_empty(),
        "nothing created: {:?}",
        entries(d.path())
    );

    // The same through the environment names the variable.
    let o = run_etcd(
        &[],
        &[("ETCD_SNAPSHOT_COUNT", "abc")],
        d.path(),
        Duration::from_secs(10),
    );
    o.assert_failure();
    assert!(
        o.stderr.contains("ETCD_SNAPSHOT_COUNT"),
        "stderr must name ETCD_SNAPSHOT_COUNT: {}",
        o.stderr
    );
}

#[test]
fn misspelled_flag_is_refused() {
    let d = scratch();
    let o = run_etcd(&["--nmae", "x"], &[], d.path(), Duration::from_secs(10));
    o.assert_failure();
    assert!(
        o.stderr.contains("nmae"),
        "stderr must name the flag: {}",
        o.stderr
    );
    assert!(
        entries(d.path()).is_empty(),
        "nothing created: {:?}",
        entries(d.path())
    );
}

#[test]
fn unknown_config_file_key_is_refused() {
    let d = scratch();
    let cfg = d.path().join("etcd.toml");
    std::fs::write(&cfg, "name = \"x\"\nsnapshot-cuont = 5\n").expect("write config");
    let cfg_s = cfg.display().to_string();
    let o = run_etcd(
        &["--config-file", &cfg_s],
        &[],
        d.path(),
        Duration::from_secs(10),
    );
    o.assert_failure();
    assert!(
        o.stderr.contains("snapshot-cuont"),
        "stderr must name the key: {}",
        o.stderr
    );
    assert!(!d.path().join("x.etcd").exists());
}

#[test]
fn version_flag() {
    let d = scratch();
    let o = run_etcd(&["--version"], &[], d.path(), Duration::from_secs(10));
    o.assert_success();
    let first = o.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("etcd Version: 3.6."),
        "first line: {first:?}\n{}",
        o.stdout
    );
    assert!(
        o.stdout.lines().any(|l| l.starts_with("Git SHA:")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.lines().any(|l| l.starts_with("Go OS/Arch:")),
        "{}",
        o.stdout
    );
    assert!(entries(d.path()).is_empty(), "--version starts nothing");
}

/// Flags etcd has but this server does not act on are accepted, and the log
/// warns naming each one.
#[test]
fn ignored_flags_start_with_a_warning() -> Result<()> {
    let mut etcd = RawEtcd::new()?;
    let port = free_port();
    let mut args = url_flags(port);
    args.push(format!("--data-dir={}", etcd.path("data")));
    args.push("--max-wals".to_string());
    args.push("5".to_string());
    args.push("--experimental-initial-corrupt-check".to_string());
    etcd.start(&args, &[])?;
    assert_eq!(
        etcd_tests::etcdctl::run(&format!("127.0.0.1:{port}"), &["put", "k", "v"], None).ok(),
        "OK\n"
    );
    let logs = etcd.logs();
    for flag in ["--max-wals", "--experimental-initial-corrupt-check"] {
        let warned = logs.lines().any(|l| {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(l) else {
                return false;
            };
            j["level"] == "warn" && l.contains(flag)
        });
        assert!(warned, "no warn-level log line naming {flag}:\n{logs}");
    }
    Ok(())
}
