"""The Python API (edgekit.quantize / export / evaluate / profile) on models held as nn.Modules,
and examples/quantize_your_model.py run as a user would."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.errors import UserError
from tests.fixtures.models import tiny_bn

ROOT = Path(__file__).resolve().parents[1]
X = torch.zeros(1, 1, 28, 28)


@pytest.fixture(scope="module")
def model():
    return tiny_bn()


def test_api_names_are_the_functions():
    from edgekit import api
    assert edgekit.quantize is api.quantize and edgekit.evaluate is api.evaluate
    with pytest.raises(AttributeError):
        edgekit.nope  # noqa: B018


def test_quantize_export_evaluate_profile_on_real_calibration(model, tmp_path):
    calib = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    recipe = edgekit.quantize(model, calibration=calib, method="ptq", example_input=X)
    assert recipe.filled and recipe.method == "ptq"
    art = edgekit.export(model, recipe, "executorch-xnnpack", tmp_path / "m.pte", example_input=X)
    assert art.path == tmp_path / "m.pte" and art.path.is_file() and art.side_files["etrecord"].is_file()
    assert not list(tmp_path.glob(".edgekit-export.*"))
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    m = edgekit.evaluate(art, images, model=model, example_input=X, recipe=recipe)
    assert m["runtime"] == "executorch" and m["agreement_with_simulation"] >= 0.9
    assert m["sqnr_db_vs_fp32"] > 15
    trace = edgekit.profile(art, runs=3, warmup_runs=1, trace_ops=False)
    assert len(trace.latency_ms) == 3 and trace.latency["p50"] > 0


def test_bad_input_is_one_line_user_errors(model, tmp_path):
    with pytest.raises(UserError, match="example_input"):
        edgekit.quantize(model)
    with pytest.raises(UserError, match="needs calibration data"):
        edgekit.quantize(model, method="ptq", example_input=X)
    with pytest.raises(UserError, match=r"calibration images have shape \(4, 3, 28, 28\)"):
        edgekit.quantize(model, calibration=torch.zeros(4, 3, 28, 28), method="ptq", example_input=X)
    with pytest.raises(UserError, match="unknown quantization method"):
        edgekit.quantize(model, method="nope", example_input=X)
    with pytest.raises(UserError, match="writes .pte files"):
        edgekit.export(model, None, "executorch-xnnpack", tmp_path / "m.tflite", example_input=X)
    keep = tmp_path / "mine.pte"
    keep.write_bytes(b"the user's file")
    with pytest.raises(UserError, match="exists"):
        edgekit.export(model, None, "executorch-xnnpack", keep, example_input=X)
    assert keep.read_bytes() == b"the user's file"
    with pytest.raises(UserError, match="not a .pte, .tflite or .onnx"):
        edgekit.evaluate(tmp_path / "x.bin", torch.zeros(1, 1, 28, 28))


@pytest.mark.slow
def test_example_runs_as_a_user_would(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quantize_your_model.py"), str(tmp_path), "--quick"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model.pte", "model.tflite", "trace.json"):
        assert (tmp_path / name).is_file(), name
    tops = [float(v) for v in re.findall(r"top-1 ([\d.]+)%", proc.stdout)]
    assert len(tops) == 2 and min(tops) > 85, proc.stdout  # FP32 93.8% on the full split
    assert "latency p50" in proc.stdout
