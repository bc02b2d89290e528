"""Shift networks (DenseShift and the DeepShift baselines): the levels, the straight-through
training, the resumable checkpoint, the packed format, and the deployed artifacts, whose int8
weights are read back out of the .pte (its XNNPACK payload) and the .tflite and proven to be
signed powers of two; the numpy multiplication-free kernel against the .pte's outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekit.errors import UserError
from edgekit.kernels.shift_pack import decode, encode, pack, unpack
from edgekit.models.canonical import WEIGHTED_OPS
from edgekit.quant.shift import ShiftWeight, finetune, levels


def test_levels_of_each_kind():
    assert levels("denseshift", 3) == [-8, -4, -2, -1, 1, 2, 4, 8]  # zero-free: 8 levels in 3 bits
    assert levels("denseshift", 4) == [-64, -32, -16, -8, -4, -2, -1, 1, 2, 4, 8, 16, 32, 64]  # 2^7 is not int8
    assert levels("deepshift-q", 3) == [-4, -2, -1, 0, 1, 2, 4]  # with zero: 7
    assert levels("deepshift-ps", 4) == [-64, -32, -16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("kind", ["denseshift", "deepshift-q", "deepshift-ps"])
@pytest.mark.parametrize("bits", [3, 4])
def test_shift_weight_is_alpha_times_a_level_and_trains_through_the_rounding(kind, bits):
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    s = ShiftWeight(w, kind, bits)
    q = s.integers()
    assert set(q.unique().tolist()) <= set(levels(kind, bits))
    assert torch.allclose(s(), q.float() * s.alpha.view(-1, 1, 1, 1))
    assert (s() - w).pow(2).mean() < w.pow(2).mean() * 0.2  # the start is the FP weights' rounding
    s().pow(2).sum().backward()
    latents = [p for n, p in s.named_parameters() if n != "log_alpha"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in latents)


@pytest.mark.parametrize("zero_free", [True, False])
@pytest.mark.parametrize("bits", [3, 4])
def test_codes_round_trip(bits, zero_free):
    kind = "denseshift" if zero_free else "deepshift-q"
    q = np.random.default_rng(0).choice(levels(kind, bits), size=1000)
    np.testing.assert_array_equal(decode(encode(q, bits, zero_free), bits, zero_free), q)
    with pytest.raises(ValueError, match="power of two"):
        encode(np.array([3]), bits, zero_free)


def _layers(gm):
    return {n.name: 3 for n in gm.graph.nodes if n.op == "call_function" and n.target in WEIGHTED_OPS}


def test_checkpoint_resumes_to_the_same_network(tiny_canonical, tmp_path):
    x = torch.randn(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    teacher = tiny_canonical.graph_module
    run = lambda steps, ck: finetune(tiny_canonical.graph_module, teacher, _layers(teacher), "denseshift", x, steps,  # noqa: E731
                                     batch_size=8, progress=False, checkpoint=ck, checkpoint_key="k", checkpoint_every=3)
    whole, _, _ = run(6, None)
    run(3, tmp_path / "ck.pt")  # interrupted after 3 steps
    resumed, _, info = run(6, tmp_path / "ck.pt")
    assert info["resumed_from"] == 3
    for k in whole:
        assert torch.equal(whole[k].integers(), resumed[k].integers())
        assert torch.allclose(whole[k].alpha, resumed[k].alpha)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("the user's file")
    with pytest.raises(UserError, match="not an edgekit shift checkpoint"):
        run(6, foreign)
    assert foreign.read_text() == "the user's file"  # never overwritten
    with pytest.raises(UserError, match="another model, method or bit width"):
        finetune(tiny_canonical.graph_module, teacher, _layers(teacher), "denseshift", x, 6, batch_size=8,
                 progress=False, checkpoint=tmp_path / "ck.pt", checkpoint_key="other")


@pytest.fixture(scope="module")
def shift_bundle(tmp_path_factory):
    """`edgekit quantize` of a user's model (not one of the zoo's) as a 3-bit DenseShift network,
    fine-tuned on the user's images."""
    from tests.conftest import run_cli
    d = tmp_path_factory.mktemp("shift")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", images=(rng.uniform(size=(64, 1, 28, 28)) * 2 - 0.5).astype(np.float32))
    out = d / "b"
    r = run_cli("quantize", "tests.fixtures.models:tiny_bn", "--method", "denseshift", "--w-bits", "3", "--calib",
                str(d / "calib.npz"), "--finetune-steps", "20", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_deployed_weights_are_signed_powers_of_two(shift_bundle):
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.quant.recipe import QuantRecipe
    from edgekit.runtimes.executorch import xnnpack_int8_weights
    allowed = set(levels("denseshift", 3))
    recipe = QuantRecipe.load(shift_bundle / "recipe.json")
    alphas = sorted(round(a, 6) for lq in recipe.layers.values() for a in lq.weight.scale)
    pte = xnnpack_int8_weights(shift_bundle / "model.pte")
    assert len(pte) == len(recipe.layers)
    for dims, values, scales in pte:
        assert set(np.unique(values).tolist()) <= allowed, dims
    assert sorted(round(s, 6) for _, _, sc in pte for s in sc) == alphas  # the scales are the recipe's alphas
    it = Interpreter(model_path=str(shift_bundle / "model.tflite"))
    it.allocate_tensors()
    # per-channel int8 tensors: the weights (a 1-input-channel conv is TFLite's depthwise, channels last)
    weights = [t for t in it.get_tensor_details() if t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) > 1]
    assert len(weights) == len(recipe.layers)
    for t in weights:
        assert set(np.unique(it.get_tensor(t["index"])).tolist()) <= allowed, t["name"]


