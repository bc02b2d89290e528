"""Per-channel post-training quantization (Krishnamoorthi 2018, "Quantizing deep convolutional
networks for efficient inference: A whitepaper"): BN folded (Sec. 3.2), symmetric per-channel
weights with max-abs scales (Sec. 2.1, 3.1), per-tensor affine activations whose ranges come from
calibration data with a min/max, percentile or MSE estimator (Sec. 3.5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from edgekit.config import QuantConfig
from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel, get_attr_tensor
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.bias_correction import corrected_biases
from edgekit.quant.bn_ranges import analytic_ranges
from edgekit.quant.equalize import equalize_depthwise_inputs
from edgekit.quant.qparams import fill_affine, fill_unit_interval, fill_weight, rounded_integers
from edgekit.quant.recipe import QuantRecipe, fixed_range_nodes, plan_recipe
from edgekit.quant.simulate import with_rounded_weights
from edgekit.quant.stats import collect_activation_samples, estimate_range
from edgekit.registry import ALGORITHMS


BN_RANGE_POLICIES = ("off", "union", "replace")


@dataclass
class PTQConfig(QuantConfig):
    """Whitepaper PTQ (the shared fields in ``QuantConfig``, then):

    act_estimator: how an activation's range is found on the calibration data, "minmax",
    "percentile" or "mse" (whitepaper Sec. 3.5: min/max and MSE-optimal clipping). percentile:
    the two-sided percentile for "percentile" (99.99 keeps [0.01 %, 99.99 %]). bn_ranges: how
    the ranges of BN-backed tensors use the BN statistics (``edgekit.quant.bn_ranges``, at
    ``bn_range_sigmas`` standard deviations): "off", "union" with the data's, or "replace".
    equalize / bias_correction: DFQ (Nagel et al. 2019, Sec. 4.1 and 4.2): range equalization
    into depthwise convs and bias correction of the weight rounding (``edgekit.quant.equalize``,
    ``.bias_correction``). output_range_margin: the model outputs' ranges times this
    (:func:`widen_output_ranges`).
    """
    act_estimator: str = "percentile"
    percentile: float = 99.99
    bn_ranges: str = "off"
    bn_range_sigmas: float = 4.0
    equalize: bool = False
    bias_correction: bool = False
    output_range_margin: float = 1.0


def calibrate(canonical: CanonicalModel, cfg: PTQConfig, calib: CalibrationSource,
              method: str, recipe: QuantRecipe | None = None, progress: bool = True) -> QuantRecipe:
    """Fill a recipe's weight scales from the folded weights and activation parameters from the
    ranges ``cfg.act_estimator`` finds on ``calib`` (float32 batches [B, C, H, W]). The input's
    range is the preprocessing's when known; BN-backed tensors take their BN-analytic range
    (``cfg.bn_ranges`` "replace"), its union with the data's ("union"), or the data's ("off").

    With ``cfg.equalize``, conv -> depthwise chains are range-equalized first
    (``edgekit.quant.equalize``); with ``cfg.bias_correction``, the weight rounding's mean output
    shift is removed from each layer's bias (``edgekit.quant.bias_correction``). Both are
    written into the recipe (``rounded_weights``, ``biases``), never into the float model.

    Raises ValueError for an unknown estimator or BN range policy.
    """
    recipe = recipe or plan_recipe(canonical.graph_module, method, cfg.w_bits, cfg.a_bits, cfg.per_channel,
                                   bool(cfg.activation_symmetric), cfg.overrides)
    # ranges are those of the deployed network: a recipe's integer weights and biases (shift
    # networks, edgekit.quant.shift) are in place before any activation is observed
    gm = with_rounded_weights(canonical.graph_module, recipe)
    bn_stats, equalized = canonical.bn_stats, []
    if cfg.equalize:
        bn_stats, equalized = equalize_depthwise_inputs(gm, bn_stats, cfg.bn_range_sigmas)
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, lq in recipe.layers.items():
        if lq.weight.scheme == "affine":  # shift (pow2) weights come with their scales
            fill_weight(lq.weight, get_attr_tensor(gm, nodes[name].args[1]))
    batches = tqdm(list(calib), desc="calibration", unit="batch", disable=None if progress else True, leave=False)
    samples = collect_activation_samples(gm, batches, recipe.activations)
    if cfg.bn_ranges not in BN_RANGE_POLICIES:
        raise ValueError(f"unknown BN range policy {cfg.bn_ranges!r}: use one of {BN_RANGE_POLICIES}")
    analytic = analytic_ranges(gm, bn_stats, cfg.bn_range_sigmas) if cfg.bn_ranges != "off" else {}
    inputs = {n.name for n in gm.graph.nodes if n.op == "placeholder"}
    ranges: dict[str, tuple[float, float]] = {}
    for name, aq in recipe.activations.items():
        lo, hi = estimate_range(samples[name], cfg.act_estimator, aq.quant.bits, cfg.percentile)
        if name in inputs and canonical.input_bounds is not None:  # a valid image spans exactly this
            lo, hi = float(canonical.input_bounds[0].min()), float(canonical.input_bounds[1].max())
        elif name in analytic and cfg.bn_ranges == "replace":
            lo, hi = analytic[name]
        elif name in analytic:  # union: never narrower than the data or the BN statistics say
            lo, hi = min(lo, analytic[name][0]), max(hi, analytic[name][1])
        ranges[name] = (lo, hi)
    if cfg.output_range_margin != 1.0:
        widen_output_ranges(gm, ranges, cfg.output_range_margin)
    clip_ranges_to_consumers(gm, ranges)
    share_ranges_through_data_movement(gm, ranges)
    fixed = fixed_range_nodes(gm)
    for name, aq in recipe.activations.items():
        if name in fixed:
            fill_unit_interval(aq.quant)
        else:
            fill_affine(aq.quant, *ranges[name])
    for name in equalized:  # the deployed weights and biases are the equalized ones
        node = nodes[name]
        recipe.rounded_weights[name] = rounded_integers(get_attr_tensor(gm, node.args[1]), recipe.layers[name].weight)
        if node.args[2] is not None:
            recipe.biases[name] = get_attr_tensor(gm, node.args[2]).detach().float().clone()
    if cfg.bias_correction:
        recipe.biases.update(corrected_biases(gm, recipe, calib))
    return recipe


# Ops that move values without changing them: their output must carry the input's quantization
# parameters (XNNPACK refuses a quantized reshape whose input and output scales differ, "Failed
# to create squeeze node"), so they take their input's range.
DATA_MOVEMENT_OPS = {
    torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default,
    torch.ops.aten.flatten.using_ints, torch.ops.aten.squeeze.dim, torch.ops.aten.squeeze.dims,
    torch.ops.aten.squeeze.default, torch.ops.aten.unsqueeze.default, torch.ops.aten.permute.default,
    torch.ops.aten.transpose.int, torch.ops.aten.clone.default, torch.ops.aten.contiguous.default,
    torch.ops.aten.max_pool2d.default, torch.ops.aten.slice.Tensor, torch.ops.aten.select.int,
}


def widen_output_ranges(gm, ranges: dict[str, tuple[float, float]], factor: float) -> None:
    """Multiply the range of the model's outputs (and of what they are reshaped from) by
    ``factor``. Distilled images match BN statistics, not a class, so the logits they produce
    stay below a confident photo's (MobileNetV2: 17.6 against 28.6 on foolbox's photos); a
    clipped top logit decides the argmax, where a coarser logit grid costs little. Changes
    ``ranges`` in place."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    todo = [a for a in torch.utils._pytree.tree_leaves(out.args) if isinstance(a, torch.fx.Node)]
    seen = set()
    while todo:
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        if n.name in ranges:
            lo, hi = ranges[n.name]
            ranges[n.name] = (lo * factor, hi * factor)
        if n.op == "call_function" and n.target in DATA_MOVEMENT_OPS and isinstance(n.args[0], torch.fx.Node):
            todo.append(n.args[0])


