"""Bicubic resizing as MATLAB's ``imresize(img, scale, 'bicubic')`` does it: the degradation of
super-resolution benchmarks (LR = imresize(HR, 1/s)) and the bicubic baseline (imresize(LR, s)).

MATLAB's algorithm: one dimension at a time (rows first when both scales are equal), output
pixel x (1-based) sampled at input position u = x / scale + (1 - 1 / scale) / 2; Keys' cubic
kernel with a = -0.5; when shrinking (scale < 1) the kernel is widened to 4 / scale taps and
scaled by ``scale`` (antialiasing); the weights of each output pixel normalised to sum 1; input
pixels beyond the border mirrored with the edge pixel repeated ('symmetric'); the output length
ceil(scale * length). Integer (uint8) images are rounded and clipped to [0, 255] after each
dimension's pass, as MATLAB's ``imresizemex`` returns the input's class.

The resampling is the ``resize-right`` package's (Shocher et al., MIT licence; its cubic kernel,
antialiasing and grid are MATLAB's), run with symmetric padding, one dimension at a time.
Not PIL's bicubic: PIL truncates the kernel at the border instead of mirroring the image (and
computes uint8 images in fixed point), so the two differ near the borders.
"""
from __future__ import annotations

import math

import numpy as np
from resize_right import interp_methods, resize

_CHUNK = 1 << 22  # elements of resize-right's [out, taps, rest] gather per call: bounds its memory


def mod_crop(img: np.ndarray, s: int) -> np.ndarray:
    """``img`` [H, W] or [H, W, C] cropped to H - H mod s rows and W - W mod s columns (the
    top-left part, as SR papers' ``modcrop``), same dtype. Raises ValueError for s < 1."""
    if int(s) != s or s < 1:
        raise ValueError(f"scale {s!r} must be a positive integer")
    a = np.asarray(img)
    return a[:a.shape[0] - a.shape[0] % int(s), :a.shape[1] - a.shape[1] % int(s)]


def _resize_dim(a: np.ndarray, dim: int, scale: float, n_out: int) -> np.ndarray:
    """float64 ``a`` resized along axis ``dim`` (0 or 1) to ``n_out``, in slices along the other
    spatial axis (each column/row is independent) so that the gather stays under ``_CHUNK``."""
    taps = math.ceil(4 / min(scale, 1.0))
    rest = a.size // (a.shape[0] * a.shape[1]) * n_out * taps
    other = 1 - dim
    step = max(1, _CHUNK // rest)
    scales = [1.0] * a.ndim
    scales[dim] = scale
    parts = []
    for i in range(0, a.shape[other], step):
        piece = a[:, i:i + step] if other == 1 else a[i:i + step]
        shape = list(piece.shape)
        shape[dim] = n_out
        parts.append(resize(piece, scale_factors=scales, out_shape=shape, interp_method=interp_methods.cubic,
                            antialiasing=True, pad_mode="symmetric"))
    return np.concatenate(parts, axis=other)


def imresize(img: np.ndarray, scale: float, out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (see the module docstring) of ``img`` uint8 or
    float [H, W] or [H, W, C] (channels resized independently): [ceil(scale H), ceil(scale W)(, C)]
    or ``out_hw``, of the input's dtype; uint8 output is rounded and clipped after each pass,
    float output is neither (values may overshoot the input's range). Raises ValueError for
    another dtype or number of dimensions, or a scale <= 0."""
    a = np.asarray(img)
    if a.ndim not in (2, 3) or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"imresize takes a uint8 or float image [H, W] or [H, W, C]; got {a.dtype} {a.shape}")
    if not scale > 0:
        raise ValueError(f"scale {scale!r} must be positive")
    if out_hw is None:  # ceil(scale * n), immune to 1/3 * 6 = 2.0000000000000004
        out_hw = tuple(math.ceil(round(scale * n, 9)) for n in a.shape[:2])
    out = a.astype(np.float64)
    for dim in (0, 1):
        if scale != 1:
            out = _resize_dim(out, dim, float(scale), int(out_hw[dim]))
        if a.dtype == np.uint8:
            out = np.clip(np.round(out), 0, 255)
    return out.astype(a.dtype)


def downscale(hr: np.ndarray, s: int) -> np.ndarray:
    """The low-resolution image of super-resolution benchmarks: MATLAB ``imresize(modcrop(hr, s),
    1/s, 'bicubic')``. ``hr`` uint8 (or float) [H, W] or [H, W, C]; returns the input's dtype
    [H // s, W // s(, C)] (uint8: rounded and clipped). Raises ValueError for s < 1 or an image
    smaller than s pixels."""
    a = mod_crop(hr, s)
    if min(a.shape[:2]) == 0:
        raise ValueError(f"a {np.shape(hr)[0]}x{np.shape(hr)[1]} image is smaller than the scale {s}")
    return imresize(a, 1.0 / s, (a.shape[0] // int(s), a.shape[1] // int(s)))


def upscale_bicubic(lr: np.ndarray, s: int) -> np.ndarray:
    """The bicubic baseline: MATLAB ``imresize(lr, s, 'bicubic')`` of ``lr`` uint8 (or float)
    [h, w] or [h, w, C] -> the input's dtype [s h, s w(, C)] (uint8: rounded and clipped).
    Raises ValueError for s < 1."""
    if int(s) != s or s < 1:
        raise ValueError(f"scale {s!r} must be a positive integer")
    a = np.asarray(lr)
    return imresize(a, float(s), (a.shape[0] * int(s), a.shape[1] * int(s)))
