"""Attribute values as numbers and one-hot rows: the batched paths the encoder takes give what
the one-value-at-a-time definitions give, for the store's own values and for whatever a CRM sends."""
from __future__ import annotations

import math

import numpy as np

from leadpulse.model.features import _activity_numeric, _cat_values, _one_hot
from leadpulse.model.values import as_number, as_numbers
from leadpulse.schemas.timeutil import MICROS_PER_DAY

MIXES = [
    [1.5, 2, None, float("inf"), float("nan"), -3.0],  # the store's own: one numpy conversion
    [1.5, True, "2.5", "x", None, float("-inf"), {"a": 1}],  # anything else: one by one
    [],
]


def test_as_numbers_is_as_number_of_each_value():
    for values in MIXES:
        got = as_numbers(values)
        want = [as_number(v) for v in values]
        assert got.dtype == np.float64 and got.shape == (len(values),)
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got.tolist(), want))


def test_activity_ages_from_int_timestamps_are_the_ones_computed_one_by_one():
    as_of = 400 * MICROS_PER_DAY + 12_345
    ints = [{"timestamp": as_of - k * 7_777_777_777} for k in range(50)] + [{"timestamp": as_of + 5}]
    mixed = ints + [{"timestamp": "2026-01-01T00:00:00Z"}, {}]  # a string, and no time (the edge's)
    times = np.full(len(mixed), as_of - MICROS_PER_DAY)
    fast, cols = _activity_numeric(ints, as_of, times[:len(ints)])
    slow, _ = _activity_numeric(mixed, as_of, times)
    age = cols.index("age_days")
    expected = [max(0.0, (as_of - a["timestamp"]) / MICROS_PER_DAY) for a in ints]
    assert fast[:, age].tolist() == expected == slow[:len(ints), age].tolist()  # bit for bit
    assert slow[-1, age] == 1.0 and fast[-1, age] == 0.0  # no own time: the edge's; a future one: 0


def test_one_hot_rows_of_shared_and_distinct_token_lists():
    attrs = [{"tech": ["Go", "aws"]}, {"tech": ["go", "AWS"]}, {}, {"tech": ["rust"]}, {"tech": ["Go", "aws"]}]
    cats = _cat_values(attrs, "tech", True)
    assert cats[0] is cats[4] and cats[0] == ["aws", "go"] == cats[1] and cats[2] == []
    onehot = _one_hot(cats, ("aws", "go"), len(attrs))
    assert onehot.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [1, 1, 0]]


def test_token_lists_kept_across_calls_are_the_ones_computed_afresh(monkeypatch):
    from leadpulse.model import features, memo
    stored = [{"tech_stack": ["Go", "aws"], "industry": "SaaS"}, {"tech_stack": ["rust"]}, {}]
    first = memo.by_node(("tech_stack", True), lambda a: _cat_values(a, "tech_stack", True))(stored)
    again = memo.by_node(("tech_stack", True), lambda a: _cat_values(a, "tech_stack", True))(stored)
    assert [x is y for x, y in zip(first, again)] == [True, True, True]  # the same dicts: kept
    copies = [dict(a) for a in stored]  # equal content, other dicts: computed, the same values
    fresh = memo.by_node(("tech_stack", True), lambda a: _cat_values(a, "tech_stack", True))(copies)
    assert fresh == first == [["aws", "go"], ["rust"], []] and fresh[0] is not first[0]
    monkeypatch.setattr(memo, "ENTRIES", 2)  # over the bound: starts over, same answers
    many = [{"tech_stack": [f"t{k}"]} for k in range(5)]
    kept = memo.by_node(("tech_stack", True), lambda a: _cat_values(a, "tech_stack", True))
    assert kept(many) == kept(many) == [[f"t{k}"] for k in range(5)]
    titles = [f"VP Sales {k}" for k in range(5)] + [None, ""]
    assert _cat_values([{"title": t} for t in titles], "title", True) == \
        [features._cat_one(t, "title", True) for t in titles]


def test_one_hot_columns_kept_across_calls_follow_the_vocabulary():
    attrs = [{"tech": ["Go", "aws"]}, {"tech": ["rust"]}, {}, {"tech": ["Go", "aws"]}]
    cats = _cat_values(attrs, "tech", True)
    assert _one_hot(cats, ("aws", "go"), 4).tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert _one_hot(cats, ("aws", "go"), 4).tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert _one_hot(cats, ("rust",), 4).tolist() == [[0, 1], [1, 0], [0, 0], [0, 1]]  # another vocabulary
    assert _one_hot([], ("rust",), 0).shape == (0, 2)
