"""Genie-M: blocks of the canonical graph, learned rounding + step sizes, QDrop, 8-bit ends,
and the result as data in the recipe."""
from __future__ import annotations

import pytest
import torch

from edgekit.models.canonical import canonicalize
from edgekit.quant.algorithms.genie import (ActQuantizer, GenieConfig, WeightQuantizer, genie, mse_weight_scale, plan_bits,
                                            reconstruct, split_blocks)
from edgekit.quant.algorithms.ptq import calibrate
from edgekit.quant.recipe import FIRST_LAST_8BIT, TensorQuant
from edgekit.quant.simulate import quantize_with_recipe
from edgekit.registry import ALGORITHMS, TARGETS


def _prepared(canonical):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from edgekit.quant.recipe import plan_recipe
    plan = plan_recipe(canonical.graph_module, "t", 8, 8)
    return prepare_pt2e(canonical.graph_module, TARGETS.get("executorch-xnnpack").quantizer(plan))


def test_registered_with_its_synthesizer():
    a = ALGORITHMS.get("genie")
    assert a.synthesizer == "genie" and a.mixed_precision


def test_resnet20_blocks_are_stem_residual_blocks_and_head():
    from edgekit.models.resnet import ResNet20
    torch.manual_seed(0)
    c = canonicalize(ResNet20().eval(), torch.zeros(1, 1, 28, 28), "r20")
    blocks = split_blocks(_prepared(c))
    convs = [[n.name for n in b if "conv2d" in n.name or "linear" in n.name] for b in blocks]
    assert len(blocks) == 11  # stem, 9 BasicBlocks, fc
    assert convs[0] == ["conv2d"] and convs[-1] == ["linear"]
    assert [len(c) for c in convs[1:-1]] == [2, 2, 2, 3, 2, 2, 3, 2, 2]  # shortcut convs in 2.0 and 3.0


def test_weight_quantizer_modes():
    w = torch.randn(4, 3, 3, 3)
    tq = TensorQuant(4, "per_channel", True, -7, 7, 0)
    q = WeightQuantizer(w, tq)
    assert torch.equal(q(None), w)  # fp
    q.mode = "hard"  # initial V: round to nearest at the MSE scale
    s = q.scale.view(-1, 1, 1, 1)
    assert torch.allclose(q(None), torch.clamp(torch.round(w / s), -7, 7) * s, atol=1e-6)
    ints = q.integers()
    assert ints.dtype == torch.int8 and ints.min() >= -7 and ints.max() <= 7
    assert torch.allclose(ints.float() * s, q(None))
    q.mode = "soft"
    assert q(None).requires_grad and float(q.round_reg(2.0)) > 0
    # the MSE scale never clips more than it gains: error at most that of max-abs
    s_mse = mse_weight_scale(w, 7, True).view(-1, 1, 1, 1)
    s_max = (w.abs().flatten(1).amax(1) / 7).view(-1, 1, 1, 1)
    err = lambda s: float(((torch.clamp(torch.round(w / s), -7, 7) * s - w) ** 2).sum())
    assert err(s_mse) <= err(s_max) + 1e-9


def test_act_quantizer_lsq_and_qdrop():
    tq = TensorQuant(4, "per_tensor", False, -8, 7, None, [0.1], [-8])
    a = ActQuantizer(tq)
    x = torch.linspace(-0.5, 2.0, 101)
    assert torch.equal(a(x), x)  # disabled: FP32
    a.enabled = True
    y = a(x)
    assert y.min() >= 0 and y.max() <= 1.5 + 1e-6 and len(torch.unique(y)) <= 16
    x.requires_grad_(True)
    a(x).sum().backward()
    assert a.log_s.grad is not None and a.log_s.grad != 0
    a.train()
    a.drop_p = 0.5
    kept = (a(x.detach()) == x.detach()).float().mean()  # about half left unquantized
    assert 0.3 < kept < 0.8


def test_plan_bits_keeps_first_and_last_at_8(tiny_canonical):
    """Genie's default overrides @first/@last: the first and last layers' weights, the model
    input, the last layer's input and output at 8 bits; a user's pattern after them wins."""
    assert GenieConfig().overrides == FIRST_LAST_8BIT and ALGORITHMS.get("genie").config is GenieConfig
    resolved = GenieConfig.resolve(data_free=True, given={"overrides": {"fc": {"w_bits": 4}}})
    assert list(resolved.overrides) == ["@first", "@last", "fc"]  # the user's patterns come after, so they win
    r = plan_bits(tiny_canonical, GenieConfig(w_bits=4, a_bits=4, overrides=FIRST_LAST_8BIT), "genie")
    assert [lq.weight.bits for lq in r.layers.values()] == [8, 4, 8]
    assert (r.layers["conv2d_1"].weight.quant_min, r.layers["conv2d_1"].weight.quant_max) == (-7, 7)
    assert r.activations["x"].quant.bits == 8 and r.activations["linear"].quant.bits == 8
    assert r.activations["flatten"].quant.bits == 8 and r.activations["relu"].quant.bits == 4
    r = plan_bits(tiny_canonical, GenieConfig(w_bits=4, a_bits=4, overrides={"conv2d_1": {"w_bits": 2}}), "genie")
    assert [lq.weight.bits for lq in r.layers.values()] == [4, 2, 4]
    r = plan_bits(tiny_canonical, GenieConfig(w_bits=4, a_bits=4, overrides={
        **FIRST_LAST_8BIT, "@last": {"w_bits": 6}}), "genie")
    assert [lq.weight.bits for lq in r.layers.values()] == [8, 4, 6] and r.activations["linear"].quant.bits == 4


