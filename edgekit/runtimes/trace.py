"""Latency traces: per-operator events mapped to the model's modules, with run metadata.

A :class:`Trace` is what every runner and transport returns. It saves as JSON (schema in
``docs/profiling.md``, ``schema: "edgekit.trace"``, ``version: 1``), loads back with validation,
and exports Chrome-trace JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open.

All durations are milliseconds (float). This module uses only the standard library so that a
device running the agent needs nothing more than its runtime.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgekit.bundle import write_text_atomic
from edgekit.errors import UserError

SCHEMA = "edgekit.trace"
VERSION = 1

#: how an event's ``module`` was found: from the ETRecord's debug handles, from the artifact's
#: tensor/node names (LiteRT, ONNX), or from the neighbouring operator (layout transposes the
#: backend inserted, which belong to no user module); ``None`` when unmapped.
MAPPINGS = ("debug_handle", "name", "adjacent", None)


def stats(values: Sequence[float]) -> dict[str, float]:
    """Summary of ``values`` (ms): p10/p50/p90 (linear interpolation between order statistics,
    numpy's default), mean, min, max and n. Empty input gives NaN for every statistic and n=0."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return {"p10": nan, "p50": nan, "p90": nan, "mean": nan, "min": nan, "max": nan, "n": 0}

    def pct(q: float) -> float:
        pos = (n - 1) * q
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"p10": pct(0.10), "p50": pct(0.50), "p90": pct(0.90), "mean": sum(xs) / n,
            "min": xs[0], "max": xs[-1], "n": n}


@dataclass
class Event:
    """One operator of the artifact as the runtime executed it.

    name: the runtime's label (e.g. ``Convolution (NHWC, QC8) IGEMM #3``, ``CONV_2D``, ``node_Conv_15``).
    backend_op: the operator kind (``Convolution``, ``CONV_2D``, ``Conv``).
    backend: the delegate that ran it (``XnnpackBackend``) or ``None`` for the portable runtime.
    delegated: True when it ran inside a delegate.
    module: the user's module path (``layer2.1.conv1``), ``""`` for the model's top level,
      ``None`` when unmapped. module_type: its class (``torch.nn.modules.conv.Conv2d``) if known.
    module_hierarchy: outer-to-inner module paths ending in ``module``.
    mapping: how ``module`` was found (see ``MAPPINGS``).
    durations_ms: one duration per timed run (ms); a single value when the tool reports only an
      average (``benchmark_model``; the trace's ``metadata.aggregated`` is then true).
    """

    name: str
    backend_op: str
    durations_ms: list[float]
    backend: str | None = None
    delegated: bool = False
    module: str | None = None
    module_type: str | None = None
    module_hierarchy: list[str] = field(default_factory=list)
    mapping: str | None = None
    order: int = 0

    @property
    def stats(self) -> dict[str, float]:
        """p10/p50/p90/mean/min/max (ms) of ``durations_ms``."""
        return stats(self.durations_ms)


