#!/usr/bin/env python3
"""Side-by-side benchmark of Debian's etcd and this project's etcd with etcd's own load tool.

Starts both servers side by side on loopback, each with fresh data dirs, and runs the same
suite of etcd's `benchmark` tool against them, every test on one and then on the other
(A B, then B A for the next test, ...; the idle one must be quiet before each measurement),
for every round; then prints one table (medians over the rounds) and writes it into
BENCHMARKS.md between the `<!-- bench:begin -->` and `<!-- bench:end -->` markers (text
outside them is kept).

Usage: python3 tests/bench/bench.py [--ours PATH] [--etcd PATH] [--rounds N] [--out DIR]
                                    [--report FILE] [--smoke] [--no-check-perf]
                                    [--keep-data]
  --ours     our etcd binary (default: $CARGO_TARGET_DIR or target, release/etcd)
  --etcd     the reference server (default /usr/bin/etcd, Debian's etcd-server 3.4)
  --rounds   rounds (default 2); each round starts both servers once per configuration
  --out      raw outputs: <out>/<round>/<config>/<server>/<test>.txt, server logs, metrics
  --report   the markdown file to write the table into (default BENCHMARKS.md)
  --keep-data  keep each server's data dir after its run (by default it is removed once the
             server has stopped: a full run writes gigabytes; logs and outputs are kept)
  --smoke    tiny request counts and one round: checks that the harness works (CI), measures
             nothing
Environment: BENCH (the benchmark binary, default /var/tmp/etcd-benchmark/etcd-benchmark),
ETCDCTL (default /usr/bin/etcdctl).
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RANGE_KEY = "bench-range-key"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
KEEP_DATA = False  # --keep-data


# --- the suite -------------------------------------------------------------------------

class Test:
    """One benchmark invocation: its row name, tool arguments and operation count."""

    def __init__(self, name, title, args, ops, section=None, goal=None, leader_only=False):
        self.name, self.title, self.args, self.ops = name, title, args, ops
        self.section, self.goal, self.leader_only = section, goal, leader_only


def put(conns, clients, total, space):
    return [f"--conns={conns}", f"--clients={clients}", "put", "--key-size=8",
            "--sequential-keys", f"--key-space-size={space}", f"--total={total}",
            "--val-size=256"]


def rng(conns, clients, consistency, total):
    return [f"--conns={conns}", f"--clients={clients}", "range", RANGE_KEY,
            f"--consistency={consistency}", f"--total={total}"]


def suite(smoke, members):
    """The tests, in run order. `rss` (memory after 100k keys) is measured after `b`."""
    s = 50 if smoke else 1  # smoke divides every count
    n1, n10 = 10000 // s, 100000 // s
    g2 = ("ratio", 2.0)
    tests = [
        Test("cf", "range 10 conns/100 clients, linearizable, fresh store", rng(10, 100, "l", n10), n10, goal=g2),
        Test("df", "range 10/100, serializable, fresh store", rng(10, 100, "s", n10), n10, goal=g2),
        Test("r1l", "range 1 conn/1 client, linearizable", rng(1, 1, "l", n1), n1),
        Test("r1s", "range 1/1, serializable", rng(1, 1, "s", n1), n1),
        Test("a", "put 1 conn/1 client, 10k keys", put(1, 1, n1, 10000), n1, goal=g2, leader_only=True),
        Test("b", "put 10 conns/100 clients, 100k keys", put(10, 100, n10, 100000), n10,
             goal=("ratio_p99", 2.0)),
        Test("c", "range 10/100, linearizable, loaded store", rng(10, 100, "l", n10), n10, goal=g2),
        Test("d", "range 10/100, serializable, loaded store", rng(10, 100, "s", n10), n10, goal=g2),
        Test("wl", "watch-latency: 100 watchers, puts at 200/s (p99 = put -> every watcher)",
             ["--conns=10", "--clients=100", "watch-latency", f"--total={2000 // s}",
              "--put-rate=200", "--key-size=32", "--val-size=256"], 2000 // s * 100,
             goal=("p99", 1.0)),
        Test("w", "watch fan-out: 1000 watchers on 1 key, events/s",
             ["--conns=10", "--clients=100", "watch", "--streams=10", "--watch-per-stream=100",
              "--watched-key-total=1", f"--put-total={1000 // s}", "--put-rate=1000000"],
             1000 // s * 1000, section="Watch events received summary", goal=("ratio", 1.0)),
    ]
    if members > 1:
        # The goal for 3 members is on put 10/100 only.
        tests = [t for t in tests if t.name in ("a", "b", "c", "d")]
        for t in tests:
            t.goal = g2 if t.name == "b" else None
    return tests


# --- servers ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`members` processes of one server binary on loopback, each with a fresh data dir."""

    def __init__(self, binary, members, workdir, extra):
        self.binary, self.workdir = binary, workdir
        self.procs, self.client_urls, self.logs, self.data_dirs = [], [], [], []
        peers = [(f"m{i}", free_port(), free_port()) for i in range(members)]
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in peers)
        for name, cport, pport in peers:
            data = os.path.join(workdir, f"{name}.etcd")
            self.data_dirs.append(data)
            curl, purl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
            args = [binary, "--name", name, "--data-dir", data,
                    "--listen-client-urls", curl, "--advertise-client-urls", curl,
                    "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "bench", "--quota-backend-bytes",
                    str(8 * 1024 ** 3)] + extra
            log = open(os.path.join(workdir, f"{name}.log"), "w")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL))
            self.client_urls.append(curl)
        try:
            self.wait_healthy()
        except RuntimeError:
            self.stop()  # no member outlives a failed start
            raise

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def endpoints(self):
        return ",".join(u.replace("http://", "") for u in self.client_urls)

    def wait_healthy(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    self.logs[i].flush()
                    with open(os.path.join(self.workdir, f"m{i}.log"), errors="replace") as f:
                        tail = "".join(f.readlines()[-5:])
                    raise RuntimeError(f"{self.binary} (m{i}) exited with {p.returncode}; "
                                       f"see {self.workdir}; its log ends:\n{tail}")
            if all(health(u) for u in self.client_urls):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.binary} not healthy within {timeout}s; see {self.workdir}")

    def leader_endpoint(self):
        out = etcdctl(self.endpoints(), "endpoint", "status", "-w", "json")
        for st in json.loads(out):
            if st["Status"]["header"]["member_id"] == st["Status"]["leader"]:
                return st["Endpoint"].replace("http://", "")
        return self.endpoints().split(",")[0]

    def cpu_seconds(self):
        tck = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tck

    def vm_hwm_kib(self):
        total = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        return total

    def save_metrics(self, outdir):
        for i, u in enumerate(self.client_urls):
            try:
                with urllib.request.urlopen(u + "/metrics", timeout=10) as r:
                    data = r.read()
            except OSError as e:
                data = f"unavailable: {e}\n".encode()
            with open(os.path.join(outdir, f"metrics-m{i}.txt"), "wb") as f:
                f.write(data)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        if not KEEP_DATA:
            for d in self.data_dirs:
                shutil.rmtree(d, ignore_errors=True)


