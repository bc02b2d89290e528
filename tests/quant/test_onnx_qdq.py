"""The onnx-qdq target: QDQ models whose 4-bit weights are really stored as packed INT4, run in
onnxruntime (never by re-running the PyTorch model) and compared with the recipe's simulation."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from edgekit.backends.base import evaluate_runner
from edgekit.backends.onnx_qdq import int4_tensor
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.quant.algorithms.genie import plan_bits
from edgekit.quant.recipe import FIRST_LAST_8BIT
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.simulate import quantize_with_recipe
from edgekit.registry import TARGETS
import edgekit.plugins  # noqa: F401  (registers the targets)


def test_int4_packing_round_trips():
    v = np.array([[-8, 7, 0], [1, -1, 5]], np.int8)
    t = int4_tensor("w", v)
    assert t.data_type == TensorProto.INT4 and len(t.raw_data) == 3  # 6 values, two per byte
    assert t.raw_data[0] == (0x8 | (0x7 << 4))  # first element in the low nibble
    np.testing.assert_array_equal(numpy_helper.to_array(t).astype(np.int8), v)


def _recipe(canonical, w_bits, a_bits=8):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 28, 28, generator=g) * 2 - 0.5
    src = CalibrationSource(images, {"kind": "real", "method": "random", "num_samples": 16})
    cfg = PTQConfig(w_bits=w_bits, a_bits=a_bits, act_estimator="minmax", overrides=FIRST_LAST_8BIT)
    return calibrate(canonical, cfg, src, "ptq", recipe=plan_bits(canonical, cfg, "ptq"), progress=False)


@pytest.fixture(scope="module")
def lowered(tiny_canonical, tmp_path_factory):
    t = TARGETS.get("onnx-qdq")
    out = {}
    for bits in (4, 8):
        d = tmp_path_factory.mktemp(f"w{bits}")
        r = _recipe(tiny_canonical, bits)
        out[bits] = (r, t.lower(tiny_canonical, r, d))
    return t, out


def test_4_bit_weights_are_int4_initializers(lowered):
    _, out = lowered
    r, art = out[4]
    m = onnx.load(str(art.path))
    types = {TensorProto.DataType.Name(t.data_type) for t in m.graph.initializer
             if len(t.dims) == 4}  # the conv weights
    assert r.layer_bits()["conv2"] == 4 and "INT4" in types
    # first and last layers stay at 8 bits (plan_bits), so both widths are present
    assert "INT8" in types
    assert art.bytes < out[8][1].bytes
    assert not any(p.key == "pkg.torch.onnx.stack_trace" for n in m.graph.node for p in n.metadata_props)


@pytest.mark.parametrize("bits", [4, 8])
def test_onnxruntime_agrees_with_the_simulation(lowered, tiny_canonical, bits):
    target, out = lowered
    r, art = out[bits]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 0.5
    ort_logits = evaluate_runner(target.runner(art.path), x)
    sim = quantize_with_recipe(tiny_canonical, r, target.quantizer(r))(x)
    assert (ort_logits.argmax(1) == sim.argmax(1)).float().mean() >= 0.95
    # within one step of the output's quantization: the evaluation session computes Q/DQ as the
    # spec says (no onnxruntime fusions, whose u8s8 kernels moved logits by up to 26 steps on an
    # AMD EPYC machine without VNNI); a value at a rounding tie may still land on either side
    step = r.activations["linear"].quant.scale[0]
    assert torch.allclose(ort_logits, sim, atol=1.01 * step)
    assert (ort_logits - sim).abs().gt(0.5 * step).float().mean() <= 0.02  # and such flips are rare


def test_profile_refuses_4_bit_activations_and_2_bit_weights(tiny_canonical):
    t = TARGETS.get("onnx-qdq")
    with pytest.raises(UserError, match="activation bit width 4"):
        t.check(_recipe(tiny_canonical, 4, 4))
    with pytest.raises(UserError, match="weight bit width 2"):
        t.check(_recipe(tiny_canonical, 2))


def test_corrupted_onnx_is_a_user_error(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not an onnx model")
    with pytest.raises(UserError, match="cannot load model.onnx with onnxruntime"):
        TARGETS.get("onnx-qdq").runner(p)


@pytest.mark.slow
def test_w4a8_bundle_deploys_onnx_int4(cli, tmp_path):
    """With no --target, W4A8 (which XNNPACK and LiteRT refuse) lands on onnx-qdq."""
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--data-free", "--w-bits", "4", "--a-bits", "8",
            "--num-samples", "16", "--iterations", "10", "--eval-samples", "100", "--no-progress",
            "--dataset", "fashion-mnist", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert [(a["target"], a["runtime"]) for a in m["artifacts"]] == [("onnx-qdq", "onnxruntime")]
    assert [r["runtime"] for r in m["evaluation"]["results"]] == ["onnxruntime"]
    assert m["evaluation"]["results"][0]["agreement_with_simulation"] >= 0.95
    p = cli("eval", str(out / "model.onnx"))
    assert p.returncode == 0, p.stderr[-3000:]


def test_symmetric_activations_are_planned_exported_and_run(tiny_canonical, tmp_path):
    """A recipe with symmetric activations (TensorRT's explicit quantization: zero point 0):
    every activation's zero point is 0 in the recipe and in the QDQ model's QuantizeLinear
    nodes, and onnxruntime agrees with the simulation; a target that requires symmetric
    activations refuses an affine recipe (the constraint feeds the plan instead)."""
    import dataclasses
    from edgekit.quant.recipe import plan_recipe
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 28, 28, generator=g) * 2 - 0.5
    src = CalibrationSource(images, {"kind": "real", "method": "random", "num_samples": 16})
    cfg = PTQConfig(act_estimator="minmax", activation_symmetric=True)
    r = calibrate(tiny_canonical, cfg, src, "ptq", progress=False)
    assert all(a.quant.symmetric and a.quant.zero_point == [0] for a in r.activations.values())
    t = TARGETS.get("onnx-qdq")
    art = t.lower(tiny_canonical, r, tmp_path)
    m = onnx.load(str(art.path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
           and n.input[2] in inits and inits[n.input[2]].ndim == 0]
    assert zps and all(int(z) == 0 for z in zps)
    out = evaluate_runner(t.runner(art.path), images)
    sim = quantize_with_recipe(tiny_canonical, r, t.quantizer(r))(images)
    assert (out.argmax(1) == sim.argmax(1)).float().mean() == 1.0
    class Strict(type(t)):  # the same target, with TensorRT's rule
        @property
        def profile(self):
            p = super().profile
            return dataclasses.replace(p, constraints=dataclasses.replace(p.constraints, activation_symmetric=True))
    strict = Strict()
    strict.check(r)
    with pytest.raises(UserError, match="needs symmetric activations"):
        strict.check(plan_recipe(tiny_canonical.graph_module, "ptq", 8, 8))
