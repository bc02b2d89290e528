"""``edgekit lut train``: train a LUT super-resolution network (SR-LUT, MuLUT or the AutoLUT-style
variant, ``edgekit.quant.lut_nets``), transfer it to int8 tables, fine-tune the tables, and write
a bundle that proves the deployed graphs compute what the numpy reference computes.

The bundle (a folder, staged and renamed into place like every edgekit bundle):

- ``lut_tables.npz``: the int8 tables (one [levels^4, R] array per unit), ``spec`` and ``fixed``
  (JSON strings), read by ``edgekit.kernels.lut_net``;
- ``model_lut.pte`` (+ ``.etrecord``): ExecuTorch, portable kernels; ``model_lut.tflite``: LiteRT;
  both take float32 [1, 1, h, w] (Y / 255) and return [1, 1, r*h, r*w];
- ``manifest.json``: the network, its training (steps, patches, seconds), table bytes, each
  artifact's ops and sha256, and the held-out evaluation: PSNR/SSIM on Y (``r`` pixels shaved)
  of the trained network, the transferred tables before and after fine-tuning (numpy reference),
  bicubic, and each artifact, with the artifacts' agreement with the reference (fraction of
  identical output pixels, PSNR difference in dB).

Held-out images: the Y channel of ``edgekit.data.photos.HELD_OUT`` (never trained on), each
downscaled whole (MATLAB-style bicubic) and cut into aligned tiles of 192 / r LR pixels.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekit import bundle as bnd
from edgekit.errors import UserError

TABLES_FILE = "lut_tables.npz"
STEM = "model_lut"
HR_TILE = 192
DEFAULT_STEPS = {"srlut": 16000, "mulut": 7000, "autolut": 7000}  # about 21-27 min each in bf16, one core
DEFAULT_PATCH = {"srlut": 32, "mulut": 24, "autolut": 24}
# Adam's starting rate, cosine to a tenth. MuLUT's 1e-3 is for 200,000 steps; at 2,000 steps 3e-3 gave
# 31.514 dB on the held-out tiles against 31.411 (6e-3 trailed both, 1.2e-2 diverged): docs/lut.md
DEFAULT_LR = {"srlut": 3e-3, "mulut": 3e-3, "autolut": 3e-3}
DEFAULT_FINETUNE = 1000
DEFAULT_BATCH = 16
# grid training (--grid, edgekit.quant.lut_grid): the measured settings (docs/lut.md). A step costs about the
# same at 16 and 32 patches (the MLP runs per distinct grid vertex), and the network is already its tables,
# so the table fine-tuning is off (on MuLUT it moved the tables by -0.014 dB)
DEFAULT_GRID_STEPS = {"srlut": 16000, "mulut": 9000, "autolut": 7500}
DEFAULT_GRID_BATCH = {"srlut": 64, "mulut": 32, "autolut": 32}
# grid training by default where it measured at least as well in the same time (x4 tiles: MuLUT 31.672 against
# 31.666 dB, AutoLUT-style 31.490 against 31.455; MuLUT x2 35.659 against 35.388); SR-LUT 31.404 against 31.433
DEFAULT_GRID = {"srlut": False, "mulut": True, "autolut": True}
FINETUNE_BATCH = 16  # at most, patches per table fine-tuning step (the table network is not grid-trained)
FINETUNE_LR = 0.05  # table units (int8 steps); MuLUT's 1e-4 on tables / 127 is 0.0127, for 2000 steps
SCALES = (2, 3, 4)


def folder_y(folder: str | Path) -> list[np.ndarray]:
    """The BT.601 Y channel (uint8 [H, W]) of every PNG/JPEG image in ``folder``, sorted by name.
    Raises UserError when the folder is missing, holds no image or an image cannot be read."""
    from edgekit.data.images import photo_files, read_photo
    from edgekit.data.ycbcr import y_u8

    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"--train-data {d} is not a folder; give a folder of PNG/JPEG photos")
    out = []
    for f in photo_files(d, "--train-data"):
        rgb, _ = read_photo(f)
        out.append(y_u8(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)))  # grey: R = G = B
    return out


def held_out_tiles(scale: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Held-out (LR, HR) tiles: uint8 [N, 192/r, 192/r] and [N, 192, 192], and each tile's photo.
    Every photo is mod-cropped, downscaled whole, then cut on a grid centred in the photo."""
    from edgekit.data.bicubic import downscale
    from edgekit.data.photos import HELD_OUT, load_y

    t = HR_TILE // scale
    lrs, hrs, names = [], [], []
    for name in HELD_OUT:
        hr = load_y(name)
        hr = hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale]
        lr = downscale(hr, scale)
        nh, nw = lr.shape[0] // t, lr.shape[1] // t
        top, left = (lr.shape[0] - nh * t) // 2, (lr.shape[1] - nw * t) // 2
        for i in range(nh):
            for j in range(nw):
                y, x = top + i * t, left + j * t
                lrs.append(lr[y:y + t, x:x + t])
                hrs.append(hr[y * scale:(y + t) * scale, x * scale:(x + t) * scale])
                names.append(name)
    return np.stack(lrs), np.stack(hrs), names


