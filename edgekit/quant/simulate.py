"""The PyTorch simulation of a recipe: the canonical graph with quantize/dequantize at the points
a target's PT2E quantizer chooses, parameters from the recipe (a fake-quant reference model).
"""
from __future__ import annotations

import torch
from torch import fx
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer

from edgekit.models.canonical import CanonicalModel
from edgekit.quant.observer import load_recipe_into
from edgekit.quant.recipe import QuantRecipe


def quantize_with_recipe(canonical: CanonicalModel, recipe: QuantRecipe, quantizer: Quantizer,
                         fold_quantize: bool = False) -> fx.GraphModule:
    """prepare_pt2e with ``quantizer``, load ``recipe``'s parameters, convert_pt2e.

    Returns a GraphModule with quantize/dequantize ops: float32 [N, C, H, W] -> float32 logits.
    Raises ValueError when the recipe lacks a tensor the quantizer wants quantized.
    """
    prepared = prepare_pt2e(canonical.graph_module, quantizer)
    load_recipe_into(prepared, recipe)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


@torch.no_grad()
def run_batched(fn, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Apply ``fn`` to ``images`` (float32 [N, C, H, W]) in batches; returns concatenated outputs."""
    return torch.cat([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
