"""Bad or unusual IMAP METADATA input: oversized tokens, control characters,
10,000 distinct tokens from one user (capped at max_tokens, oldest dropped),
and SETMETADATA on other mailboxes, other entries and the server, which stay
Dovecot's (mail_attribute_dict) as without the plugin."""
import subprocess
import time
import unittest

from harness import DovecotTestCase, quote

MAX_TOKENS = 32


def literal(data):
    """A LITERAL+ argument: any bytes, CR and LF included."""
    return b"{%d+}\r\n" % len(data) + data


class ImapBadInputTest(DovecotTestCase):
    settings = {"chatmail_notify_max_tokens": str(MAX_TOKENS)}

    def raw(self, imap, command_bytes):
        tag = imap._new_tag().decode()
        imap.send(tag.encode() + b" " + command_bytes + b"\r\n")
        return imap._read_tagged(tag)

    def test_oversized_and_control_character_tokens_are_refused(self):
        self.register("cmntest1", "good-before")
        mark = self.dovecot.log_mark()
        bad = {
            "oversized": b"o" * 5000,
            "huge-literal": b"h" * 200_000,
            "control-char": b"ctl\x01token",
            "tab": b"tab\ttoken",
            "crlf": b"crlf\r\ntoken",
            "nul": b"nul\x00token",
            "space": b"two words",
            "non-ascii": "t\u00f6ken".encode(),
            "empty": b"",
        }
        answers = {}
        with self.dovecot.imap("cmntest1") as imap:
            for kind, token in bad.items():
                status, text, _ = self.raw(imap, b"SETMETADATA INBOX (/private/devicetoken "
                                           + literal(token) + b")")
                answers[kind] = status
            # The session is still usable, and nothing was stored.
            self.assertEqual(imap.get_tokens(), ["good-before"])
        self.deliver("cmntest1")
        self.gateway.wait_answered(["good-before"])
        self.dovecot.wait_spool_empty()
        log = self.dovecot.log_since(mark)
        self.report_figures(refused={k: v for k, v in answers.items()},
                            stored=0, pushes=len(self.gateway.requests()))
        # An empty value is METADATA's way to delete the entry: answered OK.
        for kind, status in answers.items():
            if kind != "empty":
                self.assertIn(status, ("NO", "BAD"), f"{kind} was accepted")
        self.assertEqual([r["token"] for r in self.gateway.requests()], ["good-before"])
        for token in bad.values():
            if len(token) > 3:
                self.assertNotIn(token.decode("latin1"), log, "a refused token was logged")
        self.assertEqual([l for l in self.dovecot.errors(mark) if "Panic" in l or "Fatal" in l], [])

    def home_on_tmpfs(self, user):
        """The user's home on a tmpfs (unmounted at cleanup, also on failure):
        each SETMETADATA fsyncs the token file and its folder, about 11 ms
        on this test machine's disk, which would make 10,000 take 2 minutes."""
        acct = self.dovecot.accounts[user]
        home = str(acct["home"])
        subprocess.run(["mount", "-t", "tmpfs", "-o",
                        f"size=64m,mode=0700,uid={acct['uid']},gid={acct['gid']}",
                        "cmn-test-home", home], check=True, timeout=20)

        def unmount():
            if subprocess.run(["umount", home], timeout=20).returncode != 0:
                subprocess.run(["umount", "-l", home], timeout=20)
        self.addCleanup(unmount)

    def test_ten_thousand_tokens_are_capped_oldest_dropped(self):
        n = 10_000
        tokens = [f"many-{i:05d}" for i in range(n)]
        self.home_on_tmpfs("cmntest1")
        t0 = time.monotonic()
        with self.dovecot.imap("cmntest1") as imap:
            # Pipelined in batches: 10,000 round trips would take long.
            for start in range(0, n, 500):
                tags = []
                out = b""
                for token in tokens[start:start + 500]:
                    tag = imap._new_tag().decode()
                    tags.append(tag)
                    out += f'{tag} SETMETADATA INBOX (/private/devicetoken "{token}")\r\n'.encode()
                imap.send(out)
                for tag in tags:
                    status, text, _ = imap._read_tagged(tag)
                    self.assertEqual(status, "OK", text)
            stored = imap.get_tokens()
        took = time.monotonic() - t0
        size = self.dovecot.token_file("cmntest1").stat().st_size
        self.deliver("cmntest1")
        self.gateway.wait_answered(tokens[-MAX_TOKENS:])
        self.dovecot.wait_spool_empty()
        self.report_figures(registered=n, kept=len(stored), max_tokens=MAX_TOKENS,
                            store_bytes=size, pushes=len(self.gateway.requests()),
                            setmetadata_per_s=round(n / took))
        self.assertEqual(stored, tokens[-MAX_TOKENS:], "not the newest max_tokens tokens")
        self.assertEqual(sorted(r["token"] for r in self.gateway.requests()),
                         sorted(tokens[-MAX_TOKENS:]))
        self.assertLess(size, 64 * MAX_TOKENS)

    def test_other_mailboxes_entries_and_server_metadata_stay_dovecots(self):
        d = self.dovecot
        values = {
            ("INBOX", "/private/comment"): "inbox comment",
            ("INBOX", "/shared/devicetoken"): "shared-entry-token",
            ("Other", "/private/devicetoken"): "other-box-token",
            ("Other", "/private/comment"): "other comment",
            ("", "/private/devicetoken"): "server-token",
            ("", "/private/vendor/x-test"): "server vendor entry",
        }
        with d.imap("cmntest1") as imap:
            status, text, _ = imap.raw_command("CREATE Other")
            self.assertEqual(status, "OK", text)
            imap.set_token("inbox-token")
            for (box, entry), value in values.items():
                status, text, _ = imap.raw_command(
                    f"SETMETADATA {quote(box)} ({entry} {quote(value)})")
                self.assertEqual(status, "OK", f"{box} {entry}: {text}")
        # Read back in a new session: Dovecot's attribute dictionary has them.
        with d.imap("cmntest1") as imap:
            read = {k: imap.get_metadata(k[1], k[0]) for k in values}
            tokens = imap.get_tokens()
        attributes = (d.home("cmntest1") / "dovecot-attributes").read_text()
        self.deliver("cmntest1")
        self.gateway.wait_answered(["inbox-token"])
        d.wait_spool_empty()
        self.report_figures(entries=len(values), read_back=sum(
            1 for k, v in values.items() if read[k] == v), tokens=tokens,
            pushes=len(self.gateway.requests()))
        self.assertEqual(read, values)
        self.assertEqual(tokens, ["inbox-token"], "only INBOX /private/devicetoken is a token")
        for value in values.values():
            self.assertIn(value, attributes, "not in mail_attribute_dict")
        self.assertNotIn("inbox-token", attributes, "the token also went to the dict")
        self.assertEqual([r["token"] for r in self.gateway.requests()], ["inbox-token"])


if __name__ == "__main__":
    unittest.main()
