"""Benchmarks of leadpulse (they print figures and write JSON; they never fail on time).

Run them all with ``leadpulse bench``; see docs/benchmarks.md."""