def test_a_config_from_before_first_last_overrides_still_reads():
    """Bundles written before @first/@last recorded ``first_last_8bit``; --config takes them."""
    from edgekit.config import run_config_from_dict
    cfg = run_config_from_dict({"config_version": 1, "method": "genie", "quant": {"first_last_8bit": True, "overrides": {"fc": {"w_bits": 4}}}})
    assert cfg.quant.overrides == {**FIRST_LAST_8BIT, "fc": {"w_bits": 4}}
    old = {"config_version": 1, "method": "zeroq", "quant": {"first_last_8bit": True, "recon_iterations": 9, "bn_folding": True},
           "quant_overrides": {"bn_ranges": "union"}}
    cfg = run_config_from_dict(old)  # version 1: one flat bag for every method, and the flags given apart
    assert type(cfg.quant).__name__ == "ZeroQConfig" and cfg.quant.overrides == {} and cfg.quant.bn_ranges == "union"


def test_a_method_config_refuses_another_methods_fields():
    from edgekit.config import run_config_from_dict
    with pytest.raises(ValueError, match="recon_iterations: not an option of ZeroQConfig"):
        run_config_from_dict({"method": "zeroq", "quant": {"recon_iterations": 9}})


def _calib(canonical, n=64):
    from edgekit.config import SynthConfig
    from edgekit.synth.genie import genie_distill
    return genie_distill(canonical, SynthConfig.genie(num_samples=n, batch_size=32, iterations=20), progress=False)


@pytest.mark.slow
def test_reconstruction_improves_on_rounding_to_nearest(tiny_canonical):
    torch.manual_seed(0)
    calib = _calib(tiny_canonical, 32)
    x = calib.images
    fp = tiny_canonical.graph_module(x)
    q = TARGETS.get("simulation")
    errs = {}
    for it in (0, 80):
        cfg = GenieConfig(w_bits=4, a_bits=4, recon_iterations=it, overrides={})
        r = calibrate(tiny_canonical, GenieConfig(w_bits=4, a_bits=4, act_estimator="mse"), calib, "genie",
                      recipe=plan_bits(tiny_canonical, cfg, "genie"), progress=False)
        r = reconstruct(tiny_canonical, r, x, cfg, progress=False)
        with torch.no_grad():
            errs[it] = float((quantize_with_recipe(tiny_canonical, r, q.quantizer(r))(x) - fp).pow(2).mean())
    assert errs[80] < errs[0]


def test_result_is_data_in_the_recipe(tiny_canonical):
    calib = _calib(tiny_canonical, 32)
    r = genie(tiny_canonical, GenieConfig(w_bits=4, a_bits=4, recon_iterations=10), calib)
    assert r.method == "genie" and r.filled
    assert set(r.rounded_weights) == set(r.layers)
    for name, lq in r.layers.items():
        ints = r.rounded_weights[name]
        assert ints.dtype == torch.int8
        assert lq.weight.quant_min <= int(ints.min()) and int(ints.max()) <= lq.weight.quant_max
        assert len(lq.weight.scale) == ints.shape[0] and all(s > 0 for s in lq.weight.scale)
    for name in ("relu", "relu_1", "linear"):  # tensors the XNNPACK quantizer observes get learned steps
        t = r.activations[name].quant
        assert t.range_min == pytest.approx((t.quant_min - t.zero_point[0]) * t.scale[0])
    # the converted program holds exactly the recipe's integers
    sim = quantize_with_recipe(tiny_canonical, r, TARGETS.get("simulation").quantizer(r), fold_quantize=True)
    consts = {k: v for k, v in sim.state_dict().items() if v.dtype == torch.int8}
    ints = sorted(tuple(v.shape) for v in r.rounded_weights.values())
    assert sorted(tuple(v.shape) for v in consts.values()) == ints
    for v in consts.values():
        assert any(torch.equal(v, q) for q in r.rounded_weights.values())


def test_overrides_set_bits_by_module_path_node_name_and_type(tiny_canonical):
    """torchao-style per-module overrides on the plan: a glob over module paths, a node name, a
    module type; later patterns win; a typo (matches nothing), an unknown key or a bad width is
    refused."""
    from edgekit.quant.recipe import plan_recipe
    gm = tiny_canonical.graph_module
    r = plan_recipe(gm, "ptq", 8, 8, overrides={"type:Conv2d": {"w_bits": 4}, "conv2d_1": {"w_bits": 2},
                                                "fc": {"a_bits": 4}})
    assert [lq.weight.bits for lq in r.layers.values()] == [4, 2, 8]
    assert {a.module: a.quant.bits for a in r.activations.values()}["fc"] == 4
    assert r.layers["conv2d_1"].weight.quant_min == -1  # 2-bit symmetric narrow range
    for bad, why in (({"layer9.*": {"w_bits": 4}}, "matches no layer"), ({"fc": {"bits": 4}}, "give {'w_bits'"),
                     ({"fc": {"w_bits": 9}}, "not a bit width")):
        with pytest.raises(ValueError, match=why):
            plan_recipe(gm, "ptq", 8, 8, overrides=bad)
