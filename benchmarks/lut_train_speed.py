"""Seconds per training step of each LUT network in float32 and in bf16 (``edgekit lut train
--precision``), one thread, on this machine; and whether this CPU has native bf16 dot products.

A step is ``edgekit.quant.lut_train.train_step``, as ``fit`` runs it: forward on a batch of 16 LR patches (the
method's default patch side), MSE, backward, Adam. Random 8-bit patches (the time does not depend
on the pixels). Median of ``--steps`` timed steps after 3 warm-ups. Run it alone on the machine.

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


def seconds_per_step(method: str, precision: str, patch: int, steps: int, scale: int = 4, batch: int = 16) -> float:
    from edgekit.quant.lut_nets import METHODS, LutNet
    from edgekit.quant.lut_train import train_step

    torch.manual_seed(0)
    net = LutNet(METHODS[method])
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    lr = torch.randint(0, 256, (batch, 1, patch, patch)).float() / 255
    hr = torch.randint(0, 256, (batch, 1, scale * patch, scale * patch)).float() / 255
    times = []
    for i in range(3 + steps):
        t0 = time.perf_counter()
        train_step(net, opt, lr, hr, precision)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from edgekit.lut_job import DEFAULT_PATCH
    from edgekit.quant.lut_train import native_bf16

    rows = {}
    for method, patch in DEFAULT_PATCH.items():
        s = {p: seconds_per_step(method, p, patch, args.steps) for p in ("fp32", "bf16")}
        rows[method] = {"patch": patch, "batch": 16, "fp32_s_per_step": round(s["fp32"], 4),
                        "bf16_s_per_step": round(s["bf16"], 4), "speedup": round(s["fp32"] / s["bf16"], 2)}
        print(method, rows[method])
    res = {"machine": "2-core x86_64 CPU, 1 thread", "native_bf16": native_bf16(), "timed_steps": args.steps,
           "methods": rows}
    out = ROOT / "benchmarks/results/lut_train_speed.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
