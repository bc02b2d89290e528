"""What a task is: the meaning of a model's outputs, the metrics that score them, the data sets
they are scored on, the sensitivity measure of mixed precision and the synthesis prior.

A task is registered by name in ``edgekit.registry.TASKS`` (one module per task). Metrics are
returned as flat dicts keyed by metric name (``top1``, ``psnr_y_db``, ``sqnr_db_vs_fp32``, ...):
the manifest's evaluation records them under those names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from edgekit.registry import TASKS

DatasetLoader = Callable[[int | None], tuple[torch.Tensor, torch.Tensor]]
# (n images, generator) -> output -> scalar loss added to the synthesis objective
OutputPrior = Callable[[int, torch.Generator], Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Column:
    """One column of the evaluation table: a metric key, its header, and how to show it:
    "percent" (a fraction in [0, 1]) or "db" / "number" (shown with 2 or 4 decimals)."""
    key: str
    header: str
    kind: str = "number"

    def show(self, v) -> str:
        if v is None:
            return "-"
        if self.kind == "percent":
            return f"{100 * v:.2f}%"
        return f"{v:.2f}" if self.kind == "db" else f"{v:.4f}"


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``out`` against ``ref`` (same shape) in dB:
    10 log10(sum(ref^2) / sum((ref - out)^2)); inf when equal."""
    noise = float((ref.double() - out.double()).pow(2).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(float(ref.double().pow(2).sum()) / noise)


class Task:
    """Base of a registered task. Subclasses set ``name``, ``columns`` and ``datasets`` and
    implement ``score``; the rest has defaults (output SQNR, MSE sensitivity, no prior).

    Outputs are float32 [N, ...] (one row per input); ``targets`` are the data set's ground
    truth (labels int64 [N], or target images float32 [N, C, H, W]) or None.
    """
    name: str = ""
    columns: tuple[Column, ...] = ()
    datasets: dict[str, DatasetLoader] = {}
    sensitivity_name: str = "mse"
    ground_truth: str = "labels"  # what --eval-data's .npz gives: "labels" [N] or "targets" (images)

    def score(self, inputs: torch.Tensor, out: torch.Tensor, targets: torch.Tensor | None,
              fp32: torch.Tensor | None, sim: torch.Tensor | None) -> dict[str, float]:
        """Metrics of outputs ``out`` (of model inputs ``inputs`` float32 [N, C, H, W]) against
        the ground truth, the FP32 model's outputs and the simulation's (each optional), keyed
        by metric name."""
        r: dict[str, float] = {}
        if sim is not None:
            r["sqnr_db_vs_simulation"] = round(sqnr_db(sim, out), 3)
        if fp32 is not None:
            r["sqnr_db_vs_fp32"] = round(sqnr_db(fp32, out), 3)
        return r

    def reference(self, inputs: torch.Tensor, targets: torch.Tensor | None,
                  fp32: torch.Tensor) -> dict[str, dict[str, float]]:
        """The references a deployed model is compared with, by name (``fp32``: the float
        model; a task may add its classical baseline), each a dict of metrics."""
        return {}

    def sensitivity(self, ref: torch.Tensor, out: torch.Tensor) -> float:
        """How far ``out`` moved from ``ref`` (mixed precision's layer sensitivity): here the
        mean squared error (output units squared), >= 0."""
        return float((ref.double() - out.double()).pow(2).mean())

    def synthesis_prior(self, weight: float) -> OutputPrior | None:
        """A loss on the model's outputs for data synthesis, or None (BN statistics only)."""
        return None


def task_of_dataset(name: str) -> Task | None:
    """The registered task whose data sets include ``name`` (None: no task has it)."""
    for t in TASKS.names():
        task = TASKS.get(t)
        if name in task.datasets:
            return task
    return None


def load_dataset(name: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs float32 [N, C, H, W] and ground truth of the named data set (any task's).

    Raises UserError for an unknown name, listing the known ones."""
    from edgekit.errors import UserError
    task = task_of_dataset(name)
    if task is None:
        known = sorted(d for t in TASKS.names() for d in TASKS.get(t).datasets)
        raise UserError(f"unknown data set {name!r}: known ones are {', '.join(known)}")
    return task.datasets[name](limit)
