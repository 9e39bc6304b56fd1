"""Docstring examples are tests, so the docs cannot rot."""
import doctest

import leadpulse.schemas.parse


def test_parse_doctests():
    result = doctest.testmod(leadpulse.schemas.parse)
    assert result.attempted > 0 and result.failed == 0
