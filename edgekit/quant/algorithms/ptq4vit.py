"""PTQ4ViT's Hessian-guided scale search (Yuan et al. 2022, "PTQ4ViT: Post-Training Quantization
for Vision Transformers with Twin Uniform Quantization", Sec. 4.2), the baseline Q-HyViT builds
on: each scale chosen by the Hessian-weighted (diagonal Fisher) error of its layer's output,
100 candidates in [0.01, 1.2] times the max-based scale, 3 rounds; per-channel weights,
symmetric per-tensor activations, no bridge blocks.

Not built: the twin-uniform quantizers of post-softmax and post-GELU values (two scales on one
tensor). No int8 runtime stores two scales on a tensor (XNNPACK, LiteRT and ONNX QDQ take one
scale and zero point per tensor or channel), so this baseline uses one uniform scale there."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.qhyvit import ScaleSearchConfig, searched_recipe
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS


@dataclass
class PTQ4ViTConfig(ScaleSearchConfig):
    """PTQ4ViT (without twin-uniform): the search fields (``ScaleSearchConfig``) at its settings."""
    weight_granularities: tuple[str, ...] = ("per_channel",)
    activation_schemes: tuple[str, ...] = ("symmetric",)
    bridges: bool = False
    damping: float = 0.0


def ptq4vit(canonical: CanonicalModel, cfg: PTQ4ViTConfig, calib: CalibrationSource,
            placement: str = "xnnpack") -> QuantRecipe:
    """PTQ4ViT's Hessian-guided search on real calibration images (``calib``)."""
    return searched_recipe(canonical, cfg, calib, "ptq4vit", placement)


ALGORITHMS.register("ptq4vit", Algorithm("ptq4vit", ptq4vit, PTQ4ViTConfig, None,
                                         "PTQ4ViT's Hessian-guided scale search, one uniform scale per tensor "
                                         "(baseline), real calibration data"))
