"""Grid training: a LUT network trained through its own tables.

:class:`GridLutNet` has the parameters of :class:`~edgekit.quant.lut_nets.LutNet` (so it transfers
to tables the same way) but computes every unit as the deployed table network does: the unit's
MLP is evaluated only on the transfer grid's vertices (``round(127 * output)``, as the transfer
stores them) and its outputs are 4-simplex interpolated at the unit's inputs. The gradient reaches
the MLP through the grid vertices a batch touches, and the previous stage through the
interpolation weights.

Why: neighbouring pixels of a photo are alike, so a batch's inputs fall on few grid vertices (a
MuLUT after 400 steps, 32 patches of 24 x 24: 11,000 to 18,000 distinct vertices per stage-1 unit
and 3,000 to 4,000 per stage-2 unit, for 73,728 inputs each). The MLP, the cost of training, then
runs once per distinct vertex instead of once per pixel and rotation, so a step of 32 patches
costs less than a per-pixel step of 16 (``benchmarks/lut_train_speed.py``); and the network
trained is exactly the function the tables deploy (no transfer loss; in bf16 training up to the
hidden layers' rounding).
"""
from __future__ import annotations

import torch

from edgekit.quant.lut_nets import LutNet, LutSpec, round_ste
from edgekit.quant.lut_tables import grid_inputs


def simplex_vertices(s: torch.Tensor, interval: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4-simplex holding each input row s [M, 4] (integer pixel values, float32, may carry a
    gradient): vertex indices int64 [M, 5] into a table of ``levels^4`` rows and interpolation
    weights float32 [M, 5] summing to 1 (differentiable in s). Same simplex and weights as
    :func:`edgekit.quant.lut_tables.simplex_interpolate` (SR-LUT Sec. 3.3), written with a sort."""
    q = float(2 ** interval)
    L = 2 ** (8 - interval) + 1
    msb = torch.floor(s.detach() / q)
    f = s - msb * q                                                    # offsets in [0, q)
    strides = torch.tensor([L ** 3, L ** 2, L, 1], dtype=torch.int64)
    base = (msb.to(torch.int64) * strides).sum(dim=1, keepdim=True)
    ordered, order = torch.sort(f, dim=1, descending=True)
    steps = torch.cumsum(strides[order], dim=1)                        # [M, 4]
    vertex = torch.cat([base, base + steps], dim=1)
    upper = torch.cat([torch.full_like(ordered[:, :1], q), ordered], dim=1)
    lower = torch.cat([ordered, torch.zeros_like(ordered[:, :1])], dim=1)
    return vertex, (upper - lower) / q


def grid_values(vertex: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct vertices of ``vertex`` (int64, any shape, rows of ``grid``, the transfer grid
    float32 [levels^4, 4] of :func:`~edgekit.quant.lut_tables.grid_inputs`): their inputs float32
    [U, 4] and ``vertex`` re-indexed into them (int64, same shape)."""
    used = torch.zeros(len(grid), dtype=torch.bool)
    used[vertex.reshape(-1)] = True
    slot = torch.cumsum(used, 0) - 1
    return grid[used], slot[vertex]


class GridLutNet(LutNet):
    """:class:`~edgekit.quant.lut_nets.LutNet` computed through its tables (see the module
    docstring). forward: x float32 [N, 1, h, w] in [0, 1] -> [N, 1, r*h, r*w] (unclamped)."""

    def __init__(self, spec: LutSpec) -> None:
        super().__init__(spec)
        self.register_buffer("grid", grid_inputs(spec), persistent=False)  # the transfer's grid, not a parameter

    def rotations(self, stage: int, mode: str, xp: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        """The unit's table values (MLP on the touched grid vertices), interpolated per rotation."""
        unit = self.units[f"s{stage + 1}_{mode}"]
        s = torch.cat([unit.samples(xp, k, h, w) for k in range(4)])
        vertex, weight = simplex_vertices(s.float(), self.spec.interval)
        inputs, slot = grid_values(vertex, self.grid)
        table = round_ste(127.0 * unit.mlp(inputs))                    # [U, R]
        return list(interpolate(table, slot, weight).chunk(4))


def _interpolate(table: torch.Tensor, slot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    rows = table.index_select(0, slot.reshape(-1)).view(slot.shape[0], 5, -1)
    return (weight.unsqueeze(2) * rows).sum(dim=1)


_compiled = None


def interpolate(table: torch.Tensor, slot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_k weight[:, k] * table[slot[:, k]]: table float32 [U, R], slot int64 [M, 5], weight
    float32 [M, 5] -> [M, R]. Compiled (``torch.compile``, dynamic shapes) into one fused loop,
    forward and backward, about 10x faster than eager on the CPU; eager where compiling fails
    (no C++ compiler)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_interpolate, dynamic=True)
    if _compiled is not _interpolate:
        try:
            return _compiled(table, slot, weight)
        except Exception:  # noqa: BLE001 - inductor needs a C++ toolchain; the eager code is the same maths
            _compiled = _interpolate
    return _interpolate(table, slot, weight)
