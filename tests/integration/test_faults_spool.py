"""Faults of the spool as the delivering side sees them: the size cap, a
full file system (a small tmpfs mounted by the test) and an unwritable spool.
The mail is delivered in every case; each lost notification is one error line."""
import contextlib
import os
import re
import subprocess
import time
import unittest

from harness import QUICK, DovecotTestCase, wait_until

LOST_RE = re.compile(r"Error: .*notification lost, mail delivered anyway: (.*)")


def lost_lines(dovecot, since):
    return [l for l in dovecot.log_since(since).splitlines() if LOST_RE.search(l)]


def spool_files(spool_dir):
    """Every file under the spool but the sender's own bookkeeping."""
    return sorted(str(p.relative_to(spool_dir)) for p in spool_dir.rglob("*") if p.is_file())


class SpoolCapTest(DovecotTestCase):
    settings = {"chatmail_notify_spool_max_items": "5"}

    def test_full_spool_refuses_new_items_and_still_delivers(self):
        devices = [f"cap-{i}" for i in range(8)]
        self.register("cmntest1", *devices)
        self.register("cmntest2", "cap-late")
        self.gateway.set_mode(status=500)  # nothing leaves the spool
        self.deliver("cmntest1")
        full = self.dovecot.spool_dir / "full"
        wait_until(full.exists, QUICK, "the spool marked full (8 items > 5)")
        mark = self.dovecot.log_mark()
        refused = 3
        for i in range(refused):
            self.deliver("cmntest2", subject=f"while full {i}")
        self.assertEqual(self.dovecot.mailbox_count("cmntest2"), refused)
        lines = lost_lines(self.dovecot, mark)
        self.assertEqual(len(lines), refused, "one error line per refused notification")
        self.assertTrue(all("spool is full" in l for l in lines), lines)
        self.assertNotIn("cap-late", self.dovecot.log(), "a token was logged in clear")
        self.assertEqual(self.dovecot.spool_status("cmntest2")["items"], 0)

        # The gateway is back: the spool drains, the mark goes, items are taken again.
        back = time.monotonic()
        self.gateway.set_mode()
        self.gateway.wait_answered(devices, timeout=30)
        wait_until(lambda: not full.exists(), QUICK, "the full mark removed")
        recover_s = time.monotonic() - back
        self.deliver("cmntest2")
        self.gateway.wait_answered(["cap-late"])
        self.report_figures(items=len(devices) + refused + 1, cap=5, refused=refused,
                            error_lines=len(lines), mails_delivered=refused + 2,
                            sent=len(devices) + 1, lost=0,
                            time_to_recover_s=round(recover_s, 2))


