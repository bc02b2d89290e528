"""LUT-convertible super-resolution networks: SR-LUT, MuLUT and an AutoLUT-style variant.

Each network is a set of *units*. A unit reads 4 pixels around every pixel of a one-channel image
(its sampling pattern), maps them through a small MLP to ``r*r`` values in [-1, 1] (tanh) and is
later replaced by a lookup table indexed by the 4 pixels (``edgekit.quant.lut_tables``). Units run
under the rotation ensemble: the image is rotated by 0/90/180/270 degrees, the unit runs on each
rotation, and the outputs are rotated back and summed; one unit so covers all four orientations
of its pattern. (Implemented without rotating the image: rotation k reads the pattern rotated
back, ``rotated_offset``, on the image replicate-padded on every side, and its r x r output block
is rotated back by a permutation, ``block_permutation``; the numpy reference rotates the image,
and the tests check the two agree bit for bit.)

Sources:

- SR-LUT (Jo & Kim, "Practical Single-Image Super-Resolution Using Look-Up Table", CVPR 2021,
  Sec. 3): one unit on a 2x2 pattern (``s``), one stage, rotation ensemble, outputs r*r values per
  pixel, pixel-shuffled.
- MuLUT (Li et al., "MuLUT: Cooperating Multiple Look-Up Tables for Efficient Image
  Super-Resolution", ECCV 2022, Sec. 3): several complementary patterns (``s``: 2x2, ``d``: 2x2
  dilated by 2, ``y``: a Y-shaped 4-pixel pattern in a 3x3 window) averaged, and cascaded
  stages; a stage other than the last writes a same-size image (its units output 1 value).
  Stage arithmetic (as the authors' code does it, in 8-bit pixel units): every unit output is
  ``round(127 * tanh(.))``; an intermediate stage writes
  ``clamp(round(sum / (4 * modes) + 127), 0, 255)``; the last stage writes
  ``round(sum / modes)``, read as a pixel value (so 4 rotations of +-127 span +-508).
- AutoLUT (CVPR 2025): AutoSample, learned sampling weights (each of a unit's 4 inputs is a
  learned convex combination of the pixels of a 3x3 window, here initialised near the fixed
  pattern it replaces), and AdaRL, adaptive residual learning between stages (here a learned
  mix ``(1 - a) * stage + a * input`` with ``a`` in [0, 1], one per intermediate stage). At
  deployment both are fixed-point: the sampling weights are multiples of 1/64, ``a`` a multiple
  of 1/64 (``fixed_point``), so the deployed arithmetic is exact in float32.

Inputs and outputs: images float32 [N, 1, h, w] in [0, 1] (8-bit pixel values / 255); a network
returns [N, 1, r*h, r*w] in [0, 1]-units (unclamped). Training rounds every stage's pixels with a
straight-through estimator so the trained network is the table network up to interpolation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# pattern -> (padding after the pixel, the 4 sampled offsets (dy, dx) from the pixel)
PATTERNS = {
    "s": (1, ((0, 0), (0, 1), (1, 0), (1, 1))),
    "d": (2, ((0, 0), (0, 2), (2, 0), (2, 2))),
    "y": (2, ((0, 0), (1, 1), (1, 2), (2, 1))),
}
AUTO_WINDOW = 3      # AutoSample's window side (covers every pattern above)
FIXED_POINT = 64     # denominator of the deployed AutoSample weights and AdaRL mix


@dataclass(frozen=True)
class LutSpec:
    """What a LUT network is: ``scale`` (r), ``stages``, the sampling ``modes`` of every stage,
    the MLP width ``nf``, table ``interval`` (log2 of the sampling step: 4 -> 17 levels per
    input), ``autosample`` (AutoLUT's learned sampling) and ``adaptive_residual`` (AdaRL)."""
    method: str
    scale: int = 4
    stages: int = 1
    modes: tuple[str, ...] = ("s",)
    nf: int = 64
    interval: int = 4
    autosample: bool = False
    adaptive_residual: bool = False
    dense: bool = False

    @property
    def levels(self) -> int:
        """Samples per table input: 2^(8 - interval) + 1 (17 for interval 4)."""
        return 2 ** (8 - self.interval) + 1

    def to_dict(self) -> dict:
        return {**asdict(self), "modes": list(self.modes)}

    @staticmethod
    def from_dict(d: dict) -> "LutSpec":
        return LutSpec(**{**d, "modes": tuple(d["modes"])})


# The methods, as presets (``--method``): the papers' structure, CPU-sized widths.
METHODS = {
    "srlut": LutSpec("srlut", stages=1, modes=("s",), nf=64),
    "mulut": LutSpec("mulut", stages=2, modes=("s", "d", "y"), nf=32, dense=True),
    "autolut": LutSpec("autolut", stages=2, modes=("s", "d", "y"), nf=32, dense=True, autosample=True,
                       adaptive_residual=True),
}


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (the straight-through estimator, Bengio et al. 2013)."""
    return x + (torch.round(x) - x).detach()


PAD = 2  # every pattern and AutoSample window reaches at most 2 pixels from its pixel


def rotated_offset(dy: int, dx: int, k: int) -> tuple[int, int]:
    """Offset (dy, dx) of a unit's pattern in the image rotated by k * 90 degrees (``torch.rot90``,
    counter-clockwise), as an offset in the unrotated image. Reading a pattern rotated back is
    the same as rotating the image, reading the pattern and rotating the output back."""
    return ((dy, dx), (dx, -dy), (-dy, -dx), (-dx, dy))[k % 4]


def pad_all(x: torch.Tensor, p: int = PAD) -> torch.Tensor:
    """x [N, H, W] with its edge rows and columns repeated ``p`` times on every side, by
    concatenation only (no pad op, so every runtime takes it). Replicating the rotated image's
    bottom/right edges, as the units are defined, is replicating some edge of the image."""
    x = torch.cat([x[:, :1, :]] * p + [x] + [x[:, -1:, :]] * p, dim=1)
    return torch.cat([x[:, :, :1]] * p + [x] + [x[:, :, -1:]] * p, dim=2)


def pattern_samples(xp: torch.Tensor, mode: str, k: int, h: int, w: int) -> torch.Tensor:
    """Fixed pattern ``mode`` under rotation k at every pixel of the padded image xp
    [N, h + 2 PAD, w + 2 PAD] -> [N*h*w, 4] (the rows in pixel order)."""
    offs = [rotated_offset(dy, dx, k) for dy, dx in PATTERNS[mode][1]]
    return torch.stack([xp[:, PAD + oy:PAD + oy + h, PAD + ox:PAD + ox + w].reshape(-1) for oy, ox in offs], dim=1)


def window_kernel(weights: torch.Tensor, k: int) -> torch.Tensor:
    """AutoSample weights [4, 9] (3x3 window anchored at the pixel) under rotation k as a conv
    kernel [4, 1, 5, 5] on the image padded by ``PAD`` (differentiable in ``weights``)."""
    idx = [(PAD + oy) * (2 * PAD + 1) + PAD + ox
           for oy, ox in (rotated_offset(dy, dx, k) for dy in range(AUTO_WINDOW) for dx in range(AUTO_WINDOW))]
    kern = weights.new_zeros(4, (2 * PAD + 1) ** 2).index_copy(1, torch.tensor(idx), weights)
    return kern.view(4, 1, 2 * PAD + 1, 2 * PAD + 1)


def window_samples(xp: torch.Tensor, kern: torch.Tensor, rnd) -> torch.Tensor:
    """AutoSample on the padded image xp [N, h + 4, w + 4] with ``kern`` [4, 1, 5, 5]: the 4
    samples rounded by ``rnd`` and clamped to [0, 255] -> [N*h*w, 4]."""
    s = torch.clamp(rnd(F.conv2d(xp.unsqueeze(1), kern)), 0, 255)     # [N, 4, h, w]
    return s.reshape(s.shape[0], 4, -1).transpose(1, 2).reshape(-1, 4)


def block_permutation(r: int, k: int) -> torch.Tensor:
    """How rotation k's r x r output block (flattened) is rotated back: ``v[:, perm]``."""
    return torch.rot90(torch.arange(r * r).view(r, r), -k).reshape(-1)


