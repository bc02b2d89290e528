"""Q-HyViT and its baselines (``edgekit.quant.scale_search``): bridge blocks found from the graph,
the transformer placement, the search's choices, a user's own hybrid ViT exported the usual way,
and the refusal on a model without attention."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import edgekit.plugins  # noqa: F401  (registers methods and placements)
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import canonicalize, module_path
from edgekit.quant.algorithms.easyquant import EasyQuantConfig, easyquant
from edgekit.quant.algorithms.ptq import PTQConfig, ptq
from edgekit.quant.algorithms.qhyvit import QHyViTConfig, qhyvit
from edgekit.quant.placement import quantizer_for
from edgekit.quant.scale_search import _first_unless_clearly_worse, clearly_lower, find_bridges, has_attention
from edgekit.quant.simulate import quantize_with_recipe


class UserHybrid(nn.Module):
    """A hybrid a user might write: conv stages with BN, tokens, torch's own
    TransformerEncoderLayer (fused attention), a mean over tokens, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.GELU())
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)  # [N, 49, 16]
        return self.head(self.encoder(t).mean(1))


class ExplicitAttention(nn.Module):
    """Attention written with matmuls (as MobileViT and EfficientFormer are), after a conv stage."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, d, 3, 2, 1), nn.BatchNorm2d(d), nn.SiLU())
        self.norm = nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.out = nn.Conv2d(d, 10, 1)

    def forward(self, x):
        f = self.conv(x)                                  # [N, d, 14, 14]
        n, d, h, w = f.shape
        t = f.flatten(2).transpose(1, 2)                  # [N, T, d]
        q, k, v = self.qkv(self.norm(t)).chunk(3, -1)
        a = (q @ k.transpose(1, 2) * d ** -0.5).softmax(-1)
        t = t + self.proj(a @ v)
        f = t.transpose(1, 2).reshape(n, d, h, w)
        return self.out(f).mean((2, 3))


@pytest.fixture(scope="module")
def explicit():
    torch.manual_seed(0)
    model = ExplicitAttention().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model, canonicalize(model, torch.randn(1, 1, 28, 28), "explicit")


def test_bridges_of_the_reference_hybrids_come_from_the_graph():
    """The conv->transformer and transformer->conv transitions, without a hand-written list."""
    from edgekit.models.zoo import load_model
    expect = {
        "mobilevit_fmnist": [("vit1.to_tokens", ["vit1.transformer.0.attn.qkv"]),
                             ("vit1.transformer.0.mlp.2", ["vit1.from_tokens.0"]),
                             ("vit2.to_tokens", ["vit2.transformer.0.attn.qkv"]),
                             ("vit2.transformer.1.mlp.2", ["vit2.from_tokens.0"])],
        "efficientformer_fmnist": [("stage2.1.mlp.3", ["stage3.0.attn.qkv"])],
        "resnet20_fmnist": [],
    }
    for name, bridges in expect.items():
        lm = load_model(name)
        gm = canonicalize(lm.model, lm.example_input, name).graph_module
        nodes = {n.name: n for n in gm.graph.nodes}
        got = [(module_path(nodes[s]), [module_path(nodes[e]) for e in ends]) for s, ends in find_bridges(gm)]
        assert got == bridges, name
        assert has_attention(gm) == (name != "resnet20_fmnist")


def test_the_search_reconstructs_the_bridge_blocks_jointly(explicit, monkeypatch):
    """Inside the search (on the prepared graph with its probes, where a linear's input carries
    no tensor metadata) the bridges of the model are searched as blocks, each quantizer once.
    In this small model the conv's residual path reaches the last conv as soon as its attention
    path reaches qkv, so its bridge block spans the attention, and the second bridge (proj ->
    out) lies inside it. Without bridges there are none, and the recipes differ."""
    from edgekit.quant import scale_search
    model, canonical = explicit
    seen = []
    real = scale_search._regions
    monkeypatch.setattr(scale_search, "_regions", lambda g, b: seen.append((g, real(g, b))) or seen[-1][1])
    calib = CalibrationSource(torch.rand(8, 1, 28, 28))
    cfg = QHyViTConfig(w_bits=4, a_bits=8, candidates=5, rounds=1, damping=0.0)
    with_bridges = qhyvit(canonical, cfg, calib, "full-integer")
    graph, regions = seen[-1]
    blocks = [[graph.probes[p].key for p in r.probes] for r in regions if r.bridge]
    nodes = {n.name: n for n in canonical.graph_module.graph.nodes}
    weights = [sorted(module_path(nodes[k[1]]) for k in b if k[0] == "w") for b in blocks]
    assert weights == [["conv.0", "out", "proj", "qkv"]]
    assert all(len(set(b)) == len(b) and any(k[0] == "a" for k in b) for b in blocks)
    without = qhyvit(canonical, dataclasses.replace(cfg, bridges=False), calib, "full-integer")
    assert not [r for r in seen[-1][1] if r.bridge]
    assert with_bridges.layers["conv2d"].weight.scale != without.layers["conv2d"].weight.scale


def test_full_integer_placement_quantizes_attention(explicit):
    """The simulation's placement puts q/dq on both matmul operands and the softmax output,
    which XNNPACK's leaves in float; softmax takes the fixed 1/256, -128 of TFLite's SOFTMAX."""
    from edgekit.quant.simulate import float_ops
    model, canonical = explicit
    calib = CalibrationSource(torch.rand(8, 1, 28, 28))
    recipe = ptq(canonical, PTQConfig(act_estimator="minmax"), calib)
    soft = [n for n in canonical.graph_module.graph.nodes if "softmax" in str(n.target)][0].name
    assert recipe.activations[soft].quant.scale == [1 / 256] and recipe.activations[soft].quant.zero_point == [-128]
    floats = {}
    for placement in ("xnnpack", "full-integer"):
        gm = quantize_with_recipe(canonical, recipe, quantizer_for(placement, recipe))
        floats[placement] = {o["op"] for o in float_ops(gm)}
    assert {"matmul", "softmax"} <= floats["xnnpack"]
    assert not {"matmul", "softmax", "layer_norm"} & floats["full-integer"]


def test_qhyvit_choices_are_deployable_and_beat_minmax_at_low_bits(explicit):
    """The search writes per-layer granularity, per-tensor scheme and scales; every zero point
    lies inside its integer range (no zero-point overflow), and at W4A8 the searched recipe's
    logit SQNR on held-out images beats per-tensor min/max on the same 32 images."""
    model, canonical = explicit
    torch.manual_seed(1)
    calib, held = torch.rand(32, 1, 28, 28), torch.rand(64, 1, 28, 28)
    cfg = QHyViTConfig(w_bits=4, a_bits=8, candidates=20, rounds=2)
    recipe = qhyvit(canonical, cfg, CalibrationSource(calib), placement="full-integer")
    for aq in recipe.activations.values():
        q = aq.quant
        assert q.filled and q.quant_min <= q.zero_point[0] <= q.quant_max
        if q.symmetric:
            assert q.zero_point == [0]
    assert {lq.weight.granularity for lq in recipe.layers.values()} <= {"per_channel", "per_tensor"}
    minmax = ptq(canonical, PTQConfig(w_bits=4, a_bits=8, act_estimator="minmax", per_channel=False),
                 CalibrationSource(calib))
    with torch.no_grad():
        fp = model(held)

        def sqnr(r):
            out = quantize_with_recipe(canonical, r, quantizer_for("full-integer", r))(held)
            return float(10 * torch.log10(fp.square().sum() / (out - fp).square().sum()))
        assert sqnr(recipe) > sqnr(minmax) + 1.0


def test_qhyvit_keeps_the_damping_whose_model_is_closest_to_fp32_on_the_calibration_images(explicit):
    """With several dampings the search runs once per value and keeps the recipe whose quantized
    model has the lowest KL to FP32 on the calibration images: the same scales as the single
    search with that damping, and a KL no larger than the other's. A negative damping is refused."""
    model, canonical = explicit
    torch.manual_seed(2)
    calib = torch.rand(16, 1, 28, 28)
    # one scheme space, so the choice is between the dampings alone (the symmetric candidate's
    # own choice is the next test's)
    base = QHyViTConfig(w_bits=4, a_bits=4, candidates=10, rounds=1, symmetric_candidate=False)

    def kl(r):
        with torch.no_grad():
            lp = model(calib).log_softmax(1)
            lq = quantize_with_recipe(canonical, r, quantizer_for("full-integer", r))(calib).log_softmax(1)
        return float((lp.exp() * (lp - lq)).sum(1).mean())
    single = {d: qhyvit(canonical, dataclasses.replace(base, damping=d), CalibrationSource(calib), "full-integer")
              for d in (0.0, 1e4)}
    chosen = qhyvit(canonical, dataclasses.replace(base, damping=(0.0, 1e4)), CalibrationSource(calib), "full-integer")
    kls = {d: kl(r) for d, r in single.items()}
    assert kls[0.0] != kls[1e4]
    best = min(kls, key=kls.get)
    scales = lambda r: {k: a.quant.scale for k, a in r.activations.items()}  # noqa: E731
    assert scales(chosen) == scales(single[best]) != scales(single[max(kls, key=kls.get)])
    with pytest.raises(UserError, match="damping"):
        qhyvit(canonical, dataclasses.replace(base, damping=(-1.0,)), CalibrationSource(calib), "full-integer")


