"""ZeroQ (Cai et al. 2020): calibrate on distilled data that matches the BN statistics
(``edgekit.synth.zeroq``); weights per-channel, activation ranges from the distilled batch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS


@dataclass
class ZeroQConfig(PTQConfig):
    """ZeroQ: the whitepaper PTQ fields (``PTQConfig``). With --data-free (``DATA_FREE``) the
    BN-backed tensors take their BN-analytic ranges at 6 sigma, with DFQ's equalization and bias
    correction and room above the distilled images' logits: the one setting that held both
    reference models' floors (README, "What made MobileNetV2 work"; MobileNetV2 simulated SQNR
    with the output margin x1 20.0 dB, x1.5 20.8, x2 20.7, x3 20.5)."""
    DATA_FREE: ClassVar[dict[str, Any]] = {"bn_ranges": "replace", "bn_range_sigmas": 6.0, "equalize": True,
                                           "bias_correction": True, "output_range_margin": 2.0}


def zeroq(canonical: CanonicalModel, cfg: ZeroQConfig, calib: CalibrationSource,
          placement: str = "xnnpack") -> QuantRecipe:
    """ZeroQ uniform quantization: the whitepaper scheme calibrated on ``calib`` (distilled with
    --data-free, or real images with --calib, for a few-shot comparison)."""
    return calibrate(canonical, cfg, calib, "zeroq")


ALGORITHMS.register("zeroq", Algorithm("zeroq", zeroq, ZeroQConfig, "zeroq", "ZeroQ: distilled data from BN statistics",
                                       mixed_precision=True))
