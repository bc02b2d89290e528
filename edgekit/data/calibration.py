"""Calibration sources: batches of model inputs with their provenance.

A real source reads an ``.npz`` (uint8 images [N, H, W], [N, H, W, C] or [N, C, H, W], passed
through the model's preprocessing; or float32 already-preprocessed inputs [N, C, H, W]) or a
folder of image files. Synthetic sources (ZeroQ, Genie) live in ``edgekit.synth``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgekit.data.datasets import Preprocess
from edgekit.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class CalibrationSource:
    """Model inputs float32 [N, C, H, W] for calibration, and where they came from.

    provenance: {"kind": "real", "path", "num_samples"} or {"kind": "synthetic", "method",
    "num_samples", "seed", "iterations", "seconds"}.
    """
    images: torch.Tensor
    provenance: dict = field(default_factory=dict)
    batch_size: int = 64

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(0, len(self.images), self.batch_size):
            yield self.images[i:i + self.batch_size]

    def __len__(self) -> int:
        return len(self.images)


def _npz_images(path: Path, pre: Preprocess) -> torch.Tensor:
    try:
        with np.load(path) as z:
            keys = list(z.keys())
            if not keys:
                raise UserError(f"{path} holds no arrays; save images under the key 'images'")
            arr = z["images"] if "images" in z else z[keys[0]]
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable .npz file ({e}); save one with numpy.savez") from None
    want = (pre.channels, pre.size, pre.size)
    if arr.dtype == np.uint8:
        if arr.ndim == 3:
            arr = arr[..., None]
        elif arr.ndim == 4 and arr.shape[1] == pre.channels and arr.shape[-1] != pre.channels:
            arr = arr.transpose(0, 2, 3, 1)
        if arr.ndim != 4 or arr.shape[1:] != (pre.size, pre.size, pre.channels):
            raise UserError(f"{path}: images of shape {tuple(arr.shape[1:])}, the model takes "
                            f"{want} (C, H, W); give images of that size")
        return pre.tensor(arr)
    if arr.dtype in (np.float32, np.float64) and arr.ndim == 4 and arr.shape[1:] == want:
        return torch.from_numpy(arr.astype(np.float32))
    raise UserError(f"{path}: array of dtype {arr.dtype} and shape {tuple(arr.shape)}; give uint8 "
                    f"images [N, H, W(, C)] or float32 model inputs [N, {want[0]}, {want[1]}, {want[2]}]")


def _folder_images(path: Path, pre: Preprocess, limit: int) -> torch.Tensor:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    arrays = []
    for f in files[:limit]:
        try:
            with Image.open(f) as img:
                arrays.append(pre.image(img))
        except (UnidentifiedImageError, OSError):
            continue
        except UserError as e:
            raise UserError(f"{f}: {e}") from None
    if not arrays:
        raise UserError(f"{path} holds no readable images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "give a folder of images or an .npz")
    return pre.tensor(np.stack(arrays))


def load_calibration(path: str | Path, pre: Preprocess, limit: int = 512) -> CalibrationSource:
    """Real calibration images from an .npz file or an image folder (at most ``limit``).

    Raises UserError when the path is missing, holds no usable images, or images of the wrong shape.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"calibration path {p} does not exist; give an .npz file or a folder of images")
    if p.is_dir():
        images = _folder_images(p, pre, limit)
    elif p.suffix == ".npz":
        images = _npz_images(p, pre)[:limit]
    else:
        raise UserError(f"calibration path {p} is neither an .npz file nor a folder of images")
    if len(images) == 0:
        raise UserError(f"{p} holds no images; give at least one")
    return CalibrationSource(images, {"kind": "real", "method": "real", "path": str(p),
                                      "num_samples": len(images), "seed": None, "seconds": 0.0})
