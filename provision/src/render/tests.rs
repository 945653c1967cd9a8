use super::*;
use crate::spec::{parse_str, validate};
use time::OffsetDateTime;

fn spec() -> ClusterSpec {
    validate(
        &parse_str(
            "[cluster]\ntoken = \"tok\"\n[paths]\nconfig-dir = \"/etc/etcd/{name}\"\npki-dir = \"/etc/etcd/{name}/pki\"\ndata-dir = \"/var/lib/etcd/{name}\"\n[[member]]\nname = \"a\"\nips = [\"127.0.0.1\"]\n[[member]]\nname = \"b\"\nips = [\"127.0.0.1\"]\nclient-port = 3379\npeer-port = 3380\n",
            "t",
        )
        .unwrap(),
    )
    .unwrap()
}

#[test]
fn render_writes_dirs_and_tarballs_then_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec();
    let pki = dir.path().join("pki");
    crate::pki::ensure(
        &s,
        &pki,
        crate::pki::Mode::Generate,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let opts = RenderOptions {
        unit_config: UnitConfig::Flags,
        pki_dir: Some(pki.clone()),
    };
    let r = write_all(&s, &out, &[], &Bootstrap::New, &opts).unwrap();
    assert_eq!(r.members.len(), 2);
    let b = out.join("b");
    for f in [
        "etcd.service",
        "etcd.toml",
        "etcd.env",
        "etcdctl.env",
        "manifest.toml",
        "pki/server.key",
        "pki/ca.crt",
    ] {
        assert!(b.join(f).is_file(), "{f}");
    }
    let unit = std::fs::read_to_string(b.join("etcd.service")).unwrap();
    assert!(
        unit.contains("--initial-cluster=a=https://127.0.0.1:2380,b=https://127.0.0.1:3380"),
        "{unit}"
    );
    assert!(
        unit.contains("--cert-file=/etc/etcd/b/pki/server.crt"),
        "{unit}"
    );
    let m = read_manifest(&b).unwrap();
    assert_eq!(m.data_dir, "/var/lib/etcd/b");
    let key = m
        .files
        .iter()
        .find(|f| f.source == "pki/server.key")
        .unwrap();
    assert_eq!((key.mode_bits(), key.owner), (0o600, Owner::Service));
    assert_eq!(key.dest, "/etc/etcd/b/pki/server.key");
    let env = std::fs::read_to_string(b.join("etcdctl.env")).unwrap();
    assert!(
        env.contains("ETCDCTL_ENDPOINTS=https://127.0.0.1:2379,https://127.0.0.1:3379"),
        "{env}"
    );

    // The tarball holds the same files under b/.
    let tgz = std::fs::read(out.join("b.tar.gz")).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.contains(&"b/pki/peer.key".to_string())
            && names.contains(&"b/manifest.toml".to_string()),
        "{names:?}"
    );

    let r2 = write_all(&s, &out, &[], &Bootstrap::New, &opts).unwrap();
    assert!(
        r2.members
            .iter()
            .all(|(_, _, _, changed)| changed.is_empty()),
        "{r2:?}"
    );
}

#[test]
fn missing_certificates_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let opts = RenderOptions {
        unit_config: UnitConfig::Flags,
        pki_dir: Some(dir.path().join("no-pki")),
    };
    let err = write_all(&spec(), &out, &[], &Bootstrap::New, &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("no-pki/ca.crt is missing; run `etcd-provision certs generate` first"),
        "{err}"
    );
    assert!(!out.exists());
    let err = write_all(&spec(), &out, &["zz".into()], &Bootstrap::New, &opts).unwrap_err();
    assert!(err.to_string().contains("\"zz\""), "{err}");
}
