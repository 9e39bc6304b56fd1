"""KVState on a real RocksDB: its read cache always answers what the database holds."""
import random

from leadpulse.stream.state import KVState


def test_cached_reads_match_the_database_through_puts_deletes_and_reopen(tmp_path):
    rng = random.Random(0)
    state = KVState(tmp_path / "kv", cache_entries=8)   # small: evictions happen all the time
    truth: dict[str, object] = {}
    last_put = None
    keys = [f"c{i}" for i in range(30)]
    for step in range(400):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.4:
            value = {"score": rng.random(), "tier": rng.choice("ABCD"), "top_factors": [{"factor": "x"}]}
            state.commit({("s", key): value}, positions={("crm.activities", 0): step})
            truth[key] = value
            last_put = step
        elif roll < 0.5:
            state.commit(deletes=[("s", key)])
            truth.pop(key, None)
        else:
            assert state.get("s", key) == truth.get(key)
        assert len(state._cache) <= 8
    assert {k[0]: v for k, v in state.scan("s")} == truth
    state.close()

    reopened = KVState(tmp_path / "kv")
    assert all(reopened.get("s", k) == truth.get(k) for k in keys)
    assert reopened.positions() == {("crm.activities", 0): last_put}   # written with the puts
    reopened.close()


def test_no_cache_reads_the_database_each_time(tmp_path):
    state = KVState(tmp_path / "kv", cache_entries=0)
    state.commit({("own", "c1"): [2, 10]})
    assert state.get("own", "c1") == [2, 10] and not state._cache
    state.close()
