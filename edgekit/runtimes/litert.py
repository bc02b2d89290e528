"""LiteRT (.tflite): the LiteRT interpreter runs the model and times each invoke; per-operator
events come from LiteRT's own profiler through its C API (``litert_profiler``), or from a
``benchmark_model`` binary's op-profiling CSV when one is given (the form a device returns).

The Python interpreter has no per-operator profiler. ``benchmark_model`` (LiteRT's tool, built
for the device) writes, with ``--enable_op_profiling=true --op_profiling_output_mode=csv``, tables
with the columns ``node type, start, first, avg_ms, %, cdf%, mem KB, times called, name`` under
"Run Order" headers, for the primary graph and (after a "Delegate internal:" line) for the
operators inside a delegate. It reports averages only, so such a trace has one value per event
and ``metadata.aggregated = true``.

Modules: litert-torch names each tensor after the module that produced it
(``__main__.Net/torch.nn.modules.container.Sequential_block/torch.nn.modules.conv.Conv2d_0;``),
which gives ``block.0``. Builtin-op rows (``[tensor]:INDEX``) map through their operator's weight
or output tensor; delegate-internal rows map by operator kind, in order, to the graph's ops.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES
from edgekit.runtimes.base import REMAKE, Runtime, Session, le
from edgekit.runtimes.trace import Event, Trace

_TFL_KIND = {
    "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "conv", "TRANSPOSE_CONV": "deconv",
    "FULLY_CONNECTED": "fc", "BATCH_MATMUL": "bmm", "MEAN": "reduce", "SUM": "reduce",
    "AVERAGE_POOL_2D": "avgpool", "MAX_POOL_2D": "maxpool", "ADD": "add", "MUL": "mul",
    "SUB": "sub", "DIV": "div", "RELU": "clamp", "RELU6": "clamp", "RELU_N1_TO_1": "clamp",
    "QUANTIZE": "convert", "DEQUANTIZE": "convert", "TRANSPOSE": "transpose",
    "RESHAPE": "reshape", "SQUEEZE": "reshape", "EXPAND_DIMS": "reshape",
    "CONCATENATION": "concat", "LOGISTIC": "sigmoid", "HARD_SWISH": "hardswish",
    "SOFTMAX": "softmax", "PAD": "pad", "PADV2": "pad", "LEAKY_RELU": "leakyrelu",
    "TANH": "tanh", "SLICE": "slice", "STRIDED_SLICE": "slice", "GELU": "gelu",
    "RESIZE_BILINEAR": "resize", "MAXIMUM": "max", "MINIMUM": "min", "EXP": "exp",
}
_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"}


def interpreter_class():
    """The LiteRT interpreter class: ``ai_edge_litert`` or, on devices, ``tflite_runtime``.
    Raises UserError when neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, _version("ai-edge-litert")
    except ImportError as e:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore
            return Interpreter, _version("tflite-runtime")
        except ImportError:
            raise RUNTIMES.get("litert").missing(e) from None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def load(path: Path, threads: int | None = None):
    """An allocated interpreter for ``path``; UserError for a corrupted or foreign file."""
    from edgekit.runtimes.checks import native_stderr

    cls, ver = interpreter_class()
    try:
        with native_stderr():  # the interpreter's delegate notice
            it = cls(model_path=str(path), num_threads=threads) if threads else cls(model_path=str(path))
            it.allocate_tensors()
    except Exception as e:
        raise UserError(f"cannot load {path.name} with LiteRT ({str(e).splitlines()[0][:200]}): "
                        "the file is corrupted or not a .tflite; re-create it with "
                        "'edgekit quantize'") from None
    return it, ver


