"""TensorRT (NVIDIA GPUs, Jetson): an explicit-quantization ONNX (.onnx, the ``tensorrt``
target's artifact) built into a strongly typed engine and profiled by ``trtexec``, on the device.

``trtexec`` is found as ``$EDGEKIT_TRTEXEC``, ``trtexec`` on the PATH, or JetPack's
``/usr/src/tensorrt/bin/trtexec``. One call builds the engine (``--stronglyTyped``: the Q/DQ
types decide the precisions; the build's kernel timings cached in ``--timingCacheFile``, kept
under ``~/.cache/edgekit/tensorrt``, so a second build of a similar model is fast), times
``warmup_runs + runs`` inferences with ``--exportTimes`` (per inference, ``latencyMs``:
host-to-device copy, compute and copy back), and then, in a separate profiling run
(``--separateProfileRun``, so the per-layer timers do not slow the timed runs), writes
``--exportProfile`` (``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs",
"percentage"}, ...]``) and ``--exportLayerInfo`` with ``--profilingVerbosity=detailed``
(``{"Layers": [{"Name", "LayerType", "Inputs", "Outputs", "TacticName", "Metadata"}, ...]}``).

TensorRT fuses ONNX nodes into layers: a layer's ``Metadata`` lists them
(``[ONNX Layer: node_conv2d]`` entries, TensorRT 10) and its name joins them (``node_conv2d +
node_relu``, ``PWN(node_a, node_b)``, ``{ForeignNode[node_x...node_y]}``). Each layer is mapped
to the module of its first compute node through the exporter's metadata
(``edgekit.runtimes.onnxruntime.node_modules``); a reformatting layer TensorRT inserted goes to the
node it feeds (mapping "adjacent"). Per-layer durations are trtexec's medians over the profiling
run (one value per event; the trace's latency keeps every run).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES
from edgekit.runtimes.base import REMAKE, Runtime, Session
from edgekit.runtimes.onnxruntime import OnnxRuntime, node_modules
from edgekit.runtimes.trace import Event, Trace

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def find_trtexec() -> str | None:
    """The trtexec binary: ``$EDGEKIT_TRTEXEC``, ``trtexec`` on the PATH, or JetPack's; None."""
    for cand in (os.environ.get("EDGEKIT_TRTEXEC"), shutil.which("trtexec"), JETPACK_TRTEXEC):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def timing_cache() -> Path:
    """Where the build's timing cache lives (one per device user)."""
    d = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit" / "tensorrt"
    d.mkdir(parents=True, exist_ok=True)
    return d / "timing.cache"


def _trtexec(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    exe = find_trtexec()
    if exe is None:
        raise RUNTIMES.get("tensorrt").missing(FileNotFoundError("trtexec not found"))
    try:
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"trtexec did not finish {what} within {timeout:g} s") from None
    if r.returncode != 0:
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "[E]" in ln or "rror" in ln]
        tail = (r.stderr or r.stdout).strip().splitlines()
        why = lines[-1] if lines else tail[-1] if tail else "no message"
        raise UserError(f"TensorRT could not {what} ({why.strip()[:200]}); check the model with "
                        f"'edgekit targets check FILE.onnx --target tensorrt'; {REMAKE}")
    return r


def build_args(onnx_path: Path, engine: Path) -> list[str]:
    """trtexec flags that build a strongly typed engine from an explicit-quantization ONNX."""
    return [f"--onnx={onnx_path}", "--stronglyTyped", f"--saveEngine={engine}",
            f"--timingCacheFile={timing_cache()}", "--profilingVerbosity=detailed", "--skipInference"]


def layer_nodes(layer: dict[str, Any], known: set[str]) -> list[str]:
    """ONNX node names a TensorRT layer holds: from its Metadata (``[ONNX Layer: X]``), else the
    known node names that occur in its name, in order of appearance."""
    names = _ONNX_LAYER.findall(str(layer.get("Metadata") or ""))
    if names:
        return names
    text = str(layer.get("Name") or layer.get("name") or "").replace("...", " ")  # ForeignNode[first...last]
    found = [(text.find(n), n) for n in known if re.search(rf"(?<![\w/.]){re.escape(n)}(?![\w/.])", text)]
    return [n for _, n in sorted(found)]


def events_from_trtexec(profile: list[dict[str, Any]], layers: dict[str, Any], onnx_path: Path) -> list[Event]:
    """Per-layer events (ms, trtexec's median) from the exported profile and layer info, each
    mapped to the module of its first compute ONNX node (``edgekit.runtimes.onnxruntime.node_modules``)."""
    modules = node_modules(onnx_path)
    ops = _node_ops(onnx_path)
    info = {str(layer.get("Name")): layer for layer in (layers.get("Layers") or []) if isinstance(layer, dict)}
    events = []
    for order, rec in enumerate(r for r in profile if isinstance(r, dict) and "name" in r):
        name = str(rec["name"])
        layer = info.get(name, {"Name": name})
        nodes = layer_nodes(layer, set(modules) | set(ops))
        compute = [n for n in nodes if ops.get(n) not in _QDQ_OPS] or nodes
        mod = next((modules[n] for n in compute if n in modules), None)
        reformat = name.startswith("Reformatting") or layer.get("LayerType") == "Reformat"
        ms = rec.get("medianMs", rec.get("averageMs", 0.0))
        events.append(Event(
            name=name, backend_op=str(layer.get("LayerType") or (ops.get(compute[0]) if compute else "?")),
            durations_ms=[float(ms)], backend="TensorRT", delegated=True,
            module=mod[0] if mod else None, module_type=mod[1] if mod else None,
            module_hierarchy=list(mod[2]) if mod else [],
            mapping=("adjacent" if reformat else "name") if mod else None, order=order))
    return events


