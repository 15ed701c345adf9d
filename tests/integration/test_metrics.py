"""The named events feed Dovecot's stats: the example metric block of
conf.d/90-notify.conf (sends by gateway status) and one for enqueues,
read back with `doveadm stats dump` after a delivery and its POST."""
import re
import unittest

from harness import REPO, DovecotTestCase, wait_until

NOTIFY_CONF = REPO / "conf.d/90-notify.conf"

ENQUEUED_METRIC = """
metric test_chatmail_notify_enqueued {
  filter = event=chatmail_notify_enqueued
}
"""


def example_metric_blocks():
    """The (uncommented) metric blocks of the shipped conf.d file."""
    try:
        text = NOTIFY_CONF.read_text()
    except FileNotFoundError:
        return []
    return re.findall(r"^metric \S+ \{.*?^\}", text, re.M | re.S)


def stats_counts(text):
    """`doveadm -f tab stats dump` as {metric_name: count}."""
    lines = [l.split("\t") for l in text.splitlines() if l]
    if not lines:
        return {}
    header = lines[0]
    name, count = header.index("metric_name"), header.index("count")
    return {row[name]: int(row[count]) for row in lines[1:]}


class MetricsTest(DovecotTestCase):
    extra_conf = "\n".join(example_metric_blocks()) + ENQUEUED_METRIC

    def counts(self):
        return stats_counts(self.dovecot.doveadm("-f", "tab", "stats", "dump").stdout)

    def wait_counts(self, expected, what):
        """Waits until each metric in `expected` has at least that count."""
        return wait_until(lambda: (lambda c: c if all(c.get(k, 0) >= v
                                                       for k, v in expected.items())
                                   else None)(self.counts()),
                          20, what)

    def test_shipped_example_has_a_send_metric(self):
        blocks = example_metric_blocks()
        self.assertTrue(any("event=chatmail_notify_send_finished" in b for b in blocks),
                        f"no metric for chatmail_notify_send_finished in {NOTIFY_CONF}")

    def test_stats_dump_counts_enqueues_and_sends_by_status(self):
        example = re.search(r"^metric (\S+) \{[^}]*event=chatmail_notify_send_finished",
                            "\n".join(example_metric_blocks()), re.M)
        self.assertIsNotNone(example, "the example metric block is missing")
        sent = example.group(1)
        before = self.counts()
        self.assertEqual(before.get("test_chatmail_notify_enqueued", 0), 0)

        self.register("cmntest1", "tok-metrics-a", "s410-metrics-gone")
        self.deliver("cmntest1")
        self.gateway.wait_answered(["tok-metrics-a"])
        self.gateway.wait_answered(["s410-metrics-gone"], status=410)

        counts = self.wait_counts({"test_chatmail_notify_enqueued": 1, sent: 2,
                                   f"{sent}_200": 1, f"{sent}_410": 1},
                                  "the enqueue and the two sends in doveadm stats dump")
        self.assertEqual(counts["test_chatmail_notify_enqueued"], 1,
                         "one enqueue event per delivery")
        self.assertEqual(counts[sent], 2, "one send event per POST")
        self.assertEqual(counts[f"{sent}_200"], 1)
        self.assertEqual(counts[f"{sent}_410"], 1)


if __name__ == "__main__":
    unittest.main()
