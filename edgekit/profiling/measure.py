"""What every runner shares: the runtimes a machine has, the timing loops, reproducible inputs
and the run metadata. Imports nothing from the runners (they import this)."""
from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

from edgekit.errors import UserError
from edgekit.profiling.spec import JobSpec

#: runtime -> (module to import, pip requirement) for the "device lacks the runtime" message
RUNTIME_PACKAGES = {
    "executorch": ("executorch.runtime", "executorch==1.5.1"),
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert==2.3.0 (or tflite-runtime)"),
    "onnxruntime": ("onnxruntime", "onnxruntime==1.31.1"),
}


def available_runtimes() -> dict[str, bool]:
    """Which runtimes this machine can run, without importing them (importlib.util.find_spec)."""
    import importlib.util

    out = {}
    for rt, (mod, _) in RUNTIME_PACKAGES.items():
        top = mod.split(".")[0]
        ok = importlib.util.find_spec(top) is not None
        if rt == "litert" and not ok:
            ok = importlib.util.find_spec("tflite_runtime") is not None
        out[rt] = ok
    return out


def missing_runtime(runtime: str, err: BaseException) -> UserError:
    """The UserError for a device without ``runtime`` installed."""
    _, req = RUNTIME_PACKAGES[runtime]
    return UserError(f"this device lacks the {runtime} runtime ({err}); install {req} there, "
                     "or pick another --runtime")


def base_metadata(spec: JobSpec, artifact: Path, sha256: str) -> dict[str, Any]:
    """Run metadata common to all runners (device, OS, artifact facts, run counts)."""
    uname = platform.uname()
    return {
        "device": os.environ.get("EDGEKIT_DEVICE_NAME") or socket.gethostname(),
        "hostname": socket.gethostname(),
        "os": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runtime": spec.runtime,
        "threads": spec.threads,
        "warmup_runs": int(spec.warmup_runs),
        "runs": int(spec.runs),
        "artifact": artifact.name,
        "artifact_bytes": artifact.stat().st_size,
        "artifact_sha256": sha256,
        "transport": "local",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "aggregated": False,
    }


def make_input(shape: list[int], dtype: str, seed: int = 0):
    """A reproducible random input (numpy array) of ``shape`` and ``dtype``: standard normal
    for floats, the dtype's full range for integers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dt)


def timed_loop(fn, warmup_runs: int, runs: int) -> list[float]:
    """Call ``fn()`` ``warmup_runs`` times untimed, then ``runs`` times; per-call wall time (ms)."""
    for _ in range(warmup_runs):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def interleaved_loops(timed_fn, traced_fn, warmup_runs: int, runs: int,
                      block: int = 10) -> tuple[list[float], list[float]]:
    """Time ``timed_fn`` (untraced) and ``traced_fn`` (the same model with per-operator tracing)
    ``runs`` times each, alternating in blocks of ``block`` calls so that drift in the machine's
    load hits both alike; ``warmup_runs`` untimed calls of each first.

    Returns ``(latency_ms, traced_latency_ms)``: per-call wall time (ms) of each. The end-to-end
    latency a trace reports comes from the untraced calls, so the tracer's own bookkeeping
    (ExecuTorch's XNNPACK profiler logs every operator after each run) does not inflate it; the
    per-operator durations come from the runtime's timers inside the traced calls.
    """
    for _ in range(warmup_runs):
        timed_fn()
        traced_fn()
    lat: list[float] = []
    traced: list[float] = []
    while len(lat) < runs:
        n = min(block, runs - len(lat))
        lat.extend(timed_loop(timed_fn, 0, n))
        traced.extend(timed_loop(traced_fn, 0, n))
    return lat, traced
