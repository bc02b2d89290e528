"""``edgekit targets list|check`` and ``edgekit quantize --target tensorrt --target qnn-htp`` on a
user's model: a .pt2 exported the usual way (static batch 1) with its own normalisation, and
ops the CPU delegates leave float."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.models import export_static_pt2


def test_targets_list_says_what_each_target_runs_writes_and_needs(cli):
    r = cli("targets", "list")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name in ("executorch-xnnpack", "litert", "onnx-qdq", "tensorrt", "qnn-htp", "simulation"):
        assert f"\n{name}  (." in "\n" + out, name
    trt = out[out.index("tensorrt  ("):]
    assert "8-bit per-tensor, symmetric" in trt and "rules checker" in trt and "trtexec" in trt.split("\n")[2]
    qnn = out[out.index("qnn-htp  ("):]
    assert "8/16-bit per-tensor" in qnn and "4/8-bit" in qnn and "QNN SDK" in qnn
    pte_qnn = out[out.index("executorch-qnn  ("):].split("\n")[2]  # never built here: says so, not "run in executorch"
    assert "checked here: nothing (" in pte_qnn and "qnn-htp" in pte_qnn and "run in" not in pte_qnn


@pytest.fixture(scope="module")
def user_bundle(tmp_path_factory):
    """`edgekit quantize` of the user's static-batch .pt2, real calibration images, for tensorrt and qnn-htp."""
    from tests.conftest import run_cli
    d = tmp_path_factory.mktemp("user")
    export_static_pt2(d / "user.pt2")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", images=rng.uniform(0, 1, size=(24, 3, 32, 32)).astype(np.float32))
    out = d / "b"
    r = run_cli("quantize", str(d / "user.pt2"), "--calib", str(d / "calib.npz"), "--mean", "0.5", "--std", "0.25",
                "--pixel-scale", "1", "--target", "tensorrt", "--target", "qnn-htp", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_quantize_for_tensorrt_and_qnn_on_a_users_static_pt2(user_bundle):
    out, r = user_bundle
    m = json.loads((out / "manifest.json").read_text())
    arts = {a["target"]: a for a in m["artifacts"]}
    trt, qnn = arts["tensorrt"], arts["qnn-htp"]
    assert trt["file"] == "model_tensorrt.onnx" and trt["runtime"] == "tensorrt" and trt["checked_in"] == "onnxruntime"
    assert trt["ops"]["rules"]["violations"] == 0 and "latency_p50_ms" not in trt  # timed on the device, not here
    assert qnn["file"] == "model_qnn.onnx" and qnn["ops"]["qnn_preset"] == "8a8w"
    assert (out / qnn["encodings"]).is_file() and (out / qnn["float_onnx"]).is_file()
    assert m["quantization"]["activation_symmetric"] is True  # TensorRT's rule decides the one recipe
    for res in m["evaluation"]["results"]:
        assert res["runtime"] == "onnxruntime" and res["agreement_with_simulation"] == 1.0
    assert "top1" not in m["evaluation"]["results"][0]  # no labels: agreement and SQNR on held-out images only


def test_targets_check_passes_edgekits_files_and_refuses_others(cli, user_bundle, tmp_path):
    out, _ = user_bundle
    for f, t in (("model_tensorrt.onnx", "tensorrt"), ("model_qnn.onnx", "qnn-htp")):
        r = cli("targets", "check", str(out / f), "--target", t)
        assert r.returncode == 0 and f"passes the {t} rules" in r.stdout, r.stdout + r.stderr
    r = cli("targets", "check", str(out / "model_qnn.onnx"), "--target", "tensorrt")  # uint8: not TensorRT's
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "breaks" in last and "tensorrt rule" in last
    assert "[int8-only]" in r.stdout and "node node_quantize_per_tensor" in r.stdout
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00\x01not onnx at all, just bytes")
    for args, fragment in (((str(bad), "--target", "tensorrt"), "not an ONNX model"),
                           ((str(tmp_path / "missing.onnx"), "--target", "tensorrt"), "missing.onnx"),
                           ((str(out / "model_qnn.onnx"), "--target", "litert"), "no rules checker"),
                           ((str(out / "model_qnn.onnx"), "--target", "nope"), "unknown target")):
        r = cli("targets", "check", *args)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("edgekit: error: ") and fragment in last, r.stderr


def test_profile_of_the_tensorrt_file_in_onnxruntime_here(user_bundle, tmp_path):
    """Without trtexec, a bundle's TensorRT ONNX can still be timed in onnxruntime (its check runtime)."""
    import shutil

    from edgekit.profiling.transports import profile_artifact
    out, _ = user_bundle
    m = json.loads((out / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["target"] == "tensorrt"]
    b = tmp_path / "trt_only"
    b.mkdir()
    shutil.copy(out / "model_tensorrt.onnx", b)
    (b / "manifest.json").write_text(json.dumps(m))
    t = profile_artifact(b, "local", "onnxruntime", warmup_runs=1, runs=3)
    assert t.metadata["artifact"] == "model_tensorrt.onnx" and t.metadata["runtime"] == "onnxruntime"
    assert len(t.latency_ms) == 3


def test_eval_of_the_bundle_runs_both_onnx_files_in_onnxruntime(cli, user_bundle, tmp_path):
    out, _ = user_bundle
    images = np.random.default_rng(1).uniform(0, 1, size=(6, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", images=images, labels=np.zeros(6, np.int64))
    r = cli("eval", str(out), "--eval-data", str(tmp_path / "eval.npz"), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    res = {x["file"]: x for x in json.loads(r.stdout)["results"]}
    assert {"model_tensorrt.onnx", "model_qnn.onnx"} <= set(res)
    assert all(res[f]["runtime"] == "onnxruntime" for f in ("model_tensorrt.onnx", "model_qnn.onnx"))


def test_16_bit_activations_are_refused_by_8_bit_targets_in_one_line(cli, tmp_path):
    export_static_pt2(tmp_path / "user.pt2")
    r = cli("quantize", str(tmp_path / "user.pt2"), "--data-free", "--a-bits", "16", "--target", "tensorrt",
            "--out", str(tmp_path / "b"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "activation bit width 16" in last and not (tmp_path / "b").exists()
    r = cli("quantize", str(tmp_path / "user.pt2"), "--data-free", "--a-bits", "12", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "--a-bits 12" in r.stderr.strip().splitlines()[-1]


def test_qnn_pte_target_refuses_without_the_sdk_before_any_work(tmp_path):
    """``--target executorch-qnn`` with no QNN SDK (none can be had here): one line naming what to
    install and the target that works without it, exit 2, no bundle, and nothing of ExecuTorch's
    Qualcomm backend imported (it would try to download the SDK)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    export_static_pt2(tmp_path / "user.pt2")
    code = ("import sys; from edgekit.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    assert not any(m.startswith('executorch.backends.qualcomm') for m in sys.modules), 'imported'\n"
            "    raise\n")
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    for extra in ({}, {"QNN_SDK_ROOT": str(tmp_path)}):  # unset, then a folder that holds no SDK
        r = subprocess.run([sys.executable, "-c", code, "quantize", str(tmp_path / "user.pt2"), "--data-free",
                            "--target", "executorch-qnn", "--out", str(tmp_path / "b")],
                           cwd=ROOT, capture_output=True, text=True, env={**env, **extra}, timeout=600)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, r.stderr[-2000:]
        assert len(lines) == 1 and "QNN SDK" in lines[0] and "QNN_SDK_ROOT" in lines[0] and "qnn-htp" in lines[0]
        assert not (tmp_path / "b").exists()
