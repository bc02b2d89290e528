"""Local profiling of the fixture bundle in the real runtimes (ExecuTorch, LiteRT, onnxruntime)."""
import json
import shutil

from click.testing import CliRunner

from edgekit.profiling.cli import main as cli
from edgekit.profiling.spec import resolve
from edgekit.runtimes.trace import Trace
from edgekit.profiling.transports import job_spec_for, make_transport


def _profile(path, runtime=None, runs=5):
    art = resolve(path, runtime)
    return make_transport("local").profile(art, job_spec_for(art, 2, runs))


def test_pte_events_map_to_user_modules(bundle):
    t = _profile(bundle, "executorch")
    assert len(t.latency_ms) == 5 and t.metadata["tracing"] == "etdump"
    assert all(len(e.durations_ms) == 5 for e in t.events)
    convs = [e for e in t.events if e.backend_op.startswith("Convolution")]
    # in execution order: stem, then layer1.0.conv1 (BN folded into it by the quantizer flow)
    assert [e.module for e in convs] == ["stem", "layer1.0.conv1"]
    assert convs[1].module_hierarchy == ["layer1", "layer1.0", "layer1.0.conv1"]
    assert {e.module for e in t.events if e.backend_op.startswith("Fully")} == {"fc"}
    assert t.mapping_coverage() >= 0.95
    # the reported latency comes from untraced runs; the traced runs' own time is kept beside it
    assert t.metadata["traced_run_p50_ms"] > 0 and t.metadata["latency_source"].startswith("untraced")


def test_interleaved_loops_alternate_blocks():
    from edgekit.runtimes.measure import interleaved_loops

    calls = []
    lat, traced = interleaved_loops(lambda: calls.append("u"), lambda: calls.append("t"), 1, 12,
                                    block=5)
    assert len(lat) == len(traced) == 12
    assert "".join(calls) == "ut" + "u" * 5 + "t" * 5 + "u" * 5 + "t" * 5 + "uu" + "tt"


def test_tflite_events_from_litert_profiler_map_to_user_modules(bundle):
    """LiteRT's own profiler (its C API, in a child process): one event per operator per run,
    the XNNPACK delegate's convolutions in order (stem, then layer1.0.conv1) and the classifier
    mapped to the user's modules."""
    t = _profile(bundle, "litert")
    assert t.metadata["runtime"] == "litert" and len(t.latency_ms) == 5
    assert t.metadata["tracing"] == "litert_profiler" and t.events
    assert all(len(e.durations_ms) == 5 for e in t.events)
    convs = [e for e in t.events if e.backend_op.startswith("Convolution")]
    assert [e.module for e in convs][:2] == ["stem", "layer1.0.conv1"] and all(e.delegated for e in convs)
    assert "fc" in {e.module for e in t.events}
    assert sum(e.module is None for e in t.events) <= 1  # the input's reshape
    # whole microseconds: this tiny model's operators read 0 to a few; they never exceed the invoke
    assert sum(e.stats["p50"] for e in t.events) <= sorted(t.metadata["traced_invoke_ms"])[2]


def test_litert_profiler_reports_a_crash_as_one_line(tmp_path):
    """A .tflite whose header passes the cheap check but whose tables are garbage: LiteRT's C
    loader does not verify the flatbuffer; the child may crash or fail, this process gets a
    UserError naming the file."""
    import pytest
    from edgekit.errors import UserError
    from edgekit.runtimes.litert_profiler import profile_ops

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    with pytest.raises(UserError, match="bad.tflite"):
        profile_ops(bad, 0, 1, 1)


def test_tflite_trace_keeps_its_latency_when_the_profiler_is_missing(bundle, monkeypatch):
    """Where LiteRT's C API cannot be had (tflite-runtime alone on a device), the .tflite trace
    keeps its end-to-end latency and says why it has no operator events."""
    from edgekit.errors import UserError
    from edgekit.runtimes import litert_profiler

    def missing(*a, **k):
        raise UserError("LiteRT's operator profiler needs ai-edge-litert==2.3.0")
    monkeypatch.setattr(litert_profiler, "profile_ops", missing)
    t = _profile(bundle, "litert")
    assert len(t.latency_ms) == 5 and not t.events and t.metadata["tracing"] == "none"
    assert "ai-edge-litert" in t.metadata["op_trace_error"]


def test_tflite_and_onnx_run(bundle):
    o = _profile(bundle, "onnxruntime")
    assert o.events and all(len(e.durations_ms) == 5 for e in o.events)
    assert "fc" in {e.module for e in o.events}


def test_single_artifact_finds_its_etrecord(bundle, tmp_path):
    for f in ("model.pte", "model.etrecord"):
        shutil.copy(bundle / f, tmp_path / f)
    art = resolve(tmp_path / "model.pte")
    assert art.etrecord == tmp_path / "model.etrecord" and art.input_shape is None


def test_cli_profile_writes_trace_chrome_and_plot(bundle, tmp_path):
    r = CliRunner().invoke(cli, ["profile", str(bundle), "--device", "local", "--warmup-runs", "2",
                                 "--runs", "5", "--trace-out", str(tmp_path / "t.json"),
                                 "--chrome-trace", str(tmp_path / "c.json"),
                                 "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert "latency p50" in r.output and "layer1.0.conv1" in r.output
    t = Trace.load(tmp_path / "t.json")
    assert t.metadata["artifact"] == "model.pte" and t.metadata["runs"] == 5
    assert t.metadata["artifact_sha256"] == json.loads((bundle / "manifest.json").read_text())[
        "artifacts"][0]["sha256"]
    assert json.loads((tmp_path / "c.json").read_text())["traceEvents"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    r2 = CliRunner().invoke(cli, ["profile", str(bundle), "--runtime", "onnx", "--runs", "3",
                                  "--warmup-runs", "1", "--trace-out", str(tmp_path / "o.json")])
    assert r2.exit_code == 0, r2.output
    r3 = CliRunner().invoke(cli, ["trace", "compare", str(tmp_path / "t.json"),
                                  str(tmp_path / "o.json"), "--plot", str(tmp_path / "cmp.png")])
    assert r3.exit_code == 0, r3.output
    assert "fc" in r3.output and (tmp_path / "cmp.png").exists()