# ---- tensor names -> modules -------------------------------------------------------------------
def module_from_location(name: str) -> tuple[str | None, str | None, list[str]]:
    """``(path, class, hierarchy)`` from a litert-torch tensor name; ``(None, None, [])`` when
    the name carries no module location. Of fused locations (``A;;B``) the last one, the
    producing op, wins."""
    locs = [loc for loc in name.split(";;") if "/" in loc or "." in loc.split(";")[0]]
    if not locs:
        return None, None, []
    loc = re.sub(r";\d*$", "", locs[-1].strip())
    segs = [s for s in loc.split("/") if s]
    if len(segs) <= 1 or "." not in segs[0]:
        return (("", segs[0], []) if segs and "." in segs[0] and "<locals>" not in segs[0]
                else (None, None, []))
    names, cls = [], segs[-1]
    for seg in segs[1:]:
        qual, _, rest = seg.rpartition(".")
        _, sep, attr = rest.partition("_")
        if not sep:
            return None, None, []
        names.append(attr)
        cls = f"{qual}.{rest.partition('_')[0]}" if qual else rest.partition("_")[0]
    hierarchy = [".".join(names[:i + 1]) for i in range(len(names))]
    return hierarchy[-1], cls, hierarchy


def op_modules(interpreter) -> list[dict[str, Any]]:
    """For each operator of the primary graph (by index): its builtin name, kind and module."""
    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        if name == "DELEGATE":
            out.append({"op": name, "kind": "delegate", "module": None, "type": None,
                        "hierarchy": []})
            continue
        # weights and bias name the layer best; then the output
        ins = [int(i) for i in op["inputs"]][1:] if name in _WEIGHTED else []
        cands = [tensors.get(i, "") for i in ins + [int(o) for o in op["outputs"]]]
        path, cls, hier = None, None, []
        for c in cands:
            path, cls, hier = module_from_location(c)
            if path is not None:
                break
        out.append({"op": name, "kind": _TFL_KIND.get(name, name.lower()), "module": path,
                    "type": cls, "hierarchy": hier})
    return out


# ---- benchmark_model CSV ---------------------------------------------------------------------
def parse_benchmark_csv(text: str) -> dict[str, list[dict[str, Any]]]:
    """Rows of the "Run Order" tables of a benchmark_model op-profiling CSV.

    Returns ``{"primary": [...], "delegate": [...]}``; each row has ``node_type``, ``first_ms``,
    ``avg_ms``, ``times_called``, ``name``. Raises UserError when no table is found."""
    tables: dict[str, list[dict[str, Any]]] = {"primary": [], "delegate": []}
    section, table, header = "primary", None, None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Delegate internal"):
            section, table = "delegate", None
            continue
        if s.startswith("Primary graph"):
            section, table = "primary", None
            continue
        if s.startswith("Subgraph (index:") and s.endswith(":"):
            section, table = "other", None
            continue
        if s.startswith("====="):
            table, header = ("run" if "Run Order" in s else "skip"), None
            continue
        if not s:  # a blank line ends a table
            if header is not None:
                table = None
            continue
        if table != "run":
            continue
        if header is None:
            header = [h.strip() for h in s.split(",")]
            continue
        rec = _split_row(s, header)
        if rec is None:
            continue
        if section in tables:
            tables[section].append(rec)
    if not tables["primary"] and not tables["delegate"]:
        raise UserError("the benchmark_model op-profiling CSV has no 'Run Order' table; run it "
                        "with --enable_op_profiling=true --op_profiling_output_mode=csv")
    return tables


_NUM = re.compile(r"^-?[\d.]+(e[-+]?\d+)?%?$")


def _split_row(line: str, header: list[str]) -> dict[str, Any] | None:
    # Node types ("Convolution (NHWC, QC8) IGEMM") and names may hold ", " and are written
    # unquoted; the numeric columns between them are found as a run of numbers instead.
    cols = header[1:-1]
    toks = [t.strip() for t in line.split(",")]
    k = len(cols)
    for i in range(1, len(toks) - k):
        window = toks[i:i + k]
        if all(_NUM.match(t) for t in window):
            vals = dict(zip(cols, window))
            try:
                return {"node_type": ",".join(toks[:i]).replace(",", ", ").replace("  ", " "),
                        "first_ms": float(vals["first"]), "avg_ms": float(vals["avg_ms"]),
                        "times_called": int(float(vals.get("times called", "1"))),
                        "name": ", ".join(toks[i + k:])}
            except (KeyError, ValueError):
                return None
    return None


