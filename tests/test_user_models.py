"""Models as users export them (issue 9, parts 1, 2 and 7): a .pt2 specialised to batch 1 whose
forward flattens with the traced batch, a factory whose code fixes the batch, preprocessing that
is declared (never guessed from a shape), and one-line refusals for what is not supported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekit.models.canonical import canonicalize
from edgekit.synth.bn_loss import BNStatLoss
from tests.fixtures.models import TwoInputs, export_static_pt2, static_flatten

SMALL = ["--num-samples", "8", "--iterations", "5", "--no-progress"]


def _one_line(proc, *fragments):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgekit: error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def static_pt2(tmp_path_factory):
    p = tmp_path_factory.mktemp("user") / "user.pt2"
    export_static_pt2(p)
    return p


def test_a_static_batch_program_keeps_whole_batch_bn_statistics(static_pt2):
    """The BN-statistics loss of 8 images through the batch-1 program (8 runs) equals the loss
    of the same 8 images through the same network exported with a dynamic batch (one run)."""
    static = canonicalize(torch.export.load(str(static_pt2)), torch.zeros(1, 3, 32, 32), "static")
    dynamic = canonicalize(static_flatten(), torch.zeros(1, 3, 32, 32), "dynamic")
    assert static.batch == 1 and dynamic.batch is None
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = BNStatLoss(static.unfolded, static.batch).loss(x)
    b = BNStatLoss(dynamic.unfolded, dynamic.batch).loss(x)
    assert torch.allclose(a, b, rtol=1e-4), (a, b)
    assert torch.allclose(static.run(static.graph_module, x), dynamic.run(dynamic.graph_module, x), atol=1e-4)


@pytest.mark.slow
def test_data_free_on_a_static_batch_pt2_with_declared_preprocessing(cli, static_pt2, tmp_path):
    out = tmp_path / "b"
    p = cli("quantize", str(static_pt2), "--data-free", "--out", str(out), "--mean", "0.5", "--std", "0.25", *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["static_batch"] == 1 and m["model"]["input_shape"] == [1, 3, 32, 32]
    assert m["preprocessing"]["source"] == "user" and m["preprocessing"]["input_range"] == [-2.0, 2.0]
    assert {a["file"] for a in m["artifacts"]} == {"model.pte", "model.tflite"}
    rec = json.loads((out / "recipe.json").read_text())
    x = next(a for k, a in rec["activations"].items() if k == "x" or k.startswith("x"))["quant"]
    assert x["range_min"] == pytest.approx(-2.0, abs=1e-3) and x["range_max"] == pytest.approx(2.0, abs=1e-3)


@pytest.mark.slow
def test_real_calibration_on_a_factory_that_hard_codes_its_batch(cli, tmp_path):
    np.savez(tmp_path / "calib.npz", images=np.random.default_rng(0).normal(size=(6, 3, 32, 32)).astype(np.float32))
    out = tmp_path / "b"
    p = cli("quantize", "tests.fixtures.models:hard_coded_batch", "--calib", str(tmp_path / "calib.npz"),
            "--target", "executorch-xnnpack", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["static_batch"] == 1 and m["preprocessing"]["source"] == "calibration data"
    assert any("no dataset and no pixel bound" in n for n in m["notes"]) and "note: preprocessing" in p.stdout


def test_no_dataset_is_guessed_from_a_28x28_input(tmp_path):
    from edgekit.models.zoo import load_model
    loaded = load_model("tests.fixtures.models:tiny_bn")
    assert loaded.dataset is None and loaded.preprocess is None


def test_genie_on_a_static_batch_program_is_refused(cli, static_pt2, tmp_path):
    _one_line(cli("quantize", str(static_pt2), "--data-free", "--method", "genie", "--out", str(tmp_path / "b")),
              "static batch of 1", "--method zeroq")


def _save(model, args, path, **kw):
    torch.export.save(torch.export.export(model, args, **kw), str(path))
    return path


def test_programs_edgekit_cannot_take_are_refused_in_one_line(cli, tmp_path):
    two = _save(TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)), tmp_path / "two.pt2")
    _one_line(cli("quantize", str(two), "--data-free", "--out", str(tmp_path / "b")), "takes 2 inputs")
    flat = _save(torch.nn.Linear(16, 4), (torch.randn(1, 16),), tmp_path / "flat.pt2")
    _one_line(cli("quantize", str(flat), "--data-free", "--out", str(tmp_path / "b")), "2-D float32", "image")
    conv = torch.nn.Conv2d(3, 4, 3)
    h = torch.export.Dim("h", min=8, max=64)
    dyn = _save(conv, (torch.randn(1, 3, 16, 16),), tmp_path / "dyn.pt2", dynamic_shapes=({2: h},))
    _one_line(cli("quantize", str(dyn), "--data-free", "--out", str(tmp_path / "b")), "dynamic H dimension")


@pytest.mark.parametrize("flags,fragment", [
    (["--mean", "0.5"], "--mean and --std together"),
    (["--mean", "0.5,0.5", "--std", "0.2,0.2"], "3 channels"),
    (["--input-range", "1,0"], "LO < HI"),
    (["--input-range", "0,1", "--mean", "0", "--std", "1"], "not both"),
    (["--pixel-scale", "abc", "--mean", "0", "--std", "1"], "--pixel-scale"),
])
def test_bad_preprocessing_declarations(cli, static_pt2, tmp_path, flags, fragment):
    _one_line(cli("quantize", str(static_pt2), "--data-free", "--out", str(tmp_path / "b"), *flags), fragment)


@pytest.mark.slow
def test_evaluation_on_the_users_folder_and_held_out_without_labels(cli, static_pt2, tmp_path):
    """--eval-data as a class-per-folder image set gives top-1 with the declared preprocessing;
    without evaluation data the bundle records agreement and SQNR on held-out images, no top-1."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "eval" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "eval" / cls / f"{i}.png")
    (tmp_path / "eval" / "classes.txt").write_text("dog\ncat\n")  # dog = 0, cat = 1
    out = tmp_path / "b"
    p = cli("quantize", str(static_pt2), "--data-free", "--out", str(out), "--mean", "0.5", "--std", "0.25",
            "--eval-data", str(tmp_path / "eval"), "--target", "executorch-xnnpack", *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads((out / "manifest.json").read_text())["evaluation"]
    assert ev["data"]["kind"] == "folder" and ev["num_samples"] == 6 and ev["reference"]["fp32"]["top1"] is not None
    (r,) = ev["results"]
    assert 0 <= r["top1"] <= 1 and r["agreement_with_simulation"] >= 5 / 6
    p = cli("eval", str(out), "--eval-data", str(tmp_path / "eval"), "--json", "--no-progress")
    assert p.returncode == 0 and json.loads(p.stdout)["results"][0]["top1"] == r["top1"], p.stderr[-2000:]

    out2 = tmp_path / "b2"
    p = cli("quantize", str(static_pt2), "--data-free", "--out", str(out2), "--target", "executorch-xnnpack", *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out2 / "manifest.json").read_text())
    ev = m["evaluation"]
    assert ev["data"]["kind"] == "held-out synthetic images" and "fp32" not in ev["reference"]
    assert ev["num_samples"] == 1 and m["quantization"]["calibration"]["num_samples"] == 7
    (r,) = ev["results"]
    assert "top1" not in r and "agreement_with_fp32" in r and "sqnr_db_vs_fp32" in r


