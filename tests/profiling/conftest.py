"""Fixtures for the profiling tests: a small real bundle and a real agent process.

The bundle is built once per session from a tiny conv+BN+ReLU+linear model: a PT2E int8
XNNPACK .pte with its ETRecord, an int8 .tflite from litert-torch and a float .onnx, with a
manifest of the shape ``edgekit quantize`` writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def build_tiny_bundle(out: Path) -> Path:
    """Write a bundle directory for the tiny model into ``out`` and return it."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn1(self.conv1(x)))

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.relu = nn.ReLU()
            self.layer1 = nn.Sequential(Block())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = self.layer1(self.relu(self.bn(self.stem(x))))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    model = Tiny().eval()
    x = (torch.randn(1, 1, 28, 28),)
    calib = [torch.randn(1, 1, 28, 28) for _ in range(4)]
    out.mkdir(parents=True, exist_ok=True)

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, x).module(), q)
    for c in calib:
        prepared(c)
    converted = convert_pt2e(prepared)
    edge = to_edge_transform_and_lower(torch.export.export(converted, x),
                                       partitioner=[XnnpackPartitioner()], generate_etrecord=True)
    prog = edge.to_executorch()
    (out / "model.pte").write_bytes(prog.buffer)
    prog.get_etrecord().save(str(out / "model.etrecord"))

    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config as lcfg
    from litert_torch.quantize.quant_config import QuantConfig

    lq = PT2EQuantizer().set_global(lcfg(is_per_channel=True, is_dynamic=False))
    lp = prepare_pt2e(torch.export.export(model, x).module(), lq)
    for c in calib:
        lp(c)
    lc = convert_pt2e(lp, fold_quantize=False)
    litert_torch.convert(lc, x, quant_config=QuantConfig(pt2e_quantizer=lq)).export(
        str(out / "model.tflite"))

    torch.onnx.export(model, x, str(out / "model.onnx"), dynamo=True, external_data=False)

    def art(name, target, fmt, runtime, **kw):
        data = (out / name).read_bytes()
        return dict({"file": name, "target": target, "format": fmt, "runtime": runtime,
                     "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, **kw)

    manifest = {"version": 1,
                "model": {"name": "tiny", "input_shape": [1, 1, 28, 28], "input_dtype": "float32"},
                "artifacts": [art("model.pte", "executorch-xnnpack", "pte", "executorch",
                                  etrecord="model.etrecord"),
                              art("model.tflite", "litert", "tflite", "litert"),
                              art("model.onnx", "onnx", "onnx", "onnxruntime")]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """The session's tiny bundle directory (do not modify: copy it first)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


class AgentProc:
    """A real ``python -m edgekit.profiling.agent`` process on 127.0.0.1 (free port)."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.token_file = tmp / "token"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.profiling.agent", "--host", "127.0.0.1", "--port", "0",
             "--token-file", str(self.token_file), "--work-dir", str(tmp / "work"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"agent did not start: {line} {self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0]

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in (self.proc.stdout, self.proc.stderr):
            if s:
                s.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = AgentProc(tmp_path_factory.mktemp("agent"))
    yield a
    a.stop()


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The profiling CLI (``python -m edgekit.profiling.cli ARGS``) in a subprocess."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgekit.profiling.cli", *args],
                       capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)
    r.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return r
