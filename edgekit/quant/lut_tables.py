"""LUT transfer and the table network: from a trained :class:`~edgekit.quant.lut_nets.LutNet` to
int8 lookup tables, and the network that runs on the tables.

Transfer (SR-LUT, Jo & Kim 2021, Sec. 3.2): every unit is evaluated on the uniformly sampled 4-D
grid of its inputs, ``levels = 2^(8 - interval) + 1`` values per input (0, 16, ..., 240, 255 for
interval 4: the last grid point is 255), and ``round(127 * output)`` is stored as int8:
a table int8 [levels^4, r*r] (r*r = 16 outputs at x4 on the last stage, 1 on an intermediate one).
Index of inputs (i, j, k, l): ``((i * L + j) * L + k) * L + l``.

Inference on a table (SR-LUT Sec. 3.3, 4-simplex interpolation): with q = 2^interval, each input
x splits into ``x // q`` (a grid index) and ``x % q`` (its offset f in [0, q)). Sorting the four
offsets in decreasing order f(0) >= f(1) >= f(2) >= f(3) picks the 5 vertices of the simplex
holding the point (the base vertex, then one more input stepped up at a time, in sorted order);
their weights are q - f(0), f(0) - f(1), f(1) - f(2), f(2) - f(3), f(3) (summing to q), and the
value is ``sum(weight * table[vertex]) / q``. Ties give zero weights, so any tie order gives the
same value. :func:`simplex_interpolate` does this with comparisons, sums and one gather, so the
same code exports to ExecuTorch and LiteRT graphs.

LUT-aware fine-tuning (MuLUT, Li et al. 2022, Sec. 3.4): the tables become the parameters, read
through a straight-through round to int8, and are trained on the task loss.
"""
from __future__ import annotations

import torch
from torch import nn

from edgekit.quant.lut_nets import (FIXED_POINT, LutNet, LutSpec, StagedLut, pattern_samples, round_ste, window_kernel,
                                    window_samples)


def grid_inputs(spec: LutSpec) -> torch.Tensor:
    """The transfer grid: float32 [levels^4, 4] of pixel values (0, q, 2q, ..., 255)."""
    q = 2 ** spec.interval
    base = torch.arange(0, 257, q, dtype=torch.float32)
    base[-1] = 255.0
    g = torch.meshgrid(base, base, base, base, indexing="ij")
    return torch.stack([t.reshape(-1) for t in g], dim=1)


@torch.no_grad()
def transfer(net: LutNet, chunk: int = 1 << 16) -> dict[str, torch.Tensor]:
    """Sample every unit of ``net`` on the grid: {unit name: int8 [levels^4, outputs]} with values
    round(127 * tanh output), clamped to [-127, 127]."""
    net.eval()
    grid = grid_inputs(net.spec)
    tables = {}
    for name, unit in net.units.items():
        outs = []
        for i in range(0, len(grid), chunk):
            outs.append(unit.mlp(grid[i:i + chunk]))
        tables[name] = torch.clamp(torch.round(127.0 * torch.cat(outs)), -127, 127).to(torch.int8)
    return tables


def simplex_interpolate(table: torch.Tensor, s: torch.Tensor, interval: int) -> torch.Tensor:
    """4-simplex interpolation of ``table`` [L^4, R] (int8 or float, integer values) at ``s``
    [M, 4] (integer pixel values in [0, 255], float32) -> float32 [M, R] (multiples of 1/q)."""
    q = float(2 ** interval)
    L = 2 ** (8 - interval) + 1
    msb = torch.floor(s / q)
    f = s - msb * q                                               # offsets in [0, q)
    strides = torch.tensor([L ** 3, L ** 2, L, 1], dtype=torch.float32)
    base = (msb * strides).sum(dim=1, keepdim=True)               # [M, 1]
    # comparisons of integer-valued floats as clamps (no bool tensors, no dtype casts):
    # rank_i = #{j: f_j > f_i} + #{j < i: f_j = f_i}, a permutation of 0..3
    earlier = torch.tril(torch.ones(4, 4), diagonal=-1)           # [i, j] = 1 where j < i
    rank = torch.clamp(f.unsqueeze(1) - f.unsqueeze(2) + earlier, 0, 1).sum(dim=2)       # [M, 4]
    steps = torch.arange(4, dtype=torch.float32).view(1, 1, 4)
    onehot = torch.clamp(1 - torch.abs(rank.unsqueeze(2) - steps), 0, 1)                  # [M, input, position]
    ordered = (f.unsqueeze(2) * onehot).sum(dim=1)                # offsets, decreasing, [M, 4]
    upper = torch.cat([torch.full_like(ordered[:, :1], q), ordered], dim=1)
    lower = torch.cat([ordered, torch.zeros_like(ordered[:, :1])], dim=1)
    weights = upper - lower                                       # [M, 5], sums to q
    stepped = torch.clamp(torch.arange(5, dtype=torch.float32).view(1, 1, 5) - rank.unsqueeze(2), 0, 1)
    vertex = base + (stepped * strides.view(1, 4, 1)).sum(dim=1)  # [M, 5]
    rows = table.index_select(0, vertex.reshape(-1).to(torch.int64)).to(torch.float32)
    rows = rows.view(s.shape[0], 5, -1)
    return (weights.unsqueeze(2) * rows).sum(dim=1) / q


