"""The token store written at once by imap (SETMETADATA of new tokens) and
by the sender (removal of tokens the gateway answers 410 for)."""
import json
import threading
import time
import unittest

from harness import DovecotTestCase


class ConcurrentTokenWritersTest(DovecotTestCase):
    settings = {"chatmail_notify_max_tokens": "500"}
    gateway_delay_ms = 30  # spreads the 410 answers over the adding
    adds = 150
    gone = 40

    def test_imap_adds_and_sender_410_removals_lose_no_update(self):
        user = "cmntest1"
        gone = [f"s410-conc-{i:02d}" for i in range(self.gone)]
        added = [f"add-conc-{i:03d}" for i in range(self.adds)]
        self.register(user, *gone)
        errors = []

        def add_loop():
            try:
                with self.dovecot.imap(user) as imap:
                    for token in added:
                        imap.set_token(token)
            except Exception as e:  # reported by the main thread
                errors.append(repr(e))

        adder = threading.Thread(target=add_loop)
        t0 = time.monotonic()
        adder.start()
        # Each delivery sends every token registered so far: the 410s come
        # back while the adder writes the same file.
        deliveries = 0
        while adder.is_alive() and deliveries < 20:
            self.deliver(user, subject=f"while adding {deliveries}")
            deliveries += 1
            self.gateway.wait_for_requests(lambda rs: len(rs) > 0, what="pushes")
        adder.join(timeout=60)
        self.assertFalse(adder.is_alive(), "the IMAP adder hung")
        self.assertEqual(errors, [])
        self.gateway.wait_answered(gone, status=410, timeout=30)
        self.dovecot.wait_spool_empty(timeout=30)
        elapsed = time.monotonic() - t0

        tokens = set(self.tokens_of(user))
        on_disk = set(json.loads(self.dovecot.token_file(user).read_text())["devicetoken"])
        lost_adds = sorted(set(added) - tokens)
        kept_gone = sorted(set(gone) & tokens)
        reqs = self.gateway.requests()
        self.report_figures(adds=len(added), removals_410=len(gone), deliveries=deliveries,
                            requests=len(reqs),
                            answered_410=sum(1 for r in reqs if r["status"] == 410),
                            lost_adds=len(lost_adds), gone_tokens_still_present=len(kept_gone),
                            elapsed_s=round(elapsed, 2))
        self.assertEqual(lost_adds, [], "tokens added over IMAP were lost")
        self.assertEqual(kept_gone, [], "tokens answered 410 are still registered")
        self.assertEqual(tokens, on_disk)
        self.assertEqual(tokens, set(added))


if __name__ == "__main__":
    unittest.main()
