"""Genie-D: generator + latents against the BN-statistics loss, swing convolution."""
from __future__ import annotations

import torch

from edgekit.config import SynthConfig
from edgekit.registry import SYNTHESIZERS
from edgekit.synth.bn_loss import BNStatLoss
from edgekit.synth.genie import Generator, SwingBNStatLoss, genie_distill

SMALL = dict(num_samples=12, batch_size=8, iterations=8)


def test_registered():
    assert SYNTHESIZERS.get("genie") is genie_distill


def test_generator_maps_onto_the_input_range():
    lo, hi = torch.tensor([-0.5, -1.0]), torch.tensor([2.0, 1.0])
    g = Generator((2, 28, 28), latent_dim=16, bounds=(lo, hi))
    x = g(torch.randn(3, 16) * 10)
    assert x.shape == (3, 2, 28, 28)
    for c in range(2):
        assert x[:, c].min() >= lo[c] - 1e-5 and x[:, c].max() <= hi[c] + 1e-5
    y = Generator((1, 30, 30), latent_dim=16)(torch.randn(4, 16))  # no bounds: normalised, odd size
    assert y.shape == (4, 1, 30, 30) and abs(float(y.mean())) < 1e-3


def test_images_shape_bounds_provenance_and_seed(tiny_canonical):
    src = genie_distill(tiny_canonical, SynthConfig.genie(**SMALL), progress=False)
    lo, hi = tiny_canonical.input_bounds
    assert src.images.shape == (12, 1, 28, 28) and torch.isfinite(src.images).all()
    assert src.images.min() >= lo.min() - 1e-5 and src.images.max() <= hi.max() + 1e-5
    p = src.provenance
    assert p["kind"] == "synthetic" and p["method"] == "genie" and p["num_samples"] == 12 and p["iterations"] == 8
    again = genie_distill(tiny_canonical, SynthConfig.genie(**SMALL), progress=False)
    assert torch.allclose(src.images, again.images)
    other = genie_distill(tiny_canonical, SynthConfig.genie(**SMALL, seed=1), progress=False)
    assert not torch.allclose(src.images, other.images)


def test_optimisation_lowers_the_bn_loss(tiny_canonical):
    loss = BNStatLoss(tiny_canonical.unfolded)
    before = genie_distill(tiny_canonical, SynthConfig.genie(num_samples=16, batch_size=16, iterations=0), progress=False)
    after = genie_distill(tiny_canonical, SynthConfig.genie(num_samples=16, batch_size=16, iterations=40), progress=False)
    with torch.no_grad():
        assert float(loss.loss(after.images)) < 0.8 * float(loss.loss(before.images))


def test_swing_shifts_only_strided_convs(strided_canonical):
    x = torch.randn(4, 1, 16, 16)
    gm = strided_canonical.unfolded
    plain = BNStatLoss(gm)
    with torch.no_grad():
        ref = float(plain.loss(x))
        off = SwingBNStatLoss(gm, torch.Generator().manual_seed(0), swing=False)
        assert float(off.loss(x)) == ref
        on = SwingBNStatLoss(gm, torch.Generator().manual_seed(0), swing=True)
        values = {round(float(on.loss(x)), 6) for _ in range(12)}
    assert len(values) > 1  # random shifts change the strided conv's input
