"""Train the reference ESPCN (x3 super-resolution of the Y channel) on real photographs.

Usage:
  .venv/bin/python examples/train_espcn.py --make-data   # (re)build calibration/sr-photos/*.npz
  .venv/bin/python examples/train_espcn.py               # train, write the checkpoint and its log
  .venv/bin/python examples/train_espcn.py --eval-only   # score the committed checkpoint

The photos come with installed wheels (no download): scikit-image's, scikit-learn's and
matplotlib's sample photographs (public domain, CC0 or CC BY 2.0) and foolbox's 20 ImageNet photos
(training only), listed with their licences in ``edgekit.data.photos``; see
calibration/sr-photos/README.md. They are split by photo: ``HELD_OUT`` photos give the evaluation
tiles (calibration/sr-photos/eval.npz) and are never seen in training; ``TRAIN`` photos give the
training patches, and the redistributable ones among them (``REDISTRIBUTABLE``, not foolbox's) the
calibration tiles (calib.npz).

Pipeline (as in SR papers): RGB -> BT.601 luma Y (``edgekit.tasks.sr_metrics.rgb_to_y``), rounded
to 8 bits: the high-resolution (HR) image. Low resolution (LR) = PIL bicubic resize by 1/3 (PIL
widens the kernel when downscaling, i.e. antialiases like MATLAB's imresize) of the HR tile as
float, rounded to 8 bits. Training: random HR patches (``--patch`` px, a multiple of 3) from the
training photos at scales 1, 0.8 and 0.6 (bicubic), one of the 8 flips/rotations, their LR made
the same way; Adam, MSE on [0, 1] pixels, cosine learning-rate decay; one CPU thread by default.
Writes the state_dict (float32) that ``edgekit.models.espcn.ESPCN`` loads and a log next to it.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgekit.data.photos import HELD_OUT, REDISTRIBUTABLE, TRAIN, load_y  # noqa: E402
from edgekit.errors import UserError  # noqa: E402
from edgekit.models.espcn import ESPCN  # noqa: E402
from edgekit.tasks.sr_metrics import psnr, ssim  # noqa: E402

DEFAULT_OUT = ROOT / "edgekit/models/checkpoints/espcn_x3.pt"
DATA_DIR = ROOT / "calibration/sr-photos"
SCALE = 3
TILE = 192  # HR tile side in eval.npz / calib.npz; LR tiles are TILE // SCALE = 64

TRAIN_SCALES = (1.0, 0.8, 0.6)


def resize_f(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """PIL bicubic resize of a float/uint8 [H, W] image (0..255 units) to [h, w], float32, unrounded."""
    return np.asarray(Image.fromarray(np.asarray(y, dtype=np.float32), mode="F").resize((w, h), Image.BICUBIC))


def to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def downsample(hr: np.ndarray) -> np.ndarray:
    """HR uint8 [H, W] (H, W multiples of 3) -> LR uint8 [H/3, W/3]: PIL bicubic, rounded."""
    return to_u8(resize_f(hr, hr.shape[0] // SCALE, hr.shape[1] // SCALE))


def grid_tiles(y: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping size x size tiles of [H, W], the grid centred in the image."""
    nh, nw = y.shape[0] // size, y.shape[1] // size
    top, left = (y.shape[0] - nh * size) // 2, (y.shape[1] - nw * size) // 2
    return [y[top + i * size:top + (i + 1) * size, left + j * size:left + (j + 1) * size]
            for i in range(nh) for j in range(nw)]


