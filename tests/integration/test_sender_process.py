"""The sender service as a process: killed with items in flight, and fed by
many lmtp processes at once."""
import os
import re
import signal
import threading
import unittest

from harness import DovecotTestCase, wait_until


class SenderKillTest(DovecotTestCase):
    def test_kill_9_with_items_in_flight_loses_nothing_and_needs_no_new_delivery(self):
        devices = ["kill-one", "kill-two", "kill-three"]
        self.register("cmntest1", *devices)
        self.gateway.set_mode(hang=True)
        self.deliver("cmntest1")
        self.gateway.wait_for_requests(lambda reqs: len(reqs) >= len(devices),
                                       what="the requests in flight")
        # The hanging requests stay unanswered; the next ones are scripted
        # again (the master restarts the sender within a millisecond).
        self.gateway.set_mode()
        old_pid = self.dovecot.sender_pid()
        os.kill(old_pid, signal.SIGKILL)
        new_pid = wait_until(lambda: (self.dovecot.sender_pid() or old_pid) != old_pid
                             and self.dovecot.sender_pid(), 20, "a new sender process")
        self.assertNotEqual(new_pid, old_pid)
        self.gateway.wait_answered(devices, timeout=30)
        self.dovecot.wait_spool_empty()
        reqs = self.gateway.requests()
        for device in devices:
            self.assertEqual([r["status"] for r in reqs if r["token"] == device
                              and r["status"] is not None], [200], device)


class ConcurrentLmtpTest(DovecotTestCase):
    privilege = "vmail"
    users = tuple(f"conc{i:02d}" for i in range(12))

    def test_concurrent_lmtp_processes_each_delivery_pushed_once(self):
        for user in self.users:
            self.register(user, f"conc-token-{user}")
        start = threading.Barrier(len(self.users))
        results, lock = {}, threading.Lock()

        def deliver(user):
            start.wait(timeout=20)
            res = self.dovecot.lmtp_deliver(user)
            with lock:
                results[user] = res

        threads = [threading.Thread(target=deliver, args=(u,)) for u in self.users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(len(results), len(self.users), "a delivery thread did not finish")
        for user, res in results.items():
            self.assertEqual([r[0] for r in res.values()], [250], f"{user}: {res}")

        # lmtp serves one connection per process (client_limit = 1).
        lmtp_pids = set(re.findall(r"lmtp\((\d+)\): Info: Connect from", self.dovecot.log()))
        self.assertGreater(len(lmtp_pids), 1, "the deliveries did not run concurrently")

        tokens = [f"conc-token-{u}" for u in self.users]
        self.gateway.wait_answered(tokens, timeout=30)
        self.dovecot.wait_spool_empty()
        reqs = self.gateway.requests()
        self.assertEqual(sorted(r["token"] for r in reqs), sorted(tokens),
                         "every delivery pushed exactly once")


if __name__ == "__main__":
    unittest.main()
