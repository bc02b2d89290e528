"""Hybrid vision transformers (issue: Q-HyViT): Q-HyViT and its baselines on the two reference
hybrids, printed and merged into benchmarks/results/hybrid_vit.json (each part replaces its keys).

    .venv/bin/python benchmarks/hybrid_vit.py [--models mobilevit_fmnist,efficientformer_fmnist]
        [--parts baselines,search,deploy,latency] [--methods M,...] [--out FILE]

Part ``search``: every method on the same 32 real training images, its recipe run as the
simulation (``full-integer`` placement: conv, linear, the attention matmuls, softmax, LayerNorm,
GELU/SiLU outputs quantized) on the whole test split, at W6A6 and W4A4 (every method: per-tensor
min/max, the stock PT2E flow's observers; EasyQuant; PTQ4ViT with its twin-uniform post-softmax
and post-GELU/SiLU quantizers (simulation only) and without them (``ptq4vit_single``); edgekit's
whitepaper PTQ; Q-HyViT as edgekit runs it by default (the paper's undamped Fisher and damping
100, each with the per-tensor scheme choice and with symmetric activations only, the recipe
closest to FP32 on the calibration images kept); the same without the bridge blocks,
``qhyvit_nobridge``, and without the symmetric-only search, ``qhyvit_greedyscheme``;
Q-HyViT given the twin-uniform quantizers too, ``qhyvit_twin``; and each tensor's scheme and weight
granularity of lowest error outright, as the paper chooses, ``qhyvit_paperchoice`` and
``qhyvit_twin_paperchoice``) and W8A8 / W4A8 (min/max,
Q-HyViT), with the calibration seconds. Q-HyViT against PTQ4ViT image by image (one scale per
tensor: ``qhyvit`` vs ``ptq4vit_single``; twin-uniform: ``qhyvit_twin`` vs ``ptq4vit``):
McNemar's exact test on the images only one of the two gets right.
Part ``deploy``: ``edgekit quantize --method qhyvit`` W8A8 with --calib (32 images; .pte, .tflite
and onnx-qdq .onnx) and with --data-free (.pte, .tflite), each evaluated in its runtime against
its simulation.
Part ``latency``: the Q-HyViT W8A8 (--calib) .pte, .tflite and .onnx against their FP32 twins
(lowered by the same targets), p50 latency with the project's profiler (200 timed runs, tracing off), and
the per-module breakdown of a traced profile grouped into attention (qkv, q@kᵀ, softmax, attn@v,
output projection), the transformer MLPs and LayerNorms, the conv blocks (with MobileViT's
unfold/fold), the classifier, the model's top level and unmapped time.
Part ``baselines`` (below):

Per model, on the whole 10,000-image Fashion-MNIST test split, every int8 figure measured in its
runtime (ExecuTorch for .pte, LiteRT for .tflite):
- FP32 top-1 (PyTorch);
- the stock flow a user would pick: XNNPACKQuantizer per-tensor min/max PT2E calibrated on the
  same 32 real training images, lowered with the XnnpackPartitioner;
- ``edgekit quantize --calib`` (32 real training images, ``--method ptq``) W8A8;
- ``edgekit quantize --data-free`` (ZeroQ) W8A8;
with agreement with FP32, logit SQNR, and the ops each artifact runs in float.
Q-HyViT, EasyQuant and PTQ4ViT rows join this table when they are built. Needs the Debian package
dataset-fashion-mnist (the 32 calibration images come from the training split). Runs use a fresh,
empty cache folder (never the user's).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CALIB_IMAGES = 32  # Q-HyViT's calibration set size (Lee et al., Sec. IV-A)


def calibration_images(seed: int = 0) -> np.ndarray:
    """The benchmark's 32 calibration images, uint8 [32, 28, 28], drawn from the training split
    (seed 0; ``hybrid_vit_seeds.py`` draws others)."""
    from edgekit.data.fashion_mnist import load_split
    images, _ = load_split("train")
    return images[np.random.default_rng(seed).choice(len(images), CALIB_IMAGES, replace=False)]


def stock_per_tensor_pte(model: torch.nn.Module, calib: torch.Tensor, path: Path) -> float:
    """The stock ExecuTorch flow: export at batch 1, XNNPACKQuantizer symmetric per-tensor config
    (min/max observers), prepare_pt2e, calibrate on ``calib`` image by image, convert_pt2e, lower with the
    XnnpackPartitioner. Writes ``path``; returns seconds."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    t0 = time.time()
    x = (torch.zeros(1, 1, 28, 28),)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=False))
    prepared = prepare_pt2e(torch.export.export(model, x).module(), q)
    with torch.no_grad():
        for i in range(len(calib)):  # the program is exported at batch 1, as users export
            prepared(calib[i:i + 1])
    prog = to_edge_transform_and_lower(torch.export.export(convert_pt2e(prepared), x),
                                       partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(prog.buffer)
    return time.time() - t0


def pte_outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    from edgekit.registry import TARGETS
    from edgekit.evaluation import run_artifact
    return run_artifact(TARGETS.get("executorch-xnnpack"), path, x, progress=False)[0]


def scores(out: torch.Tensor, fp32: torch.Tensor, labels: torch.Tensor) -> dict:
    from edgekit.tasks.base import sqnr_db
    from edgekit.tasks.classification import agreement, top1
    return {"top1": round(top1(out, labels), 4), "agreement_with_fp32": round(agreement(out, fp32), 4),
            "sqnr_db_vs_fp32": round(sqnr_db(fp32, out), 2)}


def edgekit_rows(name: str, args: list[str], out: Path) -> dict:
    from tests.conftest import run_cli
    t0 = time.time()
    proc = run_cli("quantize", name, *args, "--out", str(out), "--no-progress", timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"edgekit quantize {name} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    print(proc.stdout)
    m = json.loads((out / "manifest.json").read_text())
    arts = {a["file"]: a for a in m["artifacts"]}
    rows = {}
    for r in m["evaluation"]["results"]:
        a = arts[r["file"]]
        rows[r["file"]] = {k: r.get(k) for k in ("top1", "agreement_with_fp32", "sqnr_db_vs_fp32",
                                                 "agreement_with_simulation")} | {
            "float_ops": sorted({o["op"] for o in a.get("ops", {}).get("float_ops", [])}),
            "not_delegated": sorted({o["op"] for o in a.get("ops", {}).get("not_delegated", [])}),
            "latency_p50_ms": a.get("latency_p50_ms"), "fp32_latency_p50_ms": a.get("fp32_latency_p50_ms")}
    return {"artifacts": rows, "seconds": round(time.time() - t0, 1), "timings_s": m["timings_s"]}


LOW = ("minmax", "easyquant", "ptq4vit", "ptq4vit_single", "ptq", "qhyvit", "qhyvit_nobridge", "qhyvit_greedyscheme",
       "qhyvit_twin", "qhyvit_paperchoice", "qhyvit_twin_paperchoice")
# Q-HyViT against PTQ4ViT image by image: the deployable pair (one scale per tensor) and the twin-uniform pair
PAIRS = (("qhyvit", "ptq4vit_single"), ("qhyvit_twin", "ptq4vit"))


def paired(pred_a: torch.Tensor, pred_b: torch.Tensor, labels: torch.Tensor) -> dict:
    """Two methods' predictions (int64 [N]) on the same images: the images only one of them
    classifies correctly, McNemar's exact test on those (two-sided binomial p-value of the
    smaller count under p = 1/2; McNemar 1947), which tells a difference in top-1 from the noise
    of which images each gets wrong, and the images where they pick different classes."""
    from scipy.stats import binomtest
    a, b = pred_a == labels, pred_b == labels
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return {"only_first_correct": only_a, "only_second_correct": only_b, "mcnemar_exact_p": round(p, 4),
            "different_class": int((pred_a != pred_b).sum()), "images": len(labels)}
SEARCH_BITS = {(6, 6): LOW, (4, 4): LOW,
               (8, 8): ("minmax", "qhyvit"), (4, 8): ("minmax", "qhyvit")}


def search_rows(name: str, calib_u8: np.ndarray, only: set[str] | None = None, rows: dict | None = None,
                bits: set[tuple[int, int]] | None = None) -> dict:
    """Part ``search``: each method's recipe from the same 32 images, simulated on the test split
    (``only``: these methods, their rows replacing those in ``rows``; ``bits``: these (w, a) only)."""
    import dataclasses
    from edgekit import api
    from edgekit.data.calibration import CalibrationSource
    from edgekit.data.fashion_mnist import load_tensors, normalize
    from edgekit.quant.placement import quantizer_for
    from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
    from edgekit.registry import ALGORITHMS
    canonical, _ = api.prepare(name)
    x, y = load_tensors("test")
    fp32 = canonical.run(canonical.graph_module, x)
    calib = CalibrationSource(normalize(calib_u8), {"kind": "real"})
    rows = dict(rows or {}) | {"fp32_top1": round(float((fp32.argmax(1) == y).float().mean()), 4)}
    for (wb, ab), methods in SEARCH_BITS.items():
        if bits and (wb, ab) not in bits:
            continue
        preds: dict[str, torch.Tensor] = {}
        for method in methods:
            if only and method not in only:
                continue
            algo = ALGORITHMS.get({"minmax": "ptq"}.get(method, method.split("_")[0]))
            cfg = dataclasses.replace(algo.config(), w_bits=wb, a_bits=ab)
            if method == "ptq4vit_single":  # one uniform scale on every tensor (deployable)
                cfg = dataclasses.replace(cfg, twin_uniform=False)
            if method == "qhyvit_nobridge":  # without the joint search of the bridge blocks
                cfg = dataclasses.replace(cfg, bridges=False)
            if method == "qhyvit_greedyscheme":  # the per-tensor scheme choice alone (no symmetric-only search)
                cfg = dataclasses.replace(cfg, symmetric_candidate=False)
            if method.startswith("qhyvit_twin"):  # Q-HyViT given PTQ4ViT's twin-uniform quantizers (simulation only)
                cfg = dataclasses.replace(cfg, twin_uniform=True)
            if method.endswith("_paperchoice"):  # each tensor's scheme/granularity of lowest error outright
                cfg = dataclasses.replace(cfg, clear_choices=False)
            if method == "minmax":  # what the stock PT2E flow's min/max observers give, per-tensor weights
                cfg = dataclasses.replace(cfg, act_estimator="minmax", per_channel=False)
            t0 = time.time()
            recipe = algo.fn(canonical, cfg, calib, placement="full-integer")
            secs = time.time() - t0
            gm = fused_for_simulation(quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe)))
            out = canonical.run(gm, x)
            row = scores(out, fp32, y) | {"calibration_s": round(secs, 1)}
            preds[method] = out.argmax(1)
            if method == "qhyvit":
                row["per_tensor_weights"] = sum(lq.weight.granularity == "per_tensor" for lq in recipe.layers.values())
                row["symmetric_activations"] = sum(aq.quant.symmetric for aq in recipe.activations.values())
                row["activations"] = len(recipe.activations)
            rows[f"w{wb}a{ab}_{method}"] = row
            print(name, f"W{wb}A{ab}", method, row, flush=True)
        for a, b in PAIRS:
            if a in preds and b in preds:
                rows[f"w{wb}a{ab}_paired_{a}_vs_{b}"] = paired(preds[a], preds[b], y)
                print(name, f"W{wb}A{ab}", a, "vs", b, rows[f"w{wb}a{ab}_paired_{a}_vs_{b}"], flush=True)
    return rows


