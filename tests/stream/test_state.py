"""KVState on a real RocksDB: its read cache always answers what the database holds."""
import json
import random

from rocksdict import Options, Rdict

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
        elif roll < 0.8:
            assert state.get("s", key) == truth.get(key)
        else:  # several at once, some cached, some not, some absent, one twice
            some = rng.sample(keys, 5)
            some.append(some[0])
            assert state.get_many([("s", k) for k in some]) == [truth.get(k) for k in some]
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


def test_get_many_without_a_cache(tmp_path):
    state = KVState(tmp_path / "kv", cache_entries=0)
    state.commit({("s", "a"): {"score": 0.5}, ("s", "b"): [1, "x"]})
    assert state.get_many([("s", "b"), ("s", "none"), ("s", "a")]) == [[1, "x"], None, {"score": 0.5}]
    assert state.get_many([]) == [] and not state._cache
    state.close()


def test_values_read_and_written_as_json_before(tmp_path):
    """A directory written by json.dumps (the encoder before orjson) reads back the same, and
    what is written now is JSON the standard library reads, int keys as strings as before."""
    value = {"score": 0.123456789012, "tier": "B", "as_of": 1_700_000_000_000_000, "name": "Zoë",
             "top_factors": [{"group": "colleagues", "contribution": -1e-7}], "none": None, "ok": True}
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(tmp_path / "kv"), opts)
    db[KVState.key("s", "old")] = json.dumps(value, separators=(",", ":")).encode()
    db.close()
    state = KVState(tmp_path / "kv")
    assert state.get("s", "old") == value
    state.commit({("s", "new"): value, ("m", "ints"): {1: "a"}})
    state.close()
    db = Rdict(str(tmp_path / "kv"), opts)
    assert json.loads(db[KVState.key("s", "new")]) == value
    assert json.loads(db[KVState.key("m", "ints")]) == {"1": "a"}
    db.close()
