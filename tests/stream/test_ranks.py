"""A lead's percentile among this worker's scored leads: the tree against a brute-force
ranking, and the account stage's published percentiles against its score book."""
from __future__ import annotations

import numpy as np
import pytest

from leadpulse.stream.ranks import ScoreRanks
from tests.stream.test_accounts import _new_processor, _records, _tiny_batches


def _brute(scores: dict, x: float) -> float:
    """100 x the share of scores lower than ``x`` (scores equal to six decimals are ties)."""
    below = sum(1 for s in scores.values() if round(s * 1e6) < round(x * 1e6))
    return round(100.0 * below / len(scores), 2)


def test_updates_and_drops_match_a_brute_force_ranking():
    rng = np.random.default_rng(7)
    ranks, scores = ScoreRanks(), {}
    for step in range(3000):
        lead = f"c{int(rng.integers(0, 400))}"
        if rng.random() < 0.15:
            ranks.discard(lead)
            scores.pop(lead, None)
        else:
            s = float(rng.random() ** 3) if rng.random() < 0.9 else float(rng.choice([0.0, 1.0, 0.25]))
            ranks.set(lead, s)
            scores[lead] = s
        if step % 100 == 0 and scores:
            for x in list(scores.values())[:20] + [0.0, 1.0, 0.5]:
                assert ranks.percentile(x) == _brute(scores, x)
    assert len(ranks) == len(scores)
    rebuilt = ScoreRanks.build(scores.items())
    assert all(rebuilt.below(x) == ranks.below(x) for x in np.linspace(0, 1, 101))
    assert ScoreRanks().percentile(0.5) is None


@pytest.fixture
def processor(tmp_path, tiny_world, trained_registry):
    proc = _new_processor(trained_registry[0], tmp_path, {"explain_budget": 50, "explain_per_second": 1e9})
    yield proc
    proc.store.close()
    proc.book.close()


def test_published_scores_carry_percentiles_and_signed_factors(processor, tiny_world):
    explained = 0
    for lo, chunk in _tiny_batches(tiny_world, size=100):
        out = processor.process(_records(chunk, lo), 0)
        processor.commit_published(out)
        book = {key[0]: e["score"] for key, e in processor.book.scan("s")}
        single_chunk = len({s.contact_id for s in out.scores}) <= processor.options.max_batch_leads
        for s in out.scores:
            assert s.percentile is not None and 0 <= s.percentile <= 100
            if single_chunk and not out.dropped:  # published as of the book this batch committed
                assert s.percentile == _brute(book, s.score), s.contact_id
            assert all(f.contribution > 0 for f in s.positive_factors)
            assert all(f.contribution < 0 for f in s.negative_factors)
            assert {f.factor for f in s.top_factors} <= {f.factor for f in s.positive_factors + s.negative_factors}
            explained += bool(s.top_factors)
            entry = processor.book.get("s", s.contact_id)
            assert entry["positive_factors"] == [f.model_dump() for f in s.positive_factors]
    assert explained
    # the tree equals the book, and a rebuild from it gives the same ranks
    book = {key[0]: e["score"] for key, e in processor.book.scan("s")}
    assert len(processor.ranks()) == len(book)
    for x in list(book.values())[:200]:
        assert processor.percentile(x) == _brute(book, x)
    live = [processor.percentile(x) for x in book.values()]
    processor.count_tiers()  # a rebalance: rebuilt from the book when next asked
    assert [processor.percentile(x) for x in book.values()] == live
    # the on-demand explanation of /leads gives the three lists
    cid = next(iter(book))
    now = processor.explain_now(cid)
    assert set(now) == {"top_factors", "positive_factors", "negative_factors"}