def run_model(name: str, tmp: Path, calib_u8: np.ndarray) -> dict:
    from edgekit.data.fashion_mnist import load_tensors, normalize
    from edgekit.models.zoo import load_model
    model = load_model(name).model
    x, y = load_tensors("test")
    with torch.no_grad():
        fp32 = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    res: dict = {"fp32_top1": round(float((fp32.argmax(1) == y).float().mean()), 4)}
    calib = normalize(calib_u8)
    secs = stock_per_tensor_pte(model, calib, tmp / f"{name}_stock.pte")
    res["stock_per_tensor_pte"] = scores(pte_outputs(tmp / f"{name}_stock.pte", x), fp32, y) | {"seconds": round(secs, 1)}
    res["edgekit_ptq_calib32_w8a8"] = edgekit_rows(name, ["--calib", str(tmp / "calib32.npz"), "--method", "ptq"],
                                                   tmp / f"{name}_ptq")
    res["edgekit_zeroq_data_free_w8a8"] = edgekit_rows(name, ["--data-free"], tmp / f"{name}_df")
    return res


LATENCY_RUNS, LATENCY_WARMUP = 200, 20
# One runtime thread: on the 2-core machine a 2-thread XNNPACK pool gave the same .pte a p50 of
# 0.27 ms in one run and 0.61 ms in the next. Even with one thread a sub-millisecond p50 moved by
# up to 40% between runs minutes apart, so every artifact is timed in LATENCY_ROUNDS rounds taken
# in turn (FP32 and int8 side by side in time) and the median round is reported, with the spread.
LATENCY_THREADS, LATENCY_ROUNDS = 1, 7
DEPLOY_TARGETS = ["--target", "executorch-xnnpack", "--target", "litert", "--target", "onnx-qdq"]