def test_qhyvit_also_searches_symmetric_activations_and_keeps_it_only_when_clearly_closer(explicit):
    """With ``symmetric_candidate`` Q-HyViT searches once with the per-tensor scheme choice and
    once with symmetric activations only, and keeps the symmetric recipe only when its per-image
    KL to FP32 on the calibration images is clearly lower (``clearly_lower``): the scales of
    exactly one of the two single searches, the one the paired test picks."""
    model, canonical = explicit
    torch.manual_seed(3)
    calib = torch.rand(16, 1, 28, 28)
    base = QHyViTConfig(w_bits=4, a_bits=4, candidates=10, rounds=1, damping=0.0, symmetric_candidate=False)

    def kl(r):
        with torch.no_grad():
            lp = model(calib).log_softmax(1)
            lq = quantize_with_recipe(canonical, r, quantizer_for("full-integer", r))(calib).log_softmax(1)
        return (lp.exp() * (lp - lq)).sum(1).tolist()
    single = {"choice": qhyvit(canonical, base, CalibrationSource(calib), "full-integer"),
              "symmetric": qhyvit(canonical, dataclasses.replace(base, activation_schemes=("symmetric",)),
                                  CalibrationSource(calib), "full-integer")}
    assert not all(a.quant.symmetric for a in single["choice"].activations.values())
    chosen = qhyvit(canonical, dataclasses.replace(base, symmetric_candidate=True), CalibrationSource(calib),
                    "full-integer")
    kls = {k: kl(r) for k, r in single.items()}
    assert kls["choice"] != kls["symmetric"]
    keep = "symmetric" if clearly_lower(kls["symmetric"], kls["choice"]) else "choice"
    other = "choice" if keep == "symmetric" else "symmetric"
    scales = lambda r: {k: a.quant.scale for k, a in r.activations.items()}  # noqa: E731
    assert scales(chosen) == scales(single[keep]) != scales(single[other])


