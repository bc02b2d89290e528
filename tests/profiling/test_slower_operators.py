"""The int8-vs-FP32 operator comparison a bundle records when its int8 artifact is the slower:
operator kinds without their data types (``Trace.operator_breakdown``), summed per kind, only
the kinds int8 makes slower."""
from __future__ import annotations

import shutil

from edgekit.pipeline import excess_by_kind, slower_operators
from edgekit.profiling.runners import run_spec
from edgekit.profiling.spec import JobSpec
from edgekit.runtimes.trace import Event, Trace, operator_kind


def _ev(op: str, p50: float) -> Event:
    return Event(name=op, backend_op=op, durations_ms=[p50])


def _tr(events) -> Trace:
    return Trace(metadata={}, latency_ms=[1.0], events=list(events))


def test_operator_kind_drops_the_data_types():
    assert operator_kind("Convolution (NHWC, QC8) DWConv") == "Convolution DWConv"
    assert operator_kind("Convolution (NHWC, F32) DWConv") == "Convolution DWConv"
    assert operator_kind("Fully Connected (NC, QS8, QC8W) GEMM") == "Fully Connected GEMM"
    assert operator_kind("Transpose (ND, X8)") == "Transpose"
    assert operator_kind("aten::add.out") == "aten::add.out"


def test_excess_by_kind_sums_filters_and_orders():
    int8 = [_ev("Multiply (ND)", 0.01)] * 54 + [_ev("Convolution (NHWC, QC8) DWConv", 0.02)] * 11 + \
        [_ev("Fully Connected (NC, QS8, QC8W) GEMM", 0.001)] * 42
    fp32 = [_ev("Multiply (ND)", 0.0005)] * 36 + [_ev("Convolution (NHWC, F32) DWConv", 0.014)] * 11 + \
        [_ev("Fully Connected (NC, F32) GEMM", 0.0025)] * 42 + [_ev("Divide (ND)", 0.0004)] * 18
    rows = excess_by_kind(_tr(int8), _tr(fp32))
    assert [r["operator"] for r in rows] == ["Multiply", "Convolution DWConv"]  # GEMM and Divide got faster
    mul = rows[0]
    assert (mul["int8_count"], mul["fp32_count"]) == (54, 36)
    assert abs(mul["int8_ms"] - 0.54) < 1e-9 and abs(mul["fp32_ms"] - 0.018) < 1e-9
    assert excess_by_kind(_tr(fp32), _tr(fp32)) == []


def test_real_xnnpack_events_are_grouped_by_kind(bundle, tmp_path):
    """On the tiny bundle's real int8 .pte: every traced XNNPACK operator lands in a kind without
    data types; against an empty FP32 trace every kind is an excess; against itself (traced
    twice) any row still has int8 above fp32 by construction."""
    pte = tmp_path / "model.pte"
    shutil.copy(bundle / "model.pte", pte)
    trace = run_spec(JobSpec(artifact=pte.name, runtime="executorch", warmup_runs=2, runs=5), base=tmp_path)
    events = trace.events
    kinds = {operator_kind(e.backend_op) for e in events}
    assert kinds and not any("(" in k for k in kinds)
    assert {r["operator"] for r in excess_by_kind(trace, _tr([]))} == {k for k in kinds if any(
        operator_kind(e.backend_op) == k and e.stats["p50"] > 0 for e in events)}
    twin = tmp_path / "twin.pte"
    shutil.copy(pte, twin)
    for r in slower_operators(pte, twin, "executorch"):
        assert r["operator"] in kinds and r["int8_ms"] > r["fp32_ms"]
