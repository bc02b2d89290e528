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
from edgekit.errors import UserError, first_line

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
    pad_last: bool = False  # a program with a static batch: the last batch is filled with copies

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(0, len(self.images), self.batch_size):
            x = self.images[i:i + self.batch_size]
            if self.pad_last and len(x) < self.batch_size:
                x = torch.cat([x, x[-1:].expand(self.batch_size - len(x), *x.shape[1:])])
            yield x

    def __len__(self) -> int:
        return len(self.images)


def check_inputs(arr: np.ndarray, path: Path, bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
                 tolerance: float = 1e-3) -> np.ndarray:
    """Check float model inputs [N, C, H, W]: at least one sample, every value finite and, when
    the model's input range is known (``bounds``: per-channel lo, hi float32 [C]), inside it.
    Returns ``arr``; raises UserError naming the file and the first bad sample."""
    if len(arr) == 0:
        raise UserError(f"{path} holds no samples; give at least one")
    flat = arr.reshape(len(arr), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: sample {i} holds NaN or infinite values ({int(bad.sum())} bad samples in "
                        f"all); give finite model inputs")
    if bounds is not None:
        lo = bounds[0].numpy().reshape(1, -1, 1, 1) - tolerance
        hi = bounds[1].numpy().reshape(1, -1, 1, 1) + tolerance
        out = ((arr < lo) | (arr > hi)).reshape(len(arr), -1).any(axis=1)
        if out.any():
            i = int(np.argmax(out))
            raise UserError(f"{path}: sample {i} has values in [{arr[i].min():.4g}, {arr[i].max():.4g}], outside "
                            f"the model's input range [{float(bounds[0].min()):.4g}, {float(bounds[1].max()):.4g}] "
                            "(pixels 0..255 after its normalisation); give preprocessed inputs of that "
                            "range, or uint8 images")
    return arr


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (never unpickling objects); UserError when it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.keys()}
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npz file ({first_line(e, 120)}); "
                        "save one with numpy.savez") from None
    except Exception as e:  # zipfile.BadZipFile and kin from a damaged archive
        raise UserError(f"{path} is not a readable .npz file ({type(e).__name__}); save one with numpy.savez") from None


def images_from_array(arr: np.ndarray, path: Path, pre: Preprocess, bounds=None) -> torch.Tensor:
    """Model inputs float32 [N, C, H, W] from uint8 images [N, H, W(, C)] / [N, C, H, W] (through
    ``pre``) or float model inputs [N, C, H, W] (checked by :func:`check_inputs`)."""
    want = (pre.channels, *pre.hw)
    if arr.dtype == np.uint8:
        if arr.ndim == 3:
            arr = arr[..., None]
        elif arr.ndim == 4 and arr.shape[1] == pre.channels and arr.shape[-1] != pre.channels:
            arr = arr.transpose(0, 2, 3, 1)
        if arr.ndim != 4 or arr.shape[1:] != (*pre.hw, pre.channels):
            raise UserError(f"{path}: images of shape {tuple(arr.shape[1:])}, the model takes "
                            f"{want} (C, H, W); give images of that size")
        if len(arr) == 0:
            raise UserError(f"{path} holds no images; give at least one")
        return pre.tensor(arr)
    if arr.dtype in (np.float32, np.float64) and arr.ndim == 4 and arr.shape[1:] == want:
        return torch.from_numpy(check_inputs(arr.astype(np.float32), path, bounds))
    raise UserError(f"{path}: array of dtype {arr.dtype} and shape {tuple(arr.shape)}; give uint8 "
                    f"images [N, H, W(, C)] or float32 model inputs [N, {want[0]}, {want[1]}, {want[2]}]")


def _npz_images(path: Path, pre: Preprocess, bounds=None) -> torch.Tensor:
    arrays = npz_arrays(path)
    if not arrays:
        raise UserError(f"{path} holds no arrays; save images under the key 'images'")
    return images_from_array(arrays["images"] if "images" in arrays else next(iter(arrays.values())), path, pre, bounds)


def _folder_images(path: Path, pre: Preprocess, limit: int) -> torch.Tensor:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    arrays = []
    for f in files[:limit]:
        try:
            with Image.open(f) as img:
                arrays.append(pre.image(img))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"{f} cannot be read as an image ({type(e).__name__}); remove it from the "
                            "folder or replace it") from None
        except UserError as e:
            raise UserError(f"{f}: {e}") from None
    if not arrays:
        raise UserError(f"{path} holds no readable images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "give a folder of images or an .npz")
    return pre.tensor(np.stack(arrays))


def load_calibration(path: str | Path, pre: Preprocess, limit: int = 512,
                     bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> CalibrationSource:
    """Real calibration images from an .npz file or an image folder (at most ``limit``).

    bounds: the model's per-channel input range (lo, hi float32 [C]) when its preprocessing is
    known; float inputs outside it are refused. Raises UserError when the path is missing,
    holds no usable images, an image that cannot be decoded, images of the wrong shape, or
    float inputs that are not finite or out of range (naming the first bad sample).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"calibration path {p} does not exist; give an .npz file or a folder of images")
    if p.is_dir():
        images = _folder_images(p, pre, limit)
    elif p.suffix == ".npz":
        images = _npz_images(p, pre, bounds)[:limit]
    else:
        raise UserError(f"calibration path {p} is neither an .npz file nor a folder of images")
    if len(images) == 0:
        raise UserError(f"{p} holds no images; give at least one")
    return CalibrationSource(images, {"kind": "real", "method": "real", "path": str(p),
                                      "num_samples": len(images), "seed": None, "seconds": 0.0})