@dataclass
class Trace:
    """A profile of one artifact on one device.

    metadata: run facts: ``device``, ``os``, ``machine``, ``hostname``, ``runtime``,
      ``runtime_version``, ``threads``, ``warmup_runs``, ``runs``, ``artifact``, ``artifact_bytes``,
      ``artifact_sha256``, ``tracing`` (what produced the per-op events), ``transport``, ``created``.
    latency_ms: end-to-end latency of each timed run (ms), length ``metadata.runs``
      (one average value when ``metadata.aggregated``).
    events: per-operator events, in execution order.
    complete: False marks a trace cut short; such a trace is never saved (``save`` refuses it).
    """

    metadata: dict[str, Any]
    latency_ms: list[float]
    events: list[Event] = field(default_factory=list)
    complete: bool = True

    # ---- summaries -------------------------------------------------------------------------
    @property
    def latency(self) -> dict[str, float]:
        """p10/p50/p90/mean/min/max (ms) of the end-to-end latency."""
        return stats(self.latency_ms)

    def module_breakdown(self, stat: str = "p50") -> dict[str, float]:
        """Milliseconds per module (sum over the module's events of the chosen statistic);
        unmapped events are grouped under ``"(unmapped)"`` and top-level ones under ``"(model)"``."""
        out: dict[str, float] = {}
        for e in self.events:
            key = module_label(e.module)
            out[key] = out.get(key, 0.0) + e.stats[stat]
        return out

    def operator_breakdown(self, stat: str = "p50") -> dict[str, tuple[float, int]]:
        """Milliseconds (sum of the chosen statistic) and event count per operator kind
        (:func:`operator_kind` of each event's ``backend_op``)."""
        out: dict[str, tuple[float, int]] = {}
        for e in self.events:
            kind = operator_kind(e.backend_op)
            ms, count = out.get(kind, (0.0, 0))
            out[kind] = (ms + e.stats[stat], count + 1)
        return out

    def mapping_coverage(self, delegated_only: bool = True, include_adjacent: bool = True) -> float:
        """Fraction (0..1) of operator time (sum of per-event means) whose event names a user
        module (not the model's top level). ``delegated_only`` restricts to delegated events;
        ``include_adjacent`` counts layout ops attributed to their neighbour. NaN without events."""
        tot = hit = 0.0
        for e in self.events:
            if delegated_only and not e.delegated:
                continue
            t = e.stats["mean"]
            tot += t
            if e.module and (include_adjacent or e.mapping != "adjacent"):
                hit += t
        return hit / tot if tot > 0 else float("nan")

    def summary(self, top: int = 10) -> str:
        """Human-readable summary: latency p50/p90 and the top operators by p50 with their
        share of the summed operator time and their module."""
        md = self.metadata
        lat = self.latency
        lines = [
            f"{md.get('artifact', '?')} on {md.get('device', '?')} ({md.get('runtime', '?')} "
            f"{md.get('runtime_version', '')}, {md.get('threads') or 'default'} threads): "
            f"{md.get('runs')} runs after {md.get('warmup_runs')} warm-up",
            f"latency p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  "
            f"(min {lat['min']:.3f}, max {lat['max']:.3f})",
        ]
        if not self.events:
            lines.append(f"no per-operator events ({md.get('tracing', 'none')})")
            return "\n".join(lines)
        total = sum(e.stats["p50"] for e in self.events) or float("nan")
        ranked = sorted(self.events, key=lambda e: e.stats["p50"], reverse=True)[:top]
        lines.append(f"top {len(ranked)} operators by p50 (share of {total:.3f} ms operator time):")
        w = max(len(e.name) for e in ranked)
        for e in ranked:
            p50 = e.stats["p50"]
            lines.append(f"  {e.name:<{w}}  {p50:8.3f} ms  {100 * p50 / total:5.1f}%  "
                         f"{module_label(e.module)}")
        delegated = [e for e in self.events if e.delegated]
        if delegated:
            lines.append(f"module mapping covers {100 * self.mapping_coverage():.1f}% of delegated "
                         "operator time")
        return "\n".join(lines)

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (schema ``edgekit.trace`` v1); statistics are included for
        readers but recomputed from the per-run values on load."""
        events = []
        for e in self.events:
            d = asdict(e)
            d["stats"] = _finite(e.stats)
            events.append(d)
        return {"schema": SCHEMA, "version": VERSION, "complete": self.complete,
                "metadata": self.metadata, "latency_ms": list(self.latency_ms),
                "latency": _finite(self.latency), "events": events}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trace":
        """Build a Trace from ``to_dict`` output; raises UserError naming the first bad field."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise UserError(f"not an edgekit trace (schema is not {SCHEMA!r}); give a file "
                            "written by 'edgekit profile --trace-out'")
        if d.get("version") != VERSION:
            raise UserError(f"trace version {d.get('version')!r} is not supported (this edgekit "
                            f"reads version {VERSION}); re-run 'edgekit profile'")
        for key, typ in (("metadata", dict), ("latency_ms", list), ("events", list)):
            if not isinstance(d.get(key), typ):
                raise UserError(f"trace field {key!r} is missing or not a {typ.__name__}; "
                                "re-run 'edgekit profile'")
        events = []
        names = {f for f in Event.__dataclass_fields__}
        for i, ed in enumerate(d["events"]):
            if not isinstance(ed, dict) or not isinstance(ed.get("durations_ms"), list) \
                    or "name" not in ed or "backend_op" not in ed:
                raise UserError(f"trace event {i} lacks name/backend_op/durations_ms; "
                                "re-run 'edgekit profile'")
            events.append(Event(**{k: v for k, v in ed.items() if k in names}))
        return cls(metadata=d["metadata"], latency_ms=[float(x) for x in d["latency_ms"]],
                   events=events, complete=bool(d.get("complete", False)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace as JSON, atomically (temporary file, then rename).
        Raises RuntimeError for an incomplete trace: a cut-short run is never saved as complete."""
        if not self.complete:
            raise RuntimeError("refusing to save an incomplete trace")
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trace":
        """Read a trace JSON file; raises UserError when missing, not JSON or not a trace."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise UserError(f"trace file {p} does not exist; write one with "
                            "'edgekit profile ... --trace-out FILE'") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"trace file {p} is not valid JSON ({e})") from None
        return cls.from_dict(data)

    # ---- Chrome trace ----------------------------------------------------------------------
    def to_chrome_trace(self) -> dict[str, Any]:
        """Chrome-trace JSON (``traceEvents``, complete "X" events, timestamps in µs).

        Each timed run is one slice on track "runs"; its operators follow back to back on track
        "operators" from the run's start (the runtimes report durations, not start times, so
        gaps between operators are not shown). Args carry module, backend op and delegate.
        """
        pid = 1
        out: list[dict[str, Any]] = [
            {"ph": "M", "pid": pid, "name": "process_name",
             "args": {"name": f"{self.metadata.get('artifact', 'artifact')} "
                              f"({self.metadata.get('runtime', '?')})"}},
            {"ph": "M", "pid": pid, "tid": 1, "name": "thread_name", "args": {"name": "runs"}},
            {"ph": "M", "pid": pid, "tid": 2, "name": "thread_name", "args": {"name": "operators"}},
        ]
        t_us = 0.0
        per_run = max([len(self.latency_ms)] + [len(e.durations_ms) for e in self.events])
        for r in range(per_run):
            run_ms = self.latency_ms[r] if r < len(self.latency_ms) else 0.0
            ops_ms = sum(e.durations_ms[r] for e in self.events if r < len(e.durations_ms))
            span = max(run_ms, ops_ms)
            out.append({"ph": "X", "pid": pid, "tid": 1, "name": f"run {r}", "cat": "run",
                        "ts": round(t_us, 3), "dur": round(span * 1000, 3),
                        "args": {"latency_ms": run_ms}})
            ts = t_us
            for e in self.events:
                if r >= len(e.durations_ms):
                    continue
                dur_us = e.durations_ms[r] * 1000
                out.append({"ph": "X", "pid": pid, "tid": 2, "name": e.name,
                            "cat": e.backend or "runtime", "ts": round(ts, 3),
                            "dur": round(dur_us, 3),
                            "args": {"module": module_label(e.module), "backend_op": e.backend_op,
                                     "delegated": e.delegated}})
                ts += dur_us
            t_us += span * 1000 + 10.0  # 10 µs gap so runs read apart
        return {"traceEvents": out, "displayTimeUnit": "ms",
                "otherData": {k: str(v) for k, v in self.metadata.items()}}

    def save_chrome_trace(self, path: str | os.PathLike) -> Path:
        """Write ``to_chrome_trace()`` to ``path`` (atomically)."""
        return write_text_atomic(Path(path), json.dumps(self.to_chrome_trace()))


