"""The benchmarks of issue 5, side by side in one run (driven by bench/run).

Every figure is a median over BENCH_REPS runs with min and max, and every
comparison is a ratio of runs made in the same round, next to each other,
against the same gateway. Results: a table on stdout, BENCHMARKS.md, and the
raw numbers in $BENCH_OUT/results.json."""

import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import ssl
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from harness import wait_until  # noqa: E402  (one bounded-wait helper for tests and benchmarks)
BUILD = Path(os.environ.get("CMN_BUILD_DIR", REPO / "build-bench")).resolve()
SENDER_BENCH = BUILD / "bench/sender_bench"
GATEWAY_JS = REPO / "tests/gateway/fake-gateway.js"
MAKE_CERT = REPO / "tests/gateway/make-cert.sh"
SEED = Path(os.environ.get("BENCH_SEED", REPO.parent / "shared/seeds/notifier.py")).resolve()
PYTHON = "/usr/bin/python3"  # Debian's, with python3-requests for the seed

REPS = int(os.environ.get("BENCH_REPS", "3"))
# Item counts per run: enough for each run to last about a second or more.
N_SENDER = {0: int(os.environ.get("BENCH_N_FAST", "20000")), 50: 5000}
N_SEED = {0: 3000, 50: 400}
N_SCALE = int(os.environ.get("BENCH_N_SCALE", "100000"))
IDLE_S = int(os.environ.get("BENCH_IDLE_S", "60"))
STORM = {"rate": 200, "pre_s": 10, "outage_s": int(os.environ.get("BENCH_OUTAGE_S", "60")),
         "post_s": 10}
RUN_TIMEOUT = 900


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_json(cmd, env=None, timeout=RUN_TIMEOUT):
    """Runs a driver that prints one JSON object as its last stdout line."""
    res = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=timeout, env=env)
    lines = [l for l in res.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{Path(str(cmd[0])).name} {cmd[1] if len(cmd) > 1 else ''} failed "
                           f"({res.returncode}): {res.stderr.strip()[-800:]}")
    out = json.loads(lines[-1])
    if res.stderr.strip():
        out["stderr"] = res.stderr.strip()[-400:]
    return out


