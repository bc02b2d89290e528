"""Train an ESPCN for x4 (or x2) super-resolution of the Y channel on the same data as the LUT
networks (``edgekit lut train``): the training photos of ``edgekit.data.photos``, LR made with
MATLAB-style bicubic (``edgekit.data.bicubic``), aligned patches (``edgekit.data.sr_patches``).
The CNN peer of the LUT networks in ``benchmarks/super_resolution.py``.

Usage:
  .venv/bin/python examples/train_espcn_x4.py            # writes edgekit/models/checkpoints/espcn_x4.pt + .train.log
  .venv/bin/python examples/train_espcn_x4.py --scale 2 --out /tmp/espcn_x2.pt

Adam 1e-3, cosine decay to 1e-4, MSE on [0, 1] pixels, batch 16, LR patch 24, one CPU thread.
The log ends with the held-out PSNR/SSIM (``edgekit.lut_job.held_out_tiles``: the held-out
photos, never trained on, in 192 px HR tiles) against MATLAB-style bicubic.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgekit.data.bicubic import upscale_bicubic  # noqa: E402
from edgekit.data.sr_patches import PatchSampler, training_photos  # noqa: E402
from edgekit.lut_job import held_out_tiles, quality  # noqa: E402
from edgekit.models.espcn import ESPCN  # noqa: E402


def evaluate(model: torch.nn.Module, scale: int) -> tuple[dict, dict]:
    """(ESPCN, bicubic) mean PSNR-Y (dB) / SSIM-Y on the held-out tiles, ``scale`` px shaved."""
    lr, hr, _ = held_out_tiles(scale)
    with torch.no_grad():
        y = model(torch.from_numpy(lr[:, None]).float() / 255)[:, 0].numpy()
    sr = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    return quality(sr, hr, scale), quality(np.stack([upscale_bicubic(x, scale) for x in lr]), hr, scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--iters", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=24, help="LR patch side (pixels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    out = args.out or ROOT / f"edgekit/models/checkpoints/espcn_x{args.scale}.pt"
    log_path = out.with_suffix(".train.log")
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    sampler = PatchSampler(training_photos(), args.scale, args.patch, seed=args.seed)
    model = ESPCN(scale=args.scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * (1 + math.cos(math.pi * min(i, args.iters) / args.iters)) / 2)
    log(f"ESPCN x{args.scale}: {args.iters} iters, batch {args.batch_size}, LR patch {args.patch}, "
        f"{len(sampler.pairs)} training photos (sizes included), seed {args.seed}")
    t0 = time.time()
    for i in range(args.iters):
        lr, hr = sampler.batch(args.batch_size)
        loss = F.mse_loss(model(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (i + 1) % 1000 == 0:
            log(f"iter {i + 1}/{args.iters} loss {float(loss):.6f} ({time.time() - t0:.0f} s)")
    model.eval()
    net, bic = evaluate(model, args.scale)
    log(f"training time {time.time() - t0:.0f} s on 1 thread")
    log(f"held-out tiles (Y, {args.scale} px shaved): ESPCN PSNR {net['psnr_y_db']:.3f} dB SSIM {net['ssim_y']:.4f}; "
        f"bicubic PSNR {bic['psnr_y_db']:.3f} dB SSIM {bic['ssim_y']:.4f}")
    torch.save(model.state_dict(), out)
    log_path.write_text("\n".join(lines) + "\n")
    log(f"saved {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
