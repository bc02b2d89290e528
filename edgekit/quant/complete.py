"""Complete a recipe for a placement that quantizes tensors the model's own graph does not have.

A recipe is planned on the canonical graph. A placement may rewrite the graph before it places
quantizers (``IntegerNorms`` writes LayerNorm and SiLU as primitive ops for TFLite's int8
kernels); the tensors inside those rewrites have no recipe entry. :func:`complete_recipe` adds
one per such tensor, from its min/max over the calibration images (sigmoid outputs take the
fixed [0, 1) range), with the recipe's activation bit width and symmetry. Entries already in
the recipe are never changed, so a method's searched scales stay as it chose them.
"""
from __future__ import annotations

import torch
from torch import fx
from torchao.quantization.pt2e.observer import MinMaxObserver, ObserverBase
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel, module_path
from edgekit.quant.observer import _source
from edgekit.quant.qparams import fill_affine, fill_unit_interval
from edgekit.quant.recipe import FIXED_RANGE_OPS, ActQuant, QuantRecipe, TensorQuant, int_range


def missing_activations(prepared: fx.GraphModule, recipe: QuantRecipe) -> dict[str, list[fx.Node]]:
    """The observed non-constant tensors of ``prepared`` (a ``prepare_pt2e`` output) that
    ``recipe`` has no entry for: node name -> the observer nodes that observe it."""
    out: dict[str, list[fx.Node]] = {}
    for n in prepared.graph.nodes:
        if n.op == "call_module" and isinstance(getattr(prepared, n.target), ObserverBase):
            src = _source(n.args[0], prepared)
            if src.op != "get_attr" and src.name not in recipe.activations:
                out.setdefault(src.name, []).append(n)
    return out


@torch.no_grad()
def complete_recipe(canonical: CanonicalModel, recipe: QuantRecipe, quantizer, calib: CalibrationSource) -> list[str]:
    """Add to ``recipe`` the activations ``quantizer`` (a PT2E quantizer) quantizes that it lacks,
    calibrated by min/max on ``calib``'s batches (float32 [B, C, H, W], the model's inputs;
    padded to the program's static batch when it sets ``pad_last``); returns their names. A
    quantizer whose ``transform_for_annotation`` returns the graph it is given rewrites nothing,
    so nothing can be missing: then it returns [] at once."""
    gm = canonical.graph_module
    if quantizer.transform_for_annotation(gm) is gm:  # no rewrite: every tensor is in the planned graph
        return []
    prepared = prepare_pt2e(gm, quantizer)
    missing = missing_activations(prepared, recipe)
    if not missing:
        return []
    nodes = {n.name: n for n in prepared.graph.nodes}
    ranges = {name: MinMaxObserver() for name in missing}
    for name, observers in missing.items():
        for obs in observers:
            setattr(prepared, obs.target, ranges[name])
    for x in calib:
        prepared(x)
    amin, amax = int_range(recipe.a_bits)
    symmetric = all(aq.quant.symmetric for aq in recipe.activations.values())
    for name, r in ranges.items():
        tq = TensorQuant(recipe.a_bits, "per_tensor", symmetric, amin, amax)
        if nodes[name].target in FIXED_RANGE_OPS:
            fill_unit_interval(tq)
        else:
            fill_affine(tq, float(r.min_val), float(r.max_val))
        recipe.activations[name] = ActQuant(module_path(nodes[name]) or name, tq)
    return sorted(missing)
