"""Docstring examples of graph_store are tests, so the docs cannot rot."""
import doctest

import pytest

import graph_store.memory
import graph_store.options
import graph_store.rocks
import graph_store.timeline


@pytest.mark.parametrize("module", [graph_store.memory, graph_store.options, graph_store.rocks,
                                    graph_store.timeline])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