class Gateway:
    """The fake gateway (tests/gateway/fake-gateway.js) in one transport."""

    def __init__(self, workdir, transport, delay_ms):
        self.workdir = Path(workdir)
        self.transport, self.delay_ms = transport, delay_ms
        self.certs = Path(workdir) / "certs"

    @property
    def tls(self):
        return self.transport != "h1"

    @property
    def base(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self):
        return self.base + "/notify"

    @property
    def ca_file(self):
        return str(self.certs / "ca.pem") if self.tls else ""

    def __enter__(self):
        self.dir = fresh_dir(self.workdir, f"gw-{self.transport}-{self.delay_ms}")
        if not (self.certs / "ca.pem").exists():
            subprocess.run(["sh", str(MAKE_CERT), str(self.certs)], check=True)
        port_file = self.dir / "port"
        cmd = ["node", str(GATEWAY_JS), "--port", "0", "--port-file", str(port_file)]
        if self.tls:
            cmd += ["--tls", "--cert", str(self.certs / "cert.pem"),
                    "--key", str(self.certs / "key.pem")]
        if self.delay_ms:
            cmd += ["--delay-ms", str(self.delay_ms)]
        self.stderr = open(self.dir / "gateway.log", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr)

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError("fake gateway exited: " + (self.dir / "gateway.log").read_text())
            text = port_file.read_text().strip() if port_file.exists() else ""
            return text.isdigit() and int(text)
        self.port = wait_until(port, 20, "the fake gateway's port file")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.stderr.close()

    def control(self, path, body=None):
        ctx = ssl._create_unverified_context()  # our own throwaway CA
        req = urllib.request.Request(f"{self.base}/control/{path}",
                                     data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx if self.tls else None, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def reset(self):
        self.control("reset", {})

    def requests_count(self):
        return self.control("stats")["requests"]

    def cpu_s(self):
        """CPU time the gateway process has used (to tell whether Node is the
        bottleneck)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_dir(workdir, name):
    path = Path(tempfile.mkdtemp(prefix=name + "-", dir=workdir))
    return path


# ---- the runs of one kind ---------------------------------------------------

def sender_run(workdir, gw, n, idle_s=0):
    """Pre-fills a spool with n tokens, then times the core's sender."""
    spool = fresh_dir(workdir, "spool") / "spool"
    tokens = spool.parent / "tokens"
    fill = run_json([SENDER_BENCH, "fill", spool, n, tokens])
    gw.reset()
    cpu0 = gw.cpu_s()
    out = run_json([SENDER_BENCH, "send", spool, n, gw.url, gw.ca_file, idle_s])
    out["gateway_cpu_s"] = gw.cpu_s() - cpu0
    out["gateway_requests"] = gw.requests_count()
    out["fill_ms"] = fill["fill_ms"]
    out["tokens_file"] = str(tokens)
    if not out["ok"]:
        raise RuntimeError(f"the sender sent {out['stats']['sent']} of {n} items: {out}")
    shutil.rmtree(spool, ignore_errors=True)
    return out


def seed_run(workdir, gw, tokens_file, n):
    """The seed notifier over the same tokens (the first n of them)."""
    d = fresh_dir(workdir, "seed")
    subset = d / "tokens"
    subset.write_text("".join(Path(tokens_file).read_text().splitlines(True)[:n]))
    env = dict(os.environ)
    if gw.tls:
        env["REQUESTS_CA_BUNDLE"] = gw.ca_file
    gw.reset()
    cpu0 = gw.cpu_s()
    out = run_json([PYTHON, REPO / "bench/seed_bench.py", SEED, gw.url, subset, d / "queue",
                    RUN_TIMEOUT - 60], env=env)
    out["gateway_cpu_s"] = gw.cpu_s() - cpu0
    out["gateway_requests"] = gw.requests_count()
    if not out["ok"]:
        raise RuntimeError(f"the seed sent {out['sent']} of {n} items")
    shutil.rmtree(d, ignore_errors=True)
    return out


def h2load_run(workdir, gw, tokens_file, n):
    """The ceiling: h2load posting a real-sized token, 100 streams on one
    connection. HTTP/1.1 has no streams and Node answers pipelined requests
    one after the other (20/s at 50 ms), so there: 100 connections of one
    request in flight each, the same concurrency."""
    body = Path(workdir) / "h2load-body"
    body.write_text(Path(tokens_file).read_text().split("\n", 1)[0])
    gw.reset()
    cpu0 = gw.cpu_s()
    if gw.tls:
        cmd = ["h2load", "-c", "1", "-m", "100"]
    else:
        cmd = ["h2load", "--h1", "-c", "100", "-m", "1"]
    cmd += ["-n", str(n), "-d", str(body), gw.url]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=RUN_TIMEOUT)
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", res.stdout)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", res.stdout)
    if not m or not ok or int(ok.group(1)) != n:
        raise RuntimeError(f"h2load failed: {res.stdout[-800:]}")
    proto = re.search(r"Application protocol: (\S+)", res.stdout)
    return {"items": n, "tokens_per_s": float(m.group(3)), "gateway_cpu_s": gw.cpu_s() - cpu0,
            "protocol": proto.group(1) if proto else "?"}


# ---- the cases --------------------------------------------------------------

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def throughput_cases(workdir):
    """Cases 1-3: sender, seed and h2load against the same gateway, round
    by round (one round = one run of each, back to back)."""
    results = {}
    for delay in [int(d) for d in os.environ.get("BENCH_DELAYS", "0 50").split()]:
        for transport in os.environ.get("BENCH_TRANSPORTS", "h2tls h1").split():
            key = f"{transport}-{delay}ms"
            runs = {"sender": [], "seed": [], "h2load": [], "vs_seed": [], "vs_h2load": []}
            with Gateway(workdir, transport, delay) as gw:
                for rep in range(REPS):
                    log(f"throughput {key} round {rep + 1}/{REPS}")
                    s = sender_run(workdir, gw, N_SENDER[delay])
                    seed = seed_run(workdir, gw, s["tokens_file"], N_SEED[delay])
                    h2 = h2load_run(workdir, gw, s["tokens_file"], N_SENDER[delay])
                    Path(s["tokens_file"]).unlink()
                    runs["sender"].append(s)
                    runs["seed"].append(seed)
                    runs["h2load"].append(h2)
                    runs["vs_seed"].append(s["tokens_per_s"] / seed["tokens_per_s"])
                    runs["vs_h2load"].append(s["tokens_per_s"] / h2["tokens_per_s"])
                    log(f"  sender {s['tokens_per_s']:.0f}/s  seed {seed['tokens_per_s']:.0f}/s"
                        f"  h2load {h2['tokens_per_s']:.0f}/s ({h2['protocol']})")
            results[key] = {
                "runs": runs,
                "sender": summary([r["tokens_per_s"] for r in runs["sender"]]),
                "seed": summary([r["tokens_per_s"] for r in runs["seed"]]),
                "h2load": summary([r["tokens_per_s"] for r in runs["h2load"]]),
                "vs_seed": summary(runs["vs_seed"]),
                "vs_h2load": summary(runs["vs_h2load"]),
                "gateway_cpu_per_1k": summary(
                    [1000 * r["gateway_cpu_s"] / r["items"] for r in runs["sender"]]),
            }
    return results


