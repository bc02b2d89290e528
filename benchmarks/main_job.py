"""Figures of the main job (issue: data-free quantize to .pte and .tflite), printed and written to
benchmarks/results/main_job.json.

    .venv/bin/python benchmarks/main_job.py [--skip-mobilenet] [--skip-real] [--skip-espcn]

1. ``edgekit quantize --data-free`` on the reference ResNet-20 (full 10,000-image test split):
   FP32 top-1, .pte/.tflite top-1 in their runtimes, agreement with the simulation, int8 vs FP32
   .pte bytes, ZeroQ synthesis seconds, whole-run seconds; first with an empty cache, then the
   same command again (the cache of ``edgekit.cache``: distilled images, FP32 twins, FP32 outputs).
2. The same recipe calibrated on 512 real training images (needs dataset-fashion-mnist).
3. MobileNetV2 (ImageNet weights) data-free: top-1 on foolbox's 20 photos, agreement with FP32
   and logit SQNR, for the .pte and the .tflite, and the run's seconds.
4. ESPCN x3 (super-resolution) calibrated on real photos (``calibration/sr-photos/calib.npz``):
   PSNR/SSIM on Y of the .pte and .tflite, FP32 and bicubic, on the held-out sr-photos tiles.

Runs use a fresh, empty cache folder (never the user's).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import os

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_quantize(args: list[str]) -> tuple[dict, float]:
    from tests.conftest import run_cli
    t0 = time.time()
    proc = run_cli("quantize", *args, "--no-progress", timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"edgekit quantize {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    print(proc.stdout)
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "manifest.json").read_text()), time.time() - t0


def summarize(m: dict, wall: float) -> dict:
    ev = m["evaluation"]
    res = {r["file"]: r for r in ev["results"]}
    arts = {a["file"]: a for a in m["artifacts"]}
    return {
        "task": ev["task"], "reference": ev["reference"], "num_samples": ev["num_samples"],
        "artifacts": {f: {k: v for k, v in res[f].items() if k not in ("file", "runtime", "seconds")}
                      | {"bytes": arts[f]["bytes"], "fp32_bytes": arts[f]["fp32_bytes"],
                         "latency_p50_ms": arts[f].get("latency_p50_ms"),
                         "fp32_latency_p50_ms": arts[f].get("fp32_latency_p50_ms")} for f in res},
        "calibration": m["quantization"]["calibration"], "cache_reused": (m.get("cache") or {}).get("reused"),
        "timings_s": m["timings_s"], "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-mobilenet", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-espcn", action="store_true")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEKIT_CACHE_DIR"] = f"{tmp}/cache"  # empty: the first run is a cold one
        m, wall = run_quantize(["--data-free", "--out", f"{tmp}/df"])
        results["resnet20_data_free_w8a8"] = summarize(m, wall)
        m, wall = run_quantize(["--data-free", "--out", f"{tmp}/df"])
        results["resnet20_data_free_w8a8_second_run"] = summarize(m, wall)
        if not args.skip_real:
            from edgekit.data.fashion_mnist import load_split
            images, _ = load_split("train")
            idx = np.random.default_rng(0).choice(len(images), 512, replace=False)
            np.savez(f"{tmp}/train512.npz", images=images[idx])
            m, wall = run_quantize(["--calib", f"{tmp}/train512.npz", "--method", "zeroq", "--out", f"{tmp}/real"])
            results["resnet20_real512_w8a8"] = summarize(m, wall)
        if not args.skip_mobilenet:
            m, wall = run_quantize(["mobilenet_v2", "--data-free", "--out", f"{tmp}/mnv2"])
            results["mobilenet_v2_data_free_w8a8"] = summarize(m, wall)
        if not args.skip_espcn:
            m, wall = run_quantize(["espcn_x3", "--calib", str(ROOT / "calibration" / "sr-photos" / "calib.npz"),
                                    "--out", f"{tmp}/espcn"])
            results["espcn_x3_real_calib_w8a8"] = summarize(m, wall)
    out = ROOT / "benchmarks" / "results" / "main_job.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
