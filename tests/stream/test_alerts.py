"""The tier-alert rule's documented examples."""
from __future__ import annotations

import doctest


def test_doctests() -> None:
    import stream.alerts
    result = doctest.testmod(stream.alerts)
    assert result.attempted > 0 and result.failed == 0
