//! Network namespaces for partition tests (needs root and `ip` from iproute2).
//!
//! A [`NetLab`] is a private network: one "hub" namespace holding a bridge,
//! and one namespace per node, each linked to the bridge by a veth pair and
//! addressed `10.231.0.<i+1>/24`. Nothing is added to the caller's own
//! network namespace, so traffic stays inside namespaces the test created.
//! [`NetLab::isolate`] takes the hub side of a node's veth down, which cuts
//! the node off in both directions; [`NetLab::heal`] brings it back.
//!
//! Namespace names are unique per process and lab (`etcde2e-<pid>-<seq>-...`);
//! they are deleted on drop (also when a test panics), and namespaces left
//! behind by a test process that no longer exists are deleted when the next
//! lab is created.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// Prefix of every namespace a lab creates.
pub const PREFIX: &str = "etcde2e-";
/// The lab's /24 (the node `i` has `<SUBNET>.<i+1>`).
pub const SUBNET: &str = "10.231.0";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Deletes namespaces named `etcde2e-<pid>-...` whose process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// True when this process can create network namespaces (root, `ip` present).
pub fn available() -> bool {
    let name = format!(
        "{PREFIX}{}-{}-probe",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let ok = ip(&["netns", "add", &name]).is_ok();
    let _ = ip(&["netns", "del", &name]);
    ok
}

/// A private network of namespaces; see the module documentation.
pub struct NetLab {
    base: String,
    hub: String,
    nodes: Vec<String>,
    created: Vec<String>,
}

impl NetLab {
    /// Creates the hub (with bridge `br0`) and `n` node namespaces.
    pub fn new(n: usize) -> Result<Self> {
        sweep_stale();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{base}-hub");
        let mut lab = Self {
            base,
            hub: hub.clone(),
            nodes: Vec::new(),
            created: Vec::new(),
        };
        ip(&["netns", "add", &hub])?;
        lab.created.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for _ in 0..n {
            lab.add_node()?;
        }
        Ok(lab)
    }

    /// Adds one more node namespace; returns its index.
    pub fn add_node(&mut self) -> Result<usize> {
        let i = self.nodes.len();
        let ns = format!("{}-n{i}", self.base);
        ip(&["netns", "add", &ns])?;
        self.created.push(ns.clone());
        let port = format!("v{i}");
        ip(&[
            "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &self.hub, "link", "set", &port, "up"])?;
        let addr = format!("{}/24", self.ip(i));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        self.nodes.push(ns);
        Ok(i)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the lab has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The namespace name of node `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// The IPv4 address of node `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("{SUBNET}.{}", i + 1)
    }

    /// Cuts node `i` off from every other node (both directions).
    pub fn isolate(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])
    }

    /// Reconnects node `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])
    }

    /// A command that runs `program` inside node `i`'s namespace
    /// (`ip netns exec <ns> <program>`; `ip` execs it, so the child's PID is
    /// the program's).
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(i)]).arg(program);
        cmd
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
