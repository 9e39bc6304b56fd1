"""Docstring examples of graph_store are tests, so the docs cannot rot."""
import doctest

import pytest

import leadpulse.graph_store.career
import leadpulse.graph_store.memory
import leadpulse.graph_store.options
import leadpulse.graph_store.rocks
import leadpulse.graph_store.timeline


@pytest.mark.parametrize("module", [leadpulse.graph_store.career, leadpulse.graph_store.memory, leadpulse.graph_store.options, leadpulse.graph_store.rocks,
                                    leadpulse.graph_store.timeline])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
