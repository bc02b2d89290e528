"""Activation range estimation over calibration batches (whitepaper Sec. 3.5).

``collect_activation_samples`` runs the canonical graph with ``torch.fx.Interpreter`` and keeps,
per node, the exact min/max and a random subsample of values; the estimators turn those into a
range: ``minmax`` (exact extremes), ``percentile`` (two-sided percentile of the subsample) and
``mse`` (the clipping of [min, max] that minimises the quantize-dequantize mean squared error).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import fx

SAMPLES_PER_BATCH = 1 << 15


@dataclass
class NodeSamples:
    """Running min/max (float) and a subsample (float32 [K]) of one node's output values."""
    lo: float = float("inf")
    hi: float = float("-inf")
    chunks: list[torch.Tensor] = field(default_factory=list)

    def add(self, x: torch.Tensor, g: torch.Generator) -> None:
        flat = x.detach().reshape(-1).float()
        self.lo = min(self.lo, float(flat.min()))
        self.hi = max(self.hi, float(flat.max()))
        if flat.numel() > SAMPLES_PER_BATCH:
            flat = flat[torch.randint(0, flat.numel(), (SAMPLES_PER_BATCH,), generator=g)]
        self.chunks.append(flat.clone())

    @property
    def values(self) -> torch.Tensor:
        return torch.cat(self.chunks)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, names: set[str], store: dict[str, NodeSamples], g: torch.Generator):
        super().__init__(gm)
        self.names, self.store, self.g = names, store, g

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.names and isinstance(out, torch.Tensor):
            self.store.setdefault(n.name, NodeSamples()).add(out, self.g)
        return out


@torch.no_grad()
def collect_activation_samples(gm: fx.GraphModule, batches: Iterable[torch.Tensor],
                               names: Iterable[str], seed: int = 0) -> dict[str, NodeSamples]:
    """Min/max and value subsamples of the outputs of nodes ``names`` over ``batches``
    (float32 [B, C, H, W] each)."""
    store: dict[str, NodeSamples] = {}
    g = torch.Generator().manual_seed(seed)
    rec = _Recorder(gm, set(names), store, g)
    for x in batches:
        rec.run(x)
    return store


def _qdq_mse(v: torch.Tensor, lo: float, hi: float, levels: int) -> float:
    scale = max((hi - lo) / (levels - 1), 1e-12)
    zp = round(-lo / scale)
    q = torch.clamp(torch.round(v / scale) + zp, 0, levels - 1)
    return float(((q - zp) * scale - v).pow(2).mean())


def estimate_range(s: NodeSamples, estimator: str, bits: int = 8, percentile: float = 99.99) -> tuple[float, float]:
    """The float range [lo, hi] of one tensor by ``estimator`` in {minmax, percentile, mse}.

    Raises ValueError for an unknown estimator.
    """
    lo, hi = min(s.lo, 0.0), max(s.hi, 0.0)
    if estimator == "minmax":
        return lo, hi
    v = s.values
    if estimator == "percentile":
        k = max(1, int(round(v.numel() * (100.0 - percentile) / 100.0)))
        plo = float(v.kthvalue(k).values) if lo < 0 else 0.0
        phi = float(v.kthvalue(v.numel() - k + 1).values) if hi > 0 else 0.0
        return max(lo, min(plo, 0.0)), min(hi, max(phi, 0.0))
    if estimator == "mse":
        best, best_r = float("inf"), (lo, hi)
        for a in torch.linspace(0.2, 1.0, 41).tolist():
            err = _qdq_mse(v, lo * a, hi * a, 2 ** bits)
            if err < best:
                best, best_r = err, (lo * a, hi * a)
        return best_r
    raise ValueError(f"unknown activation range estimator {estimator!r}: use minmax, percentile or mse")
