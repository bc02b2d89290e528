"""PTQ4ViT's twin-uniform quantizers (Yuan et al. 2022, Sec. 4.1): the quantize-dequantize
function, the search's twin entries on softmax and GELU/SiLU outputs, the simulation that runs
them, and the deployable targets' refusal of a recipe no int8 runtime can hold."""
from __future__ import annotations

import pytest
import torch

import edgekit.plugins  # noqa: F401  (registers methods, placements and targets)
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.quant.algorithms.ptq4vit import PTQ4ViTConfig, ptq4vit
from edgekit.quant.placement import quantizer_for
from edgekit.quant.qparams import twin_fake_quant
from edgekit.quant.recipe import TWIN, TWIN_OPS
from edgekit.quant.simulate import quantize_with_recipe
from edgekit.registry import TARGETS

from tests.quant.test_qhyvit import explicit  # noqa: F401  (the fixture: a conv stage, then matmul attention)


def test_post_softmax_twin_keeps_small_probabilities_a_uniform_grid_rounds_to_zero():
    """At 4 bits the uniform [0, 1] grid (step 1/15) rounds every probability below 1/30 to 0;
    with R1's scale 2^-5 of R2's they keep their value to within half of R1's step, while large
    probabilities stay on R2's grid."""
    bits, n = 4, 8
    r2 = 1 / (n - 1)
    r1 = r2 / 32
    x = torch.tensor([0.0, 0.001, 0.01, 0.02, 0.3, 0.97, 1.0])
    y = twin_fake_quant(x, r1, r2, bits, signed=False)
    small = x < n * r1
    assert torch.all((y[small] - x[small]).abs() <= r1 / 2 + 1e-7)
    assert torch.allclose(y[~small], torch.round(x[~small] / r2) * r2)
    assert float(y[2]) > 0 and float(torch.round(x[2] * 15) / 15) == 0.0
    assert int(torch.unique(y).numel()) <= 2 ** bits


def test_post_gelu_twin_puts_negatives_and_positives_on_their_own_grids():
    """Negative GELU outputs use the fixed scale that covers [-0.17, 0] with 2^(bits-1) levels;
    positive ones the searched scale; 2^bits codes in all (one signed integer)."""
    bits, n = 6, 32
    low = -TWIN_OPS[torch.ops.aten.gelu.default] / n
    x = torch.nn.functional.gelu(torch.linspace(-6, 6, 2001))
    y = twin_fake_quant(x, low, 0.2, bits, signed=True)
    neg = x < 0
    assert torch.all((y[neg] - x[neg]).abs() <= low / 2 + 1e-7)
    assert torch.allclose(y[~neg], torch.clamp(torch.round(x[~neg] / 0.2), 0, n - 1) * 0.2)
    assert int(torch.unique(y).numel()) <= 2 ** bits


def test_ptq4vit_search_writes_twin_entries_that_the_simulation_runs(explicit):  # noqa: F811
    """PTQ4ViT's recipe holds twin-uniform entries for the softmax and SiLU outputs (two scales,
    R2 of the softmax covering [0, 1], R1 a power-of-two fraction of it); its simulation runs
    them (replacing them with one uniform scale changes the outputs), and beats the same search
    without twin-uniform on held-out images at W6A4."""
    model, canonical = explicit
    torch.manual_seed(3)
    calib, held = torch.rand(16, 1, 28, 28), torch.rand(64, 1, 28, 28)
    cfg = PTQ4ViTConfig(w_bits=6, a_bits=4, candidates=20, rounds=1)
    recipe = ptq4vit(canonical, cfg, CalibrationSource(calib), placement="full-integer")
    kinds = {n.name: str(n.target) for n in canonical.graph_module.graph.nodes}
    twins = {k for k, a in recipe.activations.items() if a.quant.scheme == TWIN}
    assert any("softmax" in kinds[k] for k in twins) and any("silu" in kinds[k] for k in twins)
    soft = next(k for k in twins if "softmax" in kinds[k])
    r1, r2 = recipe.activations[soft].quant.scale
    assert r2 == pytest.approx(1 / 7) and (r2 / r1) in {2.0 ** m for m in range(20)}
    gm = quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe))
    assert any(n.target is twin_fake_quant for n in gm.graph.nodes)
    plain = ptq4vit(canonical, PTQ4ViTConfig(w_bits=6, a_bits=4, candidates=20, rounds=1, twin_uniform=False),
                    CalibrationSource(calib), placement="full-integer")
    assert not any(a.quant.scheme == TWIN for a in plain.activations.values())
    with torch.no_grad():
        fp = model(held)

        def sqnr(r):
            out = quantize_with_recipe(canonical, r, quantizer_for("full-integer", r))(held)
            return float(10 * torch.log10(fp.square().sum() / (out - fp).square().sum()))
        assert sqnr(recipe) > sqnr(plain)


