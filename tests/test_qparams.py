import torch

from edgekit.quant.qparams import fake_quant, fill_affine, fill_weight
from edgekit.quant.recipe import TensorQuant, int_range


def test_int_range():
    assert int_range(8) == (-128, 127)
    assert int_range(8, narrow=True) == (-127, 127)
    assert int_range(4, narrow=True) == (-7, 7)
    assert int_range(8, signed=False) == (0, 255)


def test_affine_zero_is_exact_and_error_bounded():
    tq = fill_affine(TensorQuant(8, "per_tensor", False, -128, 127), -1.3, 4.7)
    assert fake_quant(torch.zeros(3), tq).abs().max() == 0
    x = torch.linspace(-1.3, 4.7, 1001)
    assert (fake_quant(x, tq) - x).abs().max() <= tq.scale[0] / 2 + 1e-6
    # the range always includes zero, so a positive-only range starts at 0
    tq2 = fill_affine(TensorQuant(8, "per_tensor", False, -128, 127), 0.5, 2.0)
    assert tq2.range_min == 0.0 and tq2.zero_point == [-128]


def test_per_channel_weight_scales_are_maxabs_over_qmax():
    w = torch.randn(6, 3, 3, 3)
    tq = fill_weight(TensorQuant(8, "per_channel", True, -127, 127, 0), w)
    expect = w.abs().flatten(1).amax(1) / 127
    assert torch.allclose(tq.scale_tensor(), expect)
    assert tq.zero_point == [0] * 6
    err = (fake_quant(w, tq) - w).abs().flatten(1).amax(1)
    assert torch.all(err <= expect / 2 + 1e-7)


def test_lower_bits_give_larger_error():
    w = torch.randn(16, 8)
    e8 = (fake_quant(w, fill_weight(TensorQuant(8, "per_channel", True, -127, 127, 0), w)) - w).pow(2).mean()
    e4 = (fake_quant(w, fill_weight(TensorQuant(4, "per_channel", True, -7, 7, 0), w)) - w).pow(2).mean()
    assert e4 > 10 * e8
