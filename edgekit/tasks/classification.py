"""Image classification: outputs are class scores (logits) [N, K], the ground truth labels
int64 [N]. Metrics: top-1, agreement (same argmax) with FP32 and with the simulation, logit
SQNR; mixed precision's sensitivity is the KL divergence of the softmax outputs (ZeroQ Sec. 3.2);
synthesis adds a class prior (GDFQ, Xu et al. 2020, Sec. 3.2).

An output that is not class scores (a detection map, a CTC sequence) is scored by SQNR alone,
with an ``output`` line saying why."""
from __future__ import annotations

import torch

from edgekit.quant.mixed_precision import kl_divergence
from edgekit.registry import TASKS
from edgekit.tasks.base import Column, Task


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of logits [N, K] against labels int64 [N]."""
    return float((logits.argmax(1) == labels).float().mean())


def is_class_scores(out: torch.Tensor) -> bool:
    """Whether a model output is class scores [N, K >= 2], the only shape argmax agreement and
    top-1 are defined on."""
    return out.dim() == 2 and out.shape[1] >= 2


def agreement(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Fraction in [0, 1] of rows on which logits ``a`` and ``b`` (each [N, K]) pick the same
    class; None when the outputs are not class scores."""
    if not is_class_scores(a):
        return None
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def _fashion_mnist(limit):
    from edgekit.data.fashion_mnist import load_tensors
    return load_tensors("test", limit)


def _imagenet_photos(limit):
    from edgekit.data.datasets import load_imagenet_photos
    return load_imagenet_photos(limit)


class Classification(Task):
    """See the module docstring."""
    name = "classification"
    columns = (Column("top1", "top-1", "percent"), Column("simulation_top1", "sim top-1", "percent"),
               Column("agreement_with_simulation", "agree sim", "percent"),
               Column("agreement_with_fp32", "agree fp32", "percent"), Column("sqnr_db_vs_fp32", "SQNR dB", "db"))
    datasets = {"fashion-mnist": _fashion_mnist, "imagenet-photos": _imagenet_photos}
    sensitivity_name = "kl"

    def score(self, inputs, out, targets, fp32, sim):
        r: dict = {}
        labels = targets
        if not is_class_scores(out):
            labels = None
            r["output"] = f"{list(out.shape[1:])} per input: not class scores, so SQNR only (no top-1, no agreement)"
        if labels is not None:
            r["top1"] = round(top1(out, labels), 6)
        if sim is not None:
            if is_class_scores(out):
                r["agreement_with_simulation"] = round(agreement(out, sim), 6)
            if labels is not None:
                r["simulation_top1"] = round(top1(sim, labels), 6)
        if fp32 is not None and is_class_scores(out):
            r["agreement_with_fp32"] = round(agreement(out, fp32), 6)
        return {**r, **super().score(inputs, out, targets, fp32, sim)}

    def reference(self, inputs, targets, fp32):
        if targets is None or not is_class_scores(fp32):
            return {}
        return {"fp32": {"top1": round(top1(fp32, targets), 6)}}

    def sensitivity(self, ref, out):
        return max(0.0, kl_divergence(ref, out)) if is_class_scores(ref) else super().sensitivity(ref, out)

    def synthesis_prior(self, weight):
        if weight <= 0:
            return None
        from edgekit.synth.bn_loss import ClassPrior
        return lambda n, generator: ClassPrior(weight, n, generator)


TASKS.register("classification", Classification())