def test_clearly_lower_is_a_paired_test_on_the_same_images():
    """A uniform improvement is clear; the same mean improvement carried by one image of many is
    not; equal losses are not; mismatched lengths raise."""
    base = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert clearly_lower([b - 0.1 for b in base], base)
    one_image = list(base)
    one_image[0] -= 0.8  # the same 0.1 mean improvement, all on one image
    assert not clearly_lower(one_image, base)
    assert not clearly_lower(base, base)
    assert not clearly_lower([b + 0.1 for b in base], base)
    with pytest.raises(ValueError):
        clearly_lower(base[:3], base)


def test_a_per_tensor_choice_keeps_the_default_unless_the_other_is_clearly_better():
    """The scheme and granularity choices: the first option (symmetric; per-channel) stays unless
    another's region error is lower image by image beyond the images' noise; each option's
    per-image errors are measured with that option set."""
    class Scorer:
        def __init__(self, errs):
            self.errs, self.state = errs, None

        def error(self, region, per_image=False):
            assert per_image
            return torch.tensor(self.errs[self.state], dtype=torch.float64)

    base = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    one_image = [base[0] - 0.8] + base[1:]  # lower in sum, on one image only
    for other, kept in (([b - 0.1 for b in base], "b"), (one_image, "a"), ([b + 0.1 for b in base], "a")):
        sc = Scorer({"a": base, "b": other})
        assert _first_unless_clearly_worse([("a",), ("b",)], lambda o: setattr(sc, "state", o), None, sc) == (kept,)
    assert _first_unless_clearly_worse([("only",)], None, None, None) == ("only",)