def test_bundle_records_op_counts_and_packed_weights(shift_bundle):
    from edgekit.quant.recipe import QuantRecipe
    m = json.loads((shift_bundle / "manifest.json").read_text())
    sh = m["quantization"]["shift"]
    recipe = QuantRecipe.load(shift_bundle / "recipe.json")
    n = sum(w.numel() for w in recipe.rounded_weights.values())
    assert sh["code_bits"] == [3] and sh["zero_free"] is True
    assert sh["packed_bytes"] == (shift_bundle / "model.shift").stat().st_size
    assert sh["packed_bytes"] < n * 3 / 8 + 4 * 64 + 2000  # 3 bits a weight, the alphas, the header
    ops = sh["ops_per_inference"]
    assert ops["multiplications_replaced"] > 0 and ops["int8_multiplies"] == 0
    assert ops["adds"] > ops["multiplications_replaced"] > ops["shifts"]
    for name, (q, alpha) in unpack((shift_bundle / "model.shift").read_bytes()).items():
        np.testing.assert_array_equal(q, recipe.rounded_weights[name].numpy())
        np.testing.assert_allclose(alpha, recipe.layers[name].weight.scale, rtol=1e-6)
    assert pack(recipe, True) == (shift_bundle / "model.shift").read_bytes()
    assert all(r["agreement_with_simulation"] >= 0.9 for r in m["evaluation"]["results"])


def test_the_multiplication_free_kernel_agrees_with_the_pte(shift_bundle, tiny_canonical):
    from edgekit.backends.base import evaluate_runner
    from edgekit.kernels.shift_net import run_shift_network
    from edgekit.quant.recipe import QuantRecipe
    from edgekit.quant.simulate import quantize_with_recipe
    from edgekit.registry import TARGETS
    from tests.fixtures.models import tiny_bn
    from edgekit.models.canonical import canonicalize
    can = canonicalize(tiny_bn(), torch.zeros(1, 1, 28, 28), "tiny_bn")
    recipe = QuantRecipe.load(shift_bundle / "recipe.json")
    t = TARGETS.get("executorch-xnnpack")
    gm = quantize_with_recipe(can, recipe, t.quantizer(recipe), fold_quantize=True)
    x = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 2 - 0.5
    kern = run_shift_network(gm, recipe, x.numpy())
    pte = evaluate_runner(t.runner(shift_bundle / "model.pte"), x).numpy()
    step = recipe.activations["linear"].quant.scale[0]
    assert (kern.argmax(1) == pte.argmax(1)).mean() >= 0.99
    assert np.abs(kern - pte).max() <= 1.01 * step  # at most one output step (a rounding tie)
    assert (np.abs(kern - pte) < 1e-6).mean() >= 0.95  # and bit-exact almost everywhere


def test_shift_refusals_are_one_line(cli, tmp_path):
    np.savez(tmp_path / "c.npz", images=np.zeros((8, 1, 28, 28), np.float32))
    base = ["quantize", "tests.fixtures.models:tiny_bn", "--calib", str(tmp_path / "c.npz"), "--out", str(tmp_path / "b")]
    r = cli(*base, "--method", "denseshift", "--w-bits", "8")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "--w-bits 8" in last and "3 or 4" in last and not (tmp_path / "b").exists()
    r = cli(*base, "--method", "ptq", "--finetune-steps", "5")
    assert r.returncode == 2 and "--finetune-steps does not apply to --method ptq" in r.stderr.strip().splitlines()[-1]


def test_data_free_shift_network_with_int8_first_and_last_layers(cli, tmp_path):
    """--data-free fine-tunes on Genie-D's distilled images; first_last = "int8" (config file)
    keeps the first and last layers in 8-bit affine, which the kernel then multiplies."""
    conf = tmp_path / "run.toml"
    conf.write_text('model = "tests.fixtures.models:tiny_bn"\nmethod = "denseshift"\ndata_free = true\n'
                    '[quant]\nw_bits = 4\nfinetune_steps = 10\nfirst_last = "int8"\n'
                    '[synth]\nnum_samples = 16\nbatch_size = 16\niterations = 5\n')
    out = tmp_path / "b"
    r = cli("quantize", "--config", str(conf), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["quantization"]["data_free"] is True and m["quantization"]["calibration"]["kind"] == "synthetic"
    ops = m["quantization"]["shift"]["ops_per_inference"]
    assert ops["int8_multiplies"] > 0 and ops["multiplications_replaced"] > 0
    rec = json.loads((out / "recipe.json").read_text())
    schemes = [lq["weight"]["scheme"] for lq in rec["layers"].values()]
    assert schemes == ["affine", "pow2", "affine"]
