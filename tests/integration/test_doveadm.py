"""doveadm chatmail-notify status|list|flush|tokens against the private
Dovecot, the error cases included: a missing spool, a stopped Dovecot, a
bad user, a bad argument, a bad setting.

doveadm loads its plugins only from /usr/lib/dovecot/modules/doveadm (a
path compiled into it). So that the system stays untouched, each doveadm
here runs in a mount namespace of its own (unshare -m) where that folder
is a copy of Debian's doveadm plugins plus the freshly built one. Where
mount namespaces are not allowed, an installed package's plugin is used,
or the tests are skipped saying why."""
import contextlib
import hashlib
import re
import shutil
import subprocess
import unittest
from pathlib import Path

from harness import (DOVEADM_PLUGIN_SO, PLUGIN_SO, QUICK, SENDER_BIN, SPOOL_TOOL,
                     DovecotTestCase, wait_until)

SYSTEM_DOVEADM_MODULES = Path("/usr/lib/dovecot/modules/doveadm")

# doveadm's exit codes (sysexits.h, doveadm.h)
EX_NOUSER, EX_TEMPFAIL, EX_USAGE, EX_CONFIG = 67, 75, 64, 78
EX_NOTFOUND = 68  # DOVEADM_EX_NOTFOUND


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def tab_rows(text):
    """`doveadm -f tab` output as a list of dicts keyed by the header."""
    lines = [l for l in text.splitlines() if l]
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


def status_fields(text):
    return {r["field"]: r["value"] for r in tab_rows(text)}


_namespaces_work = None