def time_category(model: torch.nn.Module, module: str | None) -> str:
    """The part of a hybrid ``model`` a trace event's ``module`` path belongs to: ``attention``
    (inside an attention module), ``transformer_mlp_ln`` (the rest of a transformer layer, and
    LayerNorms), ``classifier`` (the last linear, ``fc``), ``conv_blocks`` (everything else mapped
    to a submodule), ``top_level`` (the model's own forward: token flatten, mean) or ``unmapped``."""
    from edgekit.models.mobilevit import Attention, TransformerLayer
    if module is None:
        return "unmapped"
    if module == "":
        return "top_level"
    mods = dict(model.named_modules())
    parts = module.split(".")
    chain = [mods.get(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    if any(isinstance(m, Attention) for m in chain):
        return "attention"
    if any(isinstance(m, (TransformerLayer, torch.nn.LayerNorm)) for m in chain):
        return "transformer_mlp_ln"
    return "classifier" if module == "fc" else "conv_blocks"


FP32_TWINS = {"pte": "executorch-xnnpack", "tflite": "litert", "onnx": "onnx-qdq"}


def largest(ms: dict[str, float], n: int = 8) -> dict[str, float]:
    """The ``n`` largest entries of ``ms`` (milliseconds by name), largest first, rounded."""
    return {k: round(v, 4) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])[:n]}


