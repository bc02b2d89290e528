"""The PyTorch simulation of a recipe: the canonical graph with quantize/dequantize at the points
a target's PT2E quantizer chooses, parameters from the recipe (a fake-quant reference model).
"""
from __future__ import annotations

import torch
from torch import fx
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer

from edgekit.models.canonical import CanonicalModel, get_attr_tensor, run_batched, set_attr_tensor  # noqa: F401  (re-exported)
from edgekit.quant.observer import load_recipe_into
from edgekit.quant.recipe import QuantRecipe


def quantize_with_recipe(canonical: CanonicalModel, recipe: QuantRecipe, quantizer: Quantizer,
                         fold_quantize: bool = False) -> fx.GraphModule:
    """prepare_pt2e with ``quantizer``, load ``recipe``'s parameters, convert_pt2e.

    Returns a GraphModule with quantize/dequantize ops: float32 [N, C, H, W] -> float32 logits.
    Raises ValueError when the recipe lacks a tensor the quantizer wants quantized.
    """
    prepared = prepare_pt2e(with_rounded_weights(canonical.graph_module, recipe), quantizer)
    load_recipe_into(prepared, recipe)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


@torch.no_grad()
def with_rounded_weights(gm: fx.GraphModule, recipe: QuantRecipe) -> fx.GraphModule:
    """Write ``int_weight * scale`` into the weight of every layer the recipe has rounded weights
    for (so the target's quantize op reproduces exactly those integers), and the recipe's
    corrected biases into their layers; returns ``gm``.

    Raises ValueError when a rounded weight's or a bias's shape differs from the layer's.
    """
    if not recipe.rounded_weights and not recipe.biases:
        return gm
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, b in recipe.biases.items():
        set_attr_tensor(gm, nodes[name].args[2], b)
    for name, q in recipe.rounded_weights.items():
        tq = recipe.layers[name].weight
        w = get_attr_tensor(gm, nodes[name].args[1])
        if tuple(q.shape) != tuple(w.shape):
            raise ValueError(f"rounded weight of {name} has shape {tuple(q.shape)}, the layer's is {tuple(w.shape)}")
        scale = tq.scale_tensor()
        if tq.granularity == "per_channel":
            scale = scale.view(-1, *([1] * (w.dim() - 1)))
        set_attr_tensor(gm, nodes[name].args[1], q.float() * scale)
    return gm


QDQ_OP_NAMES = ("quantize_per", "dequantize_per", "choose_qparams")  # quantize/dequantize op names contain these
_NO_COMPUTE = ("getitem", "view", "reshape", "flatten", "squeeze", "permute", "transpose", "clone",
               "contiguous", "expand", "_assert", "sym_size", "slice", "select")


def float_ops(converted: fx.GraphModule) -> list[dict]:
    """Compute ops of a quantized graph (prepare_pt2e/convert_pt2e with a target's quantizer)
    that the quantizer did not annotate, so they run in float between a dequantize and a
    quantize (ExecuTorch/XNNPACK runs them in fp32, in or out of the delegate). Returns
    [{op, module}] in graph order; data movement (view, flatten, ...) is not listed."""
    from edgekit.models.canonical import module_path

    out = []
    for n in converted.graph.nodes:
        name = str(n.target)
        if n.op != "call_function" or any(q in name for q in QDQ_OP_NAMES + _NO_COMPUTE):
            continue
        if n.meta.get("quantization_annotation") is None:
            out.append({"op": name.removeprefix("aten.").split(".")[0], "module": module_path(n)})
    return out
