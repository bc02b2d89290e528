"""DFQ parts of the calibration (Nagel et al. 2019): range equalization into depthwise convs, bias
correction, and the widened output range of data-free calibration. Each is checked against the
float model it must not change and the error it must remove."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import canonicalize, get_attr_tensor
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate, widen_output_ranges
from edgekit.quant.bias_correction import corrected_biases, weight_error
from edgekit.quant.equalize import MAX_SCALE, equalization_pairs, equalize_depthwise_inputs
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import with_rounded_weights


class ConvDepthwise(nn.Module):
    """conv-BN-act -> depthwise conv-BN-ReLU6 -> pool -> linear, with the first BN's gains spread
    over 100x (so its output channels have very different ranges) and the depthwise BN's the
    other way round (so the narrow channels matter as much as the wide ones downstream)."""

    def __init__(self, act: str):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.b2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.act = {"relu6": nn.ReLU6(), "relu": nn.ReLU(), "none": nn.Identity()}[act]
        with torch.no_grad():
            self.b1.weight.copy_(torch.logspace(-2, 0, 8))
            self.b1.bias.copy_(torch.linspace(-0.01, 0.2, 8))
            self.b2.weight.copy_(torch.logspace(2, 0, 8))
            self.fc.bias.zero_()  # logits made of the features alone

    def forward(self, x):
        y = self.act(self.b1(self.c1(x)))
        y = torch.clamp(self.b2(self.dw(y)), 0, 6)
        return self.fc(y.mean((2, 3)))


def _canonical(act: str):
    torch.manual_seed(0)
    return canonicalize(ConvDepthwise(act).eval(), torch.zeros(1, 3, 16, 16), f"cdw_{act}")


def _calib(n=16, seed=1, mean=0.0):
    g = torch.Generator().manual_seed(seed)
    return CalibrationSource(torch.randn(n, 3, 16, 16, generator=g) + mean, {"kind": "synthetic", "method": "test"})


@pytest.mark.parametrize("act", ["relu", "none"])
def test_equalization_keeps_the_function_exactly(act):
    can = _canonical(act)
    gm = can.graph_module
    pairs = equalization_pairs(gm, can.bn_stats)
    assert len(pairs) == 1
    x = _calib().images
    before = gm(x)
    stats, changed = equalize_depthwise_inputs(gm, can.bn_stats, 6.0)
    assert len(changed) == 2
    torch.testing.assert_close(gm(x), before, rtol=1e-4, atol=1e-5)
    p = pairs[0][0].name
    s = stats[p].std / can.bn_stats[p].std
    assert float(s.min()) >= 1.0 and float(s.max()) == pytest.approx(MAX_SCALE)  # 100x spread, capped


def test_equalization_with_relu6_changes_nothing_within_the_bn_bounds():
    """ReLU6 clips channel c at 6/s_c after scaling: above its 6-sigma bound, so random inputs
    (whose first-conv outputs stay inside it) give the same outputs."""
    can = _canonical("relu6")
    gm = can.graph_module
    x = _calib().images
    before = gm(x)
    equalize_depthwise_inputs(gm, can.bn_stats, 6.0)
    torch.testing.assert_close(gm(x), before, rtol=1e-4, atol=1e-5)


def test_equalization_narrows_the_int8_error_of_the_shared_tensor():
    """With the producer's per-tensor range taken from BN statistics, equalization gives the
    narrow channels more of the grid: the simulated output is closer to FP32."""
    from edgekit.evaluation import simulated_outputs
    from edgekit.tasks.base import sqnr_db
    from edgekit.registry import TARGETS
    can = _canonical("relu")
    calib = _calib(32)
    ref = can.graph_module(calib.images)
    sqnr = {}
    for eq in (False, True):
        cfg = PTQConfig(bn_ranges="replace", bn_range_sigmas=6.0, equalize=eq)
        r = calibrate(can, cfg, calib, "zeroq", progress=False)
        assert bool(r.rounded_weights) == eq and bool(r.biases) == eq
        sqnr[eq] = sqnr_db(ref, simulated_outputs(can, r, TARGETS.get("simulation"), calib.images))
    assert sqnr[True] > sqnr[False] + 1.0, sqnr


def test_bias_correction_removes_the_mean_output_shift():
    can = _canonical("relu")
    calib = _calib(32, mean=0.5)  # inputs with a mean: rounding errors shift the output's mean
    cfg = PTQConfig(w_bits=4)  # coarse weights: a large shift to remove
    r = calibrate(can, cfg, calib, "ptq", progress=False)
    gm = can.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    conv = next(n for n in r.layers if nodes[n].args[1] is not None and get_attr_tensor(gm, nodes[n].args[1]).dim() == 4
                and get_attr_tensor(gm, nodes[n].args[1]).shape[1] == 3)
    err = weight_error(gm, nodes[conv], r)
    shift = torch.nn.functional.conv2d(calib.images, err, None, 1, 1).mean((0, 2, 3))
    biases = corrected_biases(gm, r, calib)
    b0 = get_attr_tensor(gm, nodes[conv].args[2])
    torch.testing.assert_close(b0 - biases[conv], shift, rtol=1e-4, atol=1e-6)
    assert float(shift.abs().max()) > 1e-3  # the test is not vacuous


class Tokens(nn.Module):
    """conv -> [N, T, D] tokens -> linear (a transformer's linear: channels are the last dim, and
    T (16) differs from D (8) so a wrong channel dim cannot pass)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(2).transpose(1, 2))


