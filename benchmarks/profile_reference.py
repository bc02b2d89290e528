"""Profiling figures for the reference model (ResNet-20, 1x28x28).

Usage: .venv/bin/python benchmarks/profile_reference.py [--bundle build/demo] [--runs 200]
       [--warmup-runs 20] [--out benchmarks/results/profile_reference.json]

Prints and writes (JSON):
1. per-module mapping coverage of the delegated operators' time in the int8 .pte trace;
2. the profiler's overhead: the p50 latency ``edgekit profile`` reports with ETDump tracing on vs
   off (same .pte, ms), and beside it the wall time of the traced runs themselves;
3. fp32 vs int8 p50 latency for .pte (ExecuTorch XNNPACK) and .tflite (LiteRT), and the speed-up.

The bundle (``make demo`` writes ``build/demo``, the default) gives the int8 .pte/.tflite; the fp32
ones are lowered from its ``model_float.pt2`` by the same targets.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


FP32_TWINS = {"pte": "executorch-xnnpack", "tflite": "litert"}


def fp32_artifacts(bundle: Path, out: Path, twins: dict[str, str] = FP32_TWINS) -> dict[str, Path]:
    """The FP32 artifacts of ``bundle``'s float program, ``{"<kind>_fp32": path}`` for each
    ``kind: target`` of ``twins``, lowered by the same targets that wrote its int8 artifacts
    (recipe None: no quantization)."""
    import edgekit.plugins  # noqa: F401  (registers the targets)
    from edgekit.bundle import read_manifest
    from edgekit.pipeline import canonical_from_bundle
    from edgekit.registry import TARGETS

    canonical = canonical_from_bundle(bundle, read_manifest(bundle))
    return {f"{kind}_fp32": TARGETS.get(target).lower(canonical, None, out, "fp32").path
            for kind, target in twins.items()}


def profile(path: Path, warmup: int, runs: int, trace_ops: bool = True, threads: int | None = None):
    from edgekit.profiling.spec import resolve
    from edgekit.profiling.transports import job_spec_for, make_transport

    art = resolve(path)
    return make_transport("local").profile(art, job_spec_for(art, warmup, runs, threads, trace_ops=trace_ops))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="an edgekit bundle with .pte and .tflite (default: build/demo)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup-runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="on/off overhead pairs (interleaved)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profile_reference.json")
    a = ap.parse_args()
    from edgekit.bundle import read_manifest

    bundle = (a.bundle or ROOT / "build" / "demo").resolve()
    if not (bundle / "manifest.json").exists():
        sys.exit(f"{bundle} is not an edgekit bundle: run 'make demo' first, or give --bundle DIR")
    with tempfile.TemporaryDirectory() as tmp:
        files = {x["runtime"]: bundle / x["file"] for x in read_manifest(bundle)["artifacts"]}
        paths = {"pte_int8": files["executorch"], "tflite_int8": files["litert"], **fp32_artifacts(bundle, Path(tmp))}
        source = f"bundle {bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle}"
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
