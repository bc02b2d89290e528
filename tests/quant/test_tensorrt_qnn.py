"""The tensorrt and qnn-htp targets: Q/DQ ONNX files that follow TensorRT's and Qualcomm HTP's
rules, checked by the rules checkers (which also refuse files that break them, edgekit's own
affine onnx-qdq among them) and run in onnxruntime against the recipe's simulation; the QNN
encodings put back on the float ONNX reproduce the QDQ ONNX exactly."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekit.backends.base import evaluate_runner
from edgekit.backends.onnx_rules import qnn_htp_violations, tensorrt_violations
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import canonicalize
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.recipe import plan_recipe
from edgekit.quant.simulate import quantize_with_recipe
from edgekit.registry import TARGETS
import edgekit.plugins  # noqa: F401  (registers the targets)


def _recipe(canonical, w_bits=8, a_bits=8, symmetric=False, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, *shape, generator=g)
    src = CalibrationSource(images, {"kind": "real", "method": "random", "num_samples": 16})
    plan = plan_recipe(canonical.graph_module, "ptq", w_bits, a_bits, True, symmetric)
    return calibrate(canonical, PTQConfig(w_bits=w_bits, a_bits=a_bits, act_estimator="minmax"), src, "ptq",
                     recipe=plan, progress=False)


@pytest.fixture(scope="module")
def mixed():
    """A model edgekit did not train, with ops int8 backends treat differently (hard-swish,
    squeeze-excite, pad, clamp, concat)."""
    from tests.fixtures.models import mixed_ops
    return canonicalize(mixed_ops(), torch.zeros(1, 3, 32, 32), "mixed_ops")


def _agrees(target, art, canonical, recipe, shape, steps=1.01):
    x = torch.randn(48, *shape, generator=torch.Generator().manual_seed(1))
    out = evaluate_runner(target.runner(art.path), x)
    sim = quantize_with_recipe(canonical, recipe, target.quantizer(recipe))(x)
    assert (out.argmax(1) == sim.argmax(1)).all()
    return (out - sim).abs().max().item()


@pytest.mark.parametrize("model", ["tiny", "mixed"])
def test_tensorrt_onnx_is_symmetric_inputs_only_and_agrees_with_the_simulation(tiny_canonical, mixed, model, tmp_path):
    canonical, shape = (tiny_canonical, (1, 28, 28)) if model == "tiny" else (mixed, (3, 32, 32))
    t = TARGETS.get("tensorrt")
    r = _recipe(canonical, symmetric=True, shape=shape)
    t.check(r)
    art = t.lower(canonical, r, tmp_path)
    assert art.path.name == "model_tensorrt.onnx" and art.ops["rules"] == {"checker": "tensorrt", "violations": 0}
    m = onnx.load(str(art.path))
    assert tensorrt_violations(m) == []
    producer = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):  # Q/DQ on the data input and the weight, float bias
            assert producer[n.input[0]].op_type == "DequantizeLinear", n.name
            assert producer[n.input[1]].op_type == "DequantizeLinear", n.name
            assert len(n.input) < 3 or n.input[2] in inits
        if n.op_type == "Add":  # both inputs of a residual add
            assert all(producer[i].op_type == "DequantizeLinear" for i in n.input), n.name
    assert all(producer[o.name].op_type != "DequantizeLinear" for o in m.graph.output)  # none on the output
    # ORT runs Q/DQ as the spec defines them: within float rounding of the simulation
    assert _agrees(t, art, canonical, r, shape) < 1e-5


def test_tensorrt_refuses_an_affine_recipe_before_calibration(tiny_canonical):
    plan = plan_recipe(tiny_canonical.graph_module, "ptq", 8, 8, True, False)
    with pytest.raises(UserError, match="tensorrt cannot run .*symmetric activations"):
        TARGETS.get("tensorrt").check(plan)
    plan4 = plan_recipe(tiny_canonical.graph_module, "ptq", 4, 8, True, True)
    with pytest.raises(UserError, match="weight bit width 4"):
        TARGETS.get("tensorrt").check(plan4)


def test_the_rules_checker_refuses_edgekits_affine_onnx_naming_nodes(tiny_canonical, tmp_path):
    t = TARGETS.get("onnx-qdq")
    art = t.lower(tiny_canonical, _recipe(tiny_canonical), tmp_path)
    found = tensorrt_violations(onnx.load(str(art.path)))
    rules = {v.rule for v in found}
    assert "symmetric-only" in rules and all(str(v).startswith("node node_") for v in found)
    assert "no-qdq-on-output" in rules  # XNNPACK quantizes the last linear's output
    assert TARGETS.get("tensorrt").rules(art.path) == found


def _conv_model(*, zp=0, w_axis=0, w_values=None, w_type=TensorProto.INT8, act_type=TensorProto.INT8,
                bias_dq=False, q_to_relu=False, act_scale=None):
    """A one-conv QDQ model built by hand, with one thing changed per test."""
    w = np.asarray(w_values if w_values is not None else np.arange(-4, 4).reshape(2, 1, 2, 2), np.int8)
    np_act = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[act_type]
    inits = [numpy_helper.from_array(np.array(0.1 if act_scale is None else act_scale, np.float32), "s"),
             numpy_helper.from_array(np.array(zp, np_act), "zp"),
             helper.make_tensor("w", w_type, w.shape, w.reshape(-1).tolist()),
             numpy_helper.from_array(np.full(w.shape[w_axis], 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(w.shape[w_axis], np.int8), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w", "ws"] + ([] if w_type == TensorProto.INT4 else ["wzp"]),
                              ["wd"], name="dq_w", axis=w_axis)]
    conv_in = ["xd", "wd"]
    if bias_dq:
        inits += [numpy_helper.from_array(np.zeros(2, np.int32), "b"),
                  numpy_helper.from_array(np.full(2, 0.001, np.float32), "bs")]
        nodes.append(helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], name="dq_bias"))
        conv_in.append("bd")
    nodes.append(helper.make_node("Conv", conv_in, ["y"], name="conv"))
    if q_to_relu:
        nodes.append(helper.make_node("QuantizeLinear", ["y", "s", "zp"], ["yq"], name="q_out"))
        nodes.append(helper.make_node("Relu", ["yq"], ["z"], name="relu"))
    out = "z" if q_to_relu else "y"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info(out, TensorProto.UNDEFINED, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("change,rule,node", [
    ({"zp": 3}, "symmetric-only", "q_in"),
    ({"w_axis": 1, "w_values": np.arange(-4, 4).reshape(1, 2, 2, 2)}, "per-channel-axis", "dq_w"),
    ({"w_values": np.full((2, 1, 2, 2), -128)}, "weight-range", "dq_w"),
    ({"w_type": TensorProto.INT4}, "int4-weight-only", "dq_w"),
    ({"act_type": TensorProto.UINT8}, "int8-only", "q_in"),
    ({"bias_dq": True}, "no-bias-quantization", "dq_bias"),
    ({"q_to_relu": True}, "q-feeds-dq", "q_out"),
    ({"act_scale": 0.0}, "positive-scale", "q_in"),
])
def test_each_tensorrt_rule_names_the_node(change, rule, node):
    found = [(v.node, v.rule) for v in tensorrt_violations(_conv_model(**change)) if v.severity == "error"]
    assert (node, rule) in found, found


def test_a_clean_hand_written_model_passes_both_checkers_as_it_should():
    assert [v for v in tensorrt_violations(_conv_model()) if v.severity == "error"] == []
    rules = {v.rule for v in qnn_htp_violations(_conv_model())}
    assert rules == {"unsigned-activations"}  # HTP wants uint8; nothing else is wrong
    assert qnn_htp_violations(_conv_model(act_type=TensorProto.UINT8, zp=128)) == []


def _insert_qdq(model, enc):
    """What QNN's converter does with --quantization_overrides, written for the test: Q/DQ from
    the encodings on the float ONNX (activations: after the producing tensor; weights: on the
    initializer, per-channel along axis 0)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes = []

    def qdq(o):
        e = enc["activation_encodings"][o][0]
        dt = np.uint8 if e["bitwidth"] == 8 else np.uint16
        g.initializer.append(numpy_helper.from_array(np.array(e["scale"], np.float32), o + "_s"))
        g.initializer.append(numpy_helper.from_array(np.array(-e["offset"], dt), o + "_z"))
        return [helper.make_node("QuantizeLinear", [o, o + "_s", o + "_z"], [o + "_q"]),
                helper.make_node("DequantizeLinear", [o + "_q", o + "_s", o + "_z"], [o + "_qdq"])]

    for i in g.input:
        if i.name in enc["activation_encodings"]:
            new_nodes += qdq(i.name)
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in enc["param_encodings"] and name in inits:
                e = enc["param_encodings"][name]
                w = numpy_helper.to_array(inits[name])
                s = np.array([x["scale"] for x in e], np.float32)
                bits = e[0]["bitwidth"]
                q = np.clip(np.round(w / s.reshape(-1, *[1] * (w.ndim - 1))), -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1)
                g.initializer.append(numpy_helper.from_array(q.astype(np.int8), name + "_q"))
                g.initializer.append(numpy_helper.from_array(s, name + "_s"))
                new_nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_s"], [name + "_dq"], axis=0))
                n.input[i] = name + "_dq"
        new_nodes.append(n)
        for o in n.output:
            if o in enc["activation_encodings"]:
                new_nodes += qdq(o)
    for n in new_nodes:  # consumers read the quantized tensors
        for i, name in enumerate(n.input):
            if name in enc["activation_encodings"] and n.op_type != "QuantizeLinear":
                n.input[i] = name + "_qdq"
    for o in g.output:
        if o.name in enc["activation_encodings"]:
            new_nodes.append(helper.make_node("Identity", [o.name + "_qdq"], [o.name + "_out"]))
    del g.node[:]
    g.node.extend(new_nodes)
    return model


