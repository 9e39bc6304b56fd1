"""Kill a real writer process at random moments; the store must reopen at a batch boundary
with its contents equal to exactly the events its recorded offset says were consumed."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.rocks import RocksDBGraphStore
from tests.graph_store.reference import as_sets
from tests.graph_store.worlds import TIMES, random_events

N, BATCH, SEED = 16000, 200, 7
ROOT = Path(__file__).resolve().parents[2]  # the worker runs as ``-m tests.graph_store.crash_worker``
T_END = TIMES[0] + 400 * 86_400_000_000


def _expected(n: int):
    store = MemoryGraphStore()
    store.apply(random_events(N, SEED)[:n])
    return as_sets(store.snapshot(T_END))


@pytest.mark.slow
def test_sigkill_mid_apply_leaves_a_batch_boundary(tmp_path):
    rng = random.Random(1)
    path = str(tmp_path / "store")
    seen = []
    for _attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "tests.graph_store.crash_worker", path, str(N), str(BATCH), str(SEED)],
                                stdout=subprocess.PIPE, cwd=ROOT, text=True)
        line = proc.stdout.readline()           # "ready <offset>": the store is open
        assert line.startswith("ready"), line
        for _ in range(rng.randint(0, 6)):      # let a few batches commit ("applied <offset>"),
            proc.stdout.readline()              # whatever the speed of the store
        time.sleep(rng.uniform(0, 0.02))        # then kill at a random moment of the stream
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        store = RocksDBGraphStore(path)
        offset = store.positions().get(("crm.all", 0), 0)
        assert offset % BATCH == 0 or offset == N
        assert as_sets(store.snapshot(T_END)) == _expected(offset)
        store.close()
        seen.append(offset)
        if offset == N:
            break
    assert len([o for o in seen if 0 < o < N]) >= 3, seen   # several kills landed mid-stream
    print("offsets after each SIGKILL:", seen)
