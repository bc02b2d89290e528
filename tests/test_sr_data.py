"""Super-resolution data: the photo registry (edgekit.data.photos), BT.601 YCbCr
(edgekit.data.ycbcr) and MATLAB's bicubic imresize (edgekit.data.bicubic)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from edgekit.data.bicubic import downscale, imresize, mod_crop, upscale_bicubic
from edgekit.data.photos import FOOLBOX, HELD_OUT, PHOTOS, REDISTRIBUTABLE, TRAIN, load_rgb, load_y, photo_path
from edgekit.data.ycbcr import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb


# ---- an independent MATLAB imresize(..., 'bicubic'), after MATLAB's imresize.m -----------------
def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel, a = -0.5."""
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: weights [out, P] and 0-based input indices [out, P]."""
    width = 4.0 / scale if scale < 1 else 4.0  # the kernel is widened when shrinking
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input position
    idx = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None]
    d = u[:, None] - idx
    w = scale * _cubic(scale * d) if scale < 1 else _cubic(d)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # symmetric: edge repeated
    return w, mirror[np.mod(idx - 1, 2 * in_len).astype(int)]


def _matlab_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Rows then columns; uint8 rounded after each pass (imresizemex keeps the class)."""
    out = img.astype(np.float64)
    for dim in (0, 1):
        n = out.shape[dim]
        w, idx = _contributions(n, math.ceil(round(scale * n, 9)), scale)
        moved = np.moveaxis(out, dim, 0)
        out = np.moveaxis(np.einsum("op,op...->o...", w, moved[idx]), 0, dim)
        if img.dtype == np.uint8:
            out = np.clip(np.round(out), 0, 255)
    return out.astype(img.dtype)


# ---- bicubic ----------------------------------------------------------------------------------
def test_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    lr = downscale(grey, 3)
    assert lr.shape == (12, 17) and lr.dtype == np.uint8
    assert mod_crop(grey, 3).shape == (36, 51)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert downscale(rgb, 4).shape == (9, 13, 3) and downscale(rgb, 4).dtype == np.uint8
    up = upscale_bicubic(lr, 3)
    assert up.shape == (36, 51) and up.dtype == np.uint8
    f = downscale(grey.astype(np.float32) / 255, 2)
    assert f.shape == (18, 26) and f.dtype == np.float32
    assert imresize(grey, 0.5).shape == (19, 27)  # ceil(scale * n), as MATLAB
    assert imresize(grey, 1 / 3).shape == (13, 18)
    with pytest.raises(ValueError):
        imresize(grey.astype(np.int32), 0.5)
    with pytest.raises(ValueError):
        downscale(grey, 0)
    with pytest.raises(ValueError):
        downscale(grey[:2], 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_a_constant_image_stays_constant(dtype):
    img = np.full((31, 40, 3), 117, dtype) / (1 if dtype == np.uint8 else 255)
    img = img.astype(dtype)
    for out in (downscale(img, 3), upscale_bicubic(img, 4), imresize(img[..., 0], 0.37)):
        np.testing.assert_allclose(out, img.flat[0], atol=1e-12)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_downscale_matches_matlab_algorithm(s):
    """Against the numpy transcription of MATLAB's algorithm above, on a real photo: within one
    grey level (it is exact here: max difference 0 on camera at x1/2, x1/3, x1/4)."""
    hr = mod_crop(load_y("camera"), s)
    lr = downscale(hr, s)
    ref = _matlab_imresize(hr, 1 / s)
    assert lr.shape == ref.shape
    assert np.abs(lr.astype(int) - ref.astype(int)).max() <= 1
    up = upscale_bicubic(lr, s)
    assert np.abs(up.astype(int) - _matlab_imresize(lr, float(s)).astype(int)).max() <= 1
    rgb = mod_crop(load_rgb("chelsea"), s)  # [H, W, 3]: the channels independently
    assert np.abs(downscale(rgb, s).astype(int) - _matlab_imresize(rgb, 1 / s).astype(int)).max() <= 1
    x = hr / 255.0  # float: no rounding anywhere
    np.testing.assert_allclose(downscale(x, s), _matlab_imresize(x, 1 / s), atol=1e-9)


def test_differs_from_pil_bicubic():
    """PIL's BICUBIC (also a = -0.5, also antialiased) truncates the kernel at the border and
    renormalises instead of mirroring the image, and works in fixed point on uint8. On camera at
    x1/3 (Pillow 13.0.0) the two differ by up to 6 grey levels within 2 pixels of the border, by
    at most 1 inside, and on about 15 % of the pixels (mean absolute difference ~0.15)."""
    hr = mod_crop(load_y("camera"), 3)
    lr = downscale(hr, 3).astype(int)
    pil = np.asarray(Image.fromarray(hr).resize((hr.shape[1] // 3, hr.shape[0] // 3), Image.BICUBIC)).astype(int)
    d = np.abs(lr - pil)
    border = np.ones_like(d, bool)
    border[2:-2, 2:-2] = False
    assert d[border].max() >= 4
    assert d[~border].max() <= 1
    assert 0.05 < (d > 0).mean() < 0.3


# ---- YCbCr and photos ------------------------------------------------------------------------
def test_ycbcr_matches_matlab_and_inverts():
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(np.round(rgb_to_ycbcr(red) * 255), [[[81, 90, 240]]])  # MATLAB rgb2ycbcr
    rgb = np.random.default_rng(1).random((5, 7, 3))
    ycc = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycc[..., 0], rgb_to_y(rgb), atol=1e-12)
    np.testing.assert_allclose(ycbcr_to_rgb(ycc), rgb, atol=1e-12)
    grey = rgb_to_ycbcr(np.full((2, 2, 3), 90, np.uint8))
    np.testing.assert_allclose(grey[..., 1:], 128 / 255, atol=1e-12)


def test_photo_registry():
    assert set(HELD_OUT) <= set(PHOTOS) and not set(HELD_OUT) & set(TRAIN)
    assert set(REDISTRIBUTABLE) == set(PHOTOS) - set(HELD_OUT) and len(FOOLBOX) == 20
    assert all(len(v) == 4 and v[3] for v in PHOTOS.values())  # every photo has its licence
    assert photo_path("camera").is_file()
    rgb = load_rgb("camera")  # a grey photo, read as R = G = B
    assert rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    y = load_y("camera")
    assert y.dtype == np.uint8 and y.shape == (512, 512) and 16 <= y.min() and y.max() <= 235
    np.testing.assert_array_equal(y, np.round(rgb_to_y(rgb) * 255).astype(np.uint8))