def quality(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict:
    """Mean PSNR (dB) and SSIM on Y of uint8 [N, H, W] stacks, ``scale`` pixels shaved."""
    from edgekit.tasks.sr_metrics import psnr, ssim

    a, b = sr.astype(np.float64) / 255, hr.astype(np.float64) / 255
    return {"psnr_y_db": round(psnr(a, b, scale), 3), "ssim_y": round(ssim(a, b, scale), 5)}


def _reference(spec: dict, tables: dict, fixed: dict, lr: np.ndarray) -> np.ndarray:
    from edgekit.kernels.lut_net import upscale

    return np.stack([upscale(x, spec, tables, fixed) for x in lr])


def run_artifact(path: Path, lr: np.ndarray) -> np.ndarray:
    """An SR artifact run in its own runtime on each uint8 [h, w] of ``lr`` (its input size) ->
    uint8 [N, r*h, r*w] (output * 255, rounded)."""
    from edgekit.runtimes.base import runtime_of_suffix
    from edgekit.runtimes.checks import native_stderr

    with native_stderr():  # the runtimes' own log lines
        session = runtime_of_suffix(path.suffix).load(path, threads=1)
        outs = [session.run([(x[None, None].astype(np.float32) / 255)])[0] for x in lr]
    return np.stack([np.clip(np.round(np.asarray(o)[0, 0] * 255), 0, 255).astype(np.uint8) for o in outs])


def write_artifacts(table_net, h: int, w: int, out_dir: Path, stem: str = STEM) -> list[dict]:
    """``stem``.pte (+ .etrecord) and ``stem``.tflite of the deployment table network at input
    [1, 1, h, w] in ``out_dir``; their manifest entries."""
    from edgekit.backends.lut_export import write_pte, write_tflite

    entries = []
    for suffix, target, runtime, write in ((".pte", "executorch-portable", "executorch", write_pte),
                                           (".tflite", "litert", "litert", write_tflite)):
        path = out_dir / f"{stem}{suffix}"
        ops = write(table_net, h, w, path)
        entries.append({"file": path.name, "target": target, "runtime": runtime, "input_shape": [1, 1, h, w],
                        "bytes": path.stat().st_size, "sha256": bnd.sha256_file(path), **ops})
    return entries


def save_tables(path: Path, spec, tables: dict[str, torch.Tensor], fixed: dict) -> None:
    """``lut_tables.npz``: int8 tables, ``spec`` and ``fixed`` as JSON strings."""
    arrays = {k: v.numpy().astype(np.int8) for k, v in tables.items()}
    np.savez(path, spec=np.array(json.dumps(spec.to_dict())), fixed=np.array(json.dumps(fixed)), **arrays)


def train_lut(method: str, out: str | Path, *, scale: int = 4, steps: int | None = None,
              finetune_steps: int | None = None, batch: int | None = None, patch: int | None = None,
              train_data: str | Path | None = None, checkpoint: str | Path | None = None,
              input_size: tuple[int, int] | None = None, force: bool = False, progress: bool = True,
              seed: int = 0, precision: str = "auto", learning_rate: float | None = None, grid: bool | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Train, transfer, fine-tune, export and check a LUT network; returns the bundle's manifest.

    method: ``srlut``, ``mulut`` or ``autolut``; scale: 2, 3 or 4; steps / finetune_steps: Adam
    steps of the network and of the tables (defaults per method, and per ``grid``); batch, patch:
    patches per step (default 16, or ``DEFAULT_GRID_BATCH`` with ``grid``) and LR patch side
    (pixels); train_data: a folder of HR photos (default: the shipped training photos); checkpoint: where to keep the resumable state (default ``OUT.ckpt`` beside the bundle,
    removed on success); input_size: the artifacts' LR input (default 192/r square, the held-out
    tile); precision: the network's training arithmetic, ``fp32``, ``bf16`` (hidden layers in
    bfloat16, 1.8x to 2.2x faster per step on this AVX512-BF16 CPU:
    ``benchmarks/lut_train_speed.py``) or ``auto`` (bf16 where the
    CPU has native bf16 dot products); learning_rate: the network's starting Adam rate (default
    per method, ``DEFAULT_LR``); grid: train the network through its tables' grid
    (``edgekit.quant.lut_grid``: no transfer loss, so no table fine-tuning by default; default per
    method, ``DEFAULT_GRID``). Raises UserError for bad arguments before any training."""
    from edgekit.backends.base import captured_output
    from edgekit.data.sr_patches import PatchSampler, training_photos
    from edgekit.quant.lut_nets import METHODS, fixed_point_params
    from edgekit.quant.lut_tables import TableNet, table_bytes, transfer
    from edgekit.quant.lut_train import TrainConfig, finetune_tables, resolve_precision, train_net

    if method not in METHODS:
        raise UserError(f"unknown LUT method {method!r} (--method): use one of {', '.join(sorted(METHODS))}")
    if scale not in SCALES:
        raise UserError(f"--scale {scale}: LUT networks here upscale by {', '.join(map(str, SCALES))}")
    precision = resolve_precision(precision)
    grid = DEFAULT_GRID[method] if grid is None else grid
    steps = (DEFAULT_GRID_STEPS if grid else DEFAULT_STEPS)[method] if steps is None else steps
    finetune_steps = (0 if grid else DEFAULT_FINETUNE) if finetune_steps is None else finetune_steps
    batch = (DEFAULT_GRID_BATCH[method] if grid else DEFAULT_BATCH) if batch is None else batch
    patch = patch or DEFAULT_PATCH[method]
    learning_rate = DEFAULT_LR[method] if learning_rate is None else learning_rate
    if steps < 1 or finetune_steps < 0 or batch < 1 or patch < 4:
        raise UserError("--steps and --batch must be at least 1, --finetune-steps at least 0, --patch at least 4")
    if not 0 < learning_rate < 1:
        raise UserError(f"--lr {learning_rate}: give a learning rate between 0 and 1, e.g. 1e-3")
    t = HR_TILE // scale
    h, w = input_size or (t, t)
    if h < 4 or w < 4:
        raise UserError(f"--input-size {h}x{w} is too small; give at least 4x4 LR pixels")
    out = Path(out)
    bnd.check_out_dir(out, force)
    ckpt = Path(checkpoint) if checkpoint else out.with_name(out.name + ".ckpt")
    tables_ckpt = ckpt.with_name(ckpt.name + "-tables")
    if ckpt.exists() and ckpt.is_dir():
        raise UserError(f"--checkpoint {ckpt} is a folder; give a file path")
    photos = folder_y(train_data) if train_data else training_photos()
    spec = dataclasses.replace(METHODS[method], scale=scale)
    torch.manual_seed(seed)
    sampler = PatchSampler(photos, scale, patch, seed=seed)
    cfg = TrainConfig(steps=steps, batch=batch, patch=patch, lr=learning_rate, seed=seed, precision=precision, grid=grid)
    say = log or (lambda m: None)

    net, rec_net = train_net(spec, sampler, cfg, ckpt, progress, log)
    fixed = fixed_point_params(net)
    tables = transfer(net)
    lr_ev, hr_ev, names = held_out_tiles(scale)
    with torch.no_grad():
        fp = net(torch.from_numpy(lr_ev[:, None]).float() / 255)
    fp_u8 = np.clip(np.round(fp[:, 0].numpy() * 255), 0, 255).astype(np.uint8)
    spec_d = spec.to_dict()
    np_tables = {k: v.numpy() for k, v in tables.items()}
    evaluation = {"held_out": {"photos": sorted(set(names)), "tiles": len(lr_ev), "hr_tile": HR_TILE},
                  "network": quality(fp_u8, hr_ev, scale),
                  "tables_transferred": quality(_reference(spec_d, np_tables, fixed, lr_ev), hr_ev, scale)}
    from edgekit.data.bicubic import upscale_bicubic
    evaluation["bicubic"] = quality(np.stack([upscale_bicubic(x, scale) for x in lr_ev]), hr_ev, scale)
    say(f"network {evaluation['network']['psnr_y_db']} dB, tables {evaluation['tables_transferred']['psnr_y_db']} dB, "
        f"bicubic {evaluation['bicubic']['psnr_y_db']} dB")

    rec_ft = None
    if finetune_steps:
        trainable = TableNet(spec, tables, fixed, trainable=True)
        ft_cfg = TrainConfig(steps=finetune_steps, batch=min(batch, FINETUNE_BATCH), patch=patch, lr=FINETUNE_LR, seed=seed)
        rec_ft = finetune_tables(trainable, spec, sampler, ft_cfg, tables_ckpt, progress, log)
        tables = trainable.int8_tables()
        np_tables = {k: v.numpy() for k, v in tables.items()}
    ref = _reference(spec_d, np_tables, fixed, lr_ev)
    evaluation["reference"] = quality(ref, hr_ev, scale)
    deploy = TableNet(spec, tables, fixed)
    with bnd.staged_dir(out, force) as tmp:
        save_tables(tmp / TABLES_FILE, spec, tables, fixed)
        with captured_output(tmp / "lower.log"):  # the converters' console output
            artifacts = write_artifacts(deploy, h, w, tmp)
        if (h, w) == (t, t):
            for a in artifacts:
                got = run_artifact(tmp / a["file"], lr_ev)
                q = quality(got, hr_ev, scale)
                a["evaluation"] = {**q, "identical_pixels": round(float((got == ref).mean()), 6),
                                   "psnr_db_minus_reference": round(q["psnr_y_db"] - evaluation["reference"]["psnr_y_db"], 4),
                                   "bit_exact": bool((got == ref).all())}
        manifest = {"manifest_version": bnd.MANIFEST_VERSION, "kind": "lut",
                    "model": {"name": method, "task": "super_resolution", "scale": scale, "color": "y",
                              "input_shape": [1, 1, h, w], "spec": spec_d, "fixed_point": fixed},
                    "tables": {"file": TABLES_FILE, "bytes": table_bytes(tables),
                               "per_unit": {k: list(v.shape) for k, v in tables.items()}},
                    "training": {"net": {**rec_net, "batch": batch, "lr_patch": patch, "learning_rate": learning_rate,
                                         "patches": rec_net["steps"] * batch, "photos": len(photos),
                                         "train_data": str(train_data) if train_data else "edgekit.data.photos.TRAIN"},
                                 "tables": rec_ft, "threads": torch.get_num_threads()},
                    "artifacts": artifacts, "evaluation": evaluation}
        bnd.write_json(tmp / bnd.MANIFEST, manifest)
    if not checkpoint:  # edgekit's own default checkpoints (a foreign file there was refused), no longer needed
        for p in [ckpt] + ([tables_ckpt] if finetune_steps else []):
            p.unlink(missing_ok=True)
    return manifest