def start_cluster(binary, members, workdir, attempts=3):
    """A healthy `Cluster`, trying again on fresh ports when a start fails: the ports are
    picked free but can be taken by another process before the server binds them."""
    for attempt in range(1, attempts + 1):
        try:
            return Cluster(binary, members, workdir, [])
        except RuntimeError as e:
            if attempt == attempts:
                raise
            print(f"   start failed ({e}); trying again on other ports", flush=True)


def health(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return b"true" in r.read()
    except OSError:
        return False


def etcdctl(endpoints, *args, timeout=120):
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run([ETCDCTL, f"--endpoints={endpoints}", *args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


# --- running and parsing ---------------------------------------------------------------

NUM = r"([0-9.]+(?:[eE][+-]?[0-9]+)?)"


def parse_report(text, section=None):
    """qps, p50/p99 (ms) and error count from a pkg/report summary."""
    if section:
        i = text.find(section)
        if i < 0:
            return None
        text = text[i:]
    i = text.find("Summary:")
    if i < 0:
        return None
    text = text[i:]
    j = text.find("Summary:", 8)
    if j > 0:
        text = text[:j]

    def g(pat, scale=1.0):
        m = re.search(pat.replace("N", NUM), text)
        return float(m.group(1)) * scale if m else None

    errors = 0
    m = re.search(r"Error distribution:(.*?)(\n\n|$)", text, re.S)
    if m:
        errors = sum(int(x) for x in re.findall(r"\[(\d+)\]", m.group(1)))
    r = {"qps": g(r"Requests/sec:\s+N"), "p50": g(r"\s50% in N secs", 1e3),
         "p99": g(r"\s99% in N secs", 1e3), "errors": errors}
    return r if r["qps"] is not None and r["p99"] is not None else None


def run_test(cluster, test, outdir):
    eps = cluster.leader_endpoint() if test.leader_only else cluster.endpoints()
    if test.name in ("c", "d", "cf", "df", "r1l", "r1s"):
        etcdctl(cluster.endpoints().split(",")[0], "put", RANGE_KEY, "v" * 256)
    cmd = [BENCH, f"--endpoints={eps}", "--precise"] + test.args
    cpu0 = cluster.cpu_seconds()
    tool0 = children_cpu_seconds()
    path = os.path.join(outdir, test.name + ".txt")
    with open(path, "w") as out, open(os.path.join(outdir, test.name + ".err"), "w") as err:
        out.write("+ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=err, timeout=1800).returncode
    cpu = cluster.cpu_seconds() - cpu0
    tool = children_cpu_seconds() - tool0
    with open(path) as f:
        r = parse_report(f.read(), test.section)
    if rc != 0 or r is None:
        raise RuntimeError(f"benchmark {test.name} failed (rc {rc}); see {path}")
    r["cpu_us_per_op"] = cpu * 1e6 / test.ops
    r["tool_us_per_op"] = tool * 1e6 / test.ops
    return r


def children_cpu_seconds():
    """CPU time (user + system) of this script's children that have exited: the load tool
    after it ran (the servers are not waited for until they stop)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def check_perf(cluster, outdir, load):
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run([ETCDCTL, f"--endpoints={cluster.endpoints()}", "check", "perf",
                        f"--load={load}"], env=env, capture_output=True, text=True, timeout=600)
    text = r.stdout + r.stderr
    with open(os.path.join(outdir, f"check-perf-{load}.txt"), "w") as f:
        f.write(text)
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    verdict = lines[-1] if lines and lines[-1] in ("PASS", "FAIL") else "ERROR"
    m = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", text)
    slow = re.search(r"[Ss]lowest request took(?: too long:)? ([0-9.]+)s", text)
    return {"verdict": verdict, "wps": int(m.group(1)) if m else None,
            "slowest": float(slow.group(1)) if slow else None}


# --- the report ------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "NA"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}"


def goal_met(goal, e, o):
    if goal is None:
        return ""
    kind, k = goal
    ratio = o["qps"] / e["qps"] if e["qps"] else 0
    if kind == "ratio":
        return f"≥{k:g}×: " + ("yes" if ratio >= k else "no")
    if kind == "ratio_p99":
        ok = ratio >= k and o["p99"] <= e["p99"]
        return f"≥{k:g}×, p99 ≤ etcd's: " + ("yes" if ok else "no")
    if kind == "p99":
        return "p99 ≤ etcd's: " + ("yes" if o["p99"] <= e["p99"] else "no")
    return ""


def table(results, configs, hwm, perf, servers):
    """Markdown: one row per (configuration, test), medians over rounds."""
    rows = ["| members | test | etcd QPS | our QPS | ratio | etcd p50 / p99 ms | our p50 / p99 ms "
            "| etcd CPU µs/op | our CPU µs/op | load tool CPU µs/op (etcd / ours) | goal |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for members, tests in configs:
        for t in tests:
            agg = {}
            for srv in servers:
                rs = [r for (m, n, s), lst in results.items() if (m, n, s) == (members, t.name, srv)
                      for r in lst]
                agg[srv] = {k: med([r[k] for r in rs])
                            for k in ("qps", "p50", "p99", "cpu_us_per_op", "tool_us_per_op")}
            e, o = agg["etcd"], agg["ours"]
            ratio = o["qps"] / e["qps"] if e["qps"] and o["qps"] else None
            rows.append(
                f"| {members} | {t.name}: {t.title} | {fmt(e['qps'])} | {fmt(o['qps'])} | "
                f"{fmt(ratio, '×')} | {fmt(e['p50'])} / {fmt(e['p99'])} | "
                f"{fmt(o['p50'])} / {fmt(o['p99'])} | {fmt(e['cpu_us_per_op'])} | "
                f"{fmt(o['cpu_us_per_op'])} | {fmt(e['tool_us_per_op'])} / {fmt(o['tool_us_per_op'])} | "
                f"{goal_met(t.goal, e, o) if ratio else ''} |")
        if hwm.get((members, "etcd")):
            e, o = med(hwm[(members, "etcd")]), med(hwm[(members, "ours")])
            ok = "yes" if o <= 0.5 * e else "no"
            rows.append(f"| {members} | VmHWM after 100k × 256 B (MiB, summed over members) | "
                        f"{e / 1024:.0f} | {o / 1024:.0f} | {o / e:.2f}× | | | | | | "
                        f"{'≤0.5×: ' + ok if members == 1 else ''} |")
    if perf:
        cells = {}
        for srv in servers:
            vs = perf.get(srv, [])
            cells[srv] = ", ".join(f"{v['verdict']} ({v['wps']} w/s, slowest {fmt(v['slowest'])} s)"
                                   for v in vs) or "NA"
        ok = all(v["verdict"] == "PASS" for v in perf.get("ours", [])) and perf.get("ours")
        rows.append(f"| 1 | etcdctl check perf --load=l (each round) | {cells['etcd']} | "
                    f"{cells['ours']} | | | | | | | passes: {'yes' if ok else 'no'} |")
    return "\n".join(rows)


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, Linux {platform.release()}"


def fsync_rate(directory):
    """Sequential 4 KiB write + fdatasync per second on the data dirs' file system."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        buf = os.urandom(4096)
        t0 = time.perf_counter()
        n = 500
        for i in range(n):
            os.pwrite(fd, buf, i * 4096)
            os.fdatasync(fd)
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def sync_latency_ms(directory, n=400):
    """Median time of one durable 4 KiB write on the data dirs' file system: an overwrite of
    a block of a file already written out and synced (as a log segment that is reused),
    then `fdatasync`, as etcd's log does. Every acknowledged put waits for one durable
    write like it (ours writes its log with `O_DIRECT | O_DSYNC`, about a fifth quicker
    than this in BENCHMARKS.md's session 15 measurement)."""
    path = os.path.join(directory, "sync-probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, bytes(4096 * n), 0)
        os.fsync(fd)
        buf = os.urandom(4096)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, i * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    finally:
        os.close(fd)
        os.unlink(path)


def sync_floor_line(floors, results):
    """What the disk allows `a` (one client, every put waits for a durable write): the
    synced-write probes taken just before each `a` measurement, against half of etcd's
    median put latency in the same run (what 2× would need)."""
    if not floors:
        return ""
    f = med(floors)
    e = med([r["p50"] for (m, n, s), lst in results.items() if (m, n, s) == (1, "a", "etcd")
             for r in lst])
    text = (f"Disk floor for `a`: one 4 KiB overwrite + `fdatasync` on the data dirs' file "
            f"system took {f:.3f} ms at the median (probes of 400 writes just before each `a` "
            f"measurement: {', '.join(f'{x:.3f}' for x in floors)} ms)")
    if e:
        need = e / 2
        text += (f"; `a` at 2× would need our put, client round trip included, at "
                 f"{need:.3f} ms at the median (half of etcd's {e:.3f} ms), "
                 + ("below" if need < f else "above") + " that floor")
    return text + "."


def version(binary):
    r = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return " ".join((r.stdout or r.stderr).split()[:3])


def write_report(path, body):
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = "# Benchmarks\n\n" + block + "\n" + text
    with open(path, "w") as f:
        f.write(text)


# --- main ------------------------------------------------------------------------------

def alternate(servers, n):
    """The servers' (name, binary) pairs in their order for the n-th pairing: etcd first on
    odd n, ours first on even n, so that neither always runs second."""
    items = list(servers.items())
    return items if n % 2 == 1 else items[::-1]


def wait_quiet(clusters, limit=30.0):
    """Waits until every given cluster is idle (its processes used under 2% of a core over
    half a second: no background flush or compaction left from its last test), at most
    `limit` seconds; returns how long it waited and whether they became quiet."""
    t0 = time.time()
    while True:
        before = [c.cpu_seconds() for c in clusters]
        time.sleep(0.5)
        used = sum(c.cpu_seconds() - b for c, b in zip(clusters, before))
        waited = time.time() - t0
        if used < 0.01:
            return waited, True
        if waited >= limit:
            return waited, False


def quiet_line(quiet_waits):
    """One sentence on how idle the other server was before each measurement."""
    if not quiet_waits:
        return ""
    longest = max(w for *_, w, _ in quiet_waits)
    busy = [f"{t} ({srv}, round {r}, {m} member(s))" for r, m, t, srv, _, q in quiet_waits
            if not q]
    text = (f"Before each of the {len(quiet_waits)} measurements the other server was idle "
            f"(under 2% of a core over 0.5 s) after at most {longest:.1f} s")
    return text + (f"; not within 30 s before: {', '.join(busy)}." if busy else ".")


def run_config(rnd, members, tests, servers, out, results, hwm, quiet_waits, floors=None):
    """One round of one configuration: both servers' clusters run side by side (each on
    its own loopback ports and fresh data dirs) and every test runs on one and then on the
    other, the order alternating from test to test, so that both measurements of a test are
    taken within a minute or two of each other. While one is measured the other is idle;
    each measurement starts only once the other cluster is quiet (`wait_quiet`). Before
    each single-member `a`, the disk's synced-write latency is probed into `floors`."""
    dirs, clusters = {}, {}
    try:
        for srv, binary in servers.items():
            d = os.path.join(out, f"round{rnd}", f"{members}m", srv)
            os.makedirs(d, exist_ok=True)
            dirs[srv] = d
            clusters[srv] = start_cluster(binary, members, d)
        for i, t in enumerate(tests):
            for srv, _ in alternate(servers, rnd + i):
                others = [c for s, c in clusters.items() if s != srv]
                waited, quiet = wait_quiet(others)
                quiet_waits.append((rnd, members, t.name, srv, waited, quiet))
                if t.name == "a" and members == 1 and floors is not None:
                    floors.append(sync_latency_ms(dirs[srv]))
                r = run_test(clusters[srv], t, dirs[srv])
                results.setdefault((members, t.name, srv), []).append(r)
                print(f"== round {rnd}, {members} member(s), {t.name:4} {srv:4} "
                      f"qps {fmt(r['qps']):>8}  p50 {fmt(r['p50'])} ms  "
                      f"p99 {fmt(r['p99'])} ms  cpu {fmt(r['cpu_us_per_op'])} µs/op  "
                      f"tool {fmt(r['tool_us_per_op'])} µs/op  errors {r['errors']}"
                      + ("" if quiet else f"  (the other server was still busy after "
                                          f"{waited:.0f} s)"), flush=True)
                if r["errors"]:
                    raise RuntimeError(f"{t.name}: {r['errors']} failed requests; "
                                       f"see {dirs[srv]}")
                if t.name == "b":
                    time.sleep(1)
                    hwm.setdefault((members, srv), []).append(clusters[srv].vm_hwm_kib())
        for srv, c in clusters.items():
            c.save_metrics(dirs[srv])
    finally:
        for c in clusters.values():
            c.stop()


def main():
    global BENCH, ETCDCTL, KEEP_DATA
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--ours", default=os.path.join(target, "release", "etcd"))
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--report", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-check-perf", action="store_true")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--members", default="1,3", help="configurations, e.g. 1 or 1,3")
    ap.add_argument("--only", default=None,
                    help="run only these tests, e.g. b,w (for quick looks; the table of "
                         "record runs the whole suite)")
    a = ap.parse_args()
    KEEP_DATA = a.keep_data
    BENCH = os.environ.get("BENCH", "/var/tmp/etcd-benchmark/etcd-benchmark")
    ETCDCTL = os.environ.get("ETCDCTL", "/usr/bin/etcdctl")
    for what, p in (("benchmark tool (BENCH)", BENCH), ("etcdctl", ETCDCTL),
                    ("reference etcd (--etcd)", a.etcd), ("our etcd (--ours)", a.ours)):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench: {what} not found at {p}")
    rounds = 1 if a.smoke else a.rounds
    out = a.out or tempfile.mkdtemp(prefix="etcd-bench-", dir="/var/tmp")
    os.makedirs(out, exist_ok=True)
    servers = {"etcd": a.etcd, "ours": a.ours}
    configs = [(int(m), suite(a.smoke, int(m))) for m in a.members.split(",")]
    if a.only:
        keep = set(a.only.split(","))
        configs = [(m, [t for t in ts if t.name in keep]) for m, ts in configs]
    results, hwm, perf = {}, {}, {}
    started = datetime.datetime.now(datetime.timezone.utc)
    quiet_waits, floors = [], []
    for rnd in range(1, rounds + 1):
        for members, tests in configs:
            run_config(rnd, members, tests, servers, out, results, hwm, quiet_waits, floors)
        if not a.smoke and not a.no_check_perf:
            for srv, binary in alternate(servers, rnd):
                d = os.path.join(out, f"round{rnd}", "check-perf", srv)
                os.makedirs(d, exist_ok=True)
                c = start_cluster(binary, 1, d)
                try:
                    v = check_perf(c, d, "l")
                finally:
                    c.stop()
                print(f"== round {rnd}, check perf --load=l, {srv}: {v}", flush=True)
                perf.setdefault(srv, []).append(v)
    tbl = table(results, configs, hwm, perf, servers)
    cmd = "python3 tests/bench/bench.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"Run of {started:%Y-%m-%d %H:%M} UTC on {machine()}; data dirs on "
        f"{os.path.dirname(out)} ({fsync_rate(out):,.0f} 4 KiB write+fdatasync/s).",
        f"Servers: etcd = `{a.etcd}` ({version(a.etcd)}), ours = `{a.ours}` ({version(a.ours)}).",
        f"Command: `{cmd.strip()}` ({rounds} round(s); in each, both servers run side by "
        f"side and every test runs on one and then on the other, the order alternating; "
        f"medians over rounds). Raw outputs: `{out}`.",
        quiet_line(quiet_waits),
        sync_floor_line(floors, results),
        "", tbl, ""])
    print(body)
    write_report(a.report, body)
    print(f"bench: table written to {a.report}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"bench: {e}")
