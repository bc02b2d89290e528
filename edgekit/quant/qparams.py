"""Scales and zero points from ranges, and fake quantization (whitepaper Sec. 2)."""
from __future__ import annotations

import torch

from edgekit.quant.recipe import TWIN, TensorQuant

EPS = 2.0 ** -12  # smallest activation scale, as torchao's XNNPACK observers use
# smallest weight scale. Not EPS: a BN-folded channel with a tiny gain (max |w| < 127 * 2^-12 =
# 0.031; 9 of 32 in MobileNetV2's first conv) would be rounded to a few levels. Weight scales
# are per layer and never share a grid with activations, so float32's epsilon (torch's default
# observer eps) is the only floor needed.
WEIGHT_EPS = float(torch.finfo(torch.float32).eps)


def activation_eps(bits: int) -> float:
    """The smallest activation scale at ``bits``: EPS up to 8 bits, scaled down with the grid
    above (16 bits: 2^-20), so a 16-bit tensor's small range is not floored to an 8-bit step."""
    return EPS * 2.0 ** min(0, 8 - bits)


def fill_affine(tq: TensorQuant, lo: float, hi: float) -> TensorQuant:
    """Set per-tensor affine (or symmetric) scale/zero point of ``tq`` from the range [lo, hi].

    The range is widened to include 0 so that zero is exactly representable (Sec. 2.1).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if tq.symmetric:
        amax = max(-lo, hi)
        scale = max(amax / ((tq.quant_max - tq.quant_min) / 2), activation_eps(tq.bits))
        zp = 0 if tq.quant_min < 0 else (tq.quant_min + tq.quant_max + 1) // 2
    else:
        scale = max((hi - lo) / (tq.quant_max - tq.quant_min), activation_eps(tq.bits))
        zp = int(min(max(tq.quant_min - round(lo / scale), tq.quant_min), tq.quant_max))
    tq.scale, tq.zero_point, tq.range_min, tq.range_max, tq.scheme = [scale], [zp], lo, hi, "affine"
    return tq


def fill_unit_interval(tq: TensorQuant) -> TensorQuant:
    """The fixed parameters of a tensor in [0, 1] (a softmax or sigmoid output): scale 2^-bits
    and zero point quant_min (affine: 1/256 and -128 at 8 bits, what TFLite's int8 SOFTMAX and
    LOGISTIC require), or scale 2^-(bits-1) and zero point 0 when ``tq`` is symmetric."""
    if tq.symmetric:
        scale, zp = 2.0 ** -(tq.bits - 1), 0
    else:
        scale, zp = 1.0 / (tq.quant_max - tq.quant_min + 1), tq.quant_min
    tq.scale, tq.zero_point, tq.range_min, tq.range_max = [scale], [zp], 0.0, (tq.quant_max - zp) * scale
    return tq


def twin_fake_quant(x: torch.Tensor, scale_r1: float, scale_r2: float, bits: int, signed: bool) -> torch.Tensor:
    """PTQ4ViT's twin-uniform quantize-dequantize (Yuan et al. 2022, Sec. 4.1, Eq. 5): two
    uniform (bits - 1)-bit grids on one tensor, the remaining bit saying which one a value uses.
    ``signed`` False (post-softmax, x in [0, 1]): R1 = [0, 2^(bits-1) * scale_r1) on scale_r1's
    grid, the rest on scale_r2's, levels 0 .. 2^(bits-1) - 1 each. ``signed`` True (post-GELU):
    the negative values on scale_r1's grid (levels -2^(bits-1) .. 0), the others on scale_r2's
    (0 .. 2^(bits-1) - 1). float32 in and out, shape kept."""
    n = 2 ** (bits - 1)
    in_r1 = x < 0 if signed else x < n * scale_r1
    lo1, hi1 = (-n, 0) if signed else (0, n - 1)
    r1 = torch.clamp(torch.round(x / scale_r1), lo1, hi1) * scale_r1
    r2 = torch.clamp(torch.round(x / scale_r2), 0, n - 1) * scale_r2
    return torch.where(in_r1, r1, r2)


def fill_twin(tq: TensorQuant, scale_r1: float, scale_r2: float, minimum: float = 0.0) -> TensorQuant:
    """Make ``tq`` a twin-uniform entry (:func:`twin_fake_quant`): scale [scale_r1, scale_r2],
    zero points 0, range [minimum, top of R2]; ``minimum`` < 0 makes it the signed (post-GELU)
    form. Simulation only: no int8 runtime takes two scales on one tensor."""
    top = (2 ** (tq.bits - 1) - 1) * scale_r2
    tq.scheme, tq.granularity, tq.axis = TWIN, "per_tensor", None
    tq.scale, tq.zero_point, tq.range_min, tq.range_max = [scale_r1, scale_r2], [0, 0], min(minimum, 0.0), top
    return tq


def fill_weight(tq: TensorQuant, w: torch.Tensor) -> TensorQuant:
    """Symmetric per-channel (axis 0) or per-tensor max-abs scales of weight ``w`` (float32 [Cout, ...])."""
    if tq.granularity == "per_channel":
        amax = w.detach().abs().flatten(1).amax(1)
    else:
        amax = w.detach().abs().max().reshape(1)
    scale = torch.clamp(amax / tq.quant_max, min=WEIGHT_EPS)
    tq.scale = scale.tolist()
    tq.zero_point = [0] * len(tq.scale)
    return tq


def rounded_integers(w: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """Round-to-nearest integers int8 (shaped like ``w``) of weight ``w`` with the filled ``tq``."""
    scale = tq.scale_tensor()
    if tq.granularity == "per_channel":
        scale = scale.view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w.detach().float() / scale), tq.quant_min, tq.quant_max).to(torch.int8)


def fake_quant(x: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """Quantize-dequantize ``x`` with ``tq`` (per-channel along ``tq.axis``), float32 in and out;
    a ``twin_uniform`` entry goes through :func:`twin_fake_quant`."""
    if tq.scheme == TWIN:
        return twin_fake_quant(x, tq.scale[0], tq.scale[1], tq.bits, tq.range_min < 0)
    scale, zp = tq.scale_tensor(), tq.zero_point_tensor().float()
    if tq.granularity == "per_channel":
        shape = [1] * x.dim()
        shape[tq.axis or 0] = -1
        scale, zp = scale.view(shape), zp.view(shape)
    q = torch.clamp(torch.round(x / scale) + zp, tq.quant_min, tq.quant_max)
    return (q - zp) * scale
