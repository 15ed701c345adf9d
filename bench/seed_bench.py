"""Runs the seed notifier (the relay's Python notifier) over a pre-filled
queue of the given tokens against a gateway, and prints one JSON line:
how long its threads took to send them all.

usage: seed_bench.py NOTIFIER_PY URL TOKENS_FILE QUEUE_DIR TIMEOUT_S

For HTTPS set REQUESTS_CA_BUNDLE to the gateway's CA: the seed verifies."""

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path


def load_seed(path):
    spec = importlib.util.spec_from_file_location("seed_notifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    seed_path, url, tokens_file, queue_dir, timeout_s = sys.argv[1:6]
    seed = load_seed(seed_path)
    tokens = Path(tokens_file).read_text().split()
    queue_dir = Path(queue_dir)
    queue_dir.mkdir(parents=True, exist_ok=True)
    start_ts = time.time()
    for i, token in enumerate(tokens):
        seed.PersistentQueueItem.create(queue_dir, f"user{i // 2}@bench.example", start_ts, token)

    # The seed deletes an item's file once the gateway accepted it: count
    # those deletions instead of polling the folder (which would steal the
    # GIL from the threads being measured).
    finished = threading.Event()
    lock = threading.Lock()
    deleted = [0]
    original_delete = seed.PersistentQueueItem.delete

    def counting_delete(item):
        original_delete(item)
        with lock:
            deleted[0] += 1
            if deleted[0] >= len(tokens):
                finished.set()

    seed.PersistentQueueItem.delete = counting_delete
    seed.Notifier.URL = url
    notifier = seed.Notifier(queue_dir)
    t0 = time.perf_counter()
    notifier.start_notification_threads(lambda addr, token: None)
    ok = finished.wait(float(timeout_s))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"items": len(tokens), "ok": ok, "sent": deleted[0],
                      "sent_ms": elapsed * 1000, "tokens_per_s": deleted[0] / elapsed}),
          flush=True)


if __name__ == "__main__":
    main()
