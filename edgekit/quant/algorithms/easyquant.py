"""EasyQuant (Wu et al. 2020, "EasyQuant: Post-training Quantization via Scale Optimization"),
the baseline Q-HyViT and PTQ4ViT compare with: each quantizer's scale chosen to maximise the
cosine similarity of its layer's output with the FP32 output (Sec. 3.1), 100 candidates in
[0.5, 1.2] times the max-based scale, one round (PTQ4ViT's base configuration); per-channel
weights, symmetric per-tensor activations. The search engine is ``edgekit.quant.scale_search``."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.qhyvit import ScaleSearchConfig, plan_search, searched_recipe
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS


@dataclass
class EasyQuantConfig(ScaleSearchConfig):
    """EasyQuant: the search fields (``ScaleSearchConfig``) at the cosine search's settings."""
    metric: str = "cosine"
    alpha_lo: float = 0.5
    alpha_hi: float = 1.2
    rounds: int = 1
    weight_granularities: tuple[str, ...] = ("per_channel",)
    activation_schemes: tuple[str, ...] = ("symmetric",)
    bridges: bool = False


def easyquant(canonical: CanonicalModel, cfg: EasyQuantConfig, calib: CalibrationSource,
              placement: str = "xnnpack") -> QuantRecipe:
    """EasyQuant's cosine scale search on real calibration images (``calib``)."""
    return searched_recipe(canonical, cfg, calib, "easyquant", placement)


ALGORITHMS.register("easyquant", Algorithm("easyquant", easyquant, EasyQuantConfig, None,
                                           "EasyQuant: cosine-similarity scale search (baseline), real calibration data",
                                           plan=plan_search))
