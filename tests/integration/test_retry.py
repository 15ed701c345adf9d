"""What the sender does with the gateway's answers: 410, retries, the
deadline, and an outage (backoff base 2 s in every test)."""
import hashlib
import json
import unittest

from harness import DovecotTestCase, wait_until


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class GoneTokenTest(DovecotTestCase):
    def test_410_removes_exactly_that_token(self):
        self.register("cmntest1", "keep-a", "s410-gone", "keep-b")
        self.register("cmntest2", "s410-gone")  # the same text in another user's store
        self.deliver("cmntest1")
        self.gateway.wait_answered(["keep-a", "keep-b"])
        self.gateway.wait_answered(["s410-gone"], status=410)
        self.dovecot.wait_spool_empty()
        self.assertEqual(self.tokens_of("cmntest1"), ["keep-a", "keep-b"])
        self.assertEqual(self.tokens_of("cmntest2"), ["s410-gone"])
        self.assertEqual(len(self.gateway.requests_for("s410-gone")), 1, "a 410 is not retried")
        self.assertNotIn("s410-gone", self.dovecot.log(), "a token was logged in clear")


class RetryTest(DovecotTestCase):
    def test_failures_are_retried_with_growing_delays_then_succeed(self):
        token = "fail2x-retry"
        self.register("cmntest1", token)
        self.deliver("cmntest1")
        self.gateway.wait_answered([token], timeout=30)
        self.dovecot.wait_spool_empty()
        reqs = self.gateway.requests_for(token)
        self.assertEqual([r["status"] for r in reqs], [500, 500, 200])
        gaps = [(b["time_ms"] - a["time_ms"]) / 1000 for a, b in zip(reqs, reqs[1:])]
        # base 2 s: 2 s after the first failure, 4 s after the second.
        self.assertGreaterEqual(gaps[0], 1.9, gaps)
        self.assertLess(gaps[0], 3.9, gaps)
        self.assertGreaterEqual(gaps[1], 3.9, gaps)
        self.assertLess(gaps[1], 7.9, gaps)


class DeadlineTest(DovecotTestCase):
    settings = {"chatmail_notify_deadline": "5s"}

    def test_item_is_dropped_when_the_next_attempt_would_pass_the_deadline(self):
        token = "s500-forever"
        self.register("cmntest1", token)
        mark = self.dovecot.log_mark()
        self.deliver("cmntest1")
        # Attempts at 0 s and 2 s; the next would come at 6 s > 5 s: dropped.
        self.dovecot.wait_for_log(rf"(?i)drop.*{token_hash(token)}|{token_hash(token)}.*drop",
                                  timeout=30, since=mark)
        self.dovecot.wait_spool_empty()
        self.assertEqual([r["status"] for r in self.gateway.requests_for(token)], [500, 500])
        self.assertEqual(self.tokens_of("cmntest1"), [token], "a drop keeps the token")


class OutageTest(DovecotTestCase):
    def test_ten_messages_during_an_outage_give_one_push_per_device_after_it(self):
        devices = ["outage-one", "outage-two"]
        self.register("cmntest1", *devices)
        self.gateway.set_mode(status=500)
        for i in range(10):
            self.deliver("cmntest1", subject=f"message {i}")
        # Everything the outage left waits, coalesced to one item per device.
        self.gateway.wait_for_requests(
            lambda reqs: all(any(r["token"] == d for r in reqs) for d in devices),
            what="first attempts during the outage")
        wait_until(lambda: self.dovecot.spool_status("cmntest1")["items"] == len(devices),
                   20, "one waiting item per device")
        self.gateway.set_mode()
        self.gateway.wait_answered(devices, timeout=30)
        self.dovecot.wait_spool_empty(timeout=30)
        reqs = self.gateway.requests()
        self.assertEqual(sorted(r["token"] for r in reqs if r["status"] == 200), sorted(devices),
                         f"successful pushes: {json.dumps(reqs)}")
        for device in devices:
            # Ten messages, yet only the first item's attempts (0, 2, 6 s...).
            self.assertLessEqual(len(self.gateway.requests_for(device)), 4, json.dumps(reqs))
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), 10)


if __name__ == "__main__":
    unittest.main()
