"""Shift networks: ``--method denseshift`` (DenseShift, Li et al., ICCV 2023) and its baselines
``deepshift-q`` and ``deepshift-ps`` (DeepShift, Elhoushi et al. 2021). Every conv/linear weight
becomes a signed power of two times a per-channel scale (``edgekit.quant.shift``), fine-tuned by
distillation from the FP model on the calibration images (real with ``--calib``; Genie-D's
distilled images with ``--data-free``); activations are then int8 per-tensor, calibrated on the
same images through the shift network. The recipe's shift layers have scheme "pow2": integer
weights ``sign * 2^p`` (int8 carrier) and scale ``alpha``, so every int8 target deploys them
exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.recipe import POW2, QuantRecipe, plan_recipe
from edgekit.quant.shift import finetune
from edgekit.registry import ALGORITHMS

FIRST_LAST = ("shift", "int8")


@dataclass
class ShiftConfig(PTQConfig):
    """A shift network's fine-tuning (the PTQ fields then calibrate its activations).

    w_bits: the shift code's bits, 3 or 4 (sign + exponent). finetune_steps / batch_size: Adam
    steps on random batches of the calibration images (about 17 steps/s for ResNet-20 at
    28x28 on 2 CPU cores). lr: of the scales and biases; latent_lr: of the sign/exponent
    latents. temperature: of the distillation. first_last: "shift" (the first and last weighted
    layers are shift layers too) or "int8" (they keep 8-bit affine weights). checkpoint: a file
    to save the fine-tuning to every 200 steps and resume from.
    """
    w_bits: int = 4
    act_estimator: str = "percentile"
    finetune_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    latent_lr: float = 1e-3
    temperature: float = 2.0
    first_last: str = "shift"
    checkpoint: str | None = None
    seed: int = 0


@dataclass
class DenseShiftConfig(ShiftConfig):
    """DenseShift: zero-free levels, sign-scale decomposition (``edgekit.quant.shift``)."""


@dataclass
class DeepShiftQConfig(ShiftConfig):
    """DeepShift-Q: a latent FP weight rounded to a power of two (or 0) in the forward pass."""
    latent_lr: float = 1e-2


@dataclass
class DeepShiftPSConfig(ShiftConfig):
    """DeepShift-PS: the sign and the shift trained directly."""
    latent_lr: float = 1e-2


def check_shift(canonical: CanonicalModel, method: str) -> None:
    """A shift network trains on batches: the program needs a dynamic batch and weighted layers."""
    if canonical.batch is not None:
        raise UserError(f"model {canonical.name} is specialised to a static batch of {canonical.batch}; --method "
                        f"{method} fine-tunes on batches: export it with a dynamic batch dimension")


def plan_shift(gm, cfg: ShiftConfig, method: str) -> QuantRecipe:
    """The layout of a shift network: shift layers "pow2" in an 8-bit carrier (symmetric,
    per-channel, ``code_bits`` = ``cfg.w_bits``), the first and last in 8-bit affine with
    ``first_last`` "int8"; activations ``cfg.a_bits``. Raises ValueError for a bad bit width
    or first_last (UserError)."""
    if cfg.first_last not in FIRST_LAST:
        raise UserError(f"first_last {cfg.first_last!r}: use one of {FIRST_LAST}")
    if cfg.w_bits not in (3, 4):
        raise UserError(f"--w-bits {cfg.w_bits}: --method {method} takes 3 or 4 (sign + exponent bits of a shift "
                        "weight; its integers sit in int8)")
    recipe = plan_recipe(gm, method, 8, cfg.a_bits, True, bool(cfg.activation_symmetric), cfg.overrides)
    names = list(recipe.layers)
    kept = {names[0], names[-1]} if cfg.first_last == "int8" and names else set()
    for name in names:
        if name not in kept:
            recipe.layers[name].weight.scheme, recipe.layers[name].weight.code_bits = POW2, cfg.w_bits
    recipe.w_bits = cfg.w_bits
    return recipe


def shift_network(canonical: CanonicalModel, cfg: ShiftConfig, calib: CalibrationSource, kind: str,
                  progress: bool = True) -> QuantRecipe:
    """Fine-tune the shift network of ``kind`` on ``calib`` (float32 [N, C, H, W]) and return its
    recipe: "pow2" layers (``rounded_weights`` int8 ``sign * 2^p``, scale alpha per channel,
    ``code_bits`` = ``cfg.w_bits``), the fine-tuned biases, and int8 activations calibrated
    (``cfg.act_estimator``) through the shift network. Raises ValueError for a bad bit width
    or first_last."""
    gm, teacher = canonical.graph_module, canonical.graph_module
    recipe = plan_shift(gm, cfg, kind)
    layers = {n: cfg.w_bits for n, lq in recipe.layers.items() if lq.weight.scheme == POW2}
    key = f"{canonical.content_hash}:{kind}:{cfg.w_bits}:{cfg.first_last}:{cfg.finetune_steps}:{cfg.seed}"
    shifts, biases, _ = finetune(
        gm, teacher, layers, kind, calib.images, cfg.finetune_steps, cfg.batch_size, cfg.lr, cfg.latent_lr,
        cfg.temperature, cfg.seed, progress, Path(cfg.checkpoint) if cfg.checkpoint else None, key)
    for name, s in shifts.items():
        tq = recipe.layers[name].weight
        alpha = s.alpha.detach().float()
        tq.granularity, tq.axis = "per_channel", 0
        tq.scale, tq.zero_point = alpha.tolist(), [0] * len(alpha)
        recipe.rounded_weights[name] = s.integers()
    recipe.biases.update(biases)
    return calibrate(canonical, dataclasses.replace(cfg, bias_correction=False, equalize=False), calib, kind,
                     recipe=recipe, progress=progress)


def _register(name: str, kind: str, config: type, description: str) -> None:
    def fn(canonical, cfg, calib, placement="xnnpack", progress=True):
        return shift_network(canonical, cfg, calib, kind, progress)
    fn.__name__ = name.replace("-", "_")
    ALGORITHMS.register(name, Algorithm(name, fn, config, "genie", description, check=check_shift, plan=plan_shift))


_register("denseshift", "denseshift", DenseShiftConfig,
          "DenseShift: zero-free power-of-two weights (sign-scale decomposition), fine-tuned by distillation")
_register("deepshift-q", "deepshift-q", DeepShiftQConfig,
          "DeepShift-Q: FP weights rounded to powers of two (with zero), fine-tuned by distillation")
_register("deepshift-ps", "deepshift-ps", DeepShiftPSConfig,
          "DeepShift-PS: sign and shift trained directly (with zero), fine-tuned by distillation")
