"""Fixtures of the graph store suites: one factory per store implementation."""
from __future__ import annotations

import tempfile
from typing import Callable, Iterator

import pytest

from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.rocks import RocksDBGraphStore

STORES = ["memory", "rocksdb"]


@pytest.fixture(params=STORES)
def make_store(request) -> Iterator[Callable[..., object]]:
    """``make_store(options=None)`` -> a fresh empty store of the parametrized kind."""
    opened = []
    dirs = []

    def factory(options: GraphStoreOptions | None = None):
        if request.param == "memory":
            store = MemoryGraphStore(options)
        else:
            d = tempfile.TemporaryDirectory(prefix="gs-")
            dirs.append(d)
            store = RocksDBGraphStore(d.name, options)
        opened.append(store)
        return store

    factory.kind = request.param
    yield factory
    for store in opened:
        store.close()
    for d in dirs:
        d.cleanup()