@pytest.mark.parametrize("w_bits,a_bits,preset", [(8, 8, "8a8w"), (8, 16, "16a8w"), (4, 16, "16a4w")])
def test_qnn_htp_presets_pass_the_rules_agree_and_their_encodings_rebuild_the_model(mixed, tmp_path, w_bits, a_bits, preset):
    t = TARGETS.get("qnn-htp")
    r = _recipe(mixed, w_bits, a_bits, shape=(3, 32, 32))
    t.check(r)
    art = t.lower(mixed, r, tmp_path)
    assert art.ops["qnn_preset"] == preset and art.ops["rules"]["violations"] == 0
    assert art.ops["float_ops"] == []  # HTP runs every op of this model quantized
    m = onnx.load(str(art.path))
    assert qnn_htp_violations(m) == []
    kinds = {TensorProto.DataType.Name(i.data_type) for i in m.graph.initializer if "zero_point_u" in i.name}
    assert kinds == {"UINT8" if a_bits == 8 else "UINT16"}
    step = max(a.quant.scale[0] for k, a in r.activations.items() if k == "linear")
    assert _agrees(t, art, mixed, r, (3, 32, 32)) <= 1.01 * step
    # the encodings on the float ONNX give back the QDQ model's outputs exactly
    enc = json.loads(art.side_files["encodings"].read_text())
    assert enc["version"] == "0.6.1" and all(e[0]["bitwidth"] == a_bits for e in enc["activation_encodings"].values())
    assert {e[0]["bitwidth"] for e in enc["param_encodings"].values()} == {w_bits}
    rebuilt = _insert_qdq(onnx.load(str(art.side_files["float_onnx"])), enc)
    x = np.random.default_rng(2).normal(size=(1, 3, 32, 32)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(str(art.path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(rebuilt.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(a, b[-1])


def test_qnn_htp_refuses_what_htp_cannot_run(tiny_canonical):
    t = TARGETS.get("qnn-htp")
    with pytest.raises(UserError, match="activation bit width 6"):
        t.check(plan_recipe(tiny_canonical.graph_module, "ptq", 8, 6))
    with pytest.raises(UserError, match="weight bit width 2"):
        t.check(plan_recipe(tiny_canonical.graph_module, "ptq", 2, 16))
    plan = plan_recipe(tiny_canonical.graph_module, "ptq", 8, 8)
    next(iter(plan.layers.values())).weight.symmetric = False
    with pytest.raises(UserError, match="symmetric weights"):
        t.check(plan)


def test_16_bit_activations_bring_the_simulation_closer_to_fp32(mixed):
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    fp = mixed.graph_module(x)
    t = TARGETS.get("qnn-htp")
    err = {}
    for a in (8, 16):
        r = _recipe(mixed, 8, a, shape=(3, 32, 32))
        err[a] = (quantize_with_recipe(mixed, r, t.quantizer(r))(x) - fp).pow(2).mean().item()
        assert r.activations["x"].quant.quant_max == (127 if a == 8 else 32767)
    assert err[16] < err[8] / 2, err  # the weights' 8 bits are what is left
