"""Shift networks on the reference model (ResNet-20, Fashion-MNIST), printed and written to
benchmarks/results/shift.json.

    .venv/bin/python benchmarks/shift.py [--steps 2000] [--train-images 8192] [--kernel-images 10000]

Every row is ``edgekit quantize`` (the API's ``run``) with real calibration images from the
Fashion-MNIST training split (never the test split), targets executorch-xnnpack and litert, and
evaluated on all 10,000 test images in ExecuTorch (the .pte's top-1 is the row's figure):

- DenseShift 3 and 4 bits, DeepShift-Q and DeepShift-PS 3 and 4 bits: the same images, the same
  fine-tuning steps, batch size and seed (distillation from the FP model);
- Genie W4A8 (the 4-bit uniform quantizer, Genie-M on 1024 of the same images): the same size;
- DenseShift 4 bits data-free (fine-tuned on Genie-D's distilled images).

For the DenseShift rows the numpy multiplication-free kernel (edgekit/kernels/shift_net.py) runs
the test images and is compared with the .pte's outputs. Energy per inference is estimated from
the op counts with Horowitz (ISSCC 2014, 45 nm) per-operation energies: 8-bit add 0.03 pJ, 32-bit
add 0.1 pJ, 8-bit multiply 0.2 pJ, 32-bit multiply 3.1 pJ, fp32 add 0.9 pJ, fp32 multiply 3.7 pJ
(arithmetic only; memory traffic, which dominates on real chips, is not counted). A shift is
costed as an 8-bit add (Horowitz gives no shift).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PJ = {"add8": 0.03, "add32": 0.1, "mul8": 0.2, "mul32": 3.1, "fadd32": 0.9, "fmul32": 3.7}


def run(method: str, bits: int, out: Path, calib: Path | None, n: int, steps: int | None, a_bits: int = 8) -> dict:
    from edgekit.api import run as ek_run
    from edgekit.config import RunConfig, method_config

    # 4-bit uniform weights run in onnxruntime (packed INT4 QDQ): XNNPACK and LiteRT take 8-bit conv weights only
    targets = ["onnx-qdq"] if method == "genie" else ["executorch-xnnpack", "litert"]
    cfg = RunConfig(model="resnet20_fmnist", method=method, data_free=calib is None,
                    calib_path=str(calib) if calib else None, calib_samples=n, targets=targets)
    given = {"w_bits": bits, "a_bits": a_bits}
    if method in ("denseshift", "deepshift-q", "deepshift-ps"):
        given["finetune_steps"] = steps
    cfg.quant = method_config(method, calib is None, given)
    t0 = time.time()
    res = ek_run(cfg, out, force=True)
    m = res.manifest
    r = {x["file"]: x for x in m["evaluation"]["results"]}
    arts = {a["file"]: a for a in m["artifacts"]}
    main = "model.onnx" if method == "genie" else "model.pte"
    row = {"artifact": main, "top1_pte": round(100 * r[main]["top1"], 2),
           "top1_tflite": round(100 * r["model.tflite"]["top1"], 2) if "model.tflite" in r else None,
           "top1_simulation": round(100 * r[main]["simulation_top1"], 2),
           "agreement_with_simulation_pte": r[main]["agreement_with_simulation"],
           "sqnr_db_vs_fp32": r[main]["sqnr_db_vs_fp32"], "quantize_s": round(res.timings["quantize_s"], 1),
           "total_s": round(time.time() - t0, 1), "pte_bytes": arts[main]["bytes"],
           "pte_latency_p50_ms": arts[main].get("latency_p50_ms"),
           "fp32_pte_latency_p50_ms": arts[main].get("fp32_latency_p50_ms"),
           "fp32_top1": round(100 * m["evaluation"]["reference"]["fp32"]["top1"], 2)}
    if "shift" in m["quantization"]:
        row["shift"] = m["quantization"]["shift"]
    print(f"{method:13s} W{bits}A{a_bits} {'data-free' if calib is None else 'real':9s} {main} top-1 {row['top1_pte']:.2f}% "
          f"(.tflite {row['top1_tflite']}, sim {row['top1_simulation']:.2f}%, FP32 {row['fp32_top1']:.2f}%)  "
          f"quantize {row['quantize_s']:.0f} s", flush=True)
    return row


def kernel_agreement(bundle: Path, n: int) -> dict:
    import torch

    from edgekit.backends.base import evaluate_runner
    from edgekit.config import RunConfig
    from edgekit.data.fashion_mnist import load_tensors
    from edgekit.kernels.shift_net import run_shift_network
    from edgekit.pipeline import prepare_model
    from edgekit.quant.recipe import QuantRecipe
    from edgekit.quant.simulate import quantize_with_recipe
    from edgekit.registry import TARGETS

    _, can, _ = prepare_model("resnet20_fmnist", None, RunConfig())
    recipe = QuantRecipe.load(bundle / "recipe.json")
    t = TARGETS.get("executorch-xnnpack")
    gm = quantize_with_recipe(can, recipe, t.quantizer(recipe), fold_quantize=True)
    x, _ = load_tensors("test", n)
    t0 = time.time()
    kern = np.concatenate([run_shift_network(gm, recipe, x[i:i + 250].numpy()) for i in range(0, len(x), 250)])
    secs = time.time() - t0
    pte = evaluate_runner(t.runner(bundle / "model.pte"), x).numpy()
    step = recipe.activations["linear"].quant.scale[0]
    d = np.abs(kern - pte)
    del torch
    return {"images": n, "argmax_agreement": round(float((kern.argmax(1) == pte.argmax(1)).mean()), 5),
            "logits_bit_exact": round(float((d < 1e-6).mean()), 5), "max_diff_output_steps": round(float(d.max() / step), 3),
            "kernel_seconds": round(secs, 1)}


def energy(ops: dict, macs: int) -> dict:
    """pJ per inference, arithmetic only (see the module docstring)."""
    fp32 = macs * (PJ["fmul32"] + PJ["fadd32"])
    int8 = macs * (PJ["mul8"] + PJ["add32"]) + ops["requantization_multiplies"] * PJ["mul32"]
    shift = (ops["adds"] * PJ["add32"] + ops["shifts"] * PJ["add8"] + ops["requantization_multiplies"] * PJ["mul32"]
             + ops["int8_multiplies"] * (PJ["mul8"] + PJ["add32"]))
    return {"fp32_uj": round(fp32 / 1e6, 2), "int8_uj": round(int8 / 1e6, 2), "shift_uj": round(shift / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--train-images", type=int, default=8192)
    ap.add_argument("--kernel-images", type=int, default=10000)
    ap.add_argument("--only", default=None, help="comma-separated row names")
    a = ap.parse_args()
    from edgekit.data.fashion_mnist import load_split
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    res = {"commit": commit, "model": "resnet20_fmnist", "test_images": 10000, "cpus": os.cpu_count(),
           "finetune_steps": a.steps, "batch_size": 64, "train_images": a.train_images, "rows": {}}
    rows = [("denseshift_w3", "denseshift", 3, True), ("denseshift_w4", "denseshift", 4, True),
            ("deepshift_q_w3", "deepshift-q", 3, True), ("deepshift_q_w4", "deepshift-q", 4, True),
            ("deepshift_ps_w3", "deepshift-ps", 3, True), ("deepshift_ps_w4", "deepshift-ps", 4, True),
            ("genie_w4a8_real", "genie", 4, True), ("denseshift_w4_data_free", "denseshift", 4, False),
            # at conversion, before any fine-tuning: what the levels alone give
            ("denseshift_w3_0_steps", "denseshift", 3, True), ("deepshift_q_w3_0_steps", "deepshift-q", 3, True)]
    if a.only:
        rows = [r for r in rows if r[0] in a.only.split(",")]
    out_path = ROOT / "benchmarks" / "results" / "shift.json"
    if a.only and out_path.exists():  # add these rows to the last full run's
        res["rows"] = json.loads(out_path.read_text())["rows"]
    with tempfile.TemporaryDirectory() as tmp:
        images, _ = load_split("train")
        idx = np.random.default_rng(0).permutation(len(images))[:a.train_images]
        calib = Path(tmp) / "train.npz"
        np.savez(calib, images=images[idx])
        for name, method, bits, real in rows:
            n = 1024 if method == "genie" else a.train_images
            out = Path(tmp) / name
            row = run(method, bits, out, calib if real else None, n, 0 if name.endswith("_0_steps") else a.steps)
            if method == "denseshift" and not name.endswith("_0_steps"):
                row["kernel"] = kernel_agreement(out, a.kernel_images)
                print(f"  kernel vs .pte on {a.kernel_images} images: argmax {row['kernel']['argmax_agreement']:.2%}, "
                      f"bit-exact logits {row['kernel']['logits_bit_exact']:.2%}", flush=True)
            if "shift" in row:
                ops = row["shift"]["ops_per_inference"]
                row["energy"] = energy(ops, ops["macs"])
            res["rows"][name] = row
            out_path.write_text(json.dumps(res, indent=1))
    print(f"wrote {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
