"""Gateway outages with the real sender: the gateway process stopped (so the
sender gets "connection refused") for a while and back, and down past the
deadline."""
import collections
import re
import time
import unittest

from harness import DovecotTestCase, wait_until


class GatewayBackTest(DovecotTestCase):
    users = ("cmntest1", "cmntest2", "cmntest3")

    def test_every_device_notified_once_after_the_gateway_returns(self):
        devices = {u: [f"back-{u}-a", f"back-{u}-b"] for u in self.users}
        for user, toks in devices.items():
            self.register(user, *toks)
        all_devices = [t for toks in devices.values() for t in toks]
        self.gateway.stop()
        messages = 5
        for m in range(messages):
            for user in self.users:
                self.deliver(user, subject=f"during the outage {m}")
        # Down for a while: until every device's item failed twice
        # (attempts at 0 s and 2 s, the next one 4 s later).
        wait_until(lambda: self.dovecot.spool_status()["retried"] >= 2 * len(all_devices),
                   30, "two failed attempts per device")
        self.assertEqual(self.dovecot.spool_status()["items"], len(all_devices),
                         "not coalesced to one item per device")
        back = time.monotonic()
        self.gateway.start()
        self.gateway.wait_answered(all_devices, timeout=30)
        recover_s = time.monotonic() - back
        self.dovecot.wait_spool_empty()
        reqs = self.gateway.requests()
        per_device = collections.Counter(r["token"] for r in reqs)
        self.report_figures(deliveries=messages * len(self.users), devices=len(all_devices),
                            sent=len(reqs), lost=len(set(all_devices) - set(per_device)),
                            duplicated=sum(n - 1 for n in per_device.values()),
                            time_to_recover_s=round(recover_s, 2))
        self.assertEqual(sorted(per_device.elements()), sorted(all_devices),
                         "one push per device after the outage")
        self.assertTrue(all(r["status"] == 200 for r in reqs))
        # Bounded by the backoff: the next attempt after 2 failures is <= 8 s away.
        self.assertLess(recover_s, 10)
        for user in self.users:
            self.assertEqual(self.dovecot.mailbox_count(user), messages)


DROP_RE = re.compile(r"(\d+) pushes dropped after their last attempt|push for \S+ \(token \w+\) dropped")


class GatewayDownPastDeadlineTest(DovecotTestCase):
    settings = {"chatmail_notify_deadline": "5s"}

    def test_every_item_dropped_counted_in_one_line_spool_empty(self):
        tokens = {u: [f"gone-{u}-{i:02d}" for i in range(10)] for u in self.users}
        for user, toks in tokens.items():
            self.register(user, *toks)
        items = sum(len(t) for t in tokens.values())
        self.gateway.stop()
        mark = self.dovecot.log_mark()
        t0 = time.monotonic()
        # One message to both users: their items share the same schedule.
        res = self.dovecot.lmtp_deliver(list(self.users))
        self.assertEqual([r[0] for r in res.values()], [250, 250], res)
        wait_until(lambda: self.dovecot.spool_status()["dropped"] >= items, 30,
                   "every item dropped")
        self.dovecot.wait_spool_empty()
        drop_s = time.monotonic() - t0
        lines = [l for l in self.dovecot.log_since(mark).splitlines() if DROP_RE.search(l)]
        counted = sum(int(DROP_RE.search(l).group(1) or 1) for l in lines)
        status = self.dovecot.spool_status()
        self.report_figures(items=items, sent=0, dropped=status["dropped"], lost_uncounted=items - counted,
                            drop_log_lines=len(lines), dropped_after_s=round(drop_s, 2))
        self.assertEqual(status["dropped"], items)
        self.assertEqual(counted, items, f"drops counted in the log: {lines}")
        self.assertLessEqual(len(lines), 2, f"a flood of drop lines: {lines}")
        for toks in tokens.values():
            for t in toks:
                self.assertNotIn(t, self.dovecot.log(), "a token was logged in clear")


if __name__ == "__main__":
    unittest.main()
