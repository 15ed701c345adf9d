"""valgrind memcheck of one delivery through the plugin: dovecot-lda -d for
a user with two registered tokens, in a private Dovecot with the built
plugin (tests/integration/harness.py). Fails on any memcheck error or
definitely lost block; prints one `VALGRIND {...}` line with the counts.

    CMN_BUILD_DIR=$PWD/build /usr/bin/python3 tests/tooling/valgrind_delivery.py
"""
import json
import re
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness import DOVECOT_LDA, QUICK, DovecotTestCase, make_message  # noqa: E402

ERROR_EXIT = 99
# valgrind runs dovecot-lda ~30x slower than natively.
SLOW = 10 * QUICK


def memcheck_counts(log):
    """Errors and leak figures (bytes, blocks) from a valgrind log."""
    def leak(kind):
        m = re.search(rf"{kind}: ([\d,]+) bytes in ([\d,]+) blocks", log)
        return [int(g.replace(",", "")) for g in m.groups()] if m else [0, 0]
    errors = re.search(r"ERROR SUMMARY: (\d+) errors", log)
    return {"errors": int(errors.group(1)) if errors else None,
            "definitely_lost": leak("definitely lost"),
            "indirectly_lost": leak("indirectly lost"),
            "possibly_lost": leak("possibly lost"),
            "still_reachable": leak("still reachable")}


class ValgrindDeliveryTest(DovecotTestCase):
    def test_lda_delivery_with_two_tokens_has_no_error_and_no_definite_leak(self):
        self.register("cmntest1", "vg-dev-one", "vg-dev-two")
        addr = self.dovecot.address("cmntest1")
        log_file = self.workdir / "valgrind.log"
        # dovecot-lda re-executes itself through doveconf to read its
        # config: valgrind follows the execs, and the log left at the end
        # (same pid, reopened) is that of the final dovecot-lda.
        cmd = ["valgrind", "--tool=memcheck", "--trace-children=yes", "--leak-check=full",
               "--errors-for-leak-kinds=definite", f"--error-exitcode={ERROR_EXIT}",
               "--track-origins=yes", "--num-callers=30", f"--log-file={log_file}",
               DOVECOT_LDA, "-c", str(self.dovecot.conf), "-d", addr, "-f", "alice@example.net"]
        res = subprocess.run(cmd, input=make_message(addr).as_bytes(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=SLOW)
        log = log_file.read_text(errors="replace")
        self.assertRegex(log, r"Command: \S*dovecot-lda ", "valgrind's log is not dovecot-lda's")
        counts = memcheck_counts(log)
        print(f"\nVALGRIND {json.dumps({'program': 'dovecot-lda', **counts})}", flush=True)
        if res.returncode != 0 or counts["errors"] != 0:
            print(log)
        self.assertNotEqual(res.returncode, ERROR_EXIT, "memcheck found errors (log above)")
        self.assertEqual(res.returncode, 0, res.stderr.decode(errors="replace"))
        self.assertEqual(counts["errors"], 0)
        self.assertEqual(counts["definitely_lost"], [0, 0])
        # The delivery really went through the plugin: both devices get their push.
        self.gateway.wait_answered(["vg-dev-one", "vg-dev-two"])
        self.assertEqual(self.dovecot.mailbox_count("cmntest1"), 1)
        self.assertNoErrors()


if __name__ == "__main__":
    unittest.main(verbosity=2)
