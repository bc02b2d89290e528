"""Accuracy of artifacts in their own runtimes, and agreement with the recipe's simulation.

top-1: fraction of images whose argmax logit is the label. agreement: fraction of images on
which two models' argmax agree. SQNR (dB): 10 log10(sum(ref^2) / sum((ref - out)^2)) of logits.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from edgekit.backends.base import Target
from edgekit.errors import first_line
from edgekit.models.canonical import CanonicalModel, run_batched
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import quantize_with_recipe


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of logits [N, K] against labels int64 [N]."""
    return float((logits.argmax(1) == labels).float().mean())


def is_class_scores(out: torch.Tensor) -> bool:
    """Whether a model output is class scores [N, K >= 2], the only shape argmax agreement and
    top-1 are defined on; any other output (a map, a sequence) is scored by SQNR alone."""
    return out.dim() == 2 and out.shape[1] >= 2


def agreement(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Fraction in [0, 1] of rows on which logits ``a`` and ``b`` (each [N, K]) pick the same
    class; None when the outputs are not class scores (:func:`is_class_scores`)."""
    if not is_class_scores(a):
        return None
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``out`` against ``ref`` in dB (inf when equal)."""
    noise = float((ref - out).pow(2).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(float(ref.pow(2).sum()) / noise)


def float_logits(canonical: CanonicalModel, images: torch.Tensor) -> torch.Tensor:
    """FP32 logits [N, K] of the (BN-folded) model."""
    return canonical.run(canonical.graph_module, images)


def simulated_logits(canonical: CanonicalModel, recipe: QuantRecipe, target: Target,
                     images: torch.Tensor) -> torch.Tensor:
    """Logits [N, K] of the PyTorch fake-quant simulation of ``recipe`` as ``target`` places it."""
    return canonical.run(quantize_with_recipe(canonical, recipe, target.quantizer(recipe)), images)


def run_artifact(target: Target, path: Path, images: torch.Tensor, progress: bool = True,
                 static_batch: int | None = None) -> tuple[torch.Tensor, float]:
    """Logits [N, K] of the artifact at ``path`` run in its runtime, and seconds taken.
    static_batch: the batch the artifact was lowered for when its program fixes it (every call
    then gets exactly that many images, the last call padded)."""
    try:
        run, bs = target.runner(path), static_batch or target.batch_size
    except Exception as e:  # the converter wrote a program its own runtime will not load
        why = first_line(e)
        raise RuntimeError(f"target {target.name} wrote {path.name}, which {target.profile.runtime} cannot load "
                           f"({why}); try another --target, and report the model") from None
    t0 = time.time()
    if static_batch:
        return run_batched(run, images, static_batch=static_batch), time.time() - t0
    outs, i = [], 0
    with tqdm(total=len(images), desc=f"eval {path.name}", unit="img", disable=not progress, leave=False) as bar:
        while i < len(images):
            try:
                out = run(images[i:i + bs])
            except Exception:
                if bs == 1:
                    raise
                bs = 1  # a program exported with a static batch of 1: one image at a time from here
                continue
            outs.append(out)
            bar.update(len(out))
            i += len(out)
    return torch.cat(outs), time.time() - t0


def score(name: str, runtime: str, logits: torch.Tensor, labels: torch.Tensor | None,
          fp32: torch.Tensor | None, sim: torch.Tensor | None, seconds: float) -> dict:
    """One ``evaluation.results[]`` entry (accuracies as fractions in [0, 1]); without labels,
    no top-1 (agreement and SQNR only)."""
    r = {"file": name, "runtime": runtime, "seconds": round(seconds, 2)}
    if not is_class_scores(logits):
        labels = None
        r["output"] = f"{list(logits.shape[1:])} per input: not class scores, so SQNR only (no top-1, no agreement)"
    if labels is not None:
        r["top1"] = round(top1(logits, labels), 6)
    if sim is not None:
        if is_class_scores(logits):
            r["agreement_with_simulation"] = round(agreement(logits, sim), 6)
        r["sqnr_db_vs_simulation"] = round(sqnr_db(sim, logits), 3)
        if labels is not None:
            r["simulation_top1"] = round(top1(sim, labels), 6)
    if fp32 is not None:
        if is_class_scores(logits):
            r["agreement_with_fp32"] = round(agreement(logits, fp32), 6)
        r["sqnr_db_vs_fp32"] = round(sqnr_db(fp32, logits), 3)
    return r