_STATS_LINE = re.compile(r"count=(\d+).*?min=([\d.]+).*?max=([\d.]+).*?avg=([\d.e+]+)")


def parse_benchmark_stdout(text: str) -> dict[str, float] | None:
    """benchmark_model's timed-run statistics (µs in its log) converted to ms:
    ``{"count", "min", "max", "avg"}``; the last matching "count=… avg=…" line is the timed
    runs (the one before it the warm-up). None when absent."""
    found = None
    for line in text.splitlines():
        m = _STATS_LINE.search(line)
        if m:
            found = {"count": float(m.group(1)), "min": float(m.group(2)) / 1000,
                     "max": float(m.group(3)) / 1000, "avg": float(m.group(4)) / 1000}
    return found


def events_from_benchmark_csv(text: str, ops: list[dict[str, Any]]) -> list[Event]:
    """Events from a benchmark_model CSV (one average per event, ms), mapped to modules with
    ``ops`` (from :func:`op_modules` on the same .tflite)."""
    tables = parse_benchmark_csv(text)
    rows = []
    for row in tables["primary"]:
        m = re.search(r":(\d+)$", row["name"])
        is_delegate_node = "delegate" in row["node_type"].lower()
        if is_delegate_node and tables["delegate"]:
            continue  # its time is broken down below
        rows.append({"name": row["name"], "node_type": row["node_type"], "durations_ms": [row["avg_ms"]],
                     "index": int(m.group(1)) if m else None, "inside_delegate": False,
                     "delegated": is_delegate_node})
    rows += [{"name": row["name"], "node_type": row["node_type"], "durations_ms": [row["avg_ms"]],
              "index": None, "inside_delegate": True, "delegated": True} for row in tables["delegate"]]
    return events_from_rows(rows, ops)


def events_from_rows(rows: list[dict[str, Any]], ops: list[dict[str, Any]]) -> list[Event]:
    """Events from operator rows ``{"name", "node_type", "durations_ms", "index",
    "inside_delegate", "delegated"}`` in execution order, mapped to modules with ``ops`` (from
    :func:`op_modules` on the same .tflite): a LiteRT node by its operator ``index`` (else by
    the tensor name in its ``name``); an operator inside the XNNPACK delegate, which carries no
    index, by its kind to the next graph operator of that kind."""
    from edgekit.runtimes.xnnpack_ops import event_kind

    events: list[Event] = []
    graph_ops = [o for o in ops if o["kind"] != "delegate"]
    cur = 0
    for order, row in enumerate(rows):
        if row["inside_delegate"]:
            k = event_kind(row["node_type"] or row["name"])
            j = next((j for j in range(cur, len(graph_ops)) if graph_ops[j]["kind"] == k), None)
            info = graph_ops[j] if j is not None else None
            if j is not None:
                cur = j + 1
            path, cls, hier = (info["module"], info["type"], info["hierarchy"]) if info else (None, None, [])
        else:
            i = row["index"]
            info = ops[i] if i is not None and 0 <= i < len(ops) else None
            path, cls, hier = (info["module"], info["type"], info["hierarchy"]) if info else (None, None, [])
            if path is None:
                path, cls, hier = module_from_location(re.sub(r"^\[|\]:\d+$", "", row["name"]))
        events.append(Event(name=row["name"], backend_op=row["node_type"], durations_ms=list(row["durations_ms"]),
                            backend="delegate" if row["inside_delegate"] else None, delegated=row["delegated"],
                            module=path, module_type=cls, module_hierarchy=hier,
                            mapping="name" if path is not None else None, order=order))
    return events