def test_bias_correction_of_a_linear_on_tokens_uses_its_last_dim():
    """A linear on [N, T, D] tokens (every transformer) is corrected per output feature, the
    last dim: it crashed on MobileViT when the channel dim was taken to be dim 1."""
    torch.manual_seed(0)
    can = canonicalize(Tokens().eval(), torch.zeros(1, 3, 4, 4), "tokens")
    calib = CalibrationSource(torch.randn(32, 3, 4, 4) + 0.5, {"kind": "synthetic", "method": "test"})
    r = calibrate(can, PTQConfig(w_bits=4), calib, "ptq", progress=False)
    gm = can.graph_module
    fc = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.linear.default)
    conv = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default)
    with torch.no_grad():
        x = torch.nn.functional.conv2d(calib.images, get_attr_tensor(gm, conv.args[1]),
                                       get_attr_tensor(gm, conv.args[2]), 1, 1).flatten(2).transpose(1, 2)
    shift = torch.nn.functional.linear(x, weight_error(gm, fc, r)).mean((0, 1))
    biases = corrected_biases(gm, r, calib)
    assert biases[fc.name].shape == (6,)
    torch.testing.assert_close(get_attr_tensor(gm, fc.args[2]) - biases[fc.name], shift, rtol=1e-4, atol=1e-6)
    assert float(shift.abs().max()) > 1e-4


def test_recipe_keeps_biases_and_applies_them(tmp_path):
    can = _canonical("relu6")
    cfg = PTQConfig(bn_ranges="replace", bn_range_sigmas=6.0, equalize=True, bias_correction=True)
    r = calibrate(can, cfg, _calib(), "zeroq", progress=False)
    r.save(tmp_path / "recipe.json")
    back = QuantRecipe.load(tmp_path / "recipe.json")
    assert set(back.biases) == set(r.biases) and back.biases
    for k, v in r.biases.items():
        assert torch.equal(back.biases[k], v)
    gm = with_rounded_weights(can.graph_module, back)
    nodes = {n.name: n for n in gm.graph.nodes}
    for k, v in back.biases.items():
        assert torch.equal(get_attr_tensor(gm, nodes[k].args[2]), v)
    orig = {n.name: n for n in can.graph_module.graph.nodes}
    assert not torch.equal(get_attr_tensor(can.graph_module, orig[k].args[2]), v)  # the float model is untouched


def test_output_range_is_widened_through_reshapes():
    can = _canonical("none")
    gm = can.graph_module
    out_node = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    ranges = {n.name: (-1.0, 2.0) for n in gm.graph.nodes if n.op == "call_function"}
    widen_output_ranges(gm, ranges, 2.0)
    assert ranges[out_node.name] == (-2.0, 4.0)
    assert sum(r == (-2.0, 4.0) for r in ranges.values()) == 1
