//! Starting from a data dir that etcd's own tools restored: `etcdctl snapshot restore`
//! (etcd 3.4) and `etcdutl snapshot restore` (3.5+) write etcd's layout (the backend at
//! `member/snap/db`, a WAL holding the new membership in `member/wal` or `--wal-dir`),
//! as recovery playbooks do (kubespray's lost-quorum recovery among them). At its first
//! start on such a dir the server adopts it: the keys with their history, leases, users,
//! roles and alarms from the backend (as `etcdutl snapshot restore` of this project
//! imports them), the member ID, and the members from the WAL's entries.
//!
//! Guarantees:
//! - Only a freshly restored dir is adopted: a WAL holding nothing but the restore's
//!   member additions, all committed. A running etcd member's data dir (other entries in
//!   its WAL) is refused with an error that names the way (snapshot save, then restore),
//!   and nothing is changed.
//! - etcd's files are never deleted: `member/snap` and the WAL directory are renamed
//!   to `<name>.etcd-imported` beside them before the import, which is made in
//!   `member/db.importing` and renamed to `member/db` when complete. An interrupted
//!   adoption is redone from the renamed files at the next start.

use std::path::{Path, PathBuf};

use prost::Message as _;

use super::etcd_wal::{self, ConfChange};
use super::restore::{import_etcd, install_membership, RestoreError, Restored};
use crate::proto::etcdinternal::StoredMember;

/// Suffix of etcd's directories once set aside.
const ASIDE: &str = ".etcd-imported";

fn aside(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(ASIDE);
    PathBuf::from(s)
}

/// Where etcd's restored files are: its backend file and its WAL directory.
struct Source {
    snap_dir: PathBuf,
    wal_dir: PathBuf,
    /// Still in etcd's places (to be set aside before importing).
    in_place: bool,
}

fn find_source(data_dir: &Path, wal_dir: &Path) -> Option<Source> {
    let snap_dir = data_dir.join("member").join("snap");
    if snap_dir.join("db").is_file() {
        return Some(Source {
            snap_dir,
            wal_dir: wal_dir.to_path_buf(),
            in_place: true,
        });
    }
    let (snap_aside, wal_aside) = (aside(&snap_dir), aside(wal_dir));
    snap_aside.join("db").is_file().then_some(Source {
        snap_dir: snap_aside,
        wal_dir: wal_aside,
        in_place: false,
    })
}

/// etcd's JSON of a member, as a restore writes it into its WAL.
#[derive(serde::Deserialize)]
struct MemberJson {
    id: u64,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(default)]
    name: String,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

