"""leadpulse: real-time lead scoring from the relational, temporal context of a CRM.

The repository keeps the product's folders at its top (``schemas/``, ``graph_store/``,
``model/``, ``stream/``, ``simulator/``, ``bench/``); the distribution installs them only as
subpackages of this one import name (``leadpulse.stream``, ``leadpulse.model``, ...), through
setuptools' ``package-dir`` mapping in ``pyproject.toml``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leadpulse")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
