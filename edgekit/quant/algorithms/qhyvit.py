"""Q-HyViT (Lee et al., "Q-HyViT: Post-Training Quantization of Hybrid Vision Transformers with
Bridge Block Reconstruction for IoT Systems"): per layer, the weight granularity (per-tensor or
per-channel), the activation scheme (symmetric or asymmetric) and the scale, chosen by a
Hessian-weighted output error (here per-tensor weights and asymmetric activations only when
clearly better on the calibration images: ``clear_choices``); 100 scale candidates in
[0.01, 1.2] times the max-based scale, 3 rounds, 32 calibration images (Sec. IV-A); bridge
blocks between conv and transformer parts searched jointly at the block outputs (Sec. IV-C),
found from the graph (``edgekit.quant.scale_search.find_bridges``).

Zero-point overflow (Sec. III-B): the paper's per-channel asymmetric activations put the zero
point of an all-positive bridge output outside the integer range. Here every activation is
per-tensor (no int8 runtime takes per-channel activations) and its range always contains 0
(``fill_affine``), so the zero point lies in [quant_min, quant_max] by construction: an
all-positive tensor gets zero point quant_min under the asymmetric scheme, and the symmetric one
is a candidate beside it.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from edgekit.config import QuantConfig
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.qparams import fill_affine
from edgekit.quant.recipe import QuantRecipe, plan_recipe
from edgekit.quant.scale_search import SearchSpace, clearly_lower, has_attention, search
from edgekit.registry import ALGORITHMS


@dataclass
class ScaleSearchConfig(QuantConfig):
    """The shared fields (``QuantConfig``), then the search's, shared by Q-HyViT, PTQ4ViT and
    EasyQuant (``edgekit.quant.scale_search``):
    calib_images: the first this many calibration images are used (32 in the papers).
    metric: "hessian" or "cosine". alpha_lo / alpha_hi / candidates: the scale candidates, times
    the max-based scale. rounds: passes over all quantizers. weight_granularities: of
    "per_channel", "per_tensor". activation_schemes: of "symmetric", "asymmetric" (only
    "symmetric" when the targets need zero point 0). bridges: joint search of bridge blocks.
    damping: the Hessian metric weighs each output element by g^2 + damping * mean(g^2)
    (Levenberg-Marquardt damping of the diagonal Fisher; 0 is the papers' undamped form); a
    list searches once per value and keeps the recipe whose quantized model is closest to FP32
    on the calibration images (KL of the softmax, :func:`scale_search.search`'s return).
    twin_uniform: PTQ4ViT's twin-uniform quantizers on softmax, GELU and SiLU outputs
    (simulation only: only the ``simulation`` target runs such a recipe).
    symmetric_candidate: with both activation schemes, also search with symmetric activations
    only, and keep that recipe when it is closer to FP32 on the calibration images by more than
    the images' own noise (:func:`clearly_lower`).
    clear_choices: per tensor, the first weight granularity / activation scheme unless another
    is clearly better on the calibration images (``scale_search._first_unless_clearly_worse``);
    False takes the lowest error outright, as the paper does."""
    calib_images: int = 32
    metric: str = "hessian"
    alpha_lo: float = 0.01
    alpha_hi: float = 1.2
    candidates: int = 100
    rounds: int = 3
    weight_granularities: tuple[str, ...] = ("per_channel", "per_tensor")
    activation_schemes: tuple[str, ...] = ("symmetric", "asymmetric")
    bridges: bool = True
    damping: tuple[float, ...] | float = (0.0, 100.0)
    twin_uniform: bool = False
    symmetric_candidate: bool = False
    clear_choices: bool = True


def _space(cfg) -> SearchSpace:
    schemes = tuple(s == "symmetric" for s in cfg.activation_schemes)
    if cfg.activation_symmetric:
        schemes = (True,)
    bad = [g for g in cfg.weight_granularities if g not in ("per_channel", "per_tensor")] + \
        [s for s in cfg.activation_schemes if s not in ("symmetric", "asymmetric")]
    if bad or not schemes or not cfg.weight_granularities:
        raise UserError(f"weight_granularities takes per_channel/per_tensor and activation_schemes "
                        f"symmetric/asymmetric, not {bad or 'nothing'}")
    if not cfg.per_channel:
        grans = ("per_tensor",)
    else:
        grans = tuple(cfg.weight_granularities)
    return SearchSpace(cfg.metric, cfg.alpha_lo, cfg.alpha_hi, cfg.candidates, cfg.rounds, grans, schemes, cfg.bridges,
                       clear_choices=cfg.clear_choices)


def _dampings(cfg) -> tuple[float, ...]:
    values = tuple(cfg.damping) if isinstance(cfg.damping, (list, tuple)) else (cfg.damping,)
    if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in values):
        raise UserError(f"damping takes a number >= 0 or a list of them, not {cfg.damping!r}")
    return tuple(float(v) for v in values)


def plan_search(gm, cfg, method: str) -> QuantRecipe:
    """The plan of a scale search: per-channel weights, and twin-uniform softmax/GELU/SiLU
    outputs when ``cfg.twin_uniform`` (PTQ4ViT's), so targets that cannot run them refuse the
    plan before any calibration."""
    return plan_recipe(gm, method, cfg.w_bits, cfg.a_bits, True, bool(cfg.activation_symmetric), cfg.overrides,
                       bool(cfg.twin_uniform))


def searched_recipe(canonical: CanonicalModel, cfg, calib: CalibrationSource, method: str,
                    placement: str) -> QuantRecipe:
    """A recipe whose every quantizer (as ``placement`` places them) is chosen by the search of
    ``cfg`` on the first ``cfg.calib_images`` images of ``calib`` (float32 [N, C, H, W]). The
    input's range is the preprocessing's when known. With several ``cfg.damping`` values, one
    search each (from the same start), keeping the recipe whose quantized model has the lowest
    loss against FP32 on those images; with ``cfg.symmetric_candidate`` the same again with
    symmetric activations only, whose recipe replaces the first only when its per-image losses are
    clearly lower (:func:`clearly_lower`). Raises UserError for a bad search option."""
    gm = canonical.graph_module
    recipe = plan_search(gm, cfg, method)
    fixed = set()
    if canonical.input_bounds is not None:
        for n in gm.graph.nodes:
            if n.op == "placeholder" and n.name in recipe.activations:
                fill_affine(recipe.activations[n.name].quant, float(canonical.input_bounds[0].min()),
                            float(canonical.input_bounds[1].max()))
                fixed.add(n.name)
    images = calib.images[:max(1, cfg.calib_images)]
    space = _space(cfg)
    spaces = [space]
    if cfg.symmetric_candidate and len(space.activation_schemes) > 1:
        spaces.append(dataclasses.replace(space, activation_schemes=(True,)))
    kept = None  # (per-image losses, recipe)
    for sp in spaces:
        best = None
        for damping in _dampings(cfg):
            trial = copy.deepcopy(recipe)
            losses = search(canonical, trial, images, dataclasses.replace(sp, damping=damping), placement, fixed)
            if best is None or sum(losses) < sum(best[0]):
                best = (losses, trial)
        if kept is None or clearly_lower(best[0], kept[0]):
            kept = best
    return kept[1]


def require_attention(canonical: CanonicalModel, method: str) -> None:
    """Raises UserError when the model has no attention (no activation x activation matmul)."""
    if not has_attention(canonical.graph_module):
        raise UserError(f"--method {method} is for vision transformers and this model has no attention "
                        "(no activation x activation matmul): use --method ptq with --calib, or zeroq for data-free")


@dataclass
class QHyViTConfig(ScaleSearchConfig):
    """Q-HyViT: the search fields (``ScaleSearchConfig``) at the paper's settings, except that
    several searches run and the recipe closer to FP32 on the calibration images is kept:
    - ``damping``: the paper's undamped Fisher and damping 100. From 32 images the undamped
      Fisher is noisy: on MobileViT it chose worse scales than damping 100, on EfficientFormer
      better ones, and the calibration-set KL ranked both as the test split did;
    - ``symmetric_candidate``: the scheme chosen per tensor, and symmetric everywhere. The
      per-tensor choice is greedy, one tensor at a time at its own consumers; on MobileViT with
      twin-uniform quantizers its asymmetric picks left the whole model further from FP32 than
      symmetric ones. The symmetric recipe is kept only when the calibration images show it
      closer beyond their noise (:func:`clearly_lower`; docs/hybrid_vit.md);
    - ``clear_choices`` (shared default): each tensor keeps per-channel weights and symmetric
      activations unless the other option's region error is clearly lower image by image; the
      paper takes the lower error outright, which from 32 images is often noise (MobileViT W6A6:
      70 of 117 activation entries asymmetric, many on ranges centred on zero).
    With --data-free it calibrates on ZeroQ images distilled from the BN statistics of the conv
    stages."""
    symmetric_candidate: bool = True


def qhyvit(canonical: CanonicalModel, cfg: QHyViTConfig, calib: CalibrationSource,
           placement: str = "xnnpack") -> QuantRecipe:
    """Q-HyViT on ``calib`` (real images with --calib, distilled with --data-free)."""
    return searched_recipe(canonical, cfg, calib, "qhyvit", placement)


ALGORITHMS.register("qhyvit", Algorithm(
    "qhyvit", qhyvit, QHyViTConfig, "zeroq", "Q-HyViT: Hessian-guided granularity/scheme/scale search "
    "with bridge blocks, for hybrid vision transformers", check=require_attention, plan=plan_search))
