"""What every runtime's profiling shares: the runtimes a machine has, the timing loops,
reproducible inputs and the run metadata. Imports no runtime module (they import this)."""
from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path
from typing import Any


def available_runtimes() -> dict[str, bool]:
    """Which registered runtimes this machine can run, without importing them."""
    from edgekit.registry import RUNTIMES

    return {n: RUNTIMES.get(n).installed() for n in RUNTIMES.names()}


def base_metadata(spec, artifact: Path, sha256: str) -> dict[str, Any]:
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
