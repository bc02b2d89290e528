"""Quantization algorithms: each a config plus a registered function
``(canonical, QuantConfig, CalibrationSource) -> QuantRecipe``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Algorithm:
    """A registered quantization method.

    fn: (CanonicalModel, QuantConfig, CalibrationSource) -> QuantRecipe.
    synthesizer: the data-free calibration source it uses with --data-free ("zeroq", "genie"),
    or None when it needs real data (--calib).
    mixed_precision: whether fn honours ``QuantConfig.layer_bits`` (--mixed-precision).
    """
    name: str
    fn: Callable
    synthesizer: str | None
    description: str
    mixed_precision: bool = False
