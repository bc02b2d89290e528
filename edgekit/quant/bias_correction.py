"""Bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction", Sec. 4.2, empirical form): rounding a layer's weights, W~ = W + eps, shifts the mean
of its output by E[conv(x, eps)]; subtracting that shift from the layer's bias removes the biased
part of the weight error, which on depthwise convs (9 weights per channel, so the rounding errors
do not average out) reaches the logits. The expectation is taken over the calibration batches
(distilled images with --data-free, so the correction stays data-free), through the float model.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import fx

from edgekit.models.canonical import WEIGHTED_OPS, get_attr_tensor
from edgekit.quant.qparams import fake_quant
from edgekit.quant.recipe import QuantRecipe


def weight_error(gm: fx.GraphModule, node: fx.Node, recipe: QuantRecipe) -> torch.Tensor:
    """The deployed weight minus the float weight of layer ``node`` (float32, the weight's shape):
    the recipe's rounded integers times the scale where it has them, else round-to-nearest."""
    w = get_attr_tensor(gm, node.args[1]).detach().float()
    tq = recipe.layers[node.name].weight
    if node.name in recipe.rounded_weights:
        scale = tq.scale_tensor()
        if tq.granularity == "per_channel":
            scale = scale.view(-1, *([1] * (w.dim() - 1)))
        return recipe.rounded_weights[node.name].float() * scale - w
    return fake_quant(w, tq) - w


class _ShiftMeter(fx.Interpreter):
    """Runs the float graph; at each weighted op also applies the op with the weight error alone
    (no bias) to the same input and sums the result per output channel."""

    def __init__(self, gm: fx.GraphModule, errors: dict[str, torch.Tensor]):
        super().__init__(gm)
        self.errors = errors
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.errors:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            args = (args[0], self.errors[n.name], None, *args[3:])
            shift = n.target(*args, **kwargs)
            # output channels: dim 1 of a conv's [N, C, ...]; the last dim of a linear's [..., C]
            # (a transformer's linears see [N, T, D] tokens)
            ch = shift.dim() - 1 if n.target == torch.ops.aten.linear.default else 1
            dims = [d for d in range(shift.dim()) if d != ch]
            self.sums[n.name] = self.sums.get(n.name, 0) + shift.sum(dims).double()
            self.counts[n.name] = self.counts.get(n.name, 0) + shift.numel() // shift.shape[ch]
        return out


@torch.no_grad()
def corrected_biases(gm: fx.GraphModule, recipe: QuantRecipe, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Biases (float32 [C_out]) that cancel the mean output shift of each conv2d/linear layer's
    weight rounding, measured over ``batches`` (float32 [B, C, H, W] model inputs). Layers
    without a bias are left out (the shift is then not corrected). Keys are node names."""
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in WEIGHTED_OPS
             and n.name in recipe.layers and len(n.args) > 2 and n.args[2] is not None]
    errors = {n.name: weight_error(gm, n, recipe) for n in nodes}
    meter = _ShiftMeter(gm, errors)
    for x in batches:
        meter.run(x)
    out = {}
    for n in nodes:
        if n.name in meter.sums:
            mean_shift = (meter.sums[n.name] / meter.counts[n.name]).float()
            out[n.name] = get_attr_tensor(gm, n.args[2]).detach().float() - mean_shift
    return out
