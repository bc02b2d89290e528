"""Seconds per training step of each LUT network in float32 and in bf16 (``edgekit lut train
--precision``), and in bf16 with grid training (``--grid``), one thread, on this machine; and
whether this CPU has native bf16 dot products.

A step is ``edgekit.quant.lut_train.train_step``, as ``fit`` runs it: forward on a batch of LR
patches (the method's default patch side), MSE, backward, Adam. Per-pixel training: 16 random
8-bit patches (its time does not depend on the pixels). Grid training: its time grows with the
distinct table vertices a batch touches, so it is timed on patches of the training photos, at 16
patches and at the method's default grid batch, after ``--warm`` steps of training (the stage-1
image of an untrained MuLUT is nearly flat, which would flatter stage 2). Median of ``--steps``
timed steps after 3 warm-ups. Run it alone on the machine.

    .venv/bin/python benchmarks/lut_train_speed.py        # results/lut_train_speed.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_step(net, opt, batches, precision: str, steps: int) -> float:
    from edgekit.quant.lut_train import train_step

    times = []
    for i in range(3 + steps):
        lr, hr = batches()
        t0 = time.perf_counter()
        train_step(net, opt, lr, hr, precision)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def seconds_per_step(method: str, precision: str, patch: int, steps: int, scale: int = 4, batch: int = 16) -> float:
    from edgekit.quant.lut_nets import METHODS, LutNet

    torch.manual_seed(0)
    net = LutNet(METHODS[method])
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    lr = torch.randint(0, 256, (batch, 1, patch, patch)).float() / 255
    hr = torch.randint(0, 256, (batch, 1, scale * patch, scale * patch)).float() / 255
    return _median_step(net, opt, lambda: (lr, hr), precision, steps)


def grid_seconds_per_step(method: str, patch: int, batches: tuple[int, ...], steps: int, warm: int,
                          scale: int = 4) -> dict[int, float]:
    """{batch: bf16 seconds per grid-training step}, on training-photo patches, after ``warm``
    steps of grid training at the first batch size (learning rate 3e-3)."""
    from edgekit.data.sr_patches import PatchSampler, training_photos
    from edgekit.quant.lut_grid import GridLutNet
    from edgekit.quant.lut_nets import METHODS
    from edgekit.quant.lut_train import train_step

    torch.manual_seed(0)
    net = GridLutNet(METHODS[method])
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    sampler = PatchSampler(training_photos(), scale, patch, seed=0)
    for _ in range(warm):
        train_step(net, opt, *sampler.batch(batches[0]), "bf16")
    return {b: _median_step(net, opt, lambda b=b: sampler.batch(b), "bf16", steps) for b in batches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm", type=int, default=300, help="grid-training steps before timing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from edgekit.lut_job import DEFAULT_GRID_BATCH, DEFAULT_PATCH
    from edgekit.quant.lut_train import native_bf16

    rows = {}
    for method, patch in DEFAULT_PATCH.items():
        s = {p: seconds_per_step(method, p, patch, args.steps) for p in ("fp32", "bf16")}
        rows[method] = {"patch": patch, "batch": 16, "fp32_s_per_step": round(s["fp32"], 4),
                        "bf16_s_per_step": round(s["bf16"], 4), "speedup": round(s["fp32"] / s["bf16"], 2)}
        g = grid_seconds_per_step(method, patch, (DEFAULT_GRID_BATCH[method], 16), args.steps, args.warm)
        rows[method]["grid_bf16"] = {
            str(b): {"s_per_step": round(t, 4), "lr_pixels_per_s": round(b * patch * patch / t),
                     "vs_per_pixel_bf16": round((b / t) / (16 / s["bf16"]), 2)} for b, t in sorted(g.items())}
        print(method, rows[method])
    res = {"machine": "2-core x86_64 CPU, 1 thread", "native_bf16": native_bf16(), "timed_steps": args.steps,
           "grid_warm_steps": args.warm, "methods": rows}
    out = ROOT / "benchmarks/results/lut_train_speed.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
