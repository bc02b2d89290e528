"""Image-quality metrics for super-resolution, computed the way SR papers report them.

Conventions (e.g. Dong et al., SRCNN, TPAMI 2016, Sec. 4; Shi et al., ESPCN, CVPR 2016, Sec. 4):
scores are computed on the luma channel Y of ITU-R BT.601 (MATLAB's ``rgb2ycbcr``) with ``border``
pixels shaved from each side (usually the upscaling factor), images in [0, 1].

* ``rgb_to_y`` (``edgekit.data.ycbcr``): RGB -> Y in [0, 1]: ``(16 + 65.481 R + 128.553 G +
  24.966 B) / 255`` with R, G, B in [0, 1]; Y spans [16/255, 235/255] (the "studio swing" of BT.601).
* ``psnr``: peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, per image, then
  the mean over images.
* ``ssim``: structural similarity of Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment:
  from error visibility to structural similarity", IEEE TIP 13(4), 2004, Sec. III-C: an 11x11
  circular-symmetric Gaussian window (sigma 1.5, normalised to sum 1), K1 = 0.01, K2 = 0.03,
  C1 = (K1 L)^2, C2 = (K2 L)^2 with L the data range, (co)variances weighted by the window
  (population, not sample, normalisation), the map averaged over the positions where the whole
  window fits inside the image (the authors' MATLAB ``filter2(..., 'valid')``); mean over images.

Accepted image arrays: [H, W] (one image), [N, H, W] or [N, 1, H, W]; any real dtype, values in
[0, data_range]. ``sr`` is clipped to [0, data_range] first (what saving it as an image does).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from edgekit.data.ycbcr import rgb_to_y  # noqa: F401  (re-exported: the luma the metrics are computed on)


def _as_stack(x: np.ndarray, name: str) -> np.ndarray:
    """[H, W], [N, H, W] or [N, 1, H, W] -> float64 [N, H, W]."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3:
        return a
    if a.ndim == 4 and a.shape[1] == 1:
        return a[:, 0]
    raise ValueError(f"{name}: expected [H, W], [N, H, W] or [N, 1, H, W]; got shape {a.shape}")


def _pair(sr, hr, border: int, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Both stacks as float64 [N, H', W'], sr clipped, ``border`` pixels shaved from each side."""
    s, h = _as_stack(sr, "sr"), _as_stack(hr, "hr")
    if s.shape != h.shape:
        raise ValueError(f"sr and hr shapes differ: {s.shape} vs {h.shape}")
    b = int(border)
    if b < 0 or 2 * b >= min(s.shape[1:]):
        raise ValueError(f"border {border} leaves nothing of {s.shape[1]}x{s.shape[2]} images")
    s = np.clip(s, 0.0, data_range)
    if b:
        s, h = s[:, b:-b, b:-b], h[:, b:-b, b:-b]
    return s, h


def psnr(sr, hr, border: int, data_range: float = 1.0) -> float:
    """Mean PSNR in dB of ``sr`` against ``hr`` over the images, each computed with ``border``
    pixels shaved from every side: 10 log10(data_range^2 / MSE). An image with MSE 0 scores
    +inf (so does the mean then). Shapes: see the module docstring; sr is clipped first."""
    s, h = _pair(sr, hr, border, data_range)
    mse = ((s - h) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(data_range ** 2 / mse)
    return float(per_image.mean())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The size x size Gaussian window of Wang et al. 2004 (``fspecial('gaussian', 11, 1.5)``),
    float64, normalised to sum 1."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g)
    return w / w.sum()


def _ssim_one(x: np.ndarray, y: np.ndarray, data_range: float, win: np.ndarray) -> float:
    """Mean SSIM of two float64 [H, W] images over the window positions fully inside them."""
    k = win.shape[0]
    if min(x.shape) < k:
        raise ValueError(f"SSIM needs images at least {k}x{k} after shaving; got {x.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = (k - 1) // 2  # correlate is centred: keep the outputs whose window lies inside the image

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, win, mode="constant")[m:a.shape[0] - m, m:a.shape[1] - m]

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap.mean())


def ssim(sr, hr, border: int, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004; see the module docstring) of ``sr`` against ``hr`` over the
    images, each with ``border`` pixels shaved from every side. Unitless, at most 1 (identical).
    Shapes: see the module docstring; sr is clipped first. The shaved images must be >= 11x11."""
    s, h = _pair(sr, hr, border, data_range)
    win = gaussian_window()
    return float(np.mean([_ssim_one(a, b, data_range, win) for a, b in zip(s, h)]))
