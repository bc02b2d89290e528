"""Low-bit quantization through the real CLI: bad input refused in one line with exit code 2, and a
small Genie W4A4 run whose bundle records simulated accuracy honestly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_cli_bad_input import assert_refused

TINY = "tests.fixtures.models:tiny_bn"


def test_genie_without_batchnorm_and_without_calib(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:no_bn", "--data-free", "--method", "genie", "--out", str(out))
    assert_refused(p, out, "no BatchNorm", "--calib")


def test_size_budget_below_the_all_2_bit_model(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--data-free", "--mixed-precision", "--size-budget-kb", "0.05", "--out", str(out))
    assert_refused(p, out, "--size-budget-kb 0.05", "every layer at 2 bits")


@pytest.mark.parametrize("flag", ["--w-bits", "--a-bits"])
def test_bit_width_outside_2_to_8(cli, tmp_path, flag):
    out = tmp_path / "bundle"
    assert_refused(cli("quantize", TINY, "--data-free", "--method", "genie", flag, "1", "--out", str(out)),
                   out, f"{flag} 1", "[2, 3, 4, 5, 6, 7, 8" + ("]" if flag == "--w-bits" else ", 16]"))


def test_mixed_precision_with_a_method_that_does_not_support_it(cli, tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, images=np.zeros((4, 28, 28), np.uint8))
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--calib", str(calib), "--method", "ptq", "--mixed-precision", "--avg-bits", "4",
            "--out", str(out))
    assert_refused(p, out, "--method ptq does not support --mixed-precision", "zeroq")


def test_mixed_precision_on_a_target_without_low_bit_weights(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--data-free", "--mixed-precision", "--avg-bits", "4", "--target", "litert",
            "--out", str(out))
    assert_refused(p, out, "target litert", "--target simulation")


def test_named_target_refuses_4_bits(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--data-free", "--method", "genie", "--w-bits", "4", "--a-bits", "4",
            "--target", "executorch-xnnpack", "--out", str(out))
    assert_refused(p, out, "executorch-xnnpack cannot run layer", "weight bit width 4")


@pytest.mark.slow
def test_small_genie_w4a4_bundle_is_marked_simulation(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--data-free", "--method", "genie", "--w-bits", "4", "--a-bits", "4",
            "--preset", "small", "--eval-samples", "200", "--dataset", "fashion-mnist",
            "--no-progress", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert [a["target"] for a in m["artifacts"]] == ["simulation"]
    assert [r["runtime"] for r in m["evaluation"]["results"]] == ["simulation"]
    assert m["quantization"]["layer_bits"] == {"conv1": 8, "conv2": 4, "fc": 8}
    assert (out / "recipe.weights.npz").exists()


@pytest.mark.slow
def test_mixed_precision_bundle_has_pareto(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", TINY, "--data-free", "--mixed-precision", "--avg-bits", "4", "--num-samples", "16",
            "--iterations", "10", "--eval-samples", "100", "--dataset", "fashion-mnist", "--no-progress",
            "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    mp = m["quantization"]["mixed_precision"]
    assert mp["weight_bytes"] <= mp["budget_bytes"] and mp["avg_weight_bits"] <= 4
    assert (out / "pareto.png").exists() and json.loads((out / "pareto.json").read_text())["chosen"]
    bits = set(m["quantization"]["layer_bits"].values())
    assert bits <= {2, 4, 8}
    # 2-bit weights run nowhere but the simulation; 4/8-bit ones deploy as ONNX int4/int8 QDQ
    assert [r["runtime"] for r in m["evaluation"]["results"]] == ["simulation" if 2 in bits else "onnxruntime"]
