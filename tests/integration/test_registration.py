"""Token registration over IMAP METADATA (and doveadm), chatmail semantics."""
import json
import time
import unittest

from harness import DovecotTestCase


class RegistrationTest(DovecotTestCase):
    def test_quoted_and_literal_forms_in_any_letter_case_add_tokens_in_order(self):
        with self.dovecot.imap("cmntest1") as imap:
            imap.set_token("tok-quoted")
            imap.set_token("tok-literal", literal=True)
            imap.set_token("tok-upper", entry="/PRIVATE/DEVICETOKEN")
            imap.set_token("tok-mixed-literal", entry="/Private/DeviceToken", literal=True)
            imap.set_token("tok-quoted")  # a re-send refreshes, never duplicates
            self.assertEqual(imap.get_tokens(),
                             ["tok-quoted", "tok-literal", "tok-upper", "tok-mixed-literal"])
            self.assertEqual(imap.get_tokens(entry="/PRIVATE/DEVICETOKEN"),
                             ["tok-quoted", "tok-literal", "tok-upper", "tok-mixed-literal"])
        stored = json.loads(self.dovecot.token_file("cmntest1").read_text())
        self.assertEqual(list(stored["devicetoken"]),
                         ["tok-quoted", "tok-literal", "tok-upper", "tok-mixed-literal"])
        # The plugin owns the entry: Dovecot's own dict never sees a token.
        attrs = self.dovecot.home("cmntest1") / "dovecot-attributes"
        self.assertNotIn("tok-", attrs.read_text() if attrs.exists() else "")
        # Another user's store is separate.
        self.assertEqual(self.tokens_of("cmntest2"), [])

    def test_nil_is_accepted_and_changes_nothing(self):
        self.register("cmntest1", "tok-keep")
        with self.dovecot.imap("cmntest1") as imap:
            status, text, _ = imap.raw_command("SETMETADATA INBOX (/private/devicetoken NIL)")
            self.assertEqual(status, "OK", text)
            self.assertEqual(imap.get_tokens(), ["tok-keep"])

    def test_invalid_tokens_get_a_tagged_no_and_nothing_is_stored(self):
        self.register("cmntest1", "tok-good")
        bad = {"quote": 'a"b', "space": "a b", "backslash": "a\\b",
               "control character": "a\x01b", "too long": "x" * 4097}
        with self.dovecot.imap("cmntest1") as imap:
            for why, token in bad.items():
                with self.subTest(why):
                    status, text = imap.set_token(token, literal=True, expect=None)
                    self.assertEqual(status, "NO", f"{why}: {text}")
                    self.assertIn("token", text.lower(), f"{why}: unclear NO text {text!r}")
            self.assertEqual(imap.get_tokens(), ["tok-good"])
            # Other METADATA keys still go to Dovecot's own dict.
            status, text, _ = imap.raw_command('SETMETADATA INBOX (/private/comment "hi")')
            self.assertEqual(status, "OK", text)
            self.assertEqual(imap.get_metadata("/private/comment"), "hi")
        self.assertEqual(self.dovecot.log().count("x" * 64), 0, "a token was logged in clear")

    def test_doveadm_metadata_set_and_get_go_the_same_way(self):
        addr = self.dovecot.address("cmntest1")
        self.dovecot.doveadm("mailbox", "metadata", "set", "-u", addr, "INBOX",
                             "/private/devicetoken", "tok-doveadm")
        self.register("cmntest1", "tok-imap")
        out = self.dovecot.doveadm("mailbox", "metadata", "get", "-u", addr, "INBOX",
                                   "/private/devicetoken").stdout
        self.assertIn("tok-doveadm tok-imap", out)
        self.assertEqual(self.tokens_of("cmntest1"), ["tok-doveadm", "tok-imap"])


class ChatmailTokenFileTest(DovecotTestCase):
    """metadata.json as a chatmail relay left it, in both of its formats."""

    def test_map_and_legacy_list_forms_are_read_and_notified(self):
        now = int(time.time())
        self.dovecot.write_as_user("cmntest1", self.dovecot.token_file("cmntest1"), json.dumps(
            {"devicetoken": {"map-a": now - 60, "map-b": now}, "other": {"kept": [1, 2]}}))
        self.dovecot.write_as_user("cmntest2", self.dovecot.token_file("cmntest2"), json.dumps(
            {"devicetoken": ["legacy-a", "legacy-b"]}))
        self.assertEqual(self.tokens_of("cmntest1"), ["map-a", "map-b"])
        self.assertEqual(self.tokens_of("cmntest2"), ["legacy-a", "legacy-b"])

        self.deliver("cmntest1")
        self.deliver("cmntest2")
        self.gateway.wait_answered(["map-a", "map-b", "legacy-a", "legacy-b"])

        # A new registration rewrites the legacy list as the map form and
        # keeps unknown keys.
        self.register("cmntest2", "legacy-c")
        stored = json.loads(self.dovecot.token_file("cmntest2").read_text())
        self.assertEqual(list(stored["devicetoken"]), ["legacy-a", "legacy-b", "legacy-c"])
        self.register("cmntest1", "map-c")
        stored = json.loads(self.dovecot.token_file("cmntest1").read_text())
        self.assertEqual(stored["other"], {"kept": [1, 2]})


if __name__ == "__main__":
    unittest.main()
