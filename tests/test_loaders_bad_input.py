"""Loaders under broken input (issue 8): artifacts are checked before a native runtime sees them,
a file that crashes a runtime does so in a child process, and calibration data is validated.
Each case: exit code 2, one line on stderr naming the file and what to do."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tests.profiling.conftest import build_tiny_bundle
from tests.profiling.test_agent_contract import crashing_pte


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny") / "b")


def _one_line(proc, *fragments):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("edgekit: error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], lines[0]


def _eval(cli, path):
    return cli("eval", str(path), "--dataset", "fashion-mnist", "--limit", "4", "--no-progress")


def test_eval_a_pte_of_random_bytes(cli, tmp_path):
    p = tmp_path / "model.pte"
    p.write_bytes(os.urandom(5000))
    _one_line(_eval(cli, p), "model.pte", "not an ExecuTorch program")  # SIGABRT before


def test_eval_a_pte_that_crashes_the_runtime(cli, tiny, tmp_path):
    _one_line(_eval(cli, crashing_pte(tiny, tmp_path)), "crashed (SIGABRT)", "model.pte")


@pytest.mark.parametrize("name", ["model.pte", "model.tflite", "model.onnx"])
def test_eval_and_profile_a_truncated_artifact(cli, tiny, tmp_path, name):
    p = tmp_path / name
    data = (tiny / name).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _one_line(_eval(cli, p), name)  # exit 1 with a library exception before
    _one_line(cli("profile", str(p), "--runs", "1", "--warmup-runs", "0"), name)  # no runtime log line


def test_eval_a_file_of_another_format(cli, tiny, tmp_path):
    p = tmp_path / "model.tflite"
    p.write_bytes((tiny / "model.pte").read_bytes())
    _one_line(_eval(cli, p), "model.tflite", "TFL3")


def _tiny_calib(cli, tmp_path, calib):
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--calib", str(calib), "--out", str(out),
            "--no-progress", "--dataset", "fashion-mnist", "--eval-samples", "8")
    assert not out.exists()
    return p


def test_calibration_npz_with_nan_names_the_sample(cli, tmp_path):
    x = np.zeros((8, 1, 28, 28), np.float32)
    x[5, 0, 3, 3] = np.nan
    np.savez(tmp_path / "calib.npz", images=x)
    _one_line(_tiny_calib(cli, tmp_path, tmp_path / "calib.npz"), "calib.npz", "sample 5", "NaN")


def test_calibration_npz_damaged_and_pickled(cli, tmp_path):
    (tmp_path / "calib.npz").write_bytes(b"PK\x03\x04" + os.urandom(300))
    _one_line(_tiny_calib(cli, tmp_path, tmp_path / "calib.npz"), "calib.npz", "not a readable .npz")
    np.savez(tmp_path / "obj.npz", images=np.array([{"a": 1}], dtype=object))
    _one_line(_tiny_calib(cli, tmp_path, tmp_path / "obj.npz"), "obj.npz")


def test_calibration_folder_with_a_broken_image_names_it(cli, tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(d / "a.png")
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    _one_line(_tiny_calib(cli, tmp_path, d), "b.png", "cannot be read as an image")


def test_zoo_model_calibration_outside_its_input_range(cli, tmp_path):
    x = np.full((4, 1, 28, 28), 50.0, np.float32)  # not normalised: far above pixel 255
    np.savez(tmp_path / "calib.npz", images=x)
    out = tmp_path / "bundle"
    p = cli("quantize", "--calib", str(tmp_path / "calib.npz"), "--out", str(out), "--no-progress")
    _one_line(p, "sample 0", "outside the model's input range")
    assert not out.exists()