def events_from_profiler(result: dict[str, Any], ops: list[dict[str, Any]]) -> list[Event]:
    """Events from LiteRT's own profiler (``litert_profiler.profile_ops``: µs per run), mapped
    to modules with ``ops`` (:func:`op_modules` on the same .tflite)."""
    from edgekit.runtimes.litert_profiler import NODE

    rows = []
    for e in result["events"]:
        node = e["type"] == NODE
        name = ops[e["index"]]["op"] if node and 0 <= e["index"] < len(ops) else e["tag"]
        rows.append({"name": f"{name}:{e['index']}" if node else e["tag"], "node_type": name if node else e["tag"],
                     "durations_ms": [us / 1000.0 for us in e["us"]], "index": e["index"] if node else None,
                     "inside_delegate": not node, "delegated": not node})
    return events_from_rows(rows, ops)


def benchmark_args(graph: str, warmup_runs: int, runs: int, threads: int | None,
                   csv_out: str) -> list[str]:
    """benchmark_model flags for a profiled run of ``graph`` writing its CSV to ``csv_out``."""
    args = [f"--graph={graph}", f"--warmup_runs={warmup_runs}", f"--num_runs={runs}",
            "--min_secs=0", "--warmup_min_secs=0", "--enable_op_profiling=true",
            "--op_profiling_output_mode=csv", f"--op_profiling_output_file={csv_out}"]
    if threads:
        args.append(f"--num_threads={threads}")
    return args


# ---- runner -----------------------------------------------------------------------------------
def profile_tflite(path: Path, spec, metadata: dict[str, Any]) -> Trace:
    """Profile a .tflite: per-invoke wall-clock latency (ms) over ``spec.runs`` after
    ``spec.warmup_runs``, untraced. With ``spec.trace_ops``, per-operator events (ms per run)
    from a second, traced series of runs: by ``spec.extra["benchmark_model"]`` (a binary on
    this machine) from its op-profiling CSV, else by LiteRT's own profiler through its C API
    (``edgekit.runtimes.litert_profiler``, in a child process; where that fails, e.g. with
    tflite-runtime alone, the trace keeps its latency and says why in ``op_trace_error``).
    Raises UserError for a corrupted file or a missing runtime."""
    from edgekit.runtimes.measure import make_input, timed_loop

    it, ver = load(path, spec.threads)
    inp = it.get_input_details()
    arrays = []
    for i, d in enumerate(inp):
        shape = list(d["shape"])
        if spec.input_shape and len(inp) == 1 and len(spec.input_shape) == len(shape) \
                and d["dtype"].__name__.startswith("float"):
            shape = list(spec.input_shape)
        arrays.append((d["index"], make_input(shape, d["dtype"].__name__, seed=i)))

    def once():
        for idx, a in arrays:
            it.set_tensor(idx, a)
        it.invoke()

    try:
        lat = timed_loop(once, int(spec.warmup_runs), int(spec.runs))
    except Exception as e:
        raise UserError(f"{path.name} failed to run in LiteRT ({e})") from None
    md = dict(metadata, runtime_version=ver, tracing="none",
              input_shapes=[list(map(int, d["shape"])) for d in inp])
    events: list[Event] = []
    bm = (spec.extra or {}).get("benchmark_model")
    if spec.trace_ops and bm:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ops.csv"
            args = [str(bm)] + benchmark_args(str(path), int(spec.warmup_runs), int(spec.runs),
                                              spec.threads, str(out))
            try:
                r = subprocess.run(args, capture_output=True, text=True, timeout=600)
            except OSError as e:
                raise UserError(f"cannot run benchmark_model {bm} ({e}); give a working binary "
                                "with --benchmark-model") from None
            if r.returncode != 0 or not out.exists():
                raise UserError(f"benchmark_model failed (exit {r.returncode}): "
                                f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
            events = events_from_benchmark_csv(out.read_text(), op_modules(it))
        md["tracing"] = "benchmark_model"
    elif spec.trace_ops:
        from edgekit.runtimes.litert_profiler import profile_ops

        try:
            result = profile_ops(path, int(spec.warmup_runs), int(spec.runs), spec.threads,
                                 [a.tobytes() for _, a in arrays])
        except UserError as e:  # e.g. tflite-runtime on a device: no C API here; the latency stands
            md["op_trace_error"] = str(e)
        else:
            events = events_from_profiler(result, op_modules(it))
            md["tracing"] = "litert_profiler"
            md["traced_invoke_ms"] = [us / 1000.0 for us in result["invoke_us"]]
    return Trace(metadata=md, latency_ms=lat, events=events)


class _TfliteSession(Session):
    def __init__(self, interpreter) -> None:
        self._it = interpreter
        self._in, self._out = interpreter.get_input_details(), interpreter.get_output_details()
        self.inputs = [([int(v) for v in d["shape"]], d["dtype"].__name__) for d in self._in]

    def run(self, arrays: list) -> list:
        import numpy as np

        for d, a in zip(self._in, arrays):
            if d["dtype"] != np.float32:  # integer input: quantized with the model's own parameters
                s, z = d["quantization"]
                info = np.iinfo(d["dtype"])
                a = np.clip(np.round(a / s) + z, info.min, info.max)
            self._it.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))
        self._it.invoke()
        outs = []
        for d in self._out:
            y = self._it.get_tensor(d["index"])
            if d["dtype"] != np.float32:
                s, z = d["quantization"]
                y = (y.astype(np.float32) - z) * s
            outs.append(np.array(y, dtype=np.float32))
        return outs