def test_deployable_targets_refuse_a_twin_recipe_and_the_simulation_takes_it(explicit, tmp_path):  # noqa: F811
    """No int8 runtime holds two scales on a tensor: every deployable target refuses the recipe,
    naming the tensor, the scheme and what to do; the simulation target lowers and runs it."""
    model, canonical = explicit
    recipe = ptq4vit(canonical, PTQ4ViTConfig(candidates=5, rounds=1), CalibrationSource(torch.rand(8, 1, 28, 28)),
                     placement="full-integer")
    for name in ("executorch-xnnpack", "litert", "onnx-qdq"):
        with pytest.raises(UserError, match=r"twin_uniform activations .* --target simulation"):
            TARGETS.get(name).check(recipe)
    sim = TARGETS.get("simulation")
    sim.check(recipe)
    art = sim.lower(canonical, recipe, tmp_path)
    x = torch.rand(2, 1, 28, 28)
    ref = quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe))(x)
    assert torch.allclose(sim.runner(art.path)(x), ref, atol=1e-5)


def test_cli_ptq4vit_refuses_a_deployable_target_before_calibration_and_falls_back_to_the_simulation(cli, tmp_path):
    """``--method ptq4vit --target executorch-xnnpack``: one line naming the tensor, the scheme and
    ``--target simulation``, exit 2, no bundle, before the search. With no --target the bundle
    holds the simulation (marked so), whose recipe has the twin-uniform tensors."""
    import json

    import numpy as np
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8))
    out = tmp_path / "refused"
    proc = cli("quantize", "mobilevit_fmnist", "--method", "ptq4vit", "--calib", str(calib), "--target",
               "executorch-xnnpack", "--out", str(out), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("edgekit")]
    assert len(lines) == 1 and "twin_uniform" in lines[0] and "--target simulation" in lines[0], lines
    assert not out.exists()
    cfg = tmp_path / "fast.toml"
    cfg.write_text(f'model = "mobilevit_fmnist"\nmethod = "ptq4vit"\ndata_free = false\ncalib_path = "{calib}"\n'
                   "[quant]\ncandidates = 4\nrounds = 1\n")
    out = tmp_path / "bundle"
    proc = cli("quantize", "--config", str(cfg), "--eval-samples", "64", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["runtime"] for a in manifest["artifacts"]] == ["simulation"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert any(a["quant"]["scheme"] == TWIN for a in recipe["activations"].values())


def test_ptq4vit_on_a_users_pt2_with_its_own_normalisation(tmp_path):
    """A user's hybrid (torch's TransformerEncoderLayer, fused attention) exported the usual way at
    batch 1, with MNIST's mean and std: its GELU output gets the signed twin-uniform form (R1
    covering [min GELU, 0]); the softmax inside fused attention has no tensor of its own."""
    from edgekit import api
    from tests.quant.test_qhyvit import UserHybrid
    torch.manual_seed(0)
    path = tmp_path / "user_hybrid.pt2"
    torch.export.save(torch.export.export(UserHybrid().eval(), (torch.randn(1, 1, 28, 28),)), str(path))
    recipe = api.quantize(str(path), PTQ4ViTConfig(candidates=6, rounds=1), torch.rand(8, 1, 28, 28),
                          mean=[0.1307], std=[0.3081], pixel_scale=1 / 255, placement="full-integer")
    gelu = recipe.activations["gelu"].quant
    assert gelu.scheme == TWIN and gelu.range_min < 0
    n = 2 ** (gelu.bits - 1)
    assert gelu.scale[0] == pytest.approx(-TWIN_OPS[torch.ops.aten.gelu.default] / n)
