"""Where the data sets that ship with edgekit live: ``calibration/NAME`` in the source tree, or
``edgekit/calibration/NAME`` in the installed wheel (pyproject's package-dir)."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]


def shipped_dir(name: str) -> Path:
    """The folder of the shipped data set ``name`` (the source tree's when neither exists)."""
    candidates = (_PKG.parent / "calibration" / name, _PKG / "calibration" / name)
    return next((d for d in candidates if d.is_dir()), candidates[0])
