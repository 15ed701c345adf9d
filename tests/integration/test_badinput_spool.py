"""Bad input in the spool, handed to the real sender service: empty,
truncated, oversized, binary and wrong-version records and files, symlinks, a
folder where a journal should be, a file of another user, a corrupt state
journal and a leftover temporary file. Each is quarantined or skipped with one
warning, the sender does not crash, and good items still go."""
import os
import random
import struct
import time
import unittest

from harness import QUICK, DovecotTestCase, wait_until

MAGIC = b"\x9cCMN"
TYPE_ITEM, TYPE_DONE = 1, 3


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def record(body, rtype=TYPE_ITEM, version=1, length=None):
    """A spool record as plugin/core/spool_record.h lays it out: magic,
    version, type, 2 zero bytes, u32 length, u32 CRC-32C, body."""
    length = 16 + len(body) if length is None else length
    head = MAGIC + bytes([version, rtype, 0, 0]) + struct.pack("<I", length)
    return head + struct.pack("<I", crc32c(body, crc32c(head))) + body


def item(addr, store, token, uid=0, now_ms=None):
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    def s(text):
        data = text.encode()
        return struct.pack("<I", len(data)) + data
    body = struct.pack("<QIIqq", 0, uid, 0, now_ms, now_ms) + s(addr) + s(str(store)) + s(token)
    return record(body)


def journal_name(uid=0):
    return f"{uid}.{os.getpid()}.{int(time.time() * 1000)}.{random.getrandbits(64):016x}.journal"