def pixel_shuffle3(v: torch.Tensor, n: int, h: int, w: int, r: int) -> torch.Tensor:
    """Per-pixel blocks [n*h*w, r*r] -> the image [n, r*h, r*w]."""
    return v.view(n, h, w, r, r).transpose(2, 3).reshape(n, h * r, w * r)


class AutoSample(nn.Module):
    """AutoLUT's learned sampling: 4 convex combinations (softmax over a 3x3 window anchored at
    the pixel) of the pixels, initialised near pattern ``mode``. ``weights()``: float32 [4, 9],
    rows sum to 1 (``fixed``: multiples of 1/64, as deployed)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        # the pattern's pixel 4 logits above the rest: weight 0.87 (56/64), 1/64 on each other
        # pixel; a wider gap saturates the softmax and the weights stop learning
        init = torch.zeros(4, AUTO_WINDOW * AUTO_WINDOW)
        for k, (dy, dx) in enumerate(PATTERNS[mode][1]):
            init[k, dy * AUTO_WINDOW + dx] = 4.0
        self.logits = nn.Parameter(init)

    def weights(self, fixed: bool = False) -> torch.Tensor:
        w = torch.softmax(self.logits, dim=1)
        return round_ste(w * FIXED_POINT) / FIXED_POINT if fixed else w


class Unit(nn.Module):
    """One LUT unit's network: 4 inputs -> ``outputs`` values in [-1, 1] at every pixel.
    MLP on the 4 samples (SR-LUT's 2x2 conv is a linear layer on them), ``nf`` wide, ReLU, dense
    connections when ``dense`` (MuLUT), tanh."""

    def __init__(self, mode: str, nf: int, outputs: int, dense: bool, autosample: bool) -> None:
        super().__init__()
        self.mode = mode
        self.sample = AutoSample(mode) if autosample else None
        self.dense = dense
        self.first = nn.Linear(4, nf)
        widths = [nf * (i + 1) if dense else nf for i in range(4)]
        self.hidden = nn.ModuleList(nn.Linear(widths[i], nf) for i in range(4))
        self.last = nn.Linear(widths[-1] + nf if dense else nf, outputs)
        for m in [self.first, *self.hidden, self.last]:
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)

    def samples(self, xp: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
        """The 4 table inputs under rotation k at every pixel of the padded image xp
        [N, h + 4, w + 4] (pixel units) -> [N*h*w, 4], rounded as the table is indexed."""
        if self.sample is None:
            return pattern_samples(xp, self.mode, k, h, w)
        with torch.autocast("cpu", enabled=False):  # exact: the rounded samples index the tables
            return window_samples(xp, window_kernel(self.sample.weights(fixed=True), k), round_ste)

    def mlp(self, s: torch.Tensor) -> torch.Tensor:
        """Table inputs [M, 4] in pixel units -> [M, outputs] float32 in [-1, 1]. Under a CPU
        autocast (bf16 training, ``lut_train``) only the hidden layers run in it: the first and
        last layers stay float32, so that neighbouring 8-bit inputs stay apart (bf16 keeps 8
        significant bits) and 127 * tanh is rounded from a float32 value, as the transfer does."""
        with torch.autocast("cpu", enabled=False):
            h = F.relu(self.first(s / 255.0))
        if torch.is_autocast_enabled("cpu"):
            h = h.to(torch.get_autocast_dtype("cpu"))  # one cast, not one per dense concatenation
        for lin in self.hidden:
            y = F.relu(lin(h))
            h = torch.cat([h, y], dim=1) if self.dense else y
        with torch.autocast("cpu", enabled=False):
            return torch.tanh(self.last(h.float()))


class StagedLut(nn.Module):
    """The stage arithmetic shared by the trainable network (:class:`LutNet`) and the table network
    (``edgekit.quant.lut_tables.TableNet``); subclasses say how a unit's 4 rotations are computed
    (``rotations``), how values are rounded (``rnd``) and the AdaRL mix (``mix``).

    forward: x float32 [N, 1, h, w] in [0, 1] -> [N, 1, r*h, r*w] (8-bit pixel values / 255;
    clamped to [0, 255] first when ``clamp_output``). Stage rules: see the module docstring."""

    clamp_output = False

    def __init__(self, spec: LutSpec) -> None:
        super().__init__()
        self.spec = spec
        for k in range(4):  # how rotation k's r x r output block is rotated back
            self.register_buffer(f"perm{k}", block_permutation(spec.scale, k), persistent=False)

    def rnd(self, t: torch.Tensor) -> torch.Tensor:
        return round_ste(t)

    def rotations(self, stage: int, mode: str, xp: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        """Unit (stage, mode) under the 4 rotations, on the image padded by ``PAD`` (xp
        [N, h + 4, w + 4]): 4 outputs [N*h*w, r'*r'] in 8-bit units (127 * unit output)."""
        raise NotImplementedError

    def mix(self, stage: int) -> torch.Tensor | float | None:
        """AdaRL's a after intermediate ``stage`` (0-based), or None without AdaRL."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 3-D [N, H, W] inside: ExecuTorch's dim orders are ambiguous for [N, 1, H, W] views
        spec, rnd = self.spec, self.rnd
        x255 = rnd(torch.clamp(x[:, 0], 0, 1) * 255.0)
        n, (b, h, w) = len(spec.modes), x255.shape
        for st in range(spec.stages):
            last = st == spec.stages - 1
            r = spec.scale if last else 1
            xp = pad_all(x255)
            pred = 0
            for m in spec.modes:
                for k, v in enumerate(self.rotations(st, m, xp, h, w)):
                    pred = pred + (v.index_select(1, getattr(self, f"perm{k}")) if r > 1 else v)
            if last:
                y = rnd(pixel_shuffle3(pred, b, h, w, r) / n)
                return (torch.clamp(y, 0, 255) if self.clamp_output else y).unsqueeze(1) / 255.0
            y = torch.clamp(rnd(pred.view(b, h, w) / (4 * n) + 127.0), 0, 255)
            a = self.mix(st)
            if a is not None:
                y = torch.clamp(rnd((1 - a) * y + a * x255), 0, 255)
            x255 = y
        raise AssertionError("unreachable")


class LutNet(StagedLut):
    """A trainable SR-LUT / MuLUT / AutoLUT-style network of ``spec`` (see the module docstring).
    forward: x float32 [N, 1, h, w] in [0, 1] -> [N, 1, r*h, r*w] (pixel values / 255, unclamped)."""

    def __init__(self, spec: LutSpec) -> None:
        super().__init__(spec)
        self.units = nn.ModuleDict()
        for s in range(spec.stages):
            outputs = spec.scale ** 2 if s == spec.stages - 1 else 1
            for m in spec.modes:
                self.units[f"s{s + 1}_{m}"] = Unit(m, spec.nf, outputs, spec.dense, spec.autosample)
        # AdaRL mix per intermediate stage, as a logit (sigmoid -> a in [0, 1]); starts at a = 0.27
        self.residual = nn.Parameter(torch.full((max(spec.stages - 1, 0),), -1.0)) if spec.adaptive_residual else None

    def mix(self, stage: int) -> torch.Tensor | None:
        """AdaRL's a of intermediate ``stage`` (0-based), a multiple of 1/64 (straight-through)."""
        if self.residual is None:
            return None
        return round_ste(torch.sigmoid(self.residual[stage]) * FIXED_POINT) / FIXED_POINT

    def rotations(self, stage: int, mode: str, xp: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        """round(127 * unit output) per rotation; the 4 rotations run through the MLP as one batch."""
        unit = self.units[f"s{stage + 1}_{mode}"]
        return list(round_ste(127.0 * unit.mlp(torch.cat([unit.samples(xp, k, h, w) for k in range(4)]))).chunk(4))


def fixed_point_params(net: LutNet) -> dict:
    """The deployed fixed-point parameters besides the tables: per AutoSample unit its weights
    (int [4, 9], multiples of 1/64 as integers) and the AdaRL mixes (int, /64)."""
    out: dict = {}
    for name, unit in net.units.items():
        if unit.sample is not None:
            out[f"{name}.sample"] = torch.round(unit.sample.weights() * FIXED_POINT).to(torch.int32).tolist()
    if net.residual is not None:
        out["residual"] = [int(round(float(torch.sigmoid(a.detach())) * FIXED_POINT)) for a in net.residual]
    return out

