"""ONNX (.onnx): onnxruntime's CPU provider runs the model; profiling adds its profiler
(``SessionOptions.enable_profiling``).

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

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES
from edgekit.runtimes.base import REMAKE, Runtime, Session
from edgekit.runtimes.checks import native_stderr
from edgekit.runtimes.trace import Event, Trace

# ModelProto field numbers (onnx.proto): ir_version 1, producer_name 2, producer_version 3,
# domain 4, model_version 5, doc_string 6, graph 7, opset_import 8, metadata_props 14,
# training_info 20, functions 25, configuration 26
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}

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


# onnxruntime graph transformers that break valid QDQ models, left off in every session:
# QDQPropagationTransformer copies Q/DQ pairs across the Reshape that MatMulAddFusion puts around
# a Gemm on 3-D tokens and gives the new QuantizeLinear a uint8 zero point with output_dtype int8,
# so a transformer's linear layers fail to load ("output_dtype INT8 does not match y_zero_point
# type UINT8", onnxruntime 1.31; issues #25526 and #27845, where the same pass zeroes negative int8
# values around a Reshape). Without it the Reshape runs on float values between DQ and Q.
BROKEN_OPTIMIZERS = ["QDQPropagationTransformer"]


def inference_session(path: Path, threads: int | None = None, profile_prefix: str | None = None,
                      reference: bool = False):
    """An onnxruntime CPU session for ``path`` (profiling into ``profile_prefix`` when given);
    UserError for a corrupted model or when onnxruntime is missing.

    reference: no onnxruntime graph optimizations, so Q/DQ pairs stay as written and are
    computed as the ONNX spec defines them (what TensorRT and QNN are given), not fused into
    onnxruntime's own int8 kernels. Those fusions are what a user running the model in
    onnxruntime gets (profiling keeps them), but on x86 CPUs without VNNI their u8s8 kernels
    saturate 16-bit sums: on an AMD EPYC machine a test model's logits moved up to 26 output
    quantization steps from the simulation (12 % of them by more than half a step); with no
    optimizations none moved, with the basic ones 2.5 % moved by one step."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RUNTIMES.get("onnxruntime").missing(e) from None
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.log_severity_level = 3  # errors come back as exceptions, not as log lines
    if reference:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        with native_stderr():  # onnxruntime's profiler logs its own line when loading fails
            return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=BROKEN_OPTIMIZERS)
    except Exception as e:
        raise UserError(f"cannot load {path.name} with onnxruntime ({str(e).splitlines()[0][:200]}): the "
                        f"file is corrupted or not an ONNX model; {REMAKE}") from None


def profile_onnx(path: Path, spec, metadata: dict[str, Any]) -> Trace:
    """Profile an .onnx on onnxruntime's CPU provider: wall-clock latency per ``session.run``
    (ms) and, with ``spec.trace_ops``, per-node kernel times from the profiler. Raises UserError
    for a corrupted model or when onnxruntime is missing."""
    import onnxruntime as ort

    from edgekit.runtimes.measure import make_input, timed_loop

    with tempfile.TemporaryDirectory() as tmp:
        sess = inference_session(path, spec.threads, str(Path(tmp) / "ort") if spec.trace_ops else None)
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


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while i < len(data) and shift < 64:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    raise ValueError("truncated varint")


class _OrtSession(Session):
    def __init__(self, sess) -> None:
        self._sess = sess
        self._names = [i.name for i in sess.get_inputs()]
        self.inputs = [([d if isinstance(d, int) else 1 for d in i.shape], _ORT_DTYPES.get(i.type, "float32"))
                       for i in sess.get_inputs()]

    def run(self, arrays: list) -> list:
        import numpy as np

        return self._sess.run(None, {n: np.ascontiguousarray(a) for n, a in zip(self._names, arrays)})


class OnnxRuntime(Runtime):
    """onnxruntime on its CPU execution provider."""

    name, suffix, aliases = "onnxruntime", ".onnx", ("onnx", "ort")
    package, requirement = "onnxruntime", "onnxruntime==1.31.1"
    min_bytes, preference = 16, 2

    def check_format(self, head: bytes, size: int, name: str) -> None:
        """The first bytes are a protobuf ModelProto field (a known field number and wire type)."""
        try:
            tag, _ = _varint(head, 0)
        except ValueError:
            tag = 0
        if (tag >> 3) not in _ONNX_FIELDS or (tag & 7) not in (0, 2):
            raise UserError(f"{name} is not an ONNX model (its first bytes are not an ONNX ModelProto "
                            f"field); {REMAKE}")

    def load(self, path: Path, threads: int | None = None) -> Session:
        return _OrtSession(inference_session(Path(path), threads, reference=True))

    def probe(self, path: Path) -> None:
        """Parse the model (onnx, without external data) and build a session."""
        import onnx

        onnx.load(str(path), load_external_data=False)
        inference_session(Path(path))

    def profile(self, path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None) -> Trace:
        return profile_onnx(Path(path), spec, metadata)


RUNTIMES.register("onnxruntime", OnnxRuntime())