/// The members a restored WAL adds, or why the WAL is not a fresh restore's.
fn restored_members(wal: &etcd_wal::EtcdWal) -> Result<Vec<StoredMember>, String> {
    let refuse = |why: &str| {
        format!(
            "{why}: this is not a data dir freshly restored by etcd's snapshot restore, and a running etcd member's data dir cannot be adopted in place; take a backup with `etcdctl snapshot save` and restore it with `etcdutl snapshot restore` of this server"
        )
    };
    let mut members = Vec::new();
    for e in &wal.entries {
        if e.kind != 1 {
            return Err(refuse(&format!(
                "raft entry {} is not a member addition",
                e.index
            )));
        }
        let cc = ConfChange::decode(e.data.as_slice()).map_err(|err| err.to_string())?;
        if cc.kind != 0 && cc.kind != 3 {
            return Err(refuse(&format!(
                "raft entry {} is not a member addition",
                e.index
            )));
        }
        let m: MemberJson = serde_json::from_slice(&cc.context)
            .map_err(|err| format!("raft entry {}: member: {err}", e.index))?;
        if m.id != cc.node_id {
            return Err(format!("raft entry {}: member ID mismatch", e.index));
        }
        members.push(StoredMember {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner || cc.kind == 3,
        });
    }
    let last = wal.entries.last().map_or(0, |e| e.index);
    if members.is_empty() || wal.commit != last {
        return Err(refuse(
            "the WAL's entries are not all committed member additions",
        ));
    }
    if !members.iter().any(|m| m.id == wal.node_id) {
        return Err(format!(
            "the WAL's member {:x} is not among its members",
            wal.node_id
        ));
    }
    Ok(members)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Adopts an etcd data dir restored by etcd's tools (see the module documentation) when
/// `data_dir` holds one and no store of this server yet; `Ok(None)` when there is
/// nothing to adopt.
pub fn adopt(data_dir: &Path, wal_dir: &Path) -> Result<Option<Restored>, RestoreError> {
    let member = data_dir.join("member");
    let db = member.join("db");
    if db.exists() {
        return Ok(None);
    }
    let Some(src) = find_source(data_dir, wal_dir) else {
        return Ok(None);
    };
    let wal = etcd_wal::read_dir(&src.wal_dir).map_err(RestoreError::Invalid)?;
    let members = restored_members(&wal).map_err(RestoreError::Invalid)?;
    let backend = std::fs::read(src.snap_dir.join("db"))?;
    super::bbolt::Bolt::open(&backend).map_err(RestoreError::Invalid)?;
    if src.in_place {
        for from in [&src.snap_dir, &src.wal_dir] {
            let to = aside(from);
            if to.exists() {
                return Err(RestoreError::Invalid(format!(
                    "cannot set etcd's {} aside: {} exists",
                    from.display(),
                    to.display()
                )));
            }
        }
        std::fs::rename(&src.snap_dir, aside(&src.snap_dir))?;
        std::fs::rename(&src.wal_dir, aside(&src.wal_dir))?;
        sync_dir(&member)?;
        if let Some(parent) = src.wal_dir.parent() {
            sync_dir(parent)?;
        }
    }
    let importing = member.join("db.importing");
    if importing.exists() {
        std::fs::remove_dir_all(&importing)?;
    }
    import_etcd(&backend, &importing)?;
    let restored = install_membership(&importing, wal.node_id, members)?;
    std::fs::rename(&importing, &db)?;
    sync_dir(&member)?;
    if restored.cluster_id != wal.cluster_id {
        tracing::warn!(
            wal_cluster_id = %format!("{:x}", wal.cluster_id),
            cluster_id = %format!("{:x}", restored.cluster_id),
            "the cluster ID derived from the restored members differs from the one etcd's WAL records"
        );
    }
    tracing::info!(
        member_id = %format!("{:x}", restored.member_id),
        revision = restored.revision,
        etcd_files = %format!("{} and {}", aside(&data_dir.join("member").join("snap")).display(), aside(wal_dir).display()),
        "adopted a data dir restored by etcd's snapshot restore; etcd's files were set aside and may be removed"
    );
    Ok(Some(restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_adopt_in_an_empty_or_own_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("member").join("wal");
        assert!(adopt(dir.path(), &wal).unwrap().is_none());
        std::fs::create_dir_all(dir.path().join("member").join("db")).unwrap();
        std::fs::create_dir_all(dir.path().join("member").join("snap")).unwrap();
        std::fs::write(dir.path().join("member").join("snap").join("db"), b"x").unwrap();
        assert!(adopt(dir.path(), &wal).unwrap().is_none());
    }

    #[test]
    fn a_log_with_other_entries_is_refused() {
        let entry = |kind: i32, index: u64, data: Vec<u8>| etcd_wal::Entry {
            kind,
            term: 1,
            index,
            data,
        };
        let add = ConfChange {
            node_id: 5,
            context: br#"{"id":5,"peerURLs":["http://a:2380"],"name":"a"}"#.to_vec(),
            ..Default::default()
        };
        let mut wal = etcd_wal::EtcdWal {
            node_id: 5,
            cluster_id: 1,
            entries: vec![entry(1, 1, add.encode_to_vec())],
            commit: 1,
        };
        let members = restored_members(&wal).unwrap();
        assert_eq!((members[0].id, members[0].name.as_str()), (5, "a"));
        wal.entries.push(entry(0, 2, b"put".to_vec()));
        wal.commit = 2;
        let e = restored_members(&wal).unwrap_err();
        assert!(e.contains("etcdctl snapshot save"), "{e}");
        wal.entries.pop();
        wal.commit = 0;
        assert!(restored_members(&wal).is_err());
    }
}