def scale_case(workdir):
    """Case 6: N_SCALE pending items at start; then IDLE_S idle seconds."""
    with Gateway(workdir, "h2tls", 0) as gw:
        log(f"scale: {N_SCALE} items pre-written, then {IDLE_S} s idle")
        out = sender_run(workdir, gw, N_SCALE, idle_s=IDLE_S)
        Path(out["tokens_file"]).unlink()
        return out


def storm_case(workdir):
    """Case 7: steady load, the gateway answers 500 for a while, recovers."""
    with Gateway(workdir, "h2tls", 0) as gw:
        spool = fresh_dir(workdir, "storm") / "spool"
        tokens = spool.parent / "tokens"
        log("retry storm: {rate} tokens/s, 500s from {pre_s} s for {outage_s} s, "
            "load {post_s} s more".format(**STORM))
        out = run_json([SENDER_BENCH, "storm", spool, gw.url, gw.base, STORM["rate"],
                        STORM["pre_s"], STORM["outage_s"], STORM["post_s"], tokens,
                        gw.ca_file])
        wanted = set(tokens.read_text().split())
        reqs = gw.control("requests")
        accepted = {r["token"] for r in reqs if r.get("status") == 200}
        out["gateway_requests"] = len(reqs)
        out["gateway_500s"] = sum(1 for r in reqs if r.get("status") == 500)
        lost = wanted - accepted
        out["lost"] = len(lost)
        # What the gateway saw of each lost token: (ms since the first
        # request of the run, status), to tell a stuck item from a dropped one.
        t0 = reqs[0]["time_ms"] if reqs else 0
        out["lost_history"] = [[(r["time_ms"] - t0, r.get("status")) for r in reqs
                                if r["token"] == token] for token in sorted(lost)[:6]]
        out["duplicates_200"] = sum(1 for r in reqs if r.get("status") == 200) - len(accepted)
        shutil.rmtree(spool.parent, ignore_errors=True)
        return out


def machine_facts(workdir):
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    df = subprocess.run(["df", "-hT", str(workdir)], stdout=subprocess.PIPE, text=True).stdout
    fs = df.splitlines()[-1].split() if df else ["?"] * 7
    dev = fs[0]
    rotational = "?"
    m = re.match(r"/dev/([a-z]+)", dev)
    if m:
        rot = Path(f"/sys/block/{m.group(1)}/queue/rotational")
        if rot.exists():
            rotational = "rotational" if rot.read_text().strip() == "1" else "non-rotational"
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "spool_fs": f"{fs[1]} on {dev} ({rotational})", "spool_dir": str(workdir),
        "os": Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists() else "?",
        "node": subprocess.run(["node", "--version"], stdout=subprocess.PIPE,
                               text=True).stdout.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                 stdout=subprocess.PIPE, text=True).stdout.strip(),
    }


def main():
    out_dir = Path(os.environ.get("BENCH_OUT", BUILD / "bench-out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])  # names of cases to run; all when empty
    workdir = Path(tempfile.mkdtemp(prefix="cmn-bench-", dir=os.environ.get("BENCH_TMP")))
    workdir.chmod(0o755)
    results = {"machine": machine_facts(workdir), "reps": REPS,
               "command": os.environ.get("BENCH_COMMAND", "bench/run"), "errors": {}}
    cases = [("throughput", throughput_cases), ("dovecot", None), ("scale", scale_case),
             ("storm", storm_case)]
    t0 = time.monotonic()
    try:
        for name, fn in cases:
            if only and name not in only:
                continue
            try:
                if name == "dovecot":
                    sys.path.insert(0, str(REPO / "bench"))
                    import dovecot_cases
                    fn = dovecot_cases.run
                results[name] = fn(workdir)
            except Exception as e:  # one case failing must not hide the others
                log(f"{name}: FAILED: {e}")
                traceback.print_exc()
                results["errors"][name] = str(e)[-1500:]
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(workdir, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - t0)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    import report
    text = report.render(results)
    print(text)
    if not only or os.environ.get("BENCH_WRITE_MD"):
        (REPO / "BENCHMARKS.md").write_text(report.markdown(results, text))
        log(f"wrote {REPO / 'BENCHMARKS.md'} and {out_dir / 'results.json'}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
