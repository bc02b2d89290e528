"""PTQ4ViT (Yuan et al. 2022, "PTQ4ViT: Post-Training Quantization for Vision Transformers with
Twin Uniform Quantization"), the baseline Q-HyViT builds on:
- twin-uniform quantizers (Sec. 4.1) on post-softmax and post-GELU values (and post-SiLU, the
  same shape), two (bits-1)-bit grids on one tensor (``edgekit.quant.qparams.twin_fake_quant``),
  searched as ``scale_search._search_twin`` says;
- every other scale chosen by the Hessian-weighted (diagonal Fisher) error of its layer's output
  (Sec. 4.2), 100 candidates in [0.01, 1.2] times the max-based scale, 3 rounds; per-channel
  weights, symmetric per-tensor activations, no bridge blocks.

No int8 runtime stores two scales on a tensor (XNNPACK, LiteRT and ONNX QDQ take one scale and
zero point per tensor or channel): a twin-uniform recipe runs only in the ``simulation`` target,
the others refuse it. ``twin_uniform = false`` gives the deployable variant (one uniform scale
per tensor)."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.qhyvit import ScaleSearchConfig, plan_search, searched_recipe
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS


@dataclass
class PTQ4ViTConfig(ScaleSearchConfig):
    """PTQ4ViT: the search fields (``ScaleSearchConfig``) at its settings, twin-uniform on."""
    weight_granularities: tuple[str, ...] = ("per_channel",)
    activation_schemes: tuple[str, ...] = ("symmetric",)
    bridges: bool = False
    damping: float = 0.0
    twin_uniform: bool = True


def ptq4vit(canonical: CanonicalModel, cfg: PTQ4ViTConfig, calib: CalibrationSource,
            placement: str = "xnnpack") -> QuantRecipe:
    """PTQ4ViT's Hessian-guided search on real calibration images (``calib``)."""
    return searched_recipe(canonical, cfg, calib, "ptq4vit", placement)


ALGORITHMS.register("ptq4vit", Algorithm("ptq4vit", ptq4vit, PTQ4ViTConfig, None,
                                         "PTQ4ViT: twin-uniform post-softmax/GELU quantizers and Hessian-guided "
                                         "scale search (baseline; --target simulation), real calibration data",
                                         plan=plan_search))
