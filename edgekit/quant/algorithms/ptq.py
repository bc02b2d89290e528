"""Per-channel post-training quantization (Krishnamoorthi 2018, "Quantizing deep convolutional
networks for efficient inference: A whitepaper"): BN folded (Sec. 3.2), symmetric per-channel
weights with max-abs scales (Sec. 2.1, 3.1), per-tensor affine activations whose ranges come from
calibration data with a min/max, percentile or MSE estimator (Sec. 3.5)."""
from __future__ import annotations

from tqdm import tqdm

from edgekit.config import QuantConfig
from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel, get_attr_tensor
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.bn_ranges import analytic_ranges
from edgekit.quant.qparams import fill_affine, fill_weight
from edgekit.quant.recipe import QuantRecipe, plan_recipe
from edgekit.quant.stats import collect_activation_samples, estimate_range
from edgekit.registry import ALGORITHMS


def calibrate(canonical: CanonicalModel, cfg: QuantConfig, calib: CalibrationSource,
              method: str, recipe: QuantRecipe | None = None, progress: bool = True) -> QuantRecipe:
    """Fill a recipe's weight scales from the folded weights and activation parameters from the
    ranges ``cfg.act_estimator`` finds on ``calib`` (float32 batches [B, C, H, W]).

    Raises ValueError for an unknown estimator.
    """
    gm = canonical.graph_module
    recipe = recipe or plan_recipe(gm, method, cfg.w_bits, cfg.a_bits, cfg.per_channel)
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, lq in recipe.layers.items():
        fill_weight(lq.weight, get_attr_tensor(gm, nodes[name].args[1]))
    batches = tqdm(list(calib), desc="calibration", unit="batch", disable=not progress, leave=False)
    samples = collect_activation_samples(gm, batches, recipe.activations)
    analytic = analytic_ranges(gm, canonical.bn_stats, cfg.bn_range_sigmas) if cfg.bn_ranges else {}
    if canonical.input_bounds is not None:  # a valid image spans the preprocessing's range
        for n in gm.graph.nodes:
            if n.op == "placeholder" and n.name in recipe.activations:
                analytic[n.name] = (float(canonical.input_bounds[0].min()), float(canonical.input_bounds[1].max()))
    for name, aq in recipe.activations.items():
        lo, hi = analytic.get(name) or estimate_range(samples[name], cfg.act_estimator, aq.quant.bits, cfg.percentile)
        fill_affine(aq.quant, lo, hi)
    return recipe


def ptq(canonical: CanonicalModel, cfg: QuantConfig, calib: CalibrationSource) -> QuantRecipe:
    """Whitepaper PTQ on real calibration data."""
    return calibrate(canonical, cfg, calib, "ptq")


ALGORITHMS.register("ptq", Algorithm("ptq", ptq, None, "per-channel PTQ (whitepaper 2018), real calibration data"))