def test_qhyvit_goes_asymmetric_where_a_tensor_is_one_sided(explicit):
    """At A4 the conv stage's SiLU output (range about [-0.26, 1.2]: the asymmetric grid has half
    the symmetric one's step) gets the asymmetric scheme; the attention's projections and
    attn@v (ranges centred on 0, where both grids are nearly the same) keep the symmetric
    default."""
    _, canonical = explicit
    torch.manual_seed(3)
    cfg = QHyViTConfig(w_bits=4, a_bits=4, candidates=10, rounds=1, damping=0.0, symmetric_candidate=False)
    recipe = qhyvit(canonical, cfg, CalibrationSource(torch.rand(16, 1, 28, 28)), "full-integer")
    sym = {k: a.quant.symmetric for k, a in recipe.activations.items()}
    assert not sym["silu"] and sym["linear"] and sym["matmul_1"], sym


def test_per_tensor_layer_under_a_per_channel_quantizer_repeats_its_scale(explicit):
    """A layer the search made per-tensor deploys through the per-channel quantizer with its
    one scale on every channel: the same integers as a per-tensor quantizer gives."""
    model, canonical = explicit
    calib = CalibrationSource(torch.rand(8, 1, 28, 28))
    recipe = ptq(canonical, PTQConfig(act_estimator="minmax"), calib)
    first = next(iter(recipe.layers))
    w = recipe.layers[first].weight
    w.granularity, w.axis, w.scale, w.zero_point = "per_tensor", None, [max(w.scale)], [0]
    gm = quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe))
    scales = [a for n in gm.graph.nodes if "dequantize_per_channel" in str(n.target)
              for a in n.args[1:2]]
    first_scales = getattr(gm, scales[0].target)
    assert torch.all(first_scales == max(w.scale))


def test_easyquant_runs_on_the_same_engine(explicit):
    model, canonical = explicit
    recipe = easyquant(canonical, EasyQuantConfig(candidates=10), CalibrationSource(torch.rand(16, 1, 28, 28)),
                       placement="full-integer")
    inputs = {n.args[0].name for n in canonical.graph_module.graph.nodes if n.name in recipe.layers}
    assert inputs and all(recipe.activations[a].quant.symmetric for a in inputs)  # EasyQuant: symmetric only
    assert recipe.filled


def test_qhyvit_on_a_users_pt2_with_a_static_batch(tmp_path):
    """A user's hybrid (torch's TransformerEncoderLayer) exported the usual way, at batch 1, with
    its own normalisation (MNIST's mean and std): the search runs it image by image."""
    from edgekit import api
    torch.manual_seed(0)
    model = UserHybrid().eval()
    path = tmp_path / "user_hybrid.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 1, 28, 28),)), str(path))
    recipe = api.quantize(str(path), QHyViTConfig(candidates=6, rounds=1), torch.rand(8, 1, 28, 28),
                          mean=[0.1307], std=[0.3081], pixel_scale=1 / 255, placement="full-integer")
    assert recipe.method == "qhyvit" and recipe.filled