def latency_rows(name: str, bundle: Path, tmp: Path) -> dict:
    """Part ``latency``: p50 (tracing off; the median of ``LATENCY_ROUNDS`` rounds) and the traced
    per-category breakdown (ms, share of operator time) of the bundle's int8 .pte/.tflite/.onnx
    and their FP32 twins (the bundle's float program lowered by the same targets without a
    recipe), with the unmapped operators by name. The .tflite's events come from
    LiteRT's own profiler (``edgekit.runtimes.litert_profiler``), whole microseconds per operator."""
    from edgekit.bundle import read_manifest
    from edgekit.models.zoo import load_model
    from profile_reference import fp32_artifacts, profile
    model = load_model(name).model
    files = {x["runtime"]: bundle / x["file"] for x in read_manifest(bundle)["artifacts"]}
    paths = {"pte_int8": files["executorch"], "tflite_int8": files["litert"], "onnx_int8": files["onnxruntime"],
             **fp32_artifacts(bundle, tmp, FP32_TWINS)}
    rows: dict = {"runs": LATENCY_RUNS, "warmup_runs": LATENCY_WARMUP, "threads": LATENCY_THREADS,
                  "rounds": LATENCY_ROUNDS}
    rounds: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(LATENCY_ROUNDS):
        for key, path in sorted(paths.items()):
            rounds[key].append(profile(path, LATENCY_WARMUP, LATENCY_RUNS, trace_ops=False,
                                       threads=LATENCY_THREADS).latency["p50"])
    for key, path in sorted(paths.items()):
        trace = profile(path, LATENCY_WARMUP, LATENCY_RUNS, trace_ops=True, threads=LATENCY_THREADS)
        row: dict = {"p50_ms": round(float(np.median(rounds[key])), 4),
                     "p50_ms_rounds_min_max": [round(min(rounds[key]), 4), round(max(rounds[key]), 4)]}
        if not trace.events:
            row["breakdown"] = f"no per-operator events (tracing: {trace.metadata.get('tracing')})"
        else:
            cats: dict[str, float] = {}
            unmapped: dict[str, float] = {}  # e.g. LiteRT's XNNPACK-internal ops: a name, no module
            for e in trace.events:
                c = time_category(model, e.module)
                cats[c] = cats.get(c, 0.0) + e.stats["p50"]
                if e.module is None:
                    unmapped[e.name] = unmapped.get(e.name, 0.0) + e.stats["p50"]
            total = sum(cats.values())
            row |= {"traced_op_time_ms": round(total, 4), "mapping_coverage": round(trace.mapping_coverage(delegated_only=False), 3),
                    "breakdown_ms": {c: round(v, 4) for c, v in sorted(cats.items())},
                    "breakdown_share": {c: round(v / total, 3) for c, v in sorted(cats.items())},
                    "top_modules_ms": largest(trace.module_breakdown())}
            if unmapped:
                row["unmapped_top_ops_ms"] = largest(unmapped)
        rows[key] = row
        print(name, key, row, flush=True)
    for kind in FP32_TWINS:
        rows[f"{kind}_speedup_int8_vs_fp32"] = round(rows[f"{kind}_fp32"]["p50_ms"] / rows[f"{kind}_int8"]["p50_ms"], 3)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilevit_fmnist,efficientformer_fmnist")
    ap.add_argument("--parts", default="baselines,search,deploy,latency")
    ap.add_argument("--methods", default="", help="part search: only these rows (comma-separated), the others kept")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hybrid_vit.json"),
                    help="results JSON, merged into (one file per concurrent run)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    calib_u8 = calibration_images()
    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.environ["EDGEKIT_CACHE_DIR"] = str(tmp / "cache")
        np.savez(tmp / "calib32.npz", images=calib_u8)
        def save() -> None:  # after every part, so a later part's failure loses nothing
            out.write_text(json.dumps(results, indent=2) + "\n")
        for name in args.models.split(","):
            res = results.setdefault(name, {})
            if "baselines" in parts:
                res.update(run_model(name, tmp, calib_u8))
                save()
            if "search" in parts:
                res["search_simulated"] = search_rows(name, calib_u8, set(filter(None, args.methods.split(","))),
                                                      res.get("search_simulated"))
                save()
            if "deploy" in parts:
                res["qhyvit_calib32_w8a8"] = edgekit_rows(
                    name, ["--calib", str(tmp / "calib32.npz"), "--method", "qhyvit", *DEPLOY_TARGETS], tmp / f"{name}_qh")
                res["qhyvit_data_free_w8a8"] = edgekit_rows(name, ["--data-free", "--method", "qhyvit"],
                                                            tmp / f"{name}_qhdf")
                save()
            if "latency" in parts:
                bundle = tmp / f"{name}_qh"
                if not (bundle / "manifest.json").exists():
                    edgekit_rows(name, ["--calib", str(tmp / "calib32.npz"), "--method", "qhyvit", *DEPLOY_TARGETS], bundle)
                (tmp / f"{name}_fp32").mkdir(exist_ok=True)
                res["latency_qhyvit_w8a8"] = latency_rows(name, bundle, tmp / f"{name}_fp32")
                save()
            print(json.dumps(res, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
