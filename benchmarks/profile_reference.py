"""Profiling figures for the reference model (ResNet-20, 1x28x28).

Usage: .venv/bin/python benchmarks/profile_reference.py [--bundle build/demo] [--runs 200]
       [--warmup-runs 20] [--out benchmarks/results/profile_reference.json]

Prints and writes (JSON):
1. per-module mapping coverage of the delegated operators' time in the int8 .pte trace;
2. the profiler's overhead: the p50 latency ``edgekit profile`` reports with ETDump tracing on vs
   off (same .pte, ms), and beside it the wall time of the traced runs themselves;
3. fp32 vs int8 p50 latency for .pte (ExecuTorch XNNPACK) and .tflite (LiteRT), and the speed-up.

With --bundle (a directory written by ``edgekit quantize``) its int8 .pte/.tflite are used and the
fp32 artifacts are lowered from its ``model_float.pt2``. Without, the script builds all four from
``edgekit.models.resnet.ResNet20`` (the trained checkpoint when present, else seeded random
weights: latency does not depend on the weights' values) with the same flows as the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reference_model():
    import torch

    from edgekit.models.resnet import ResNet20

    torch.manual_seed(0)
    m = ResNet20()
    ck = ROOT / "edgekit/models/checkpoints/resnet20_fmnist.pt"
    if ck.exists():
        m.load_state_dict(torch.load(ck, map_location="cpu"))
    return m.eval(), ("checkpoint" if ck.exists() else "random weights")


def build(out: Path, model=None) -> dict[str, Path]:
    """Lower ``model`` (default: the reference ResNet-20) to int8 and fp32 .pte/.tflite in ``out``."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config as lcfg
    from litert_torch.quantize.quant_config import QuantConfig

    if model is None:
        model, _ = _reference_model()
    x = (torch.randn(1, 1, 28, 28),)
    calib = [torch.randn(1, 1, 28, 28) for _ in range(8)]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}

    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    p = prepare_pt2e(torch.export.export(model, x).module(), q)
    for c in calib:
        p(c)
    edge = to_edge_transform_and_lower(torch.export.export(convert_pt2e(p), x),
                                       partitioner=[XnnpackPartitioner()], generate_etrecord=True)
    prog = edge.to_executorch()
    paths["pte_int8"] = out / "int8.pte"
    paths["pte_int8"].write_bytes(prog.buffer)
    prog.get_etrecord().save(str(out / "int8.etrecord"))

    edge = to_edge_transform_and_lower(torch.export.export(model, x),
                                       partitioner=[XnnpackPartitioner()], generate_etrecord=True)
    prog = edge.to_executorch()
    paths["pte_fp32"] = out / "fp32.pte"
    paths["pte_fp32"].write_bytes(prog.buffer)
    prog.get_etrecord().save(str(out / "fp32.etrecord"))

    lq = PT2EQuantizer().set_global(lcfg(is_per_channel=True, is_dynamic=False))
    lp = prepare_pt2e(torch.export.export(model, x).module(), lq)
    for c in calib:
        lp(c)
    paths["tflite_int8"] = out / "int8.tflite"
    litert_torch.convert(convert_pt2e(lp, fold_quantize=False), x,
                         quant_config=QuantConfig(pt2e_quantizer=lq)).export(str(paths["tflite_int8"]))
    paths["tflite_fp32"] = out / "fp32.tflite"
    litert_torch.convert(model, x).export(str(paths["tflite_fp32"]))
    return paths


def profile(path: Path, warmup: int, runs: int, trace_ops: bool = True):
    from edgekit.profiling.job import resolve
    from edgekit.profiling.transports import job_spec_for, make_transport

    art = resolve(path)
    return make_transport("local").profile(art, job_spec_for(art, warmup, runs, trace_ops=trace_ops))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="an edgekit bundle (default: build/demo if present)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup-runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="on/off overhead pairs (interleaved)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profile_reference.json")
    a = ap.parse_args()
    bundle = a.bundle or (ROOT / "build" / "demo" if (ROOT / "build/demo/manifest.json").exists()
                          else None)
    with tempfile.TemporaryDirectory() as tmp:
        if bundle is not None:
            import torch
            man = json.loads((bundle / "manifest.json").read_text())
            files = {x["runtime"]: bundle / x["file"] for x in man["artifacts"]}
            model = torch.export.load(str(bundle / "model_float.pt2")).module()
            built = build(Path(tmp), model)
            paths = {"pte_int8": files["executorch"], "tflite_int8": files["litert"],
                     "pte_fp32": built["pte_fp32"], "tflite_fp32": built["tflite_fp32"]}
            source = f"bundle {bundle.resolve().relative_to(ROOT) if bundle.resolve().is_relative_to(ROOT) else bundle}"
        else:
            paths = build(Path(tmp))
            source = f"ResNet20 built by this script ({_reference_model()[1]})"
        res: dict = {"source": source, "runs": a.runs, "warmup_runs": a.warmup_runs}
        t = profile(paths["pte_int8"], a.warmup_runs, a.runs)
        res["pte_int8_mapping_coverage"] = t.mapping_coverage()
        res["pte_int8_mapping_coverage_without_adjacent"] = t.mapping_coverage(include_adjacent=False)
        res["pte_int8_modules"] = len({e.module for e in t.events if e.module})
        on, off, raw = [], [], []
        for _ in range(a.repeats):  # interleave so drift from other load hits both sides
            off.append(profile(paths["pte_int8"], a.warmup_runs, a.runs, False).latency["p50"])
            t_on = profile(paths["pte_int8"], a.warmup_runs, a.runs, True)
            on.append(t_on.latency["p50"])
            raw.append(t_on.metadata["traced_run_p50_ms"])
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        # the figure: the p50 edgekit reports with per-operator tracing on vs off
        res["pte_int8_p50_tracing_off_ms"] = med(off)
        res["pte_int8_p50_tracing_on_ms"] = med(on)
        res["tracing_overhead_pct"] = 100 * (med(on) / med(off) - 1)
        # the cost inside a traced run itself (ETDump + XNNPACK's per-run operator logging)
        res["pte_int8_traced_run_p50_ms"] = med(raw)
        res["traced_run_cost_pct"] = 100 * (med(raw) / med(off) - 1)
        for kind in ("pte", "tflite"):
            f = profile(paths[f"{kind}_fp32"], a.warmup_runs, a.runs, False).latency["p50"]
            i = profile(paths[f"{kind}_int8"], a.warmup_runs, a.runs, False).latency["p50"]
            res[f"{kind}_fp32_p50_ms"], res[f"{kind}_int8_p50_ms"] = f, i
            res[f"{kind}_speedup"] = f / i
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    for k, v in res.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")


if __name__ == "__main__":
    main()