def mount_namespaces_work(module_dir):
    global _namespaces_work
    if _namespaces_work is None:
        res = subprocess.run(["unshare", "--mount", "sh", "-c",
                              'mount --bind "$0" "$1"', str(module_dir),
                              str(SYSTEM_DOVEADM_MODULES)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             timeout=QUICK)
        _namespaces_work = res.returncode == 0
    return _namespaces_work


class DoveadmPlugin:
    """Runs doveadm with the built plugin visible (see the module's doc)."""

    def __init__(self, workdir):
        self.module_dir = Path(workdir) / "doveadm-modules"
        self.module_dir.mkdir()
        for so in SYSTEM_DOVEADM_MODULES.glob("*.so"):
            if so.name != DOVEADM_PLUGIN_SO.name:
                # Copies: a symlink into the folder the copy is mounted on
                # would point at itself.
                shutil.copy2(so, self.module_dir / so.name)
        (self.module_dir / DOVEADM_PLUGIN_SO.name).symlink_to(DOVEADM_PLUGIN_SO)
        self.isolated = mount_namespaces_work(self.module_dir)
        self.installed = (SYSTEM_DOVEADM_MODULES / DOVEADM_PLUGIN_SO.name).exists()

    def unusable_reason(self):
        if self.isolated or self.installed:
            return None
        return ("doveadm loads plugins only from /usr/lib/dovecot/modules/doveadm, "
                "mount namespaces (unshare -m) are not allowed here and the "
                "package is not installed")

    def command(self, conf, args):
        doveadm = ["doveadm", "-c", str(conf), *args]
        if not self.isolated:
            return doveadm
        return ["unshare", "--mount", "sh", "-c",
                'mount --bind "$0" "$1" && shift && exec "$@"',
                str(self.module_dir), str(SYSTEM_DOVEADM_MODULES), *doveadm]


class DoveadmTestCase(DovecotTestCase):
    requires = (PLUGIN_SO, SENDER_BIN, SPOOL_TOOL, DOVEADM_PLUGIN_SO)
    # A failed attempt waits an hour: pending items stay put for the test.
    settings = {"chatmail_notify_backoff_base": "1h"}

    def setUp(self):
        super().setUp()
        self.plugin = DoveadmPlugin(self.workdir)
        reason = self.plugin.unusable_reason()
        if reason:
            self.skipTest(reason)

    def adm(self, *args, expect=0, opts=()):
        """Runs `doveadm [opts] -f tab ARGS`; asserts the exit code."""
        cmd = self.plugin.command(self.dovecot.conf, [*opts, "-f", "tab", *args])
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=QUICK)
        self.assertEqual(res.returncode, expect,
                         f"doveadm {' '.join(args)}: exit {res.returncode}, expected "
                         f"{expect}\nstdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def addr(self, user):
        return self.dovecot.address(user)

    def status(self):
        return status_fields(self.adm("chatmail-notify", "status").stdout)

    def fail_once(self, user, name):
        """Registers a token the gateway answers 500 once (then 200) and
        delivers: the item stays pending at attempt 1 for an hour."""
        token = f"fail1x-{name}"
        self.register(user, token)
        self.deliver(user)
        self.gateway.wait_for_requests(
            lambda reqs: any(r["token"] == token and r.get("status") == 500 for r in reqs),
            what=f"the failed first attempt of {token}")
        wait_until(lambda: self.pending_attempt(user, token) == "1", QUICK,
                   f"{token} pending at attempt 1")
        return token

    def pending_attempt(self, user, token):
        rows = tab_rows(self.adm("chatmail-notify", "list", "-u", self.addr(user)).stdout)
        for row in rows:
            if row["token_hash"] == token_hash(token):
                return row["attempt"]
        return None

    def assertNoClearToken(self, res, *tokens):
        for token in tokens:
            self.assertNotIn(token, res.stdout + res.stderr, "a token shown in clear")


class HelpTest(DoveadmTestCase):
    def test_commands_are_registered(self):
        res = self.adm("chatmail-notify", expect=EX_USAGE)
        for name in ("status", "list", "flush", "tokens"):
            self.assertRegex(res.stdout + res.stderr, rf"\b{name}\b")


class StatusTest(DoveadmTestCase):
    def test_status_names_the_running_sender_and_an_empty_spool(self):
        # The sender takes its lock a moment after Dovecot started it.
        fields = wait_until(lambda: (lambda f: f if f["sender_pid"] == str(self.dovecot.sender_pid())
                                     else None)(self.status()),
                            QUICK, "doveadm status to name the running sender")
        self.assertEqual(fields["spool"], str(self.dovecot.spool_dir))
        self.assertEqual(fields["pending"], "0")
        self.assertEqual(fields["next_due"], "-")
        for counter in ("sent", "gone", "retried", "dropped"):
            self.assertRegex(fields[counter], r"^\d+$", counter)

    def test_status_counts_pending_items_by_attempt_with_age_and_next_due(self):
        self.register("cmntest2", "s200-ok")
        self.deliver("cmntest2")
        self.gateway.wait_answered(["s200-ok"])
        token = self.fail_once("cmntest1", "status")

        fields = wait_until(lambda: (lambda f: f if f["retried"] != "0" and f["sent"] != "0"
                                     else None)(self.status()),
                            QUICK, "the sender to publish its counters")
        self.assertEqual(fields["pending"], "1")
        self.assertEqual(fields["pending_attempt_1"], "1")
        self.assertNotIn("pending_attempt_0", fields)
        self.assertEqual(fields["sent"], "1")
        self.assertRegex(fields["oldest_age"], r"^\d+(ms|s)$", "the item is seconds old")
        # Due an hour after the failed attempt.
        self.assertRegex(fields["next_due_in"], r"^(59m\d\ds|1h00m)$")
        self.assertRegex(fields["next_due"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertRegex(fields["sender_started"], r"^\d{4}-\d\d-\d\d ")
        self.assertNoClearToken(self.adm("chatmail-notify", "status"), token)


class ListTest(DoveadmTestCase):
    def test_list_shows_pending_items_with_hashes_never_tokens(self):
        t1 = self.fail_once("cmntest1", "one")
        t2 = self.fail_once("cmntest2", "two")
        res = self.adm("chatmail-notify", "list")
        rows = tab_rows(res.stdout)
        self.assertEqual(sorted((r["address"], r["token_hash"], r["attempt"], r["state"])
                                for r in rows),
                         sorted([(self.addr("cmntest1"), token_hash(t1), "1", "sender"),
                                 (self.addr("cmntest2"), token_hash(t2), "1", "sender")]))
        for row in rows:
            self.assertRegex(row["due_in"], r"^(59m\d\ds|1h00m)$")
            self.assertRegex(row["uid"], r"^\d+$")
        self.assertNoClearToken(res, t1, t2)

    def test_list_of_one_user(self):
        t1 = self.fail_once("cmntest1", "one")
        self.fail_once("cmntest2", "two")
        rows = tab_rows(self.adm("chatmail-notify", "list", "-u", self.addr("cmntest1")).stdout)
        self.assertEqual([(r["address"], r["token_hash"]) for r in rows],
                         [(self.addr("cmntest1"), token_hash(t1))])

    def test_list_of_an_unknown_user_fails(self):
        res = self.adm("chatmail-notify", "list", "-u", "nobody@example.org", expect=EX_NOUSER)
        self.assertIn("nobody@example.org doesn't exist", res.stderr)


class FlushTest(DoveadmTestCase):
    def test_flush_of_one_user_sends_that_users_items_now(self):
        t1 = self.fail_once("cmntest1", "one")
        t2 = self.fail_once("cmntest2", "two")
        res = self.adm("chatmail-notify", "flush", "-u", self.addr("cmntest2"))
        self.assertEqual(tab_rows(res.stdout), [{"address": self.addr("cmntest2"), "items": "1"}])
        self.gateway.wait_answered([t2])
        self.assertEqual([r["status"] for r in self.gateway.requests_for(t1)], [500],
                         "another user's item was flushed")
        self.assertEqual(self.pending_attempt("cmntest1", t1), "1")

    def test_flush_of_everything(self):
        t1 = self.fail_once("cmntest1", "one")
        t2 = self.fail_once("cmntest2", "two")
        res = self.adm("chatmail-notify", "flush")
        self.assertEqual(tab_rows(res.stdout), [{"address": "*", "items": "2"}])
        self.gateway.wait_answered([t1, t2])
        self.dovecot.wait_spool_empty()
        self.assertEqual(tab_rows(self.adm("chatmail-notify", "list").stdout), [])

    def test_flush_of_an_unknown_user_fails(self):
        res = self.adm("chatmail-notify", "flush", "-u", "nobody@example.org", expect=EX_NOUSER)
        self.assertIn("nobody@example.org doesn't exist", res.stderr)


class TokensTest(DoveadmTestCase):
    def test_tokens_lists_hashes_with_their_age(self):
        tokens = ["tok-phone", "tok-laptop"]
        self.register("cmntest1", *tokens)
        res = self.adm("chatmail-notify", "tokens", "-u", self.addr("cmntest1"))
        rows = tab_rows(res.stdout)
        self.assertEqual([r["token_hash"] for r in rows], [token_hash(t) for t in tokens])
        for row in rows:
            self.assertRegex(row["age"], r"^\d+(ms|s)$")
            self.assertRegex(row["refreshed"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertNoClearToken(res, *tokens)

    def test_a_user_without_tokens_has_an_empty_list(self):
        res = self.adm("chatmail-notify", "tokens", "-u", self.addr("cmntest2"))
        self.assertEqual(tab_rows(res.stdout), [])

    def test_remove_takes_out_exactly_that_token(self):
        self.register("cmntest1", "tok-phone", "tok-laptop")
        self.register("cmntest2", "tok-phone")
        self.adm("chatmail-notify", "tokens", "remove", "-u", self.addr("cmntest1"),
                 token_hash("tok-phone").upper())
        self.assertEqual(self.tokens_of("cmntest1"), ["tok-laptop"])
        self.assertEqual(self.tokens_of("cmntest2"), ["tok-phone"])
        res = self.adm("chatmail-notify", "tokens", "remove", "-u", self.addr("cmntest1"),
                       token_hash("tok-phone"), expect=EX_NOTFOUND)
        self.assertIn(f"No token with hash {token_hash('tok-phone')}", res.stderr)

    def test_remove_refuses_a_malformed_hash_or_a_missing_one(self):
        self.register("cmntest1", "tok-phone")
        res = self.adm("chatmail-notify", "tokens", "remove", "-u", self.addr("cmntest1"),
                       "tok-phone", expect=EX_USAGE)
        self.assertIn("Invalid token hash", res.stderr)
        self.adm("chatmail-notify", "tokens", "remove", "-u", self.addr("cmntest1"),
                 expect=EX_USAGE)
        self.assertEqual(self.tokens_of("cmntest1"), ["tok-phone"])

    def test_tokens_of_an_unknown_user_fail(self):
        for args in (["tokens"], ["tokens", "remove"]):
            extra = [token_hash("x")] if "remove" in args else []
            res = self.adm("chatmail-notify", *args, "-u", "nobody@example.org", *extra,
                           expect=EX_NOUSER)
            self.assertIn("doesn't exist", res.stderr)

    def test_a_bad_setting_is_named(self):
        res = self.adm("chatmail-notify", "tokens", "-u", self.addr("cmntest1"),
                       opts=["-o", "plugin/chatmail_notify_token_ttl=soon"], expect=EX_CONFIG)
        self.assertIn("chatmail_notify_token_ttl", res.stderr)


class MissingSpoolTest(DoveadmTestCase):
    def test_every_spool_command_names_the_missing_spool(self):
        missing = self.workdir / "no-such-spool"
        opts = ["-o", f"plugin/chatmail_notify_spool_dir={missing}"]
        for args in (["status"], ["list"], ["flush"], ["list", "-u", self.addr("cmntest1")],
                     ["flush", "-u", self.addr("cmntest1")]):
            res = self.adm("chatmail-notify", *args, opts=opts, expect=EX_NOTFOUND)
            self.assertIn(f"Spool {missing} does not exist", res.stderr, args)
        self.assertFalse(missing.exists(), "doveadm created the spool")


class UnservedSpoolTest(DoveadmTestCase):
    def test_a_spool_no_sender_serves_is_reported_while_dovecot_runs(self):
        other = self.workdir / "other-spool"
        other.mkdir()
        opts = ["-o", f"plugin/chatmail_notify_spool_dir={other}"]
        res = self.adm("chatmail-notify", "status", opts=opts, expect=EX_TEMPFAIL)
        self.assertIn(f"Dovecot runs, but no chatmail-notify-sender process holds {other}",
                      res.stderr)
        self.assertEqual(status_fields(res.stdout)["sender_pid"], "none")
        res = self.adm("chatmail-notify", "list", opts=opts, expect=EX_TEMPFAIL)
        self.assertIn("no chatmail-notify-sender process", res.stderr)


class StoppedDovecotTest(DoveadmTestCase):
    def test_every_command_says_dovecot_is_stopped(self):
        token = self.fail_once("cmntest1", "stopped")
        self.dovecot.stop()

        res = self.adm("chatmail-notify", "status", expect=EX_TEMPFAIL)
        self.assertIn("Dovecot is not running", res.stderr)
        fields = status_fields(res.stdout)
        self.assertEqual(fields["sender_pid"], "none")
        self.assertEqual(fields["pending"], "1", "status still tells what waits")

        res = self.adm("chatmail-notify", "list", expect=EX_TEMPFAIL)
        self.assertIn("Dovecot is not running", res.stderr)
        self.assertEqual([r["token_hash"] for r in tab_rows(res.stdout)], [token_hash(token)])

        res = self.adm("chatmail-notify", "flush", expect=EX_TEMPFAIL)
        self.assertIn("Dovecot is not running", res.stderr)

        for args in (["list", "-u", self.addr("cmntest1")],
                     ["flush", "-u", self.addr("cmntest1")]):
            res = self.adm("chatmail-notify", *args, expect=EX_TEMPFAIL)
            self.assertIn("is Dovecot running?", res.stderr, args)

        for args in (["tokens"], ["tokens", "remove"]):
            extra = [token_hash("x")] if "remove" in args else []
            res = self.adm("chatmail-notify", *args, "-u", self.addr("cmntest1"), *extra,
                           expect=EX_TEMPFAIL)
            self.assertIn("Dovecot is not running", res.stderr, args)

    def test_a_flush_made_while_stopped_is_done_after_the_start(self):
        token = self.fail_once("cmntest1", "later")
        self.dovecot.stop()
        self.adm("chatmail-notify", "flush", expect=EX_TEMPFAIL)
        self.dovecot.start()
        self.gateway.wait_answered([token])


if __name__ == "__main__":
    unittest.main()
