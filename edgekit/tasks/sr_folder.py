"""Super-resolution artifacts scored on a folder of high-resolution photos, the way SR papers
score their test sets (Set5, Set14, ...): ``edgekit eval ARTIFACT --eval-data DIR --scale S``.

Per photo: its BT.601 luma Y rounded to 8 bits (MATLAB ``rgb2ycbcr`` on uint8; grey photos read
as R = G = B), mod-cropped to a multiple of S (the HR image); LR = MATLAB bicubic x1/S of it
(``edgekit.data.bicubic.downscale``); SR = the artifact run tile by tile
(``edgekit.tasks.sr_tiling``); PSNR (dB) and SSIM of SR against HR on Y in [0, 1], S pixels
shaved from each border (``edgekit.tasks.sr_metrics``); the bicubic baseline
(``upscale_bicubic`` of the uint8 LR) scored the same way. An RGB model (C = 3) is given the
bicubic x1/S of the mod-cropped RGB photo and scored on the luma of its output. Means are over
photos (each photo's PSNR, then the mean).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.data.bicubic import downscale, mod_crop, upscale_bicubic
from edgekit.data.images import photo_files, read_photo
from edgekit.data.ycbcr import rgb_to_y, y_u8
from edgekit.errors import UserError
from edgekit.tasks.sr_metrics import psnr, ssim
from edgekit.tasks.sr_tiling import DEFAULT_MARGIN, TiledSR

SCALES = range(2, 9)


def evaluate_sr_folder(artifact_paths: list[str | Path], folder: str | Path, scale: int,
                       margin: int = DEFAULT_MARGIN, limit: int | None = None, threads: int | None = None) -> dict:
    """Score each SR artifact (see the module docstring) and the bicubic baseline on the PNG/JPEG
    photos directly inside ``folder`` (sorted by name; the first ``limit`` when given).

    Returns ``{"task": "super_resolution", "eval_data", "scale", "shave", "num_photos",
    "photos": [{"photo", "hr_size": [H, W]}], "results": [{"file", "runtime", "psnr" (dB),
    "ssim", "seconds", "per_photo": [{"photo", "psnr", "ssim"}]}], "bicubic": {"psnr", "ssim",
    "per_photo"}}``. Raises UserError for a scale outside 2..8, a ``limit`` under 1, a missing
    folder or one without photos, a photo that cannot be read or is smaller than 8 * scale pixels on a side, an
    artifact that is not an SR model (``TiledSR``) or upscales by another factor than ``scale``.
    Check foreign artifact files first (``edgekit.runtimes.checks``)."""
    if scale not in SCALES:
        raise UserError(f"--scale {scale} is not one of {SCALES.start}..{SCALES.stop - 1}; give the upscaling factor")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit} must be at least 1 photo")
    files = photo_files(folder, "--eval-data")[:limit]
    photos = []
    for f in files:  # all read and checked before any model runs
        rgb, _ = read_photo(f)
        if min(rgb.shape[:2]) < 8 * scale:
            raise UserError(f"{f} is {rgb.shape[0]}x{rgb.shape[1]} pixels; x{scale} scoring needs photos of at "
                            f"least {8 * scale}x{8 * scale}")
        rgb = mod_crop(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2), scale)
        photos.append((f.name, rgb, y_u8(rgb)))
    models = [TiledSR(p, margin, threads) for p in artifact_paths]
    for m in models:
        if m.scale != scale:
            raise UserError(f"{m.name} upscales x{m.scale}, not x{scale}; give --scale {m.scale}")

    def scores(sr_y: np.ndarray, hr_y: np.ndarray, name: str) -> dict:
        hr = hr_y / 255.0
        return {"photo": name, "psnr": psnr(sr_y, hr, scale), "ssim": ssim(sr_y, hr, scale)}

    def summary(per_photo: list[dict]) -> dict:
        return {"psnr": float(np.mean([p["psnr"] for p in per_photo])),
                "ssim": float(np.mean([p["ssim"] for p in per_photo])), "per_photo": per_photo}

    bicubic = [scores(upscale_bicubic(downscale(y, scale), scale) / 255.0, y, n) for n, _, y in photos]
    results = []
    for m in models:
        t0, per_photo = time.time(), []
        for name, rgb, y in photos:
            if m.channels == 1:
                sr_y = m(downscale(y, scale)[None] / 255.0)[0]
            else:
                sr_y = rgb_to_y(np.clip(m(downscale(rgb, scale).transpose(2, 0, 1) / 255.0), 0, 1).transpose(1, 2, 0))
            per_photo.append(scores(sr_y, y, name))
        results.append({"file": m.name, "runtime": m.runtime, **summary(per_photo),
                        "seconds": round(time.time() - t0, 2)})
    return {"task": "super_resolution", "eval_data": str(folder), "scale": scale, "shave": scale,
            "num_photos": len(photos), "photos": [{"photo": n, "hr_size": list(y.shape)} for n, _, y in photos],
            "results": results, "bicubic": summary(bicubic)}


def sr_table(evaluation: dict) -> str:
    """The text table of :func:`evaluate_sr_folder`'s result: mean PSNR (dB) and SSIM of each
    artifact and of bicubic, and each artifact's gain over bicubic."""
    e, b = evaluation, evaluation["bicubic"]
    lines = [f"x{e['scale']} super-resolution on {e['num_photos']} photo(s) of {e['eval_data']} "
             f"(Y of BT.601, {e['shave']} px shaved)",
             f"{'':24} {'runtime':12} {'PSNR (dB)':>9} {'SSIM':>7} {'vs bicubic':>10}"]
    for r in e["results"]:
        lines.append(f"{r['file'][:24]:24} {r['runtime']:12} {r['psnr']:9.3f} {r['ssim']:7.4f} "
                     f"{r['psnr'] - b['psnr']:+10.3f}")
    lines.append(f"{'bicubic':24} {'-':12} {b['psnr']:9.3f} {b['ssim']:7.4f}")
    return "\n".join(lines)
