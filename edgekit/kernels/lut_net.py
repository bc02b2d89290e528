"""A numpy reference for LUT super-resolution networks (SR-LUT, MuLUT, AutoLUT-style): integer
table lookups, 4-simplex interpolation, the rotation ensemble and cascaded stages, with no
multiply-accumulate of learned weights (the only products are interpolation weights, 0..q, times
table entries, and AutoLUT's fixed-point sampling weights).

It reads the tables file of a LUT bundle (``lut_tables.npz``: one int8 array [levels^4, R] per
unit, named ``s{stage}_{mode}``, and ``spec``/``fixed`` JSON strings) and upscales uint8 [h, w]
images to uint8 [r*h, r*w]. Arithmetic (see ``edgekit.quant.lut_tables`` for the sources):

- inputs split as ``msb = x >> interval``, ``f = x & (q - 1)``;
- a unit's value is ``sum_k w_k * T[v_k]`` in int32 (weights from the sorted offsets, vertices
  stepped in sorted order), divided by q;
- a stage sums its units over modes and 4 rotations; an intermediate stage writes
  ``clip(round(sum / (4 * modes) + 127), 0, 255)`` (then AdaRL's ``((64 - a) * y + a * x) / 64``,
  rounded), the last ``clip(round(sum / modes), 0, 255)``; rounding is half to even (numpy's and
  torch's).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PATTERNS = {"s": (1, ((0, 0), (0, 1), (1, 0), (1, 1))),
            "d": (2, ((0, 0), (0, 2), (2, 0), (2, 2))),
            "y": (2, ((0, 0), (1, 1), (1, 2), (2, 1)))}
FIXED_POINT = 64
WINDOW = 3


def load_tables(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(spec dict, {unit name: int8 [L^4, R]}, fixed-point params) from a ``lut_tables.npz``.
    Raises ValueError when the file lacks the spec or a unit's table."""
    with np.load(path, allow_pickle=False) as z:
        if "spec" not in z.files:
            raise ValueError(f"{path} is not a LUT tables file (no 'spec')")
        spec = json.loads(str(z["spec"]))
        fixed = json.loads(str(z["fixed"])) if "fixed" in z.files else {}
        tables = {}
        for st in range(spec["stages"]):
            for m in spec["modes"]:
                name = f"s{st + 1}_{m}"
                if name not in z.files:
                    raise ValueError(f"{path} has no table {name!r}")
                tables[name] = z[name].astype(np.int8)
    return spec, tables, fixed


def interpolate(table: np.ndarray, s: np.ndarray, interval: int) -> np.ndarray:
    """4-simplex interpolation: table int8 [L^4, R] at s int [M, 4] in [0, 255] -> float64
    [M, R], exact multiples of 1/q."""
    q, L = 1 << interval, (1 << (8 - interval)) + 1
    s = s.astype(np.int64)
    msb, f = s >> interval, s & (q - 1)
    strides = np.array([L ** 3, L ** 2, L, 1], dtype=np.int64)
    order = np.argsort(-f, axis=1, kind="stable")                    # inputs by decreasing offset
    fs = np.take_along_axis(f, order, axis=1)
    w = np.concatenate([q - fs[:, :1], fs[:, :-1] - fs[:, 1:], fs[:, -1:]], axis=1)  # [M, 5]
    v = np.empty((len(s), 5), dtype=np.int64)
    v[:, 0] = msb @ strides
    for k in range(4):
        v[:, k + 1] = v[:, k] + strides[order[:, k]]
    acc = np.zeros((len(s), table.shape[1]), dtype=np.int32)
    for k in range(5):
        acc += w[:, k:k + 1].astype(np.int32) * table[v[:, k]].astype(np.int32)
    return acc / q


def _samples(x: np.ndarray, mode: str, sample: list | None) -> np.ndarray:
    """x int [H, W] -> the 4 table inputs int [H*W, 4] of a unit (fixed pattern or AutoSample)."""
    h, w = x.shape
    if sample is None:
        p, offs = PATTERNS[mode]
        xp = np.pad(x, ((0, p), (0, p)), mode="edge")
        return np.stack([xp[dy:dy + h, dx:dx + w].reshape(-1) for dy, dx in offs], axis=1)
    xp = np.pad(x, ((0, WINDOW - 1), (0, WINDOW - 1)), mode="edge").astype(np.int64)
    wts = np.asarray(sample, dtype=np.int64).reshape(4, WINDOW, WINDOW)
    out = np.zeros((4, h, w), dtype=np.int64)
    for dy in range(WINDOW):
        for dx in range(WINDOW):
            out += wts[:, dy, dx, None, None] * xp[None, dy:dy + h, dx:dx + w]
    return np.clip(np.round(out / FIXED_POINT), 0, 255).astype(np.int64).reshape(4, -1).T


def upscale(img: np.ndarray, spec: dict, tables: dict[str, np.ndarray], fixed: dict | None = None) -> np.ndarray:
    """Run the LUT network on one image: uint8 [h, w] -> uint8 [r*h, r*w]."""
    x = np.asarray(img).astype(np.int64)
    for st in range(spec["stages"]):
        x = run_stage(x, spec, tables, st, fixed)
    return x.astype(np.uint8)


def run_stage(x: np.ndarray, spec: dict, tables: dict[str, np.ndarray], st: int,
              fixed: dict | None = None) -> np.ndarray:
    """Stage ``st`` (0-based) of the LUT network on its input image int [h, w] (pixel values):
    an intermediate stage writes int64 [h, w] in [0, 255], the last int64 [r*h, r*w] in [0, 255]."""
    fixed = fixed or {}
    n, r = len(spec["modes"]), spec["scale"]
    last = st == spec["stages"] - 1
    up = r if last else 1
    pred = np.zeros((x.shape[0] * up, x.shape[1] * up), dtype=np.float64)
    for m in spec["modes"]:
        name = f"s{st + 1}_{m}"
        for k in range(4):
            xr = np.rot90(x, k)
            h, w = xr.shape
            v = interpolate(tables[name], _samples(xr, m, fixed.get(f"{name}.sample")), spec["interval"])
            v = v.reshape(h, w, up, up).transpose(0, 2, 1, 3).reshape(h * up, w * up)
            pred += np.rot90(v, -k)
    if last:
        return np.clip(np.round(pred / n), 0, 255).astype(np.int64)
    y = np.clip(np.round(pred / (4 * n) + 127), 0, 255)
    if fixed.get("residual"):
        a = fixed["residual"][st]
        y = np.clip(np.round(((FIXED_POINT - a) * y + a * x) / FIXED_POINT), 0, 255)
    return y.astype(np.int64)
