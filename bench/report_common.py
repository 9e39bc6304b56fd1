"""What every report section shares: number formatting, Markdown tables, saving a plot."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt


def f(value, digits: int = 1, unit: str = "") -> str:
    """A number for a table cell (``n/a`` when missing)."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
