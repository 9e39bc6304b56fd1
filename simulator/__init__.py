"""A simulated B2B CRM with known conversion mechanisms (docs/simulator.md).

Leaf package: imports only ``schemas``, numpy and the standard library.

    >>> from simulator import simulate
    >>> world = simulate("tiny", seed=0)
"""
from simulator.params import SIZES, SimParams, SizeSpec
from simulator.simulate import simulate
from simulator.world import LABEL_COLUMNS, World

__all__ = ["simulate", "SimParams", "SIZES", "SizeSpec", "World", "LABEL_COLUMNS"]