def test_qhyvit_refuses_a_model_without_attention(cli, tmp_path):
    """One line naming the methods that fit, exit 2, no bundle, before any calibration."""
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=np.zeros((4, 28, 28), np.uint8))
    out = tmp_path / "bundle"
    proc = cli("quantize", "resnet20_fmnist", "--method", "qhyvit", "--calib", str(calib), "--out", str(out),
               "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("edgekit")]
    assert len(lines) == 1 and "no attention" in lines[0] and "--method ptq" in lines[0]
    assert not out.exists()


def test_litert_runs_attention_in_int8_and_matches_its_simulation(explicit, tmp_path):
    """The .tflite runs the attention matmuls, softmax, LayerNorm (as int8 MEAN, SUB, MUL, ADD and
    RSQRT: TFLite has no LayerNorm kernel) and SiLU (int8 LOGISTIC and MUL) in integers, counted
    from the file by the LiteRT interpreter, and its outputs in the LiteRT runtime match the
    simulation of the same recipe and placement."""
    from edgekit.quant.complete import complete_recipe
    from edgekit.evaluation import run_artifact
    from edgekit.registry import TARGETS
    model, canonical = explicit
    torch.manual_seed(2)
    calib, held = torch.rand(32, 1, 28, 28), torch.rand(64, 1, 28, 28)
    recipe = qhyvit(canonical, QHyViTConfig(candidates=8, rounds=1), CalibrationSource(calib), placement="litert")
    target = TARGETS.get("litert")
    added = complete_recipe(canonical, recipe, target.quantizer(recipe), CalibrationSource(calib))
    assert {"layer_norm_rstd", "silu_sigmoid"} <= set(added), added  # the placement's inner tensors
    art = target.lower(canonical, recipe, tmp_path)
    ops = art.ops["tflite_ops"]
    # the two linears and the two attention matmuls (at batch 1 the converter may write a matmul
    # as FULLY_CONNECTED), all int8; none in float
    assert ops.get("FULLY_CONNECTED int8", 0) + ops.get("BATCH_MATMUL int8", 0) == 4, ops
    assert not any(k.split()[0] in ("FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX") and k.endswith("float32") for k in ops)
    assert ops.get("SOFTMAX int8") == 1, ops
    assert ops.get("RSQRT int8") == 1 and ops.get("LOGISTIC int8") == 1, ops  # LayerNorm, SiLU
    assert not any(k.endswith("float32") and k.split()[0] in ("MEAN", "RSQRT", "LOGISTIC", "MUL") for k in ops), ops
    assert {"matmul", "softmax", "linear"} <= {o["op"] for o in art.ops["integer_ops"]}
    out, _ = run_artifact(target, art.path, held, progress=False)
    with torch.no_grad():
        sim = quantize_with_recipe(canonical, recipe, target.quantizer(recipe))(held)
    assert (out.argmax(1) == sim.argmax(1)).float().mean() >= 0.95
    assert float(10 * torch.log10(sim.square().sum() / (out - sim).square().sum())) > 25


def test_onnx_qdq_of_a_transformer_loads_in_onnxruntime_and_matches_its_simulation(explicit, tmp_path):
    """The onnx-qdq artifact of a Q-HyViT recipe, whose linear layers run on 3-D tokens, loads in
    onnxruntime with its graph optimizations (the session profiling uses; onnxruntime 1.31's QDQ
    propagation breaks such a model, so edgekit leaves that pass off), and both that session and
    the reference one (no optimizations) match the simulation of the same recipe; the artifact
    lists which ops it quantized and which it left float."""
    from edgekit.registry import TARGETS
    from edgekit.runtimes.onnxruntime import inference_session
    model, canonical = explicit
    torch.manual_seed(3)
    calib, held = torch.rand(32, 1, 28, 28), torch.rand(16, 1, 28, 28)
    target = TARGETS.get("onnx-qdq")
    recipe = qhyvit(canonical, QHyViTConfig(candidates=8, rounds=1), CalibrationSource(calib),
                    placement=target.profile.placement)
    art = target.lower(canonical, recipe, tmp_path)
    # the manifest's ops: the attention matmuls stay float (XNNPACK's placement), linears are int8
    assert "matmul" in {o["op"] for o in art.ops["float_ops"]}
    assert "linear" in {o["op"] for o in art.ops["integer_ops"]}
    assert art.ops["onnx_ops"]["QuantizeLinear"] > 0 and art.ops["onnx_ops"]["MatMul"] > 0
    with torch.no_grad():
        sim = quantize_with_recipe(canonical, recipe, target.quantizer(recipe))(held)
    for reference in (False, True):
        s = inference_session(art.path, reference=reference)
        out = torch.cat([torch.from_numpy(s.run(None, {s.get_inputs()[0].name: held[i:i + 1].numpy()})[0])
                         for i in range(len(held))])
        assert float(10 * torch.log10(sim.square().sum() / (out - sim).square().sum())) > 25, reference
