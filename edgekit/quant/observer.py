"""Load a QuantRecipe into a PT2E-prepared graph: every observer becomes a ``RecipeObserver``
returning the recipe's scale and zero point for the tensor it observes.

A target's PT2E quantizer decides *where* tensors are quantized (its fusion patterns); the
recipe decides *how*. A tensor the quantizer wants quantized but the recipe lacks raises an
error naming it. A constant operand that is not a conv/linear weight (the slope of a
hard-sigmoid written as ``x * c`` by a converter, a learned scale; also the weight of a
transposed conv, which recipes do not cover yet) is not in the recipe: the target's own observer
sees the constant itself, so its range is exact.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import fx
from torchao.quantization.pt2e.observer import ObserverBase

from edgekit.models.canonical import get_attr_tensor
from edgekit.quant.recipe import TWIN, QuantRecipe, TensorQuant


class RecipeObserver(ObserverBase):
    """An observer with fixed quantization parameters taken from a recipe entry."""

    def __init__(self, tq: TensorQuant, like: ObserverBase) -> None:
        # the integer type holds the recipe's bit width (16-bit activations: int16, whatever the
        # target quantizer's spec says; its placement is what counts here)
        super().__init__(dtype=like.dtype if tq.bits <= 8 else torch.int16)
        self.qscheme = like.qscheme
        self.quant_min, self.quant_max = tq.quant_min, tq.quant_max
        self.ch_axis = tq.axis if tq.axis is not None else getattr(like, "ch_axis", 0)
        self.register_buffer("scale", tq.scale_tensor())
        self.register_buffer("zero_point", tq.zero_point_tensor())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def calculate_qparams(self):
        return self.scale, self.zero_point


def _source(n: fx.Node, prepared: fx.GraphModule) -> fx.Node:
    """The original node an observer observes (skipping chains of observers)."""
    while n.op == "call_module" and isinstance(getattr(prepared, n.target, None), ObserverBase):
        n = n.args[0]
    return n


def load_recipe_into(prepared: fx.GraphModule, recipe: QuantRecipe) -> None:
    """Replace every observer of ``prepared`` (output of ``prepare_pt2e``) with a RecipeObserver.

    Raises ValueError naming the tensor when the recipe has no filled entry for it.
    """
    for n in prepared.graph.nodes:
        if n.op != "call_module":
            continue
        obs = getattr(prepared, n.target)
        if not isinstance(obs, ObserverBase) or isinstance(obs, RecipeObserver):
            continue
        src = _source(n.args[0], prepared)
        if src.op == "get_attr":
            consumer = next(u for u in n.users)
            entry = recipe.layers.get(consumer.name)
            if entry is None:  # a constant operand, not a layer's weight: observe its value
                obs(get_attr_tensor(prepared, src).detach())
                continue
            tq = entry.weight
            what = f"weight of {consumer.name}"
        else:
            entry = recipe.activations.get(src.name)
            tq = entry.quant if entry else None
            what = f"activation {src.name}"
        if tq is None or not tq.filled:
            raise ValueError(f"the recipe has no quantization parameters for the {what}")
        if tq.scheme == TWIN:  # a one-scale stand-in; simulate.twin_pairs puts the twin grid in its place
            tq = dataclasses.replace(tq, scale=tq.scale[1:], zero_point=[0])
        if tq.symmetric != (obs.qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric)) and src.op == "get_attr":
            raise ValueError(f"the {what} is {'symmetric' if tq.symmetric else 'affine'} in the recipe "
                             f"but the target quantizer wants {obs.qscheme}")
        if src.op == "get_attr" and tq.granularity == "per_tensor" and obs.qscheme == torch.per_channel_symmetric:
            # a per-tensor layer under a per-channel quantizer: its one scale on every channel
            channels = get_attr_tensor(prepared, src).shape[getattr(obs, "ch_axis", 0)]
            tq = dataclasses.replace(tq, granularity="per_channel", axis=getattr(obs, "ch_axis", 0),
                                     scale=tq.scale * channels, zero_point=tq.zero_point * channels)
        setattr(prepared, n.target, RecipeObserver(tq, obs))
