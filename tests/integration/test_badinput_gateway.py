"""A gateway that misbehaves: a certificate from another CA, a redirect to
another host, a huge body, a body that trickles and never ends."""
import contextlib
import socket
import threading
import time
import unittest

from harness import QUICK, DovecotTestCase, FakeGateway, wait_until


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class BadCertificateTest(DovecotTestCase):
    settings = {"chatmail_notify_deadline": "5s"}

    def test_certificate_of_another_ca_is_refused_and_the_token_never_sent(self):
        rogue = FakeGateway(self.workdir / "rogue")  # its own, different CA
        rogue.start()
        self.addCleanup(rogue.stop)
        # The sender trusts the real gateway's CA, but talks to the rogue one.
        self.dovecot.settings["chatmail_notify_url"] = rogue.url
        self.dovecot.restart()
        self.register("cmntest1", "secret-tls-token")
        mark = self.dovecot.log_mark()
        self.deliver("cmntest1")
        wait_until(lambda: self.dovecot.spool_status()["dropped"] >= 1, 30,
                   "the item dropped after its attempts")
        self.dovecot.wait_spool_empty()
        log = self.dovecot.log_since(mark)
        failures = [l for l in log.splitlines() if "SSL certificate problem" in l
                    or "certificate" in l.lower() and "push for" in l]
        stats = rogue.stats()
        self.report_figures(attempts=len(failures), requests_at_rogue=stats["requests"],
                            tls_sessions_at_rogue=stats["connections"], sent=0, dropped=1)
        self.assertGreaterEqual(len(failures), 1, "no certificate failure logged")
        self.assertEqual(stats["requests"], 0, "the token reached a gateway with a bad certificate")
        self.assertEqual(stats["connections"], 0, "a TLS session was completed")
        self.assertNotIn("secret-tls-token", log)


class RedirectTest(DovecotTestCase):
    settings = {"chatmail_notify_deadline": "5s"}

    def test_redirect_to_another_host_is_not_followed(self):
        # The fake gateway redirects redirect-* tokens to 127.0.0.1:1.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", 1))
        except OSError as e:
            listener.close()
            self.skipTest(f"cannot listen on 127.0.0.1:1 to watch the redirect target: {e}")
        self.addCleanup(listener.close)
        listener.listen(8)
        listener.settimeout(0.2)
        accepted = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    conn, _ = listener.accept()
                    accepted.append(conn.recv(65536))
                    conn.close()
        watcher = threading.Thread(target=watch)
        watcher.start()
        self.addCleanup(watcher.join, 5)
        self.addCleanup(stop.set)

        self.register("cmntest1", "redirect-me", "plain-ok")
        self.deliver("cmntest1")
        self.gateway.wait_answered(["plain-ok"])
        self.gateway.wait_answered(["redirect-me"], status=302)
        wait_until(lambda: self.dovecot.spool_status()["items"] == 0, 30,
                   "the redirected item dropped at its deadline")
        reqs = self.gateway.requests_for("redirect-me")
        self.report_figures(requests=len(reqs), statuses=[r["status"] for r in reqs],
                            connections_to_redirect_target=len(accepted))
        self.assertEqual(accepted, [], "the redirect was followed")
        self.assertTrue(all(r["status"] == 302 for r in reqs))


class HugeAndSlowResponseTest(DovecotTestCase):
    settings = {"chatmail_notify_timeout": "3s", "chatmail_notify_deadline": "4s"}

    def test_huge_body_is_cut_and_slow_body_times_out(self):
        sender = self.dovecot.wait_sender()
        rss_before = rss_kib(sender)
        self.register("cmntest1", "huge-body", "slow-body")
        self.register("cmntest2", "normal-during-slow")
        t0 = time.monotonic()
        self.deliver("cmntest1")
        self.gateway.wait_for_requests(lambda rs: any(r["token"] == "slow-body" for r in rs),
                                       what="the slow request")
        self.deliver("cmntest2")
        self.gateway.wait_answered(["normal-during-slow"])
        slow_open = self.gateway.requests_for("slow-body")[0].get("closed_ms") is None
        # huge: the client stops reading at its body limit; the answer counts (200).
        wait_until(lambda: any(r.get("closed_ms") for r in self.gateway.requests_for("huge-body")),
                   QUICK, "the huge answer cut off")
        # slow: the timeout ends it (HTTP/2: curl may reset the stream only
        # at the connection's next use, so the gateway need not see it), and
        # the item is dropped at its deadline.
        self.dovecot.wait_spool_empty(timeout=30)
        took = time.monotonic() - t0
        slow_s = time.time() - self.gateway.requests_for("slow-body")[0]["time_ms"] / 1000
        timed_out = self.dovecot.wait_for_log(r"push for \S+ \(token \w+, attempt 1\): "
                                              r"(Operation timed out|.*[Tt]imeout)")
        huge = self.gateway.requests_for("huge-body")
        slow = self.gateway.requests_for("slow-body")
        status = self.dovecot.spool_status()
        rss_after = rss_kib(sender)
        self.report_figures(huge_requests=len(huge), huge_body_bytes_written=huge[0].get("body_bytes"),
                            slow_requests=len(slow), slow_given_up_within_s=round(slow_s, 2),
                            slow_error=timed_out.group(1),
                            slow_body_bytes=slow[0].get("body_bytes"),
                            other_item_sent_during_slow=slow_open,
                            sender_rss_growth_kib=rss_after - rss_before,
                            sent=status["sent"], dropped=status["dropped"], total_s=round(took, 1))
        self.assertEqual(len(huge), 1, "a huge but successful answer was retried")
        self.assertLess(huge[0]["body_bytes"], 16 << 20, "the huge body was read on and on")
        self.assertTrue(slow_open, "another item waited for the slow answer")
        self.assertLess(slow_s, 8, "the slow answer was not bounded by the timeout")
        self.assertEqual(len(slow), 1, "retried past the deadline")
        self.assertGreaterEqual(status["dropped"], 1, "the slow item was not given up")
        self.assertLess(rss_after - rss_before, 32 * 1024, "the sender's memory grew")


if __name__ == "__main__":
    unittest.main()