class LiteRT(Runtime):
    """The LiteRT interpreter: ``ai-edge-litert``, or ``tflite-runtime`` on devices."""

    name, suffix, aliases = "litert", ".tflite", ("tflite", "tflite-runtime")
    package, requirement = "ai_edge_litert.interpreter", "ai-edge-litert==2.3.0 (or tflite-runtime)"
    min_bytes, preference = 16, 1
    device_tool = "LiteRT's benchmark_model"

    def installed(self) -> bool:
        import importlib.util

        return super().installed() or importlib.util.find_spec("tflite_runtime") is not None

    def check_format(self, head: bytes, size: int, name: str) -> None:
        """'TFL3' at byte 4 and a root table inside the file."""
        if head[4:8] != b"TFL3":
            raise UserError(f"{name} is not a LiteRT model (no 'TFL3' file identifier at byte 4, "
                            f"found {head[4:8]!r}); {REMAKE}")
        if le(head, 0, 4) >= size:
            raise UserError(f"{name} is truncated (its root table lies past the end); {REMAKE}")

    def load(self, path: Path, threads: int | None = None) -> Session:
        return _TfliteSession(load(Path(path), threads)[0])

    def profile(self, path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None) -> Trace:
        return profile_tflite(Path(path), spec, metadata)

    def device_command(self, runner: str, model: str, workdir: str, spec, local: Path | None = None) -> tuple[str, str]:
        """``benchmark_model`` with op profiling to a CSV."""
        import shlex

        args = benchmark_args(model, int(spec.warmup_runs), int(spec.runs), spec.threads, f"{workdir}/ops.csv")
        return " ".join([shlex.quote(runner)] + [shlex.quote(a) for a in args]), "ops.csv"

    def trace_from_device(self, path: Path, etrecord: Path | None, spec, pulled: Path,
                          output: str) -> tuple[list[float], list, dict[str, Any]]:
        """One averaged value per event (``aggregated``); the latency is benchmark_model's
        average (else the sum of the operators' averages). Events map to modules through the
        .tflite's tensor names where LiteRT is installed here."""
        try:
            ops = op_modules(load(path)[0])
        except UserError:
            ops = []  # no LiteRT here: events stay unmapped
        events = events_from_benchmark_csv(pulled.read_text(), ops)
        st = parse_benchmark_stdout(output)
        extra: dict[str, Any] = {"tracing": "benchmark_model", "aggregated": True}
        if st:
            extra["benchmark_stats_ms"] = st
        return [st["avg"]] if st else [sum(e.durations_ms[0] for e in events)], events, extra


RUNTIMES.register("litert", LiteRT())
