"""Range equalization into depthwise convs, a form of cross-layer equalization (Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction", Sec. 4.1).

A conv whose output feeds, through ReLU/ReLU6 or nothing, only a depthwise conv can carry output
channel c scaled by s_c > 0 if the depthwise conv's channel c is scaled by 1/s_c: the product is
unchanged. DFQ picks s to balance the two layers' per-tensor weight ranges. Here both layers'
weights are per-channel, so their integers do not change at all; what changes is the per-tensor
activation between them: each channel is scaled up towards the widest channel's BN-analytic
range, so a channel that spans 0.3 of a 3.5 range no longer gets a tenth of the int8 grid
(MobileNetV2's first conv, whose output alone costs 24.6 dB of logit SQNR at int8).

Exact without an activation and with ReLU; with ReLU6 channel c then clips at 6/s_c, above its
BN-analytic bound (s_c is chosen so that the bound times s_c stays within the widest channel's).
s_c is capped at ``MAX_SCALE``.
"""
from __future__ import annotations

import torch
from torch import fx

from edgekit.models.canonical import BNStats, get_attr_tensor, set_attr_tensor
from edgekit.quant.bn_ranges import clip_bounds

MAX_SCALE = 4.0  # MobileNetV2 data-free, simulated logit SQNR: 20.0 dB at 4, 19.8 at 16 and 64


def _is_depthwise(gm: fx.GraphModule, n: fx.Node, channels: int) -> bool:
    if n.op != "call_function" or n.target is not torch.ops.aten.conv2d.default:
        return False
    w = get_attr_tensor(gm, n.args[1])
    groups = n.args[6] if len(n.args) > 6 else 1
    return w.dim() == 4 and w.shape[1] == 1 and w.shape[0] == channels and groups == channels


def equalization_pairs(gm: fx.GraphModule, bn_stats: dict[str, BNStats]) -> list[tuple[fx.Node, fx.Node | None, fx.Node]]:
    """(producer conv, activation or None, depthwise conv) chains where the producer has BN
    statistics, each node's only user is the next, and the activation is a ReLU or a hardtanh
    whose lower bound is 0."""
    pairs = []
    for p in gm.graph.nodes:
        if p.name not in bn_stats or p.op != "call_function" or p.target is not torch.ops.aten.conv2d.default \
                or len(p.args) < 3 or p.args[2] is None or len(p.users) != 1:
            continue
        act = next(iter(p.users))
        bounds = clip_bounds(act)
        if bounds is not None:
            if bounds[0] != 0.0 or len(act.users) != 1:
                continue
            n = next(iter(act.users))
        else:
            act, n = None, act
        if _is_depthwise(gm, n, get_attr_tensor(gm, p.args[1]).shape[0]) and n.args[0] is (act or p):
            pairs.append((p, act, n))
    return pairs


@torch.no_grad()
def equalize_depthwise_inputs(gm: fx.GraphModule, bn_stats: dict[str, BNStats],
                              sigmas: float) -> tuple[dict[str, BNStats], list[str]]:
    """Scale every chain of ``equalization_pairs`` in ``gm`` (in place: new tensors for the
    producer's weight [C, ...] and bias [C] times s, the depthwise weight [C, 1, kh, kw] over s).
    s_c = H / hi_c within [1, MAX_SCALE], where hi_c is channel c's BN-analytic upper bound
    (mean + ``sigmas`` * std, clipped by the activation) and H the largest.

    Returns the BN statistics with the scaled producers' entries scaled (for analytic ranges)
    and the names of the layers whose weights changed.
    """
    stats = dict(bn_stats)
    changed = []
    for p, act, n in equalization_pairs(gm, bn_stats):
        st = bn_stats[p.name]
        hi = st.mean + sigmas * st.std
        if act is not None:
            hi = hi.clamp(max=clip_bounds(act)[1])
        else:
            hi = torch.maximum(hi.abs(), (st.mean - sigmas * st.std).abs())
        top = float(hi.max())
        if top <= 0:
            continue
        s = torch.where(hi > 0, top / hi.clamp(min=1e-12), torch.ones_like(hi)).clamp(1.0, MAX_SCALE)
        w1, b1, w2 = (get_attr_tensor(gm, a) for a in (p.args[1], p.args[2], n.args[1]))
        set_attr_tensor(gm, p.args[1], w1 * s.view(-1, *[1] * (w1.dim() - 1)))
        set_attr_tensor(gm, p.args[2], b1 * s)
        set_attr_tensor(gm, n.args[1], w2 / s.view(-1, 1, 1, 1))
        stats[p.name] = BNStats(st.module, st.mean * s, st.std * s)
        changed += [p.name, n.name]
    return stats, changed
