"""Trace schema: statistics, JSON round trip, Chrome-trace export, refusal of bad files."""
import json
import math

import pytest

from edgekit.errors import UserError
from edgekit.runtimes.trace import Event, Trace, compare, stats


def _trace(complete=True):
    ev = [Event(name="Convolution #1", backend_op="Convolution", durations_ms=[1.0, 2.0, 3.0],
                backend="XnnpackBackend", delegated=True, module="layer1.0.conv1",
                module_hierarchy=["layer1", "layer1.0", "layer1.0.conv1"], mapping="debug_handle"),
          Event(name="Transpose #1", backend_op="Transpose", durations_ms=[0.1, 0.1, 0.1],
                backend="XnnpackBackend", delegated=True, module=None)]
    return Trace(metadata={"artifact": "m.pte", "runtime": "executorch", "runs": 3,
                           "warmup_runs": 1, "device": "host"},
                 latency_ms=[1.5, 2.5, 3.5], events=ev, complete=complete)


def test_stats_match_numpy_linear_interpolation():
    s = stats([4, 1, 3, 2])
    assert (s["min"], s["max"], s["mean"], s["n"]) == (1, 4, 2.5, 4)
    assert s["p50"] == pytest.approx(2.5) and s["p10"] == pytest.approx(1.3)
    assert s["p90"] == pytest.approx(3.7)
    assert math.isnan(stats([])["p50"])


def test_round_trip_and_coverage(tmp_path):
    t = _trace()
    p = t.save(tmp_path / "t.json")
    back = Trace.load(p)
    assert back.to_dict() == t.to_dict()
    d = json.loads(p.read_text())
    assert d["schema"] == "edgekit.trace" and d["events"][0]["stats"]["p50"] == 2.0
    assert back.mapping_coverage() == pytest.approx(2.0 / 2.1)
    assert back.module_breakdown()["(unmapped)"] == pytest.approx(0.1)


def test_incomplete_trace_is_never_saved(tmp_path):
    with pytest.raises(RuntimeError):
        _trace(complete=False).save(tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_chrome_trace_has_one_slice_per_run_and_op(tmp_path):
    ct = _trace().to_chrome_trace()
    xs = [e for e in ct["traceEvents"] if e["ph"] == "X"]
    assert len([e for e in xs if e["cat"] == "run"]) == 3
    ops = [e for e in xs if e["cat"] != "run"]
    assert len(ops) == 6 and ops[0]["args"]["module"] == "layer1.0.conv1"
    assert ops[1]["ts"] == pytest.approx(ops[0]["ts"] + ops[0]["dur"])
    json.loads(_trace().save_chrome_trace(tmp_path / "c.json").read_text())


@pytest.mark.parametrize("content", ["not json", json.dumps({"schema": "other"}),
                                     json.dumps({"schema": "edgekit.trace", "version": 99})])
def test_bad_trace_files_raise_user_error(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(UserError):
        Trace.load(p)


def test_compare_rows_cover_both_traces():
    a, b = _trace(), _trace()
    b.events[0].module = "layer2"
    rows = {r[0]: (r[1], r[2]) for r in compare(a, b)}
    assert rows["layer1.0.conv1"] == (2.0, 0.0) and rows["layer2"] == (0.0, 2.0)


def test_xnnpack_fully_connected_events_align_with_1x1_conv_nodes():
    """XNNPACK runs a 1x1 stride-1 Conv2d node as a Fully Connected operator: such an event
    takes that conv node, so the attention linears after it keep their own modules."""
    from edgekit.runtimes.executorch import align
    nodes = [("conv", 1), ("conv", 2), ("add", 3), ("fc", 4), ("fc", 5)]
    events = ["Convolution (NHWC, QC8) IGEMM #1", "Fully Connected (NC, QS8, QC8W) GEMM #1",
              "Add (ND) #1", "Fully Connected (NC, QS8, QC8W) GEMM #2", "Fully Connected (NC, QS8, QC8W) GEMM #3"]
    assert align(events, nodes) == [0, 1, 2, 3, 4]
    assert align(["Convolution (NHWC, QC8) IGEMM #1"], [("fc", 1)]) == [None]
