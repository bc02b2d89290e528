import pytest
import torch

from edgekit.quant.stats import NodeSamples, estimate_range


def _samples(x: torch.Tensor) -> NodeSamples:
    s = NodeSamples()
    s.add(x, torch.Generator().manual_seed(0))
    return s


def test_minmax_is_exact():
    x = torch.tensor([-2.0, 0.5, 3.0])
    assert estimate_range(_samples(x), "minmax") == (-2.0, 3.0)


def test_percentile_clips_a_lone_outlier():
    x = torch.cat([torch.randn(20000), torch.tensor([100.0])])
    lo, hi = estimate_range(_samples(x), "percentile", percentile=99.9)
    assert hi < 10 and lo < -2


def test_mse_beats_minmax_on_heavy_tails():
    from edgekit.quant.stats import _qdq_mse
    x = torch.distributions.Laplace(0.0, 1.0).sample((30000,))
    s = _samples(x)
    lo, hi = estimate_range(s, "mse", bits=4)
    mlo, mhi = estimate_range(s, "minmax")
    assert _qdq_mse(x, lo, hi, 16) < _qdq_mse(x, mlo, mhi, 16)
    assert hi < mhi


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown activation range estimator"):
        estimate_range(_samples(torch.randn(10)), "kl")
