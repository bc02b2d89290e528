"""ONNX (.onnx) runner: onnxruntime with its profiler (``SessionOptions.enable_profiling``).

The profiler writes Chrome-trace JSON with one "Node" event per kernel per run
(``<node>_kernel_time``, duration in µs, ``args.op_name``, ``args.provider``). Modules come from
the node metadata that ``torch.onnx.export`` writes (``pkg.torch.onnx.name_scopes``:
``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']``); nodes onnxruntime created while
fusing keep the name of the node they replaced where it does so, else they stay unmapped.
"""
from __future__ import annotations

import ast
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from edgekit.artifacts import native_stderr
from edgekit.errors import UserError
from edgekit.profiling.trace import Event, Trace

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
               "tensor(double)": "float64", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(int32)": "int32", "tensor(int64)": "int64"}


def node_modules(path: Path) -> dict[str, tuple[str, str | None, list[str]]]:
    """ONNX node name -> ``(module path, module class, hierarchy)`` from the exporter's metadata;
    empty when the ``onnx`` package is absent or the model carries no such metadata."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return {}
    out = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        scopes = _literal_list(props.get("pkg.torch.onnx.name_scopes"))
        classes = _literal_list(props.get("pkg.torch.onnx.class_hierarchy"))
        if not scopes:
            continue
        hier = [s for s in scopes[1:-1] if s]  # drop the root '' and the op itself
        cls = classes[-2] if len(classes) >= 2 and hier else None
        out[node.name] = (hier[-1] if hier else "", cls, hier)
        for value in node.output:  # onnxruntime names fused nodes after their output value
            out.setdefault(f"@{value}", out[node.name])
    return out


def _literal_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else []


def events_from_profile(profile: list[dict[str, Any]], runs: int,
                        modules: dict[str, tuple[str, str | None, list[str]]]) -> list[Event]:
    """Per-node events (last ``runs`` kernel durations each, ms) from an onnxruntime profile."""
    per_node: dict[str, list[float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for ev in profile:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        per_node.setdefault(node, []).append(float(ev.get("dur", 0)) / 1000.0)
        info.setdefault(node, ev.get("args", {}))
    events = []
    for order, (node, durs) in enumerate(per_node.items()):
        args = info[node]
        mod = modules.get(node) or modules.get("@" + re.sub(r"(_nchwc|_token_\d+)+$", "", node))
        events.append(Event(
            name=node, backend_op=str(args.get("op_name", "?")), durations_ms=durs[-runs:],
            backend=str(args.get("provider")) if args.get("provider") else None, delegated=False,
            module=mod[0] if mod else None, module_type=mod[1] if mod else None,
            module_hierarchy=list(mod[2]) if mod else [], mapping="name" if mod else None,
            order=order))
    return events


def run(path: Path, spec, metadata: dict[str, Any]) -> Trace:
    """Profile an .onnx on onnxruntime's CPU provider: wall-clock latency per ``session.run``
    (ms) and, with ``spec.trace_ops``, per-node kernel times from the profiler. Raises UserError
    for a corrupted model or when onnxruntime is missing."""
    from edgekit.profiling.measure import make_input, missing_runtime, timed_loop

    try:
        import onnxruntime as ort
    except ImportError as e:
        raise missing_runtime("onnxruntime", e) from None
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        if spec.threads:
            so.intra_op_num_threads = int(spec.threads)
        if spec.trace_ops:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / "ort")
        so.log_severity_level = 3  # errors come back as exceptions, not as log lines
        try:
            with native_stderr():  # onnxruntime's profiler logs its own line when loading fails
                sess = ort.InferenceSession(str(path), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UserError(f"cannot load {path.name} with onnxruntime "
                            f"({str(e).splitlines()[0][:200]}): the file is corrupted or not "
                            "an ONNX model; re-create it with 'edgekit quantize'") from None
        feeds = {}
        for i, inp in enumerate(sess.get_inputs()):
            shape = [d if isinstance(d, int) else 1 for d in inp.shape]
            if spec.input_shape and len(sess.get_inputs()) == 1:
                shape = list(spec.input_shape)
            feeds[inp.name] = make_input(shape, _ORT_DTYPES.get(inp.type, "float32"), seed=i)
        try:
            lat = timed_loop(lambda: sess.run(None, feeds), int(spec.warmup_runs), int(spec.runs))
        except Exception as e:
            raise UserError(f"{path.name} failed to run in onnxruntime ({e})") from None
        events: list[Event] = []
        if spec.trace_ops:
            prof = sess.end_profiling()
            events = events_from_profile(json.loads(Path(prof).read_text()), int(spec.runs),
                                         node_modules(path))
    md = dict(metadata, runtime_version=ort.__version__,
              tracing="ort-profiler" if spec.trace_ops else "none",
              input_shapes=[list(v.shape) for v in feeds.values()])
    return Trace(metadata=md, latency_ms=lat, events=events)
