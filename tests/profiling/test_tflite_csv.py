"""benchmark_model op-profiling CSV parsing and module mapping.

The CSV text below is hand-written in the layout LiteRT's profile summarizer uses in CSV mode
(header "node type, start, first, avg_ms, %, cdf%, mem KB, times called, name"; "Delegate
internal:" before the delegate's own table); no benchmark_model binary is available here."""
from pathlib import Path

from edgekit.runtimes.litert import (events_from_benchmark_csv, load, module_from_location,
                                             op_modules, parse_benchmark_csv,
                                             parse_benchmark_stdout)

SAMPLE = """\
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 0.000, 0.210, 0.180, 100.000%, 100.000%, 0.000, 1, [serving_default_output_0_output]:{d}

============================== Top by Computation Time ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 0.000, 0.210, 0.180, 100.000%, 100.000%, 0.000, 1, [serving_default_output_0_output]:{d}

Timings (microseconds): count=50 first=210 curr=181 min=170 max=260 avg=180.5 std=12
Delegate internal:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
Convert (NC), 0.000, 0.004, 0.003, 1.7%, 1.7%, 0.000, 1, Delegate/Convert (NC):0
Convolution (NHWC, QC8) IGEMM, 0.003, 0.090, 0.080, 44.4%, 46.1%, 0.000, 1, Delegate/Convolution (NHWC, QC8) IGEMM:1
Convolution (NHWC, QC8) IGEMM, 0.083, 0.070, 0.060, 33.3%, 79.4%, 0.000, 1, Delegate/Convolution (NHWC, QC8) IGEMM:2
Mean (ND), 0.143, 0.020, 0.020, 11.1%, 90.5%, 0.000, 1, Delegate/Mean (ND):3
Fully Connected (NC, QS8, QC8W) GEMM, 0.163, 0.017, 0.017, 9.5%, 100.0%, 0.000, 1, Delegate/Fully Connected:4
"""


def test_location_names_give_module_paths():
    name = ("__main__.Tiny/torch.nn.modules.container.Sequential_layer1/"
            "tests.Block_0/torch.nn.modules.conv.Conv2d_conv1;1")
    assert module_from_location(name) == ("layer1.0.conv1", "torch.nn.modules.conv.Conv2d",
                                          ["layer1", "layer1.0", "layer1.0.conv1"])
    fused = ("__main__.T/torch.nn.modules.activation.ReLU_relu;;"
             "__main__.T/torch.nn.modules.conv.Conv2d_stem;")
    assert module_from_location(fused)[0] == "stem"
    assert module_from_location("serving_default_args_0")[0] is None


def test_parse_and_map_sample_csv(bundle):
    it, _ = load(Path(bundle) / "model.tflite")
    ops = op_modules(it)
    text = SAMPLE.format(d=len(ops) - 1)
    tables = parse_benchmark_csv(text)
    assert len(tables["primary"]) == 1 and len(tables["delegate"]) == 5
    events = events_from_benchmark_csv(text, ops)
    assert [e.backend_op for e in events][1] == "Convolution (NHWC, QC8) IGEMM"
    assert [e.module for e in events if e.backend_op.startswith("Convolution")] == ["stem", "layer1.0.conv1"]
    assert events[-1].module == "fc" and events[-1].durations_ms == [0.017]
    st = parse_benchmark_stdout(text)
    assert st["count"] == 50 and abs(st["avg"] - 0.1805) < 1e-9
