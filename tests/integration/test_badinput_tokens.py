"""Bad token stores (metadata.json) met by IMAP GETMETADATA/SETMETADATA and by
delivery: corrupt JSON, wrong types, a huge file, chatmail's legacy list form.
The mail is always delivered; a bad file is read as holding no tokens (with
a warning), moved aside at the next registration, never crashes anything."""
import json
import time
import unittest

from harness import DovecotTestCase

NOW = int(time.time())

CASES = {
    # user: (file content, tokens readable from it, whole file unusable)
    "corrupt": ('{"devicetoken": {"corrupt-a": %d' % NOW, [], True),
    "toplevel": ('["not", "an", "object"]', [], True),
    "huge": (json.dumps({"devicetoken": {"huge-a": NOW}, "pad": "x" * (2 << 20)}), [], True),
    "binary": (b"\x00\xff\xfe{\x01".decode("latin1") * 100, [], True),
    # An unusable entry is skipped (and dropped at the next write); the
    # rest of the file, other keys included, is kept.
    "wrongkind": (json.dumps({"devicetoken": "just a string", "other": 1}), [], False),
    "wrongtypes": (json.dumps({"devicetoken": {"wt-good": NOW, "wt-string": "yesterday",
                                               "wt null": NOW, "wt-float": 1.5e300},
                               "other": [1, 2, {"kept": True}]}), ["wt-good"], False),
    "legacy": (json.dumps({"devicetoken": ["leg-a", "leg-b"], "other": "kept"}),
               ["leg-a", "leg-b"], False),
}


class TokenStoreBadInputTest(DovecotTestCase):
    privilege = "vmail"
    users = tuple(CASES)

    def test_bad_token_stores_through_imap_and_delivery(self):
        d = self.dovecot
        for user, (content, _, _) in CASES.items():
            d.write_as_user(user, d.token_file(user), content)
        mark = d.log_mark()
        figures = {}
        for user, (content, readable, _) in CASES.items():
            with d.imap(user) as imap:
                self.assertEqual(imap.get_tokens(), readable, user)
            self.deliver(user, subject=f"bad store {user}")
            self.assertEqual(d.mailbox_count(user), 1, user)
        expected = [t for _, readable, _ in CASES.values() for t in readable]
        self.gateway.wait_answered(expected)
        d.wait_spool_empty()
        self.assertEqual(sorted(r["token"] for r in self.gateway.requests()), sorted(expected))
        read_log = d.log_since(mark)

        # A registration starts a new file (the bad one is kept aside) or,
        # for readable ones, adds to it and keeps unknown keys.
        for user, (content, readable, unusable) in CASES.items():
            with d.imap(user) as imap:
                imap.set_token(f"new-{user}")
                self.assertEqual(imap.get_tokens(), readable + [f"new-{user}"], user)
            stored = json.loads(d.token_file(user).read_text())
            self.assertIsInstance(stored["devicetoken"], dict, user)
            aside = [p for p in d.home(user).iterdir()
                     if p.name.startswith("metadata.json.") and p.name != "metadata.json.lock"]
            if not unusable:
                self.assertEqual(aside, [], user)
                self.assertEqual(stored.get("other"), json.loads(content)["other"],
                                 f"{user}: other keys lost")
            else:
                self.assertEqual(len(aside), 1, f"{user}: the bad file kept aside: {aside}")
                self.assertEqual(aside[0].read_text(errors="surrogateescape"), content, user)
            figures[user] = {"readable_tokens": len(readable),
                             "warnings": sum(1 for l in read_log.splitlines()
                                             if "Warning:" in l and f"/{d.address(user)}/" in l),
                             "moved_aside": len(aside)}
        self.gateway.reset()
        for user in CASES:
            self.deliver(user, subject="after the repair")
        self.gateway.wait_answered([f"new-{u}" for u in CASES])
        d.wait_spool_empty()
        errors = d.errors(mark)
        self.report_figures(cases=figures, mails_delivered=2 * len(CASES), errors=len(errors))
        self.assertEqual(errors, [], "bad token stores must warn, not fail")
        for user, f in figures.items():
            if user != "legacy":
                self.assertGreaterEqual(f["warnings"], 1, f"{user}: no warning about the bad file")


if __name__ == "__main__":
    unittest.main()
