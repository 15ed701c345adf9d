"""Turns bench.py's results into the table (stdout) and BENCHMARKS.md."""

import json
from pathlib import Path

TARGETS = {
    "h2_vs_h2load": 0.80,
    "rate_50ms": 1000.0,
    "vs_seed_0ms": 10.0,
    "vs_seed_50ms": 20.0,
    "delivery_ratio": 0.90,
    "p99_ms": 20.0,
    "scheduled_ms": 2000.0,
    "rss_mib": 64.0,
    "idle_cpu_percent": 0.1,  # "~0": under a thousandth of one core
}


def spread(s, fmt="{:.0f}"):
    if not s:
        return "n/a"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def judge(value, target, higher=True):
    """PASS, or MISS with the shortfall relative to the target."""
    if value is None:
        return "n/a"
    if (value >= target) if higher else (value <= target):
        return "PASS"
    short = (target - value) / target if higher else (value - target) / target
    return f"MISS by {100 * short:.0f}%"


def median(s):
    return None if not s else s["median"]


def rows(r):
    """(case, what, measured, target, verdict) for every figure."""
    out = []
    tp = r.get("throughput")
    err = r.get("errors", {})
    if tp:
        for key, label in (("h2tls-0ms", "HTTP/2+TLS, 0 ms"), ("h1-0ms", "HTTP/1.1, 0 ms")):
            t = tp.get(key)
            if not t:
                continue
            out.append(("1", f"sender tokens/s, {label}", spread(t["sender"]), "", ""))
            flags = "-c 1 -m 100" if key.startswith("h2") else "--h1 -c 100 -m 1"
            out.append(("1", f"h2load ceiling tokens/s, {label} ({flags})",
                        spread(t["h2load"]), "", ""))
            out.append(("1", f"sender / h2load, {label}", spread(t["vs_h2load"], "{:.2f}"),
                        ">= 0.80" if key.startswith("h2") else "(no target)",
                        judge(median(t["vs_h2load"]), TARGETS["h2_vs_h2load"]) if key.startswith("h2") else ""))
        for key, label in (("h2tls-50ms", "HTTP/2+TLS, 50 ms"), ("h1-50ms", "HTTP/1.1, 50 ms")):
            t = tp.get(key)
            if not t:
                continue
            out.append(("2", f"sender tokens/s, {label}", spread(t["sender"]),
                        ">= 1000", judge(median(t["sender"]), TARGETS["rate_50ms"])))
            out.append(("2", f"h2load ceiling tokens/s, {label}", spread(t["h2load"]), "", ""))
        for delay, target in ((0, TARGETS["vs_seed_0ms"]), (50, TARGETS["vs_seed_50ms"])):
            for tr, label in (("h2tls", "HTTP/2+TLS (seed: HTTPS/1.1)"), ("h1", "HTTP/1.1")):
                t = tp.get(f"{tr}-{delay}ms")
                if not t:
                    continue
                out.append(("3", f"seed tokens/s, {label}, {delay} ms", spread(t["seed"]), "", ""))
                out.append(("3", f"sender / seed, {label}, {delay} ms",
                            spread(t["vs_seed"], "{:.1f}"), f">= {target:.0f}x",
                            judge(median(t["vs_seed"]), target)))
    elif "throughput" in err:
        out.append(("1-3", "throughput", "FAILED: " + err["throughput"][:120], "", "MISS"))
    dv = r.get("dovecot")
    if dv:
        o = dv["overhead"]
        s = lambda xs: {"median": sorted(xs)[len(xs) // 2] if len(xs) % 2 else
                        (sorted(xs)[len(xs) // 2 - 1] + sorted(xs)[len(xs) // 2]) / 2,
                        "min": min(xs), "max": max(xs), "n": len(xs)}
        out.append(("4", "LMTP deliveries/s with the plugin", spread(s(o["with"])), "", ""))
        out.append(("4", "LMTP deliveries/s without the plugin", spread(s(o["without"])), "", ""))
        out.append(("4", "with / without (fsync on)", spread(s(o["ratio"]), "{:.3f}"),
                    ">= 0.90", judge(s(o["ratio"])["median"], TARGETS["delivery_ratio"])))
        lat = dv["latency"]
        out.append(("5", f"latency end-of-data reply -> POST, p50 ({lat['samples']} POSTs)",
                    f"{lat['p50_ms']:.1f} ms", "", ""))
        out.append(("5", "latency p99", f"{lat['p99_ms']:.1f} ms (max {lat['max_ms']:.0f})",
                    "<= 20 ms", judge(lat["p99_ms"], TARGETS["p99_ms"], higher=False)))
    elif "dovecot" in err:
        out.append(("4-5", "Dovecot cases", "FAILED: " + err["dovecot"][:120], "", "MISS"))
    sc = r.get("scale")
    if sc:
        out.append(("6", f"{sc['items']} pending items: time until all scheduled",
                    f"{sc['scheduled_ms']:.0f} ms", "<= 2000 ms",
                    judge(sc["scheduled_ms"], TARGETS["scheduled_ms"], higher=False)))
        out.append(("6", "  ... and until all sent", f"{sc['sent_ms']:.0f} ms", "", ""))
        rss = sc["vmhwm_kb"] / 1024
        out.append(("6", "peak RSS of the sending process (VmHWM)",
                    f"{rss:.1f} MiB (at start {sc['rss_before_kb'] / 1024:.1f})", "<= 64 MiB",
                    judge(rss, TARGETS["rss_mib"], higher=False)))
        if sc["idle_cpu_ms"] >= 0:
            pct = 100 * sc["idle_cpu_ms"] / (sc["idle_s"] * 1000)
            out.append(("6", f"sender CPU over {sc['idle_s']} idle s",
                        f"{sc['idle_cpu_ms']:.1f} ms ({pct:.3f}% of a core)", "~0 (< 0.1%)",
                        judge(pct, TARGETS["idle_cpu_percent"], higher=False)))
    elif "scale" in err:
        out.append(("6", "scale", "FAILED: " + err["scale"][:120], "", "MISS"))
    st = r.get("storm")
    if st:
        drained = (f"{st['drained_after_recovery_ms'] / 1000:.1f} s" if st["ok"] else
                   f"NOT drained: {st['stats']['pending']} pending at the bound "
                   f"({st['post_s']} s + {30 + 5 * st['items'] // 1000} s after recovery)")
        out.append(("7", f"retry storm: {st['items']} items at {st['rate']:.0f}/s, "
                    f"{st['outage_s']} s of 500s: drained after recovery",
                    drained, "(measured)", ""))
        out.append(("7", "items without a 200 at that bound / backlog peak / requests (500s)",
                    f"{st['lost']} / {st['backlog_peak']} / {st['gateway_requests']} "
                    f"({st['gateway_500s']})", "0 lost", verdict(st["lost"] == 0 and st["ok"])))
    elif "storm" in err:
        out.append(("7", "retry storm", "FAILED: " + err["storm"][:120], "", "MISS"))
    return out


def render(r):
    table = rows(r)
    head = ("#", "measure", "measured: median [min–max]", "target", "")
    widths = [max(len(str(x[i])) for x in table + [head]) for i in range(5)]
    line = lambda x: "| " + " | ".join(str(v).ljust(w) for v, w in zip(x, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(x) for x in table])


def markdown(r, table):
    m = r["machine"]
    notes = []
    tp = r.get("throughput")
    if tp:
        t = tp.get("h2tls-0ms", {"runs": {"sender": []}})
        gw_cpu = [x["gateway_cpu_s"] / (x["sent_ms"] / 1000) for x in t["runs"]["sender"]
                  if x.get("sent_ms")]
        if gw_cpu:
            notes.append(f"- Fake gateway (Node) CPU while the sender ran at 0 ms over HTTP/2: "
                         f"{100 * sorted(gw_cpu)[len(gw_cpu) // 2]:.0f}% of one core "
                         "(100% means Node, not the sender, sets the pace; h2load's rate is "
                         "the ceiling of that same gateway).")
    if r.get("errors"):
        notes.append("- Cases that failed in this run: "
                     + "; ".join(f"{k}: {v.splitlines()[-1][:300]}" for k, v in r["errors"].items()))
    analysis_file = Path(__file__).with_name("analysis.md")
    analysis = analysis_file.read_text() if analysis_file.exists() else ""
    return f"""# Benchmarks

Regenerated by `{r['command']}` (issue 5); every figure is the median of
{r['reps']} runs with [min–max], and every ratio compares runs made back to
back in the same round against the same gateway. Speed is measured here,
never asserted in a timed test.

## Latest run

- Date: {m['date']}, commit {m['commit']}, run time {r.get('duration_s', '?')} s
- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']},
  Debian {m['os']}, Node {m['node']}
- Spool: {m['spool_fs']} (a temporary directory under {m['spool_dir'].rsplit('/', 1)[0]})
- Command: `{r['command']}`

{table}

{chr(10).join(notes)}

{analysis}
## What each case does

1. `bench/sender_bench fill` writes N real-sized tokens (840 bytes,
   `openpgp:` + base64 of 624 random bytes; 2 per message) into a fresh
   spool with the delivery-side writer; `sender_bench send` then starts the
   core's sender on it (`durable = yes`, default `max_inflight`) and stops
   the clock when its stats count N sent. Gateway:
   `tests/gateway/fake-gateway.js` answering 200 at once, plain HTTP/1.1 or
   TLS with HTTP/2 by ALPN. Ceiling: `h2load -c 1 -m 100 -n N -d <token>`
   against the same gateway in the same round; for HTTP/1.1, which Node
   answers serially when pipelined, `h2load --h1 -c 100 -m 1` (the same
   concurrency).
2. The same with `--delay-ms 50`.
3. The seed (`../shared/seeds/notifier.py`, Debian's python3-requests,
   `Notifier.URL` pointed at the gateway, CA via `REQUESTS_CA_BUNDLE`) over
   a pre-filled queue of the same tokens, timed from
   `start_notification_threads()` to the last accepted item.
4. A private Dovecot (tests/integration/harness.py, chatmail's
   `service lmtp {{ user = vmail }}`), users with 2 tokens each registered
   over IMAP METADATA; LMTP deliveries/s over parallel sessions, with the
   plugin and without it (same instance, `doveadm reload` between configs),
   alternating in ABBA order; ratio per pair.
5. Sequential LMTP deliveries; per POST, the gateway's arrival time
   (`Date.now()`, 1 ms resolution) minus the client's time when it read the
   end-of-data reply (same host clock).
6. 100,000 pre-written items; time from `cmn_sender_start()` until its stats
   account for all of them (enqueued, or sent + pending + in flight), then
   until sent; VmHWM of the sending process; then 60 s idle: the process's
   CPU time (getrusage) over that window.
7. Steady load through the writer; the gateway answers 500 to everything
   (`/control/mode`) for the outage, then 200 again; time from the recovery
   until every item was sent; the gateway's record is checked for a 200 per
   token.
"""


if __name__ == "__main__":
    # report.py RESULTS_JSON [--write]: the table again; --write: BENCHMARKS.md
    # too (after editing bench/analysis.md, without running everything again).
    import sys
    results = json.load(open(sys.argv[1]))
    text = render(results)
    print(text)
    if "--write" in sys.argv[2:]:
        Path(__file__).resolve().parents[1].joinpath("BENCHMARKS.md").write_text(
            markdown(results, text))
