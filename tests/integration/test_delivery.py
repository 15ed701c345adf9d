"""Notification on delivery: who gets a push, and how many."""
import unittest

from harness import DovecotTestCase


class DeliveryTest(DovecotTestCase):
    def test_two_devices_get_two_posts(self):
        self.register("cmntest1", "dev-one", "dev-two")
        self.deliver("cmntest1")
        self.gateway.wait_answered(["dev-one", "dev-two"])
        self.dovecot.wait_spool_empty()
        reqs = self.gateway.requests()
        self.assertEqual(sorted(r["token"] for r in reqs), ["dev-one", "dev-two"])
        self.assertNoErrors()

    def test_several_recipients_of_one_message_each_get_their_push(self):
        self.register("cmntest1", "rcpt-one")
        self.register("cmntest2", "rcpt-two")
        results = self.dovecot.lmtp_deliver(["cmntest1", "cmntest2"])
        self.assertEqual([r[0] for r in results.values()], [250, 250], results)
        self.gateway.wait_answered(["rcpt-one", "rcpt-two"])
        self.dovecot.wait_spool_empty()
        self.assertEqual(sorted(r["token"] for r in self.gateway.requests()),
                         ["rcpt-one", "rcpt-two"])

    def test_dovecot_lda_delivery_notifies_too(self):
        self.register("cmntest1", "lda-token")
        res = self.dovecot.lda_deliver("cmntest1")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), 1)
        self.gateway.wait_answered(["lda-token"])

    def test_self_sent_message_is_skipped(self):
        self.register("cmntest1", "self-token")
        # The From address in another letter case than the recipient's.
        self.deliver("cmntest1", sender="CMNTEST1@Example.ORG")
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), 1)
        self.assertNoPushFor("cmntest1", "self-token")
        # A message from someone else does notify.
        self.deliver("cmntest1")
        self.gateway.wait_answered(["self-token"])

    def test_user_without_tokens_gets_no_notification(self):
        self.deliver("cmntest2")
        self.assertEqual(self.dovecot.mailbox_count("cmntest2"), 1)
        self.assertNoPushFor("cmntest2", None)
        self.assertFalse(self.dovecot.token_file("cmntest2").exists(),
                         "a delivery created a token file")
        self.assertNoErrors()

    def assertNoPushFor(self, user, token):
        """The delivery was acknowledged, so an item would be in the spool
        now or already POSTed: check both, in that order."""
        self.assertEqual(self.dovecot.spool_status(user)["items"], 0,
                         f"an item was enqueued for {user}")
        reqs = self.gateway.requests()
        self.assertEqual([r for r in reqs if token is None or r["token"] == token], [],
                         f"a push was sent for {user}")


class SieveDeliveryTest(DovecotTestCase):
    sieve = True

    def test_fileinto_counts_once_and_discard_not_at_all(self):
        self.dovecot.set_sieve("cmntest1", 'require ["fileinto", "mailbox"];\n'
                               'fileinto :create "Other";\nfileinto :create "More";\nkeep;\n')
        self.dovecot.set_sieve("cmntest2", "discard;\n")
        self.register("cmntest1", "sieve-filed")
        self.register("cmntest2", "sieve-discarded")

        self.deliver("cmntest1")
        self.deliver("cmntest2")
        self.assertEqual(self.dovecot.mailbox_count("cmntest1", "Other"), 1)
        self.assertEqual(self.dovecot.mailbox_count("cmntest1", "INBOX"), 1)
        self.assertEqual(self.dovecot.mailbox_count("cmntest2", "INBOX"), 0)

        self.gateway.wait_answered(["sieve-filed"])
        self.dovecot.wait_spool_empty()
        self.assertEqual(len(self.gateway.requests_for("sieve-filed")), 1,
                         "fileinto + keep must notify once")
        self.assertEqual(self.gateway.requests_for("sieve-discarded"), [],
                         "a discarded message must not notify")


if __name__ == "__main__":
    unittest.main()
