"""Both privilege setups, and users with different uids kept apart."""
import os
import stat
import unittest

from harness import DovecotTestCase


class FullCycle:
    """Register, deliver, push, 410: then every file in the user's home
    still belongs to the user (never root)."""

    def test_register_deliver_push_and_410_keep_files_owned_by_the_user(self):
        self.register("cmntest1", "cycle-keep", "s410-cycle")
        self.deliver("cmntest1")
        self.gateway.wait_answered(["cycle-keep"])
        self.gateway.wait_answered(["s410-cycle"], status=410)
        self.dovecot.wait_spool_empty()
        self.assertEqual(self.tokens_of("cmntest1"), ["cycle-keep"])
        acct = self.dovecot.accounts["cmntest1"]
        for root, dirs, files in os.walk(acct["home"]):
            for name in dirs + files:
                st = os.lstat(os.path.join(root, name))
                self.assertEqual((st.st_uid, st.st_gid), (acct["uid"], acct["gid"]),
                                 f"{os.path.join(root, name)} is not the user's")
        mode = stat.S_IMODE(os.stat(self.dovecot.token_file("cmntest1")).st_mode)
        self.assertEqual(mode & 0o077, 0, f"metadata.json mode {mode:o}")
        self.assertNoErrors()


class DebianDefaultPrivilegesTest(FullCycle, DovecotTestCase):
    privilege = "system"   # lmtp as root, seteuid to each system user


class ChatmailVmailPrivilegesTest(FullCycle, DovecotTestCase):
    privilege = "vmail"    # service lmtp { user = cmnvmail }, virtual users


class UserSeparationTest(DovecotTestCase):
    privilege = "system"

    def test_a_spool_item_naming_another_users_token_file_does_not_touch_it(self):
        victim_token = "s410-victim"
        self.register("cmntest2", victim_token)
        victim_file = self.dovecot.token_file("cmntest2")
        before = victim_file.read_bytes(), os.stat(victim_file)

        mark = self.dovecot.log_mark()
        res = self.dovecot.enqueue_as("cmntest1", self.dovecot.address("cmntest2"),
                                      victim_file, [victim_token])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.gateway.wait_answered([victim_token], status=410)
        self.dovecot.wait_spool_empty()
        self.dovecot.wait_for_log(r"(Warning|Error):.*(metadata\.json|owned|uid)", since=mark)

        after = victim_file.read_bytes(), os.stat(victim_file)
        self.assertEqual(after[0], before[0], "the other user's token file was rewritten")
        self.assertEqual((after[1].st_ino, after[1].st_mtime_ns, after[1].st_uid),
                         (before[1].st_ino, before[1].st_mtime_ns, before[1].st_uid))
        self.assertEqual(self.tokens_of("cmntest2"), [victim_token])


if __name__ == "__main__":
    unittest.main()
