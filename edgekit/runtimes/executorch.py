"""ExecuTorch (.pte): the runtime's Python bindings load and run a program; profiling adds ETDump,
mapped to modules via the ETRecord.

Mapping. Non-delegated operators carry debug handles in the ETDump; the ETRecord's edge program
maps each handle to the graph node and its ``nn_module_stack`` (the user's module path).
XNNPACK-delegated operators are logged by XNNPACK operator name only ("Convolution (NHWC, QC8)
IGEMM #2"), with no handle. The delegate payload inside the .pte, however, lists its nodes in
execution order, each with the debug handle of the graph node it came from. We read those nodes
(the payload's flatbuffer, decoded with the ``flatc`` and schema that ship in the executorch
wheel) and align the runtime's operators to them in order, matching operator kinds
(a Convolution event takes the next Conv2d/DepthwiseConv2d node, etc.). Nodes XNNPACK fused away
are skipped by the alignment. Layout transposes the delegate inserted have no handle; they are
attributed to the next mapped node (``mapping: "adjacent"``).
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES
from edgekit.runtimes.base import REMAKE, Runtime, Session, le
from edgekit.runtimes.checks import native_stderr
from edgekit.runtimes.trace import Event, Trace
from edgekit.runtimes.xnnpack_ops import event_kind

DEFAULT_DEBUG_HANDLE = 65535  # XNNPACK's "no handle" value
_RUNTIME_SPANS = ("Method::execute", "Method::init", "Program::load_method")
_QDQ = ("quantize_per", "dequantize_per", "choose_qparams", "getitem")


@dataclass
class ModuleInfo:
    """Where a debug handle comes from: module path (``layer1.0.conv1``; ``""`` = top level),
    its class, the outer-to-inner path list, and the graph node name."""

    path: str
    type: str | None
    hierarchy: list[str]
    node: str


def debug_handle_map(etrecord: str | Path) -> dict[int, ModuleInfo]:
    """Debug handle -> ModuleInfo from an ETRecord file's edge program.

    Where several nodes share a handle (quantize/dequantize around a compute op), the compute
    op's module wins. Raises UserError when the file is not a readable ETRecord.
    """
    from executorch.devtools import parse_etrecord

    try:
        rec = parse_etrecord(str(etrecord))
    except Exception as e:  # a damaged zip, a wrong file
        raise UserError(f"ETRecord {Path(etrecord).name} cannot be read ({type(e).__name__}: {e}); "
                        "re-create the bundle with 'edgekit quantize'") from None
    out: dict[int, tuple[int, ModuleInfo]] = {}
    programs = []
    if rec.edge_dialect_program is not None:
        programs.append(rec.edge_dialect_program)
    for gm_prog in programs:
        gm = gm_prog.graph_module
        for node in _walk_nodes(gm):
            h = node.meta.get("debug_handle")
            if h is None:
                continue
            handles = h if isinstance(h, (list, tuple)) else [h]
            info = _module_of(node)
            rank = 0 if any(q in str(node.target) for q in _QDQ) else 1
            rank += 1 if info.path else 0
            for hh in handles:
                if hh not in out or rank > out[int(hh)][0]:
                    out[int(hh)] = (rank, info)
    return {h: info for h, (_, info) in out.items()}


def _walk_nodes(gm):
    # the edge program's nodes, plus those inside lowered (delegated) submodules
    for node in gm.graph.nodes:
        if node.op == "call_function":
            yield node
    for _, child in gm.named_children():
        orig = getattr(child, "original_module", None)
        if orig is not None:
            yield from _walk_nodes(orig.graph_module)


def _module_of(node) -> ModuleInfo:
    stack = node.meta.get("nn_module_stack") or {}
    entries = [v for v in stack.values() if isinstance(v, (tuple, list)) and len(v) >= 2]
    paths = [str(p) for p, _ in entries if str(p)]
    types = [t for p, t in entries if str(p)]
    tname = types[-1] if types else None
    if tname is not None and not isinstance(tname, str):
        tname = getattr(tname, "__qualname__", str(tname))
    return ModuleInfo(path=paths[-1] if paths else "", type=tname, hierarchy=paths, node=node.name)


# ---- XNNPACK payload ---------------------------------------------------------------------------
# payload node type -> kind (the runtime's operator labels: edgekit.runtimes.xnnpack_ops)
_NODE_KIND = {
    "conv2d": "conv", "depthwiseconv2d": "conv", "convtranspose2d": "deconv",
    "fullyconnected": "fc", "batchmatrixmultiply": "bmm", "globalavgpooling2d": "reduce",
    "staticmeannd": "reduce", "staticsumnd": "reduce", "avgpooling2d": "avgpool",
    "maxpooling2d": "maxpool", "argmaxpooling2d": "maxpool", "add": "add", "multiply": "mul",
    "subtract": "sub", "div": "div", "clamp": "clamp", "convert": "convert",
    "statictranspose": "transpose", "staticreshape": "reshape", "copy": "reshape",
    "concatenate2": "concat", "concatenate3": "concat", "concatenate4": "concat",
    "concatenate5": "concat", "sigmoid": "sigmoid", "hardswish": "hardswish", "softmax": "softmax",
    "staticconstantpad": "pad", "leakyrelu": "leakyrelu", "elu": "elu", "tanh": "tanh",
    "staticslice": "slice", "staticresizebilinear2d": "resize", "squareroot": "sqrt",
    "negate": "neg", "abs": "abs", "floor": "floor", "ceiling": "ceil", "maximum2": "max",
    "minimum2": "min", "square": "square", "prelu": "prelu", "exp": "exp", "log": "log",
    "gelu": "gelu",
}


# event kind -> the node kinds such an operator can come from (default: its own kind)
_RUNS = {"fc": {"fc", "conv"}}


def _node_kind(union_type: str) -> str:
    t = union_type.lower()
    t = t[3:] if t.startswith("xnn") else t
    return _NODE_KIND.get(t, t)


def xnnpack_graphs(pte: str | Path) -> list[tuple[dict, Callable[[int], bytes]]]:
    """The XNNPACK delegate payloads of a .pte, each as its flatbuffer graph decoded to a dict
    (``xnodes``, ``xvalues``, ``constant_data``; with the ``flatc`` and schema that ship in the
    executorch wheel) and a function giving the bytes of its constant buffer ``idx`` (in the
    payload or, ExecuTorch 1.x, in the program's named data). Empty when the program has no
    XNNPACK delegate or a payload cannot be decoded."""
    try:
        import executorch
        from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
        from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        return []
    root = Path(list(executorch.__path__)[0])
    flatc = root / "data" / "bin" / "flatc"
    schema = root / "backends" / "xnnpack" / "serialization" / "schema.fbs"
    if not flatc.exists() or not schema.exists():
        return []
    pte_file = deserialize_pte_binary(Path(pte).read_bytes())
    program, named = pte_file.program, pte_file.named_data
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for plan in program.execution_plan:
            for i, d in enumerate(plan.delegates):
                if "xnnpack" not in d.id.lower():
                    continue
                data = program.backend_delegate_data[d.processed.index].data
                try:
                    h = XNNHeader.from_bytes(data[:XNNHeader.EXPECTED_LENGTH])
                    fb = data[h.flatbuffer_offset:h.flatbuffer_offset + h.flatbuffer_size]
                    const = data[h.constant_data_offset:h.constant_data_offset + h.constant_data_size]
                except ValueError:  # an old payload without the header
                    fb, const = data, b""
                src = Path(tmp) / f"{plan.name}_{i}.bin"
                src.write_bytes(fb)
                r = subprocess.run([str(flatc), "--json", "--strict-json", "--raw-binary",
                                    "-o", tmp, str(schema), "--", str(src)],
                                   capture_output=True, text=True, timeout=60)
                js = src.with_suffix(".json")
                if r.returncode != 0 or not js.exists():
                    return []
                # flatc writes inf/nan bare for float fields such as output_max; JSON has none
                graph = json.loads(re.sub(r"(?<=[:\s\[,])-?(inf|nan|infinity)\b", "null", js.read_text()))
                out.append((graph, _constant_reader(graph, const, named)))
    return out


def _constant_reader(graph: dict, const: bytes, named) -> Callable[[int], bytes]:
    def read(idx: int) -> bytes:
        entry = graph.get("constant_data", [])[idx]
        key = entry.get("named_key")
        if key and named is not None and key in named.pte_data:
            return bytes(named.buffers[named.pte_data[key].buffer_index])
        off = int(entry.get("offset", 0))
        return const[off:off + int(entry.get("size", 0))]
    return read


def xnnpack_nodes(pte: str | Path) -> list[tuple[str, int | None]]:
    """The XNNPACK delegate nodes of a .pte in execution order, as ``(kind, debug_handle)``
    (handle None where the delegate inserted the node). Empty when the program has no XNNPACK
    delegate or the payload cannot be decoded (then delegated events stay unmapped)."""
    nodes: list[tuple[str, int | None]] = []
    for graph, _ in xnnpack_graphs(pte):
        for xn in graph.get("xnodes", []):
            dh = xn.get("debug_handle")
            nodes.append((_node_kind(xn.get("xnode_union_type", "")),
                          None if dh in (None, DEFAULT_DEBUG_HANDLE) else int(dh)))
    return nodes


def xnnpack_int8_weights(pte: str | Path) -> list[tuple[list[int], "np.ndarray", list[float]]]:
    """The per-channel int8 constant tensors (conv and linear weights) of a .pte's XNNPACK
    payloads: (dims as XNNPACK stores them, values int8 flat, per-channel scales)."""
    import numpy as np

    out = []
    for graph, read in xnnpack_graphs(pte):
        for v in graph.get("xvalues", []):
            u = v.get("xvalue_union", {})
            t = u.get("tensor_value", {})
            if v.get("xvalue_union_type") != "XNNQuantizedTensorValue" or not t.get("constant_buffer_idx") \
                    or t.get("datatype") != "xnn_datatype_qcint8":
                continue
            qp = u.get("quant_params", {})
            scales = list(qp.get("scale") or []) or (  # ExecuTorch 1.x keeps them in a constant buffer
                np.frombuffer(read(qp["scale_buffer_idx"]), np.float32).tolist() if qp.get("scale_buffer_idx") else [])
            out.append((t["dims"], np.frombuffer(read(t["constant_buffer_idx"]), np.int8).copy(), scales))
    return out


def align(event_names: list[str], nodes: list[tuple[str, int | None]]) -> list[int | None]:
    """Index into ``nodes`` for each delegated event (None when no node fits).

    Monotonic greedy alignment: each event takes the next node of a kind it can run (its own;
    a Fully Connected operator also runs a Conv2d node, as XNNPACK rewrites a 1x1 stride-1
    convolution to one) at or after the previous match; unmatched events do not advance the
    cursor."""
    out: list[int | None] = []
    cur = 0
    for name in event_names:
        kinds = _RUNS.get(event_kind(name), {event_kind(name)})
        j = next((j for j in range(cur, len(nodes)) if nodes[j][0] in kinds), None)
        out.append(j)
        if j is not None:
            cur = j + 1
    return out


# ---- ETDump -> events ---------------------------------------------------------------------------
def events_from_etdump(etdump: Path, etrecord: Path | None, pte: Path, runs: int,
                       debug_buffer: Path | None = None) -> tuple[list[Event], dict[str, Any]]:
    """Per-operator events (last ``runs`` executions of each, ms) from an ETDump, mapped to
    modules through ``etrecord`` (when given) and the .pte's XNNPACK payload.

    Returns ``(events, extra)``; ``extra`` holds ``delegate_call_ms`` (per run, summed over
    delegate calls) and ``method_execute_ms`` (per run, when the runtime logged it). Raises UserError when the ETDump cannot be parsed.
    """
    from executorch.devtools import Inspector

    kwargs: dict[str, Any] = {"etdump_path": str(etdump)}
    if etrecord is not None:
        kwargs["etrecord"] = str(etrecord)
    if debug_buffer is not None and debug_buffer.exists() and debug_buffer.stat().st_size:
        kwargs["debug_buffer_path"] = str(debug_buffer)
    try:
        insp = Inspector(**kwargs)
    except Exception as e:
        raise UserError(f"cannot parse the ETDump/ETRecord pair ({type(e).__name__}: {e}); check "
                        "that the ETRecord belongs to this .pte") from None
    handles = debug_handle_map(etrecord) if etrecord is not None else {}
    xnodes = xnnpack_nodes(pte) if handles else []

    raw_events = []
    for block in insp.event_blocks:
        if block.name == "Default":  # program load and method init, not inference
            continue
        for ev in block.events:
            perf = getattr(ev, "perf_data", None)
            if perf is None or not perf.raw:
                continue
            raw_events.append(ev)

    delegate_ms: list[float] = []
    method_ms: list[float] = []
    events: list[Event] = []
    delegated = [ev for ev in raw_events if ev.is_delegated_op]
    slots = align([ev.name for ev in delegated], xnodes) if xnodes else [None] * len(delegated)
    slot_of = {id(ev): s for ev, s in zip(delegated, slots)}
    for order, ev in enumerate(raw_events):
        if ev.name == "OPERATOR_CALL" and order and raw_events[order - 1].name.startswith("native_call_"):
            continue  # the wrapper around the kernel call just logged: counting both doubles its time
        vals = [float(v) for v in ev.perf_data.raw][-runs:]
        if ev.name == "DELEGATE_CALL":
            delegate_ms = [a + b for a, b in zip(delegate_ms, vals)] if delegate_ms else vals
            continue
        if ev.name in _RUNTIME_SPANS:  # whole-method spans, not operators
            if ev.name == "Method::execute":
                method_ms = vals
            continue
        info: ModuleInfo | None = None
        mapping = None
        if ev.is_delegated_op:
            j = slot_of.get(id(ev))
            if j is not None:
                h = xnodes[j][1]
                if h is not None and h in handles:
                    info, mapping = handles[h], "debug_handle"
                else:  # inserted by the delegate: take the next node that has a handle
                    nxt = [n[1] for n in xnodes[j + 1:] if n[1] in handles] or \
                          [n[1] for n in reversed(xnodes[:j]) if n[1] in handles]
                    if nxt:
                        info, mapping = handles[nxt[0]], "adjacent"
            op = re.split(r"\s*#\d+$", ev.name)[0]
        else:
            hs = [h for h in (ev.debug_handles if isinstance(ev.debug_handles, (list, tuple))
                              else [ev.debug_handles]) if h is not None]
            cands = [handles[h] for h in hs if h in handles]
            if cands:
                info, mapping = max(cands, key=lambda m: len(m.hierarchy)), "debug_handle"
            op = (ev.op_types[0] if getattr(ev, "op_types", None) else ev.name)
        events.append(Event(
            name=ev.name, backend_op=op, durations_ms=vals,
            backend=getattr(ev, "delegate_backend_name", None) or None,
            delegated=bool(ev.is_delegated_op),
            module=info.path if info else None, module_type=info.type if info else None,
            module_hierarchy=list(info.hierarchy) if info else [], mapping=mapping, order=order))
    return events, {"delegate_call_ms": delegate_ms, "method_execute_ms": method_ms}


# ---- runner -----------------------------------------------------------------------------------
def _runtime():
    try:
        from executorch.runtime import Runtime as ETRuntime
        import executorch.version as v
    except ImportError as e:
        raise RUNTIMES.get("executorch").missing(e) from None
    try:  # non-delegated quantized ops need the quantized kernels registered
        import executorch.kernels.quantized  # noqa: F401
    except Exception:
        pass
    return ETRuntime.get(), getattr(v, "__version__", "?")


def load_method(path: Path, trace_ops: bool):
    """Load ``path``'s forward method; raises UserError for a corrupted or foreign file."""
    rt, version = _runtime()
    with native_stderr() as log:
        try:
            program = rt.load_program(str(path), enable_etdump=trace_ops, debug_buffer_size=0)
            method = program.load_method("forward")
            err = None
        except Exception as e:
            err = e
    if err is not None:
        native = [ln.split("] ", 1)[-1] for ln in log[0].splitlines() if ln.strip()]
        why = native[-1] if native else str(err)
        raise UserError(f"cannot load {path.name} with ExecuTorch ({why}): the file is corrupted "
                        "or not a .pte; re-create it with 'edgekit quantize'")
    if method is None:
        raise UserError(f"{path.name} has no 'forward' method")
    return program, method, version


def profile_pte(path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None) -> Trace:
    """Profile a .pte: ``spec.warmup_runs`` + ``spec.runs`` executions of ``forward`` on one
    reproducible random input; end-to-end latency per timed run (ms) from the wall clock.

    With ``spec.trace_ops`` the .pte is loaded twice, once with ETDump: the two run alternately
    (``runners.interleaved_loops``), the end-to-end latency comes from the untraced runs and the
    per-operator events from the traced runs' ETDump, whose own wall-clock latency is recorded as
    ``traced_run_p50_ms``. Raises UserError for a corrupted .pte or ETRecord and when executorch
    is not installed."""
    import torch

    from edgekit.runtimes.measure import interleaved_loops, make_input, timed_loop

    if spec.threads:
        try:
            from executorch.extension.pybindings import portable_lib
            portable_lib._unsafe_reset_threadpool(int(spec.threads))
        except Exception:
            pass
    program, method, version = load_method(path, trace_ops=False)
    traced_program = traced_method = None
    if spec.trace_ops:
        traced_program, traced_method, _ = load_method(path, trace_ops=True)
    metas = [method.metadata.input_tensor_meta(i) for i in range(method.metadata.num_inputs())]
    if spec.input_shape and len(metas) == 1:
        shapes = [list(spec.input_shape)]
    else:
        shapes = [list(m.sizes()) for m in metas]
    inputs = [torch.from_numpy(make_input(s, spec.input_dtype or "float32", seed=i))
              for i, s in enumerate(shapes)]
    traced_lat: list[float] = []
    try:
        if traced_method is None:
            lat = timed_loop(lambda: method.execute(inputs), int(spec.warmup_runs), int(spec.runs))
        else:
            lat, traced_lat = interleaved_loops(lambda: method.execute(inputs),
                                                lambda: traced_method.execute(inputs),
                                                int(spec.warmup_runs), int(spec.runs))
    except Exception as e:
        raise UserError(f"{path.name} failed to run in ExecuTorch ({e}); check the input shape "
                        f"{shapes} against the model") from None
    md = dict(metadata, runtime_version=version, tracing="etdump" if spec.trace_ops else "none",
              input_shapes=shapes, etrecord=etrecord.name if etrecord else None)
    events: list[Event] = []
    if traced_program is not None:
        md["latency_source"] = "untraced runs interleaved with the traced runs"
        md["traced_run_p50_ms"] = _p50(traced_lat)
        with tempfile.TemporaryDirectory() as tmp:
            etdump = Path(tmp) / "trace.etdp"
            debug = Path(tmp) / "debug.bin"
            traced_program.write_etdump_result_to_file(str(etdump), str(debug))
            events, extra = events_from_etdump(etdump, etrecord, path, int(spec.runs), debug)
        md["delegate_call_ms_p50"] = _p50(extra.get("delegate_call_ms") or [])
    return Trace(metadata=md, latency_ms=lat, events=events)


def _sum_runs(series: list[list[float]]) -> list[float]:
    """Per run, the sum over ``series`` (each a per-run list, aligned on their last runs)."""
    series = [x for x in series if x]
    n = min((len(x) for x in series), default=0)
    return [sum(x[len(x) - n + i] for x in series) for i in range(n)]


def _p50(xs: list[float]) -> float | None:
    from edgekit.runtimes.trace import stats

    return stats(xs)["p50"] if xs else None


class _PteSession(Session):
    def __init__(self, program, method) -> None:
        self._program, self._method = program, method  # the program owns the method's memory
        metas = [method.metadata.input_tensor_meta(i) for i in range(method.metadata.num_inputs())]
        self.inputs = [(list(m.sizes()), "float32") for m in metas]

    def run(self, arrays: list) -> list:
        import numpy as np
        import torch

        outs = self._method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [o.detach().clone().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outs]


class ExecuTorch(Runtime):
    """ExecuTorch's runtime (the ``executorch`` wheel's Python bindings), CPU kernels and the
    delegates compiled into the wheel (XNNPACK)."""

    name, suffix, aliases = "executorch", ".pte", ("pte", "et")
    package, requirement = "executorch.runtime", "executorch==1.5.1"
    min_bytes, preference = 32, 0
    device_tool = "ExecuTorch's executor_runner (built with the event tracer)"

    def check_format(self, head: bytes, size: int, name: str) -> None:
        """'ET' and two digits at byte 4; the root table and, where the extended header
        ``eh00`` is present, the program and segments it declares must lie inside the file."""
        if head[4:6] != b"ET" or not head[6:8].isdigit():
            raise UserError(f"{name} is not an ExecuTorch program (no 'ET' file identifier at byte 4, "
                            f"found {head[4:8]!r}); {REMAKE}")
        if le(head, 0, 4) >= size:
            raise UserError(f"{name} is truncated (its root table lies past the end); {REMAKE}")
        if head[8:12] == b"eh00":
            length, program = le(head, 12, 4), le(head, 16, 8)
            base, seg = le(head, 24, 8), (le(head, 32, 8) if length >= 32 else 0)
            if program > size or (base and base + seg > size):
                need = max(program, base + seg)
                raise UserError(f"{name} is truncated: its header promises {need} bytes, the file has "
                                f"{size}; {REMAKE}")

    def load(self, path: Path, threads: int | None = None) -> Session:
        return _PteSession(*load_method(Path(path), trace_ops=False)[:2])

    def probe(self, path: Path) -> None:
        """Load the program and its forward method (delegates compile their payload there) with
        the bindings alone (~2 s; ``executorch.runtime`` imports exir and torchao, ~7 s); both
        verify the program the same way (InternalConsistency)."""
        import torch  # noqa: F401  (the extension resolves libtorch's symbols)
        try:
            import executorch.extension.pybindings._C as et
        except ImportError:
            super().probe(path)
            return
        et._load_program(str(path), program_verification=et.Verification.InternalConsistency).load_method("forward")

    def profile(self, path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None) -> Trace:
        return profile_pte(Path(path), spec, metadata, etrecord)

    def device_command(self, runner: str, model: str, workdir: str, spec, local: Path | None = None) -> tuple[str, str]:
        """``executor_runner`` (built with the event tracer) writing an ETDump of all runs; or,
        for a runner named ``qnn_executor_runner*`` (ExecuTorch's Qualcomm runner, for a .pte
        delegated to QNN), its flags: an input list of one zero-filled raw input (the runner
        times ``--iteration`` runs only when given inputs), ``--warm_up`` runs, and the QNN
        libraries pushed beside it found through LD_LIBRARY_PATH and ADSP_LIBRARY_PATH."""
        import shlex

        q = shlex.quote
        if Path(runner).name.startswith("qnn_executor_runner"):
            sizes = input_nbytes(local) if local is not None else []
            if not sizes:
                raise UserError("qnn_executor_runner needs the .pte's input sizes: give the bundle or the .pte file")
            inputs = [f"{workdir}/input_{i}.raw" for i in range(len(sizes))]
            make = " && ".join(f"head -c {n} /dev/zero > {q(f)}" for n, f in zip(sizes, inputs))
            cmd = (f"cd {q(workdir)} && mkdir -p outputs && {make} && echo {q(' '.join(inputs))} > input_list.txt && "
                   f"LD_LIBRARY_PATH={q(workdir)}:$LD_LIBRARY_PATH ADSP_LIBRARY_PATH={q(workdir)} {q(runner)} "
                   f"--model_path={q(model)} --input_list_path={q(workdir + '/input_list.txt')} "
                   f"--output_folder_path={q(workdir + '/outputs')} --warm_up={int(spec.warmup_runs)} "
                   f"--iteration={int(spec.runs)} --etdump_path={q(workdir + '/trace.etdp')}")
            return cmd, "trace.etdp"
        n = int(spec.warmup_runs) + int(spec.runs)
        cmd = (f"cd {q(workdir)} && {q(runner)} --model_path={q(model)} "
               f"--etdump_path={q(workdir + '/trace.etdp')} --num_executions={n}")
        if spec.threads:
            cmd += f" --cpu_threads={int(spec.threads)}"
        return cmd, "trace.etdp"

    def trace_from_device(self, path: Path, etrecord: Path | None, spec, pulled: Path,
                          output: str) -> tuple[list[float], list, dict[str, Any]]:
        """Latency from ``Method::execute`` (else the sum of the operators and delegate calls)
        of the last ``spec.runs`` runs; events mapped through the ETRecord."""
        runs = int(spec.runs)
        events, extra = events_from_etdump(pulled, etrecord, path, runs)
        lat = extra.get("method_execute_ms") or _sum_runs(
            [e.durations_ms for e in events if not e.delegated] + [extra["delegate_call_ms"]])
        return list(lat)[-runs:], events, {
            "tracing": "etdump", "latency_source": "Method::execute" if extra.get("method_execute_ms") else "op sum"}


def input_nbytes(path: Path) -> list[int]:
    """Bytes of each input of the .pte's ``forward``, from the program's metadata (no delegate
    is initialised: a .pte delegated to QNN loads here without Qualcomm's libraries)."""
    from executorch.runtime import Runtime as ETRuntime

    meta = ETRuntime.get().load_program(Path(path)).metadata("forward")
    return [meta.input_tensor_meta(i).nbytes() for i in range(meta.num_inputs())]


RUNTIMES.register("executorch", ExecuTorch())