class TableNet(StagedLut):
    """The LUT network: ``spec``'s units replaced by tables (see the module docstring).

    forward: x float32 [N, 1, h, w] in [0, 1] -> [N, 1, r*h, r*w] in [0, 1], the output pixels
    clamped to [0, 255] and divided by 255 (so ``round(255 * output)`` is the 8-bit image).
    ``trainable``: the tables are float parameters read through a straight-through round and
    clamp to [-127, 127] (LUT-aware fine-tuning); otherwise int8 buffers (deployment).
    ``sample``: per AutoSample unit its fixed-point weights (int [4, 9], /64); ``residual``: the
    AdaRL mixes (int, /64)."""

    def __init__(self, spec: LutSpec, tables: dict[str, torch.Tensor], fixed: dict | None = None,
                 trainable: bool = False) -> None:
        super().__init__(spec)
        self.trainable, self.names = trainable, list(tables)
        for i, name in enumerate(self.names):
            t = tables[name]
            if trainable:
                self.register_parameter(f"table{i}", nn.Parameter(t.to(torch.float32).clone()))
            else:
                self.register_buffer(f"table{i}", t.to(torch.int8).clone())
        fixed = fixed or {}
        for i, name in enumerate(self.names):  # AutoSample: one 5x5 kernel per rotation
            w = fixed.get(f"{name}.sample")
            if w is not None:
                w = torch.tensor(w, dtype=torch.float32).view(4, -1) / FIXED_POINT
                for k in range(4):
                    self.register_buffer(f"sample{i}_{k}", window_kernel(w, k))
        self.residual = [r / FIXED_POINT for r in fixed.get("residual", [])]

    def table(self, i: int) -> torch.Tensor:
        t = getattr(self, f"table{i}")
        return torch.clamp(round_ste(t), -127, 127) if self.trainable else t

    def samples(self, i: int, xp: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
        """Unit i's 4 table inputs under rotation k at every pixel of the padded image xp
        [N, h + 4, w + 4] -> [N*h*w, 4] (pixel values)."""
        kern = getattr(self, f"sample{i}_{k}", None)
        if kern is None:
            return pattern_samples(xp, self.names[i].split("_")[1], k, h, w)
        return window_samples(xp, kern, self.rnd)

    clamp_output = True

    def rnd(self, t: torch.Tensor) -> torch.Tensor:
        # fine-tuning: gradients through every stage; deployment: a plain round in the graph
        return round_ste(t) if self.trainable else torch.round(t)

    def mix(self, stage: int) -> float | None:
        return self.residual[stage] if self.residual else None

    def rotations(self, stage: int, mode: str, xp: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        """The unit's table, 4-simplex interpolated, per rotation."""
        i = self.names.index(f"s{stage + 1}_{mode}")
        return [simplex_interpolate(self.table(i), self.samples(i, xp, k, h, w), self.spec.interval) for k in range(4)]

    def int8_tables(self) -> dict[str, torch.Tensor]:
        """{unit name: int8 [L^4, R]} as deployed."""
        return {n: self.table(i).detach().round().clamp(-127, 127).to(torch.int8) for i, n in enumerate(self.names)}


def table_bytes(tables: dict[str, torch.Tensor]) -> int:
    """Bytes of the int8 tables (1 byte per entry)."""
    return int(sum(t.numel() for t in tables.values()))


__all__ = ["grid_inputs", "transfer", "simplex_interpolate", "TableNet", "table_bytes", "LutNet", "LutSpec"]
