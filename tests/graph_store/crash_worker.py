"""Subprocess of test_crash.py: apply batches of a fixed event list forever-ish, resuming from
the store's recorded position. ``python -m tests.graph_store.crash_worker PATH N BATCH SEED``"""
import sys

from leadpulse.graph_store.rocks import RocksDBGraphStore
from tests.graph_store.worlds import random_events

TOPIC = ("crm.all", 0)


def main() -> None:
    path, n, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    events = random_events(n, seed)
    store = RocksDBGraphStore(path)
    start = store.positions().get(TOPIC, 0)
    print("ready", start, flush=True)
    for lo in range(start, n, batch):
        store.apply(events[lo:lo + batch], {TOPIC: min(lo + batch, n)})
        print("applied", min(lo + batch, n), flush=True)
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
