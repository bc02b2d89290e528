"""Short screens of training-recipe changes for a grid-trained LUT network (MuLUT by default), each
scored on the held-out tiles (the manifest's protocol) and on the held-out photos whole.

One run trains a :class:`~edgekit.quant.lut_grid.GridLutNet` (so the network is its own tables)
for ``--steps`` Adam steps of ``--batch`` patches, bf16, seed 0, the cosine schedule of
``edgekit.quant.lut_train`` (``--lr`` to ``--lr / 10``), with one change at a time:

- ``--warm N``: N Adam steps fitting every stage-1 unit to the identity (127 * output = the
  pixel - 127) on random 8-bit inputs before training;
- ``--margin M``: interior loss: patches of ``--patch + 2M`` LR pixels, the loss on the central
  ``--patch`` only (the outer M pixels feed the receptive field but are not scored: their
  receptive field reaches the replicate padding);
- ``--extra DIR``: the photos of DIR (PNG/JPEG) added to the default training photos;
- ``--gain G``: the intermediate stage writes ``clamp(round(G * sum / (4 * modes) + 127))``
  instead of G = 1 (the first stage maps the image onto about half its spread:
  ``benchmarks/lut_stage_range.py``); ``--zero-init``: stage-1 units start with a zero last layer.

Also recorded: the first stage's output standard deviation over its input's on each held-out
photo (``stage1_spread``). Whole photos are scored by running the network on each whole LR
photo. Appends one row per run to ``results/lut_recipe_screen.json`` (a temporary file renamed
into place). One thread; two runs side by side use the two cores.

    .venv/bin/python benchmarks/lut_recipe_screen.py --tag base --steps 2500
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit.data.bicubic import downscale, mod_crop  # noqa: E402
from edgekit.data.photos import HELD_OUT, load_y  # noqa: E402
from edgekit.data.sr_patches import PatchSampler, training_photos  # noqa: E402
from edgekit.lut_job import folder_y, held_out_tiles, quality  # noqa: E402
from edgekit.quant.lut_grid import GridLutNet  # noqa: E402
from edgekit.quant.lut_nets import METHODS, pad_all  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "lut_recipe_screen.json"


class GainNet(GridLutNet):
    """GridLutNet whose intermediate stages' sums are multiplied by ``gain`` (exact: the rotations'
    rounded outputs are scaled before the stage's sum and rounding)."""
    gain = 1.0

    def rotations(self, stage, mode, xp, h, w):
        v = super().rotations(stage, mode, xp, h, w)
        return [self.gain * t for t in v] if stage < self.spec.stages - 1 else v


def warm_start(net, steps: int) -> None:
    g = torch.Generator().manual_seed(1)
    for name, unit in net.units.items():
        if name.startswith("s1_") and net.spec.stages > 1:
            opt = torch.optim.Adam(unit.parameters(), lr=3e-3)
            for _ in range(steps):
                s = torch.randint(0, 256, (4096, 4), generator=g).float()
                loss = F.mse_loss(unit.mlp(s)[:, 0], torch.clamp((s[:, 0] - 127) / 127, -1, 1))
                opt.zero_grad()
                loss.backward()
                opt.step()


def stage1_spread(net, lr: np.ndarray) -> float:
    x = torch.from_numpy(lr[None]).float()
    b, h, w = x.shape
    modes = net.spec.modes
    with torch.no_grad():
        pred = sum(v for m in modes for v in net.rotations(0, m, pad_all(x), h, w))
    y = torch.clamp(torch.round(pred.view(b, h, w) / (4 * len(modes)) + 127), 0, 255)
    return round(float(y.std() / x.std()), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--method", default="mulut", choices=sorted(METHODS))
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warm", type=int, default=0)
    ap.add_argument("--margin", type=int, default=0)
    ap.add_argument("--extra", default=None)
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--zero-init", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    spec = METHODS[a.method]
    r, m = spec.scale, a.margin
    torch.manual_seed(0)
    net = GainNet(spec)
    net.gain = a.gain
    if a.zero_init:
        for name, unit in net.units.items():
            if name.startswith("s1_"):
                torch.nn.init.zeros_(unit.last.weight)
    t0 = time.time()
    if a.warm:
        warm_start(net, a.warm)
    photos = training_photos() + (folder_y(a.extra) if a.extra else [])
    sampler = PatchSampler(photos, r, a.patch + 2 * m, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * (1 + math.cos(math.pi * min(i, a.steps) / a.steps)) / 2)
    for step in range(a.steps):
        lr_img, hr_img = sampler.batch(a.batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            sr = net(lr_img).float()
        if m:  # interior loss: the central patch only
            sr, hr_img = sr[..., r * m:-r * m, r * m:-r * m], hr_img[..., r * m:-r * m, r * m:-r * m]
        loss = F.mse_loss(sr, hr_img)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            print(f"step {step + 1} loss {float(loss.detach()):.6f} {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0
    net.eval()
    lr_ev, hr_ev, _ = held_out_tiles(r)
    with torch.no_grad():
        fp = net(torch.from_numpy(lr_ev[:, None]).float() / 255)
    tiles = quality(np.clip(np.round(fp[:, 0].numpy() * 255), 0, 255).astype(np.uint8), hr_ev, r)
    whole, spread = [], []
    for name in HELD_OUT:
        hr = mod_crop(load_y(name), r)
        lr = downscale(hr, r)
        with torch.no_grad():
            o = net(torch.from_numpy(lr[None, None]).float() / 255)
        whole.append(quality(np.clip(np.round(o[0].numpy() * 255), 0, 255).astype(np.uint8), hr[None], r)["psnr_y_db"])
        if spec.stages > 1:
            spread.append(stage1_spread(net, lr))
    row = {**vars(a), "seconds": round(seconds), "tiles_psnr_y_db": tiles["psnr_y_db"],
           "whole_psnr_y_db": round(float(np.mean(whole)), 3), "stage1_spread": spread,
           "threads": torch.get_num_threads()}
    print(json.dumps(row))
    rows = json.loads(OUT.read_text()) if OUT.exists() else []
    tmp = OUT.with_name(f".{OUT.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows + [row], indent=1) + "\n")
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
