"""Cases 4 and 5 of issue 5, on a private Dovecot built by the integration
harness (tests/integration/harness.py): LMTP deliveries/s with the plugin
and without it (alternating runs, switched by `doveadm reload` of the same
instance), and the latency from LMTP's end-of-data reply to the POST's
arrival at the gateway."""

import base64
import os
import smtplib
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CMN_BUILD_DIR", str(REPO / "build-bench"))
sys.path.insert(0, str(REPO / "tests/integration"))
import harness  # noqa: E402

USERS = [f"cmnbench{i:02d}" for i in range(int(os.environ.get("BENCH_LMTP_USERS", "50")))]
PAIRS = int(os.environ.get("BENCH_LMTP_PAIRS", "4"))
DELIVERIES_PER_RUN = int(os.environ.get("BENCH_LMTP_DELIVERIES", "1000"))
CONNECTIONS = int(os.environ.get("BENCH_LMTP_CONNECTIONS", "4"))
LATENCY_DELIVERIES = int(os.environ.get("BENCH_LATENCY_DELIVERIES", "1000"))
TOKENS_PER_USER = 2
WARMUP = 40
DRAIN_TIMEOUT = 120


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def real_token():
    return "openpgp:" + base64.b64encode(os.urandom(624)).decode()


def message_bytes(dc, user, i):
    msg = harness.make_message(dc.address(user), subject=f"bench {i}",
                               body="x" * 2000 + "\n")
    return msg.as_bytes()


class LmtpConnection:
    """One LMTP session that delivers message after message."""

    def __init__(self, dc):
        self.lmtp = smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=harness.QUICK)
        self.lmtp.ehlo("bench.example.net")

    def deliver(self, rcpt, data):
        """Returns the time (epoch ms) the end-of-data reply was read."""
        code, text = self.lmtp.mail("alice@example.net")
        if code != 250:
            raise RuntimeError(f"MAIL FROM: {code} {text}")
        code, text = self.lmtp.rcpt(rcpt)
        if code != 250:
            raise RuntimeError(f"RCPT TO {rcpt}: {code} {text}")
        code, text = self.lmtp.data(data)
        reply_ms = time.time() * 1000.0
        if code != 250:
            raise RuntimeError(f"DATA for {rcpt}: {code} {text}")
        return reply_ms

    def close(self):
        try:
            self.lmtp.quit()
        except (smtplib.SMTPException, OSError):
            pass


def delivery_rate(dc, messages):
    """Deliveries/s over CONNECTIONS parallel LMTP sessions."""
    per_conn = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    conns = [LmtpConnection(dc) for _ in range(CONNECTIONS)]
    errors = []

    def work(conn, batch):
        try:
            for rcpt, data in batch:
                conn.deliver(rcpt, data)
        except Exception as e:  # reported below, the run is void
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c, b)) for c, b in zip(conns, per_conn)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    if errors:
        raise RuntimeError(f"LMTP delivery failed: {errors[0]}")
    return len(messages) / elapsed


def switch_plugin(dc, on):
    """Same instance, other config: with or without the plugin (and its
    sender service), applied by `doveadm reload`."""
    if dc.plugin == on:
        return
    dc.plugin = on
    dc.write_config()
    dc.doveadm("reload")
    if on:
        dc.wait_sender()
    else:
        harness.wait_until(lambda: dc.sender_pid() is None, harness.QUICK,
                           "the sender service to stop")


def wait_spool_empty(dc):
    """Everything delivered so far has been sent (the sender may coalesce
    two pushes to one token, so POSTs are not counted here)."""
    harness.wait_until(lambda: dc.spool_status()["items"] == 0, DRAIN_TIMEOUT,
                       "an empty spool", interval=0.2)


def overhead_case(dc, messages):
    runs = {"with": [], "without": [], "ratio": []}
    for pair in range(PAIRS):
        # ABBA order: drift of the machine over time cancels out.
        order = (True, False) if pair % 2 == 0 else (False, True)
        rates = {}
        for on in order:
            switch_plugin(dc, on)
            delivery_rate(dc, messages[:WARMUP])  # fresh lmtp processes after the reload
            rates[on] = delivery_rate(dc, messages)
            if on:
                wait_spool_empty(dc)  # nothing left to send in the next run
        runs["with"].append(rates[True])
        runs["without"].append(rates[False])
        runs["ratio"].append(rates[True] / rates[False])
        log(f"  delivery pair {pair + 1}/{PAIRS}: with {rates[True]:.0f}/s, "
            f"without {rates[False]:.0f}/s, ratio {rates[True] / rates[False]:.3f}")
    return runs


def latency_case(dc, gw, tokens_of):
    switch_plugin(dc, True)
    gw.reset()
    conn = LmtpConnection(dc)
    replies = {user: [] for user in USERS}
    data = {user: message_bytes(dc, user, 0) for user in USERS}
    for i in range(LATENCY_DELIVERIES):
        user = USERS[i % len(USERS)]
        replies[user].append(conn.deliver(dc.address(user), data[user]))
    conn.close()
    wait_spool_empty(dc)
    per_token = {}
    for r in gw.requests():
        per_token.setdefault(r["token"], []).append(r["time_ms"])
    latencies, unmatched = [], 0
    for user in USERS:
        for token in tokens_of[user]:
            arrivals = per_token.get(token, [])
            if len(arrivals) != len(replies[user]):
                unmatched += abs(len(arrivals) - len(replies[user]))
            for reply_ms, arrival_ms in zip(replies[user], arrivals):
                latencies.append(arrival_ms - reply_ms)
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]
    return {"deliveries": LATENCY_DELIVERIES, "samples": len(latencies), "unmatched": unmatched,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": latencies[-1],
            "mean_ms": statistics.mean(latencies)}


def run(workdir):
    missing = harness.built(harness.PLUGIN_SO, harness.SENDER_BIN)
    if missing:
        raise RuntimeError(missing)
    workdir = Path(workdir)
    with harness.FakeGateway(workdir) as gw:
        dc = harness.PrivateDovecot(gateway=gw, privilege="vmail", users=USERS,
                                    settings={"chatmail_notify_fsync": "yes"},
                                    workdir=workdir / "dovecot")
        dc.dir.mkdir()
        dc.dir.chmod(0o755)
        with dc:
            log(f"dovecot: registering {TOKENS_PER_USER} tokens for {len(USERS)} users")
            tokens_of = {}
            for user in USERS:
                tokens_of[user] = [real_token() for _ in range(TOKENS_PER_USER)]
                with dc.imap(user) as imap:
                    for token in tokens_of[user]:
                        imap.set_token(token)
            messages = [(dc.address(USERS[i % len(USERS)]),
                         message_bytes(dc, USERS[i % len(USERS)], i))
                        for i in range(DELIVERIES_PER_RUN)]
            log(f"delivery overhead: {PAIRS} pairs of {DELIVERIES_PER_RUN} deliveries "
                f"over {CONNECTIONS} LMTP connections")
            overhead = overhead_case(dc, messages)
            log(f"latency: {LATENCY_DELIVERIES} deliveries, one LMTP connection")
            latency = latency_case(dc, gw, tokens_of)
            errors = dc.errors()
    return {"overhead": overhead, "latency": latency,
            "dovecot_errors": errors[-10:],
            "settings": {"users": len(USERS), "tokens_per_user": TOKENS_PER_USER,
                         "deliveries_per_run": DELIVERIES_PER_RUN,
                         "connections": CONNECTIONS, "pairs": PAIRS,
                         "mail_fsync": "optimized (Dovecot default)",
                         "chatmail_notify_fsync": "yes"}}
