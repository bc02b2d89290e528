"""Activation ranges computed from BatchNorm statistics, with no data.

A BN layer's output channel c is modelled as Gaussian N(beta_c, gamma_c^2) (its input matches the
running statistics, so the normalised value is ~N(0, 1)). The per-channel mean and variance are
propagated through the folded graph: ReLU/ReLU6 (``hardtanh``) by the moments of a clipped
Gaussian, residual ``add`` by summing means and variances (inputs taken as independent), and
ops that keep values (dropout in eval, identity) unchanged. A tensor's range is the union over
channels of [mean - k*std, mean + k*std], clipped to the activation's bounds.

This is the observation ZeroQ and DFQ (Nagel et al. 2019, Sec. 4.2) build on; DFQ uses the same
Gaussian model of BN outputs for bias correction. It covers the tensors distilled images
estimate worst on deep networks: linear-bottleneck outputs and residual sums.
"""
from __future__ import annotations

import math

import torch
from torch import fx

from edgekit.models.canonical import BNStats

_SQRT2 = math.sqrt(2.0)


def _phi(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / _SQRT2))


def clipped_gaussian_moments(mean: torch.Tensor, std: torch.Tensor, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of clamp(X, a, b) for X ~ N(mean, std^2), per channel (float32 [C] each)."""
    std = std.clamp_min(1e-8)
    alpha, beta = (a - mean) / std, (b - mean) / std
    pa, pb = _Phi(alpha), _Phi(beta)
    da, db = _phi(alpha), _phi(beta)
    mass = (pb - pa).clamp_min(0)
    # E[X ; a<X<b] and E[X^2 ; a<X<b] of the untruncated Gaussian
    m1 = mean * mass + std * (da - db)
    m2 = (mean ** 2 + std ** 2) * mass + 2 * mean * std * (da - db) + std ** 2 * (torch.nan_to_num(alpha * da) - torch.nan_to_num(beta * db))  # inf * 0 at an open bound
    if math.isinf(a):
        a_part1 = a_part2 = torch.zeros_like(mean)
    else:
        a_part1, a_part2 = a * pa, a * a * pa
    if math.isinf(b):
        b_part1 = b_part2 = torch.zeros_like(mean)
    else:
        b_part1, b_part2 = b * (1 - pb), b * b * (1 - pb)
    e1 = m1 + a_part1 + b_part1
    e2 = m2 + a_part2 + b_part2
    return e1, torch.sqrt((e2 - e1 ** 2).clamp_min(0))


def clip_bounds(n: fx.Node) -> tuple[float, float] | None:
    """(lo, hi) of a ReLU (0, inf) or hardtanh node (ReLU6: 0, 6); None for any other node."""
    t = str(n.target)
    if t in ("aten.relu.default", "aten.relu_.default"):
        return 0.0, math.inf
    if t in ("aten.hardtanh.default", "aten.hardtanh_.default"):
        lo = n.args[1] if len(n.args) > 1 else -1.0
        hi = n.args[2] if len(n.args) > 2 else 1.0
        return float(lo), float(hi)
    return None


_PASS_THROUGH = ("aten.dropout.default", "aten.clone.default", "aten.alias.default")


def analytic_ranges(gm: fx.GraphModule, bn_stats: dict[str, BNStats], sigmas: float = 4.0) -> dict[str, tuple[float, float]]:
    """Ranges (lo, hi) in float for every node whose per-channel statistics follow from BN.

    gm: the folded canonical graph; bn_stats: keyed by its conv node names (see canonicalize).
    """
    stats: dict[str, tuple[torch.Tensor, torch.Tensor, float, float]] = {}
    for n in gm.graph.nodes:
        if n.name in bn_stats:
            s = bn_stats[n.name]
            stats[n.name] = (s.mean, s.std, -math.inf, math.inf)
            continue
        if n.op != "call_function":
            continue
        srcs = [a for a in n.args if isinstance(a, fx.Node)]
        bounds = clip_bounds(n)
        if bounds is not None and srcs and srcs[0].name in stats:
            m, s, _, _ = stats[srcs[0].name]
            cm, cs = clipped_gaussian_moments(m, s, *bounds)
            stats[n.name] = (cm, cs, bounds[0], bounds[1])
        elif str(n.target) == "aten.add.Tensor" and len(srcs) == 2 and all(a.name in stats for a in srcs):
            (m1, s1, lo1, hi1), (m2, s2, lo2, hi2) = stats[srcs[0].name], stats[srcs[1].name]
            stats[n.name] = (m1 + m2, torch.sqrt(s1 ** 2 + s2 ** 2), lo1 + lo2, hi1 + hi2)
        elif str(n.target) in _PASS_THROUGH and srcs and srcs[0].name in stats:
            stats[n.name] = stats[srcs[0].name]
    ranges = {}
    for name, (m, s, lo_b, hi_b) in stats.items():
        lo = float((m - sigmas * s).min().clamp(lo_b, hi_b))
        hi = float((m + sigmas * s).max().clamp(lo_b, hi_b))
        ranges[name] = (min(lo, 0.0), max(hi, 0.0))
    return ranges