class SpoolBadInputTest(DovecotTestCase):
    def put(self, name, data=None, make=None, owner=None):
        """Creates a file (or whatever `make` makes) next to incoming/ and
        renames it in, so the sender never sees it half made."""
        staging = self.dovecot.spool_dir / "staging"
        staging.mkdir(exist_ok=True)
        path = staging / name
        if make:
            make(path)
        else:
            path.write_bytes(data)
        if owner:
            acct = self.dovecot.accounts[owner]
            os.lchown(path, acct["uid"], acct["gid"])
        os.rename(path, self.dovecot.spool_dir / "incoming" / name)
        return name

    def test_bad_journals_are_quarantined_once_and_good_items_go(self):
        d = self.dovecot
        addr1, store1 = d.address("cmntest1"), d.token_file("cmntest1")
        self.register("cmntest1", "s410-victim")
        sender = d.wait_sender()
        mark = d.log_mark()
        outside = d.dir / "outside-target"
        target_bytes = item(addr1, store1, "via-symlink")
        outside.write_bytes(target_bytes)
        good_then_cut = item(addr1, store1, "before-the-cut") + item(addr1, store1, "cut")[:30]
        bad = {
            "empty": self.put(journal_name(), b""),
            "truncated": self.put(journal_name(), good_then_cut),
            "oversized": self.put(journal_name(), item(addr1, store1, "x")[:8]
                                  + struct.pack("<I", 0x7FFFFFFF) + b"\0" * 64),
            "binary": self.put(journal_name(), random.Random(6).randbytes(1 << 20)),
            "wrong-version": self.put(journal_name(), record(b"\0" * 40, version=2)),
            "wrong-type": self.put(journal_name(), record(struct.pack("<Q", 1), rtype=TYPE_DONE)),
            "bad-checksum": self.put(journal_name(), item(addr1, store1, "flipped")[:-1] + b"?"),
            "symlink": self.put(journal_name(), make=lambda p: p.symlink_to(outside)),
            "directory": self.put(journal_name(), make=lambda p: p.mkdir()),
            "foreign-name": self.put("notes.txt", b"hello\n"),
        }
        # A journal of cmntest2 whose item claims to be cmntest1's: it is
        # cmntest2's (the file's owner), so its 410 may not touch cmntest1's store.
        acct1 = d.accounts["cmntest1"]
        self.put(journal_name(d.accounts["cmntest2"]["uid"]),
                 item(addr1, store1, "s410-victim", uid=acct1["uid"]), owner="cmntest2")
        res = d.enqueue_as("cmntest1", addr1, store1, ["good-after-bad"])
        self.assertEqual(res.returncode, 0, res.stderr)

        self.gateway.wait_answered(["good-after-bad", "before-the-cut"])
        self.gateway.wait_answered(["s410-victim"], status=410)
        incoming = d.spool_dir / "incoming"
        wait_until(lambda: not any((incoming / n).exists() or (incoming / n).is_symlink()
                                   for n in bad.values()), QUICK, "every bad file moved away")
        d.wait_spool_empty()
        log = d.log_since(mark)
        warnings = {k: [l for l in log.splitlines() if n in l and "Warning:" in l]
                    for k, n in bad.items()}
        quarantine = d.spool_dir / "quarantine"
        self.report_figures(bad_files=len(bad), quarantined=sum(
            1 for n in bad.values() if (quarantine / n).exists() or (quarantine / n).is_symlink()),
            warnings_per_file={k: len(v) for k, v in warnings.items()},
            good_items_sent=2, sender_restarts=int(d.sender_pid() != sender),
            errors=len(d.errors(mark)))
        for kind, lines in warnings.items():
            self.assertEqual(len(lines), 1, f"{kind}: one warning expected: {lines}")
            name = bad[kind]
            self.assertTrue((quarantine / name).exists() or (quarantine / name).is_symlink(),
                            f"{kind} not in quarantine/")
        self.assertEqual(d.sender_pid(), sender, "the sender crashed or restarted")
        self.assertEqual(d.errors(mark), [])
        self.assertEqual(outside.read_bytes(), target_bytes, "the symlink's target was touched")
        self.assertTrue((quarantine / bad["symlink"]).is_symlink(), "the link itself is kept")
        self.assertEqual(self.gateway.requests_for("via-symlink"), [], "followed a symlink")
        self.assertEqual(self.gateway.requests_for("flipped"), [])
        self.assertEqual(len(self.gateway.requests_for("before-the-cut")), 1)
        # Not cmntest2's store: the token stays where its owner put it.
        self.assertEqual(self.tokens_of("cmntest1"), ["s410-victim"])
        self.assertRegex(log, r"Warning: .*token \w+ of cmntest1@example.org is gone but stays registered")
        self.assertNotIn("s410-victim", log, "a token was logged in clear")

    def test_corrupt_state_journal_and_leftover_tmp_at_restart(self):
        d = self.dovecot
        self.register("cmntest1", "state-one", "state-two")
        self.gateway.set_mode(status=500)
        self.deliver("cmntest1")
        self.gateway.wait_for_requests(lambda rs: len(rs) >= 2, what="the failed first attempts")
        wait_until(lambda: d.spool_status()["items"] == 2, QUICK, "2 waiting items")
        d.stop()
        with open(d.spool_dir / "state" / "journal", "ab") as f:
            f.write(b"garbage that is no record" * 10)
        tmp = d.spool_dir / "incoming" / f".tmp-{journal_name(d.accounts['cmntest1']['uid'])}"
        tmp.write_bytes(item(d.address("cmntest1"), d.token_file("cmntest1"), "half-made"))
        self.gateway.set_mode()
        mark = d.log_mark()
        t0 = time.monotonic()
        d.start()
        self.gateway.wait_answered(["state-one", "state-two"], timeout=30)
        d.wait_spool_empty()
        recover_s = time.monotonic() - t0
        log = d.log_since(mark)
        state_warnings = [l for l in log.splitlines() if "unreadable bytes" in l]
        tmp_warnings = [l for l in log.splitlines() if "leftover temporary file" in l]
        self.report_figures(pending_before=2, sent_after_restart=2, lost=0,
                            state_warnings=len(state_warnings), tmp_warnings=len(tmp_warnings),
                            time_to_recover_s=round(recover_s, 2))
        self.assertEqual(len(state_warnings), 1, log)
        self.assertEqual(len(tmp_warnings), 1, log)
        self.assertFalse(tmp.exists())
        self.assertEqual(self.gateway.requests_for("half-made"), [])
        self.assertEqual(d.errors(mark), [])
        self.assertEqual(len(list((d.spool_dir / "quarantine").glob("state.*"))), 1)


if __name__ == "__main__":
    unittest.main()
