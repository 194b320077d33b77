"""Text tables of the benchmark summaries (``summarize.py``, ``operations.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def aligned(cells: Sequence[Sequence[str]], right: Iterable[int]) -> list[str]:
    """Rows of cells as text columns, a rule under the header; ``right`` columns right-aligned."""
    right = set(right)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    text = []
    for i, row in enumerate(cells):
        text.append(
            "  ".join(
                cell.rjust(w) if col in right else cell.ljust(w)
                for col, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return text