class FullFileSystemTest(DovecotTestCase):
    """The spool on a tmpfs of 256 KiB that the test then fills up."""

    def setUp(self):
        super().setUp()
        self.dovecot.stop()
        spool = self.dovecot.spool_dir
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0711", "cmn-test-spool",
                        str(spool)], check=True, timeout=QUICK)
        self.addCleanup(self._unmount)
        self.dovecot.start()
        wait_until(lambda: (spool / "incoming").is_dir(), QUICK, "the sender's spool folders")

    def _unmount(self):
        # Dovecot first (the sender keeps files open there), then the mount,
        # lazily if something still holds it.
        self.dovecot.stop()
        spool = str(self.dovecot.spool_dir)
        if subprocess.run(["umount", spool], timeout=QUICK).returncode != 0:
            subprocess.run(["umount", "-l", spool], timeout=QUICK)

    def fill(self):
        """Fills the file system; returns the filler's path."""
        filler = self.dovecot.spool_dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 4096) > 0:
                    pass
        finally:
            os.close(fd)
        return filler

    def test_full_file_system_delivers_mail_one_error_each_nothing_half_written(self):
        # Tokens of 3000 bytes: every delivery's records need a new page of
        # the tmpfs (a short token would fit in the journal's last page).
        devices = ["tmpfs-one-" + "x" * 3000, "tmpfs-two-" + "y" * 3000]
        self.register("cmntest1", *devices)
        self.deliver("cmntest1", subject="before")
        self.gateway.wait_answered(devices)
        self.dovecot.wait_spool_empty()
        before = set(spool_files(self.dovecot.spool_dir))

        filler = self.fill()
        mark = self.dovecot.log_mark()
        self.gateway.reset()
        deliveries = 4
        for i in range(deliveries):
            self.deliver("cmntest1", subject=f"disk full {i}")
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), 1 + deliveries)
        log = self.dovecot.log_since(mark)
        lines = lost_lines(self.dovecot, mark)
        queued = len(re.findall(r"notification queued", log))
        sender_errors = [l for l in self.dovecot.errors(mark) if "chatmail-notify-sender" in l]
        left = set(spool_files(self.dovecot.spool_dir)) - before - {"filler"}
        tmp_left = [f for f in left if "/.tmp-" in f]
        # Space again, and no new mail: whatever a delivery did write goes
        # by itself; nothing of the failed writes comes back as an item or
        # as something to quarantine.
        freed = time.monotonic()
        filler.unlink()
        if queued:
            self.gateway.wait_answered(devices, timeout=15)
        self.dovecot.wait_spool_empty()
        recover_s = time.monotonic() - freed
        sent_without_new_mail = len(self.gateway.requests())
        self.deliver("cmntest1", subject="after")
        self.gateway.wait_for_requests(lambda rs: len(rs) == sent_without_new_mail + 2,
                                       what="the pushes of the delivery after the disk-full")
        self.dovecot.wait_spool_empty()
        status = self.dovecot.spool_status()
        self.report_figures(deliveries=deliveries, mails_delivered=deliveries,
                            notifications_lost_lines=len(lines), notifications_queued=queued,
                            sender_error_lines=len(sender_errors), tmp_files_left=tmp_left,
                            quarantined=status["quarantined"],
                            sent_without_new_mail=sent_without_new_mail,
                            time_to_recover_s=round(recover_s, 2))
        self.assertGreaterEqual(len(lines), 1, "no delivery hit the full file system")
        self.assertEqual(len(lines) + queued, deliveries,
                         "each delivery either queued its items or logged one error")
        self.assertTrue(all("No space left" in l for l in lines), lines)
        self.assertEqual(tmp_left, [], "temporary files left by the failed writes")
        self.assertEqual(status["quarantined"], 0, "half-written records left for quarantine")
        # Queued items are coalesced per device: one push each.
        self.assertEqual(sent_without_new_mail, len(devices) if queued else 0)


class UnwritableSpoolTest(DovecotTestCase):
    def test_unwritable_incoming_delivers_mail_one_error_each(self):
        self.register("cmntest1", "ro-one")
        incoming = self.dovecot.spool_dir / "incoming"
        mode = incoming.stat().st_mode & 0o7777
        incoming.chmod(0o755)  # root's only: deliveries run as the user
        self.addCleanup(incoming.chmod, mode)
        mark = self.dovecot.log_mark()
        failures = 3
        for i in range(failures):
            self.deliver("cmntest1", subject=f"unwritable {i}")
        lines = lost_lines(self.dovecot, mark)
        errors = self.dovecot.errors(mark)
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), failures)
        incoming.chmod(mode)
        self.deliver("cmntest1", subject="writable again")
        self.gateway.wait_answered(["ro-one"])
        self.dovecot.wait_spool_empty()
        self.report_figures(deliveries=failures, mails_delivered=failures, error_lines=len(lines),
                            other_errors=len(errors) - len(lines),
                            tmp_files_left=[n for n in os.listdir(incoming) if n.startswith(".tmp-")],
                            sent_after_repair=len(self.gateway.requests()))
        self.assertEqual(len(lines), failures, f"one error per failed delivery: {errors}")
        self.assertEqual(errors, lines, "other errors")
        self.assertTrue(all("Permission denied" in l for l in lines), lines)
        self.assertEqual(len(self.gateway.requests()), 1)
        # The writer (lmtp process) still holds its journal; no temporary
        # journal of the refused creations is left.
        self.assertEqual([n for n in os.listdir(incoming) if n.startswith(".tmp-")], [])
        self.assertEqual(self.dovecot.spool_status()["quarantined"], 0)


if __name__ == "__main__":
    unittest.main()