def clip_ranges_to_consumers(gm, ranges: dict[str, tuple[float, float]]) -> None:
    """A tensor whose every consumer is the same clamp (``hardtanh(lo, hi)``: ReLU6, a converter's
    clip) only ever matters inside [lo, hi]: its range and the clamp's become their intersection
    (kept to include 0), so the int8 grid is not spent on values the clamp removes. Exact: the
    quantizer's own clamp at the range's ends does what the hardtanh does (the fused
    activation range of TFLite's conv + ReLU6). Changes ``ranges`` in place."""
    for n in gm.graph.nodes:
        if n.name not in ranges or not n.users:
            continue
        bounds = {(float(u.args[1]), float(u.args[2])) if u.op == "call_function" and
                  u.target == torch.ops.aten.hardtanh.default and len(u.args) == 3 else None for u in n.users}
        if len(bounds) != 1 or None in bounds:
            continue
        (blo, bhi), (lo, hi) = bounds.pop(), ranges[n.name]
        lo, hi = min(max(lo, blo), 0.0), max(min(hi, bhi), 0.0)
        if hi > lo:
            ranges[n.name] = (lo, hi)
            for u in n.users:
                if u.name in ranges:
                    ranges[u.name] = (lo, hi)


def share_ranges_through_data_movement(gm, ranges: dict[str, tuple[float, float]]) -> None:
    """Give every data-movement node (DATA_MOVEMENT_OPS) the range of the tensor it moves, in
    graph order (so chains of them share one range), and a concatenation and all its inputs the
    union of their ranges (quantized concat needs one scale: XNNPACK refuses "cat2 node" with
    mixed ones). Changes ``ranges`` in place."""
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.name not in ranges:
            continue
        if n.target in DATA_MOVEMENT_OPS:
            src = n.args[0]
            if getattr(src, "name", None) in ranges:
                ranges[n.name] = ranges[src.name]
        elif n.target is torch.ops.aten.cat.default:
            parts = [a.name for a in n.args[0] if getattr(a, "name", None) in ranges] + [n.name]
            lo, hi = min(ranges[k][0] for k in parts), max(ranges[k][1] for k in parts)
            for k in parts:
                ranges[k] = (lo, hi)


def ptq(canonical: CanonicalModel, cfg: PTQConfig, calib: CalibrationSource,
        placement: str = "xnnpack") -> QuantRecipe:
    """Whitepaper PTQ on real calibration data."""
    return calibrate(canonical, cfg, calib, "ptq")


ALGORITHMS.register("ptq", Algorithm("ptq", ptq, PTQConfig, None,
                                     "per-channel PTQ (whitepaper 2018), real calibration data"))
