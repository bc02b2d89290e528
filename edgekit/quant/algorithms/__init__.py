"""Quantization algorithms: each a config plus a registered function
``(canonical, QuantConfig, CalibrationSource, placement=NAME) -> QuantRecipe``; ``placement`` is
the targets' placement policy (``edgekit.quant.placement``), for methods that reconstruct
through the quantized graph."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Algorithm:
    """A registered quantization method.

    fn: (CanonicalModel, QuantConfig, CalibrationSource, placement=str) -> QuantRecipe.
    synthesizer: the data-free calibration source it uses with --data-free ("zeroq", "genie"),
    or None when it needs real data (--calib).
    mixed_precision: whether fn honours per-layer weight bits in ``QuantConfig.overrides`` (--mixed-precision).
    data_free_quant: QuantConfig fields set with --data-free unless given on the command line
    (the BN-analytic activation ranges for ZeroQ; none for Genie, whose reconstruction learns
    the step sizes from an MSE start on its own images).
    quant_defaults: QuantConfig fields the method sets whatever the data, under the user's;
    ``overrides`` there come before the user's patterns (Genie: first and last layers at 8 bits).
    """
    name: str
    fn: Callable
    synthesizer: str | None
    description: str
    mixed_precision: bool = False
    data_free_quant: dict = field(default_factory=dict)
    quant_defaults: dict = field(default_factory=dict)

    def defaults(self, data_free: bool) -> dict:
        """QuantConfig fields this method sets (``quant_defaults``, then with ``data_free`` its
        ``data_free_quant``), before the user's."""
        return {**self.quant_defaults, **(self.data_free_quant if data_free else {})}
