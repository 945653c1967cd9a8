//! Environment hygiene for child processes.

use std::process::Command;

/// Removes every inherited `ETCD_*` and `ETCDCTL_*` variable from `cmd`.
///
/// etcd maps `ETCD_<FLAG>` variables onto flags and exits when one conflicts
/// with a command-line flag; etcdctl does the same with `ETCDCTL_*`. The test
/// runner's own settings (`ETCD_BIN`, `ETCDCTL_BIN`, ...) must not leak into
/// the processes under test.
pub fn scrub(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("ETCD_") || k.starts_with("ETCDCTL_") {
            cmd.env_remove(&key);
        }
    }
}
