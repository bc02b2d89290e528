"""Profiling a TensorRT ONNX with trtexec, locally and over SSH.

No TensorRT or NVIDIA GPU is here: these tests drive ``tests/profiling/standin/trtexec.py``, a
stand-in that takes trtexec's flags and writes trtexec's documented JSON formats
(``--exportTimes``, ``--exportProfile``, ``--exportLayerInfo`` with detailed verbosity,
``--exportOutput``), with made-up times and onnxruntime's outputs. What is tested is the
transport, the engine build and timing-cache flags, the parsing, and the mapping of fused
layers to the model's modules through the ONNX node names; not TensorRT's speed."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.errors import UserError
from edgekit.profiling.transports import profile_artifact
from edgekit.runtimes.tensorrt import layer_nodes

from .conftest import ROOT, run_cli

STANDIN = ROOT / "tests" / "profiling" / "standin" / "trtexec.py"


@pytest.fixture(scope="module")
def trt_onnx(tmp_path_factory):
    """A TensorRT ONNX of the TinyBN test model (conv, residual add, linear), and an affine
    onnx-qdq ONNX of the same model (which TensorRT refuses)."""
    import edgekit as ek
    from tests.fixtures.models import tiny_bn
    d = tmp_path_factory.mktemp("trt")
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = tiny_bn()
    recipe = ek.quantize(model, ek.PTQConfig(act_estimator="minmax", activation_symmetric=True), x,
                         example_input=x[:1])
    trt = ek.export(model, recipe, "tensorrt", d / "tiny_trt.onnx", example_input=x[:1])
    affine = ek.quantize(model, ek.PTQConfig(act_estimator="minmax"), x, example_input=x[:1])
    qdq = ek.export(model, affine, "onnx-qdq", d / "tiny_affine.onnx", example_input=x[:1])
    return trt.path, qdq.path


@pytest.fixture()
def trtexec(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {STANDIN} \"$@\"\n")
    exe.chmod(0o755)
    monkeypatch.setenv("EDGEKIT_TRTEXEC", str(exe))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return exe


def test_trtexec_trace_maps_fused_layers_to_modules(trt_onnx, trtexec, tmp_path):
    t = profile_artifact(trt_onnx[0], "local", "tensorrt", warmup_runs=2, runs=12)
    assert t.metadata["runtime"] == "tensorrt" and t.metadata["tracing"] == "trtexec"
    assert t.metadata["runtime_version"] == "10.3.0" and len(t.latency_ms) == 12
    mods = {e.module for e in t.events}
    assert {"conv1", "conv2", "fc"} <= mods
    conv2 = next(e for e in t.events if e.module == "conv2")
    assert "node_conv2d_1" in conv2.name and conv2.mapping == "name" and conv2.backend == "TensorRT"
    reformat = t.events[0]
    assert reformat.name.startswith("Reformatting") and reformat.mapping == "adjacent"
    assert all(e.module is not None for e in t.events)  # every layer mapped ("": the model's own forward, the add)
    assert t.mapping_coverage() > 0.6
    assert (tmp_path / "cache" / "edgekit" / "tensorrt" / "timing.cache").is_file()  # the build is timing-cached
    chrome = t.to_chrome_trace()
    assert any(ev.get("name") == conv2.name for ev in chrome["traceEvents"])


def test_cli_profile_of_a_tensorrt_onnx(trt_onnx, trtexec, tmp_path):
    out, chrome = tmp_path / "trace.json", tmp_path / "chrome.json"
    r = run_cli("profile", str(trt_onnx[0]), "--runtime", "tensorrt", "--runs", "5", "--warmup-runs", "1",
                "--trace-out", str(out), "--chrome-trace", str(chrome))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "module mapping covers" in r.stdout and json.loads(out.read_text())["metadata"]["runtime"] == "tensorrt"
    assert chrome.is_file()


def test_tensorrt_refusal_is_one_line(trt_onnx, trtexec):
    # the stand-in, like TensorRT, refuses a non-zero zero point
    r = run_cli("profile", str(trt_onnx[1]), "--runtime", "tensorrt", "--runs", "1")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("edgekit: error: ") and "zeroPt must be all zeros" in last, r.stderr
    assert "edgekit targets check" in last


def test_no_trtexec_is_one_line(trt_onnx, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_TRTEXEC", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec on the PATH either
    if os.path.exists("/usr/src/tensorrt/bin/trtexec"):
        pytest.skip("this machine has JetPack's trtexec")
    with pytest.raises(UserError, match="lacks the tensorrt runtime"):
        profile_artifact(trt_onnx[0], "local", "tensorrt", warmup_runs=0, runs=1)


def test_engine_session_runs_the_onnx(trt_onnx, trtexec):
    """The TensorRT session (engine built once, one trtexec run per call) returns the outputs
    trtexec exported; the stand-in computes them with onnxruntime."""
    from edgekit.registry import RUNTIMES
    s = RUNTIMES.get("tensorrt").load(trt_onnx[0])
    x = np.random.default_rng(0).normal(size=(1, 1, 28, 28)).astype(np.float32)
    y = s.run([x])[0]
    ref = RUNTIMES.get("onnxruntime").load(trt_onnx[0]).run([x])[0]
    assert y.shape == (1, 10) and np.allclose(y, ref, atol=1e-5)


def test_layer_names_without_metadata():
    known = {"node_conv2d", "node_relu", "node_conv2d_1", "node_add", "node_linear"}
    assert layer_nodes({"Name": "node_conv2d + node_relu"}, known) == ["node_conv2d", "node_relu"]
    assert layer_nodes({"Name": "PWN(node_add, node_relu)"}, known) == ["node_add", "node_relu"]
    assert layer_nodes({"Name": "{ForeignNode[node_conv2d_1...node_linear]}"}, known) == ["node_conv2d_1", "node_linear"]
    assert layer_nodes({"Name": "x", "Metadata": "[ONNX Layer: node_add]\x1f[ONNX Layer: node_relu]"}, known) == \
        ["node_add", "node_relu"]


def test_ssh_profile_runs_trtexec_on_the_device(trt_onnx, tmp_path, request):
    """The Jetson path: ``--device ssh://`` runs the job on the "device" (a real sshd on
    loopback, see test_ssh.py), whose trtexec is the stand-in."""
    pytest.importorskip("tests.profiling.test_ssh")
    from tests.profiling import test_ssh
    if not os.path.exists(test_ssh.SSHD):
        pytest.skip("needs openssh-server (/usr/sbin/sshd)")
    sshd = request.getfixturevalue("sshd")
    exe = tmp_path / "trtexec"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {STANDIN} \"$@\"\n")
    exe.chmod(0o755)
    py = tmp_path / "jetson-python"
    py.write_text(f"#!/bin/sh\nEDGEKIT_TRTEXEC={exe} XDG_CACHE_HOME={tmp_path / 'cache'} exec {sshd['python']} \"$@\"\n")
    py.chmod(0o755)
    t = profile_artifact(trt_onnx[0], sshd["device"], "tensorrt", warmup_runs=1, runs=6,
                         ssh_options=sshd["opts"], remote_python=str(py))
    assert t.metadata["transport"] == "ssh" and t.metadata["tracing"] == "trtexec" and len(t.latency_ms) == 6
    assert all(e.module is not None for e in t.events) and (tmp_path / "cache" / "edgekit" / "tensorrt" / "timing.cache").is_file()


from tests.profiling.test_ssh import sshd  # noqa: E402,F401  (the loopback sshd fixture)
