"""edgekit.tasks.sr_metrics: PSNR / SSIM on Y as SR papers compute them, checked against analytic
cases and an independent (slow, loop-based) SSIM of Wang et al. 2004."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.tasks.sr_metrics import gaussian_window, psnr, rgb_to_y, ssim

FEW = settings(max_examples=25, deadline=None, derandomize=True)


def _ssim_loops(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM written directly from Wang et al. 2004, Eqs. (13)-(14), (16): for every 11x11 window
    position fully inside the image, Gaussian-weighted (sigma 1.5) means, variances, covariance."""
    k = 11
    r = np.arange(k) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - k + 1):
        for j in range(x.shape[1] - k + 1):
            a, b = x[i:i + k, j:j + k], y[i:i + k, j:j + k]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cab = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cab + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def _skimage_ssim():
    try:
        from skimage.metrics import structural_similarity
    except Exception:  # noqa: BLE001 - scikit-image is optional (and may be broken: lazy_loader)
        return None
    return structural_similarity


def test_rgb_to_y_bt601():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(rgb)
    expect = np.array([16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966]) / 255
    assert y.shape == (1, 5) and y.dtype == np.float64
    np.testing.assert_allclose(y[0], expect, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(rgb.astype(np.float64) / 255), y, atol=1e-12)  # float input in [0, 1]
    with pytest.raises(ValueError):
        rgb_to_y(np.zeros((4, 4)))


def test_psnr_identical_is_inf():
    hr = np.random.default_rng(0).random((2, 1, 20, 20))
    assert psnr(hr, hr, 3) == math.inf


def test_psnr_constant_offset_is_20_db():
    hr = np.random.default_rng(1).uniform(0.1, 0.8, (3, 24, 24))
    assert psnr(hr + 0.1, hr, 3) == pytest.approx(20.0, abs=1e-9)
    assert psnr(hr - 0.01, hr, 0) == pytest.approx(40.0, abs=1e-9)
    assert psnr((hr + 0.1) * 255, hr * 255, 3, data_range=255.0) == pytest.approx(20.0, abs=1e-9)


def test_psnr_shapes_and_mean_over_images():
    rng = np.random.default_rng(2)
    hr = rng.uniform(0.2, 0.7, (2, 16, 16))
    sr = hr + np.array([0.1, 0.01])[:, None, None]
    both = psnr(sr, hr, 2)
    assert both == pytest.approx((20.0 + 40.0) / 2)  # the mean of per-image PSNRs, not of the MSEs
    assert psnr(sr[:, None], hr[:, None], 2) == pytest.approx(both)  # [N, 1, H, W]
    assert psnr(sr[0], hr[0], 2) == pytest.approx(20.0)  # [H, W]
    with pytest.raises(ValueError):
        psnr(sr, hr[:, :8], 2)


def test_psnr_clips_sr_to_the_data_range():
    hr = np.ones((8, 8))
    assert psnr(hr + 5.0, hr, 0) == math.inf


def test_border_shaving_matters():
    hr = np.full((30, 30), 0.5)
    sr = hr.copy()
    sr[:3, :] = 0.0  # errors only in a 3-px border strip
    assert psnr(sr, hr, 3) == math.inf
    assert math.isfinite(psnr(sr, hr, 0)) and math.isfinite(psnr(sr, hr, 2))
    assert ssim(sr, hr, 3) == pytest.approx(1.0)
    assert ssim(sr, hr, 0) < 0.99
    with pytest.raises(ValueError):
        psnr(sr, hr, 15)


def test_ssim_identical_is_one():
    hr = np.random.default_rng(3).random((2, 1, 32, 32))
    assert ssim(hr, hr, 3) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_window():
    w = gaussian_window()
    assert w.shape == (11, 11) and w.sum() == pytest.approx(1.0) and w[5, 5] == w.max()
    np.testing.assert_allclose(w, w.T)


def test_ssim_matches_direct_loops():
    rng = np.random.default_rng(4)
    hr = rng.random((2, 26, 29))
    sr = np.clip(hr + rng.normal(0, 0.1, hr.shape), 0, 1)
    expect = np.mean([_ssim_loops(a[2:-2, 2:-2], b[2:-2, 2:-2]) for a, b in zip(sr, hr)])
    assert ssim(sr, hr, 2) == pytest.approx(expect, abs=1e-10)
    # structure but a different contrast and brightness: between 0 and 1
    assert 0 < ssim(0.5 * hr[0] + 0.2, hr[0], 0) < 1


def test_ssim_matches_scikit_image_when_importable():
    structural_similarity = _skimage_ssim()
    if structural_similarity is None:
        pytest.skip("scikit-image's metrics cannot be imported here")
    rng = np.random.default_rng(5)
    hr = rng.random((40, 40))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    ref = structural_similarity(sr, hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1.0)
    assert ssim(sr, hr, 0) == pytest.approx(ref, abs=1e-6)


@FEW
@given(seed=st.integers(0, 2 ** 32 - 1), noise=st.floats(0.001, 0.3), border=st.integers(0, 4))
def test_properties(seed, noise, border):
    rng = np.random.default_rng(seed)
    hr = rng.random((2, 20, 21))
    sr = np.clip(hr + rng.normal(0, noise, hr.shape), 0, 1)
    p, s = psnr(sr, hr, border), ssim(sr, hr, border)
    assert psnr(hr, sr, border) == pytest.approx(p)  # symmetric for images inside the range
    assert ssim(hr, sr, border) == pytest.approx(s)
    assert -1 <= s <= 1 and math.isfinite(p)
    worse = np.clip(hr + 2 * (sr - hr), 0, 1)  # the same error pattern, larger
    assert psnr(worse, hr, border) <= p + 1e-9