def make_data(out_dir: Path, calib_count: int = 32, seed: int = 0) -> None:
    """Write eval.npz (every grid tile of the held-out photos) and calib.npz (``calib_count`` LR
    tiles cut at seeded random places from the training photos, round-robin over them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hr, names = [], []
    for name in HELD_OUT:
        for t in grid_tiles(load_y(name), TILE):
            hr.append(t)
            names.append(name)
    hr_a = np.stack(hr)[:, None]
    lr_a = np.stack([downsample(t) for t in hr])[:, None]
    np.savez_compressed(out_dir / "eval.npz", hr=hr_a, lr=lr_a, photos=np.array(names))
    rng = np.random.default_rng(seed)
    ys = {n: load_y(n) for n in REDISTRIBUTABLE}
    lr_c, names_c = [], []
    for i in range(calib_count):
        name = REDISTRIBUTABLE[i % len(REDISTRIBUTABLE)]
        y = ys[name]
        top = int(rng.integers(0, y.shape[0] - TILE + 1))
        left = int(rng.integers(0, y.shape[1] - TILE + 1))
        lr_c.append(downsample(y[top:top + TILE, left:left + TILE]))
        names_c.append(name)
    np.savez_compressed(out_dir / "calib.npz", lr=np.stack(lr_c)[:, None], photos=np.array(names_c))
    print(f"wrote {out_dir / 'eval.npz'}: hr {hr_a.shape}, lr {lr_a.shape} from {', '.join(HELD_OUT)}")
    print(f"wrote {out_dir / 'calib.npz'}: lr ({calib_count}, 1, {TILE // SCALE}, {TILE // SCALE}) "
          f"from {', '.join(REDISTRIBUTABLE)}")


def load_eval(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """eval.npz -> (lr uint8 [N, 1, 64, 64], hr uint8 [N, 1, 192, 192])."""
    with np.load(path, allow_pickle=False) as z:
        return z["lr"], z["hr"]


def bicubic_up(lr: np.ndarray) -> np.ndarray:
    """LR uint8 [N, 1, h, w] -> PIL bicubic x3 of the 8-bit images, uint8 [N, 1, 3h, 3w]."""
    h, w = lr.shape[2] * SCALE, lr.shape[3] * SCALE
    return np.stack([np.asarray(Image.fromarray(t[0]).resize((w, h), Image.BICUBIC)) for t in lr])[:, None]


@torch.no_grad()
def evaluate(model: torch.nn.Module, lr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """Held-out PSNR (dB) / SSIM on Y, 3 px shaved, of the model's float output (clipped) and of
    bicubic upsampling."""
    model.eval()
    sr = model(torch.from_numpy(lr).float() / 255).numpy().astype(np.float64)
    target = hr.astype(np.float64) / 255
    bic = bicubic_up(lr).astype(np.float64) / 255
    return {"psnr": psnr(sr, target, SCALE), "ssim": ssim(sr, target, SCALE),
            "bicubic_psnr": psnr(bic, target, SCALE), "bicubic_ssim": ssim(bic, target, SCALE)}


class PatchSampler:
    """Random (LR, HR) training pairs from the training photos at ``TRAIN_SCALES``; a photo (at a
    scale) is drawn with probability proportional to the square root of its area."""

    def __init__(self, patch: int, seed: int) -> None:
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.images = []
        for name in TRAIN:
            y = load_y(name)
            for s in TRAIN_SCALES:
                img = y if s == 1.0 else to_u8(resize_f(y, round(y.shape[0] * s), round(y.shape[1] * s)))
                if min(img.shape) >= patch:
                    self.images.append(img)
        w = np.array([math.sqrt(i.size) for i in self.images])
        self.p = w / w.sum()

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """LR float32 [n, 1, patch/3, patch/3] and HR float32 [n, 1, patch, patch], both in [0, 1]."""
        p = self.patch
        lrs, hrs = [], []
        for k in self.rng.choice(len(self.images), size=n, p=self.p):
            img = self.images[k]
            top = int(self.rng.integers(0, img.shape[0] - p + 1))
            left = int(self.rng.integers(0, img.shape[1] - p + 1))
            t = img[top:top + p, left:left + p]
            t = np.rot90(t, int(self.rng.integers(0, 4)))
            if self.rng.random() < 0.5:
                t = t[:, ::-1]
            t = np.ascontiguousarray(t)
            hrs.append(t)
            lrs.append(downsample(t))
        lr = torch.from_numpy(np.stack(lrs)[:, None]).float() / 255
        hr = torch.from_numpy(np.stack(hrs)[:, None]).float() / 255
        return lr, hr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=24000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96, help="HR patch side in pixels (multiple of 3)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, default=DATA_DIR, help="folder of eval.npz / calib.npz")
    ap.add_argument("--make-data", action="store_true", help="(re)build eval.npz and calib.npz, then exit")
    ap.add_argument("--eval-only", action="store_true", help="score the checkpoint at --out, then exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.make_data:
        make_data(args.data, seed=args.seed)
        return
    lr_ev, hr_ev = load_eval(args.data / "eval.npz")
    if args.eval_only:
        model = ESPCN(scale=SCALE)
        model.load_state_dict(torch.load(args.out, map_location="cpu", weights_only=True))
        r = evaluate(model, lr_ev, hr_ev)
        print(f"{args.out.name} on {len(lr_ev)} held-out tiles (Y, 3 px shaved): ESPCN PSNR {r['psnr']:.3f} dB "
              f"SSIM {r['ssim']:.4f} | bicubic PSNR {r['bicubic_psnr']:.3f} dB SSIM {r['bicubic_ssim']:.4f} | "
              f"gain {r['psnr'] - r['bicubic_psnr']:+.3f} dB")
        return
    if args.patch % SCALE:
        raise SystemExit(f"--patch must be a multiple of {SCALE}")

    log_lines: list[str] = []

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(ROOT))
        except ValueError:
            return str(p)

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_lines.append(msg)

    log("command: " + " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]))
    log(f"torch {torch.__version__}, threads {args.threads}, seed {args.seed} (torch.manual_seed and "
        f"numpy default_rng for patches), iters {args.iters}, batch {args.batch_size}, HR patch {args.patch}, "
        f"Adam lr {args.lr} cosine to 0")
    vers = ", ".join(f"{d} {importlib.metadata.version(d)}"
                     for d in ("scikit-image", "scikit-learn", "matplotlib", "foolbox", "pillow", "numpy"))
    log(f"packages: {vers}")
    log(f"train photos: {', '.join(REDISTRIBUTABLE)}, foolbox imagenet_00..19 (scales {TRAIN_SCALES}); "
        f"held-out: {', '.join(HELD_OUT)}")
    torch.manual_seed(args.seed)
    sampler = PatchSampler(args.patch, args.seed)
    model = ESPCN(scale=SCALE)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.iters)
    t0 = time.time()
    running = 0.0
    for it in range(1, args.iters + 1):
        model.train()
        lr_b, hr_b = sampler.batch(args.batch_size)
        loss = F.mse_loss(model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if it % args.eval_every == 0 or it == args.iters:
            r = evaluate(model, lr_ev, hr_ev)
            n = args.eval_every if it % args.eval_every == 0 else it % args.eval_every
            log(f"iter {it}/{args.iters} train mse {running / n:.6f} held-out PSNR {r['psnr']:.3f} dB "
                f"(bicubic {r['bicubic_psnr']:.3f}, gain {r['psnr'] - r['bicubic_psnr']:+.3f}) "
                f"SSIM {r['ssim']:.4f} ({time.time() - t0:.0f} s)")
            running = 0.0
    elapsed = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = args.out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(args.out)
    r = evaluate(model, lr_ev, hr_ev)
    log(f"training time {elapsed:.0f} s ({elapsed / 60:.1f} min) on {args.threads} thread(s)")
    log(f"final, {len(lr_ev)} held-out tiles of {rel(args.data / 'eval.npz')} (Y, 3 px shaved): "
        f"ESPCN PSNR {r['psnr']:.3f} dB SSIM {r['ssim']:.4f}; bicubic PSNR {r['bicubic_psnr']:.3f} dB "
        f"SSIM {r['bicubic_ssim']:.4f}; gain {r['psnr'] - r['bicubic_psnr']:+.3f} dB")
    log(f"saved {rel(args.out)}")
    args.out.with_suffix(".train.log").write_text("\n".join(log_lines) + "\n")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a photo's package missing: one line, as before
        raise SystemExit(str(e)) from None