def operator_kind(backend_op: str) -> str:
    """An operator's kind without its data types: "Convolution (NHWC, QC8) DWConv" and
    "Convolution (NHWC, F32) DWConv" are both "Convolution DWConv"."""
    return re.sub(r"\s*\([^)]*\)", "", backend_op).strip()


def module_label(module: str | None) -> str:
    """Display name of an event's module: the path, ``(model)`` for the top level, or
    ``(unmapped)``."""
    if module is None:
        return "(unmapped)"
    return module or "(model)"


def same_structure(a: Trace, b: Trace) -> list[str]:
    """Differences in structure between two traces of the same artifact (event names, backend
    ops, modules, in order); an empty list when they match."""
    problems = []
    ka = [(e.name, e.backend_op, e.module) for e in a.events]
    kb = [(e.name, e.backend_op, e.module) for e in b.events]
    if len(ka) != len(kb):
        problems.append(f"{len(ka)} events vs {len(kb)}")
    for i, (x, y) in enumerate(zip(ka, kb)):
        if x != y:
            problems.append(f"event {i}: {x} vs {y}")
    return problems


def compare(a: Trace, b: Trace, stat: str = "p50") -> list[tuple[str, float, float]]:
    """Per-module ``(module, ms in a, ms in b)`` rows, ordered by the larger of the two; modules
    present in only one trace get 0.0 on the other side."""
    ma, mb = a.module_breakdown(stat), b.module_breakdown(stat)
    keys = sorted(set(ma) | set(mb), key=lambda k: -max(ma.get(k, 0.0), mb.get(k, 0.0)))
    return [(k, ma.get(k, 0.0), mb.get(k, 0.0)) for k in keys]


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: write null for the statistics of an empty series
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def iter_modules(events: Iterable[Event]) -> list[str]:
    """Distinct module labels of ``events`` in first-seen order."""
    seen: dict[str, None] = {}
    for e in events:
        seen.setdefault(module_label(e.module), None)
    return list(seen)
