"""A simulated B2B CRM with known conversion mechanisms (docs/simulator.md).

Leaf package: imports only ``schemas``, numpy and the standard library.

    >>> from leadpulse.simulator import simulate
    >>> world = simulate("tiny", seed=0)
"""
from leadpulse.simulator.params import SIZES, SimParams, SizeSpec
from leadpulse.simulator.simulate import simulate
from leadpulse.simulator.world import LABEL_COLUMNS, World

__all__ = ["simulate", "SimParams", "SIZES", "SizeSpec", "World", "LABEL_COLUMNS"]
