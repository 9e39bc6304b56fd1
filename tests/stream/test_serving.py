"""The serving facts of a loaded model (stream/serving.py): their documented examples, and the
defaults every reader gets from a bare scorer."""
from __future__ import annotations

import doctest


def test_doctests() -> None:
    import leadpulse.stream.serving
    result = doctest.testmod(leadpulse.stream.serving)
    assert result.attempted > 0 and result.failed == 0


def test_a_scorer_without_serving_facts_reads_as_the_defaults() -> None:
    from types import SimpleNamespace

    from leadpulse.model.task import DEFAULT_TASK, parse_task
    from leadpulse.stream.serving import Serving, serving_of

    assert serving_of(None) == serving_of(SimpleNamespace(version="v1")) == Serving()
    task = parse_task(DEFAULT_TASK)
    served = SimpleNamespace(serving=Serving(task=task, auroc=0.8, family="gnn", reason="better"))
    assert serving_of(served).task is task and parse_task(serving_of(served).query) == task