def test_bad_evaluation_data_is_refused_before_any_work(cli, static_pt2, tmp_path):
    np.savez(tmp_path / "e.npz", images=np.zeros((4, 3, 32, 32), np.float32), labels=np.zeros(3, np.int64))
    _one_line(cli("quantize", str(static_pt2), "--data-free", "--out", str(tmp_path / "b"),
                  "--eval-data", str(tmp_path / "e.npz")), "labels", "N = 4")
    (tmp_path / "flat").mkdir()
    _one_line(cli("quantize", str(static_pt2), "--data-free", "--out", str(tmp_path / "b"),
                  "--eval-data", str(tmp_path / "flat")), "no class subfolders")


@pytest.mark.slow
def test_ops_a_target_cannot_quantize_stay_float_and_are_reported(cli, tmp_path):
    """Hard-swish, squeeze-excite (mean, sigmoid), pad, clamp and a concat: lowered anyway (the
    .pte used to be refused when XNNPACK left a mean outside its delegate), each artifact lists
    its float and non-delegated ops, and its p50 latency is measured beside its fp32 twin's. The
    clamp is rewritten to a hardtanh, which int8 backends run with its input's scale."""
    out = tmp_path / "b"
    p = cli("quantize", "tests.fixtures.models:mixed_ops", "--data-free", "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    arts = {a["file"]: a for a in m["artifacts"]}
    pte, tfl = arts["model.pte"], arts["model.tflite"]
    assert pte["ops"]["ops_delegated"] < pte["ops"]["ops_total"]
    assert {"op": "aten.mean.dim", "module": ""} in pte["ops"]["not_delegated"]
    floats = {o["op"] for o in pte["ops"]["float_ops"]}
    assert floats >= {"hardswish", "sigmoid"} and not floats & {"clamp", "hardtanh"}  # clamp became a shared-scale hardtanh
    assert {"op": "hardswish", "module": "act"} in tfl["ops"]["float_ops"]
    for a in (pte, tfl):
        assert a["latency_p50_ms"] > 0 and a["fp32_latency_p50_ms"] > 0
        assert a.get("slower_than_fp32", False) == (a["latency_p50_ms"] > a["fp32_latency_p50_ms"])
        if a.get("slower_than_fp32"):
            assert a["slow_ops"] and "slower than its fp32 twin" in p.stdout
    assert all(r["agreement_with_simulation"] == 1.0 for r in m["evaluation"]["results"])


@pytest.mark.slow
def test_a_non_square_model_with_a_map_output_and_constant_operands(cli, tmp_path):
    """A 3x16x48 input (non-square), a multiply by a constant tensor (its observer takes the
    constant's own range: the recipe used to have no entry for it), a probability map as output:
    data-free quantization runs, and the evaluation on the user's unlabelled images records SQNR
    against FP32 only (argmax agreement and top-1 mean nothing for a map), here and in eval."""
    from tests.fixtures.models import text_map
    pt2 = _save(text_map(), (torch.randn(1, 3, 16, 48),), tmp_path / "map.pt2")
    np.savez(tmp_path / "ev.npz", images=np.random.default_rng(0).integers(0, 256, (4, 16, 48, 3), dtype=np.uint8))
    out = tmp_path / "b"
    p = cli("quantize", str(pt2), "--data-free", "--mean", "0.5", "--std", "0.5", "--eval-data",
            str(tmp_path / "ev.npz"), "--target", "executorch-xnnpack", "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    ev = m["evaluation"]
    assert ev["num_samples"] == 4 and "fp32" not in ev["reference"] and "no labels" in ev["data"]["note"]
    (r,) = ev["results"]
    assert "agreement_with_fp32" not in r and "top1" not in r and "not class scores" in r["output"]
    assert r["sqnr_db_vs_fp32"] > 15 and r["sqnr_db_vs_simulation"] > 25
    p = cli("eval", str(out), "--eval-data", str(tmp_path / "ev.npz"), "--json", "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["results"][0]["sqnr_db_vs_fp32"] == pytest.approx(r["sqnr_db_vs_fp32"], abs=0.01)


def test_declared_mean_std_take_a_number_or_a_list_and_refuse_anything_else():
    from edgekit.data.datasets import declared_preprocess
    from edgekit.errors import UserError
    one = declared_preprocess((1, 3, 8, 8), 0.5, 0.25)  # a plain number, as api.quantize users write it
    per_channel = declared_preprocess((1, 3, 8, 8), [0.5, 0.5, 0.5], (0.25,) * 3)
    assert one.mean == per_channel.mean == (0.5,) * 3 and one.std == (0.25,) * 3
    for bad in ("abc", [], object(), [0.1, "x"]):
        with pytest.raises(UserError, match="--mean"):
            declared_preprocess((1, 3, 8, 8), bad, 0.25)