def _node_ops(path: Path) -> dict[str, str]:
    try:
        import onnx
        return {n.name: n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    except Exception:
        return {}


class _TrtSession(Session):
    """An engine built once; each ``run`` is one trtexec inference (``--loadInputs``,
    ``--exportOutput``): slow, for checking agreement on a few images on the device."""

    def __init__(self, path: Path) -> None:
        import onnx
        self._dir = tempfile.TemporaryDirectory(prefix="edgekit-trt.")
        self.engine = Path(self._dir.name) / "model.engine"
        _trtexec(build_args(path, self.engine), 3600, f"build an engine from {path.name}")
        g = onnx.load(str(path), load_external_data=False).graph
        init = {t.name for t in g.initializer}
        self._names = [i.name for i in g.input if i.name not in init]
        self.inputs = [([d.dim_value or 1 for d in i.type.tensor_type.shape.dim], "float32")
                       for i in g.input if i.name not in init]

    def run(self, arrays: list) -> list:
        import numpy as np

        d = Path(self._dir.name)
        loads = []
        for k, (name, a) in enumerate(zip(self._names, arrays)):
            f = d / f"in{k}.bin"
            np.ascontiguousarray(a, np.float32).tofile(f)
            loads.append(f"'{name}':{f}")
        out = d / "out.json"
        _trtexec([f"--loadEngine={self.engine}", f"--loadInputs={','.join(loads)}", f"--exportOutput={out}",
                  "--iterations=1", "--warmUp=0", "--duration=0"], 600, "run the engine")
        return [np.asarray(o["values"], np.float32).reshape([int(x) for x in str(o["dimensions"]).split("x")])
                for o in json.loads(out.read_text())]


class TensorRtRuntime(Runtime):
    """TensorRT through ``trtexec`` (the device's; see the module docstring)."""

    name, suffix, aliases = "tensorrt", ".onnx", ("trt", "trtexec")
    package, requirement = "tensorrt", "TensorRT (trtexec: JetPack on a Jetson, or NVIDIA's TensorRT package)"
    min_bytes, preference = 16, 4

    def installed(self) -> bool:
        return find_trtexec() is not None

    def check_format(self, head: bytes, size: int, name: str) -> None:
        OnnxRuntime.check_format(self, head, size, name)

    def load(self, path: Path, threads: int | None = None) -> Session:
        return _TrtSession(Path(path))

    def probe(self, path: Path) -> None:
        """Parse the ONNX (TensorRT itself runs only in ``load``/``profile``, on the device)."""
        import onnx
        onnx.load(str(path), load_external_data=False)

    def profile(self, path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None) -> Trace:
        """Build the engine and time it with trtexec (see the module docstring); UserError when
        trtexec is missing or refuses the model."""
        path = Path(path)
        total = int(spec.warmup_runs) + int(spec.runs)
        with tempfile.TemporaryDirectory(prefix="edgekit-trt.") as tmp:
            t = Path(tmp)
            args = [a for a in build_args(path, t / "model.engine") if a != "--skipInference"]
            args += ["--warmUp=0", "--duration=0", f"--iterations={total}", "--avgRuns=1",
                     f"--exportTimes={t / 'times.json'}"]
            if spec.trace_ops:
                args += ["--separateProfileRun", f"--exportProfile={t / 'profile.json'}",
                         f"--exportLayerInfo={t / 'layers.json'}"]
            r = _trtexec(args, 3600, f"build and time {path.name}")
            try:
                times = json.loads((t / "times.json").read_text())
                lat = [float(x["latencyMs"]) for x in times][-int(spec.runs):]
                events = events_from_trtexec(json.loads((t / "profile.json").read_text()),
                                             json.loads((t / "layers.json").read_text()), path) if spec.trace_ops else []
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"trtexec wrote no readable timings ({e}); is it TensorRT 8.6 or later?") from None
        version = re.search(r"TensorRT version: ([\d.]+)", r.stdout) or re.search(r"\[TensorRT v(\d+)\]", r.stdout)
        md = dict(metadata, runtime_version=version.group(1) if version else None,
                  tracing="trtexec" if spec.trace_ops else "none", threads=None,
                  op_statistic="median of trtexec's profiling run")
        return Trace(metadata=md, latency_ms=lat, events=events)


RUNTIMES.register("tensorrt", TensorRtRuntime())
