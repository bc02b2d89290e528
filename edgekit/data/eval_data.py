"""The user's evaluation data (``--eval-data PATH``): an ImageFolder-style folder or an ``.npz``.

Folder: one subfolder per class holding its images (any depth); class indices from a
``classes.txt`` (one class name per line, line i = index i) or ``class_index.json`` (a list of
names, or ``{name: index}``) at the top, else the sorted subfolder names (torchvision's
ImageFolder rule). ``.npz``: ``images`` (uint8 [N, H, W(, C)] or float32 model inputs
[N, C, H, W]) and ``labels`` (integers [N]), or, for an image-to-image model (super-resolution),
``targets``: the ground-truth output images (uint8 [N, H, W], [N, H, W, C] or [N, C, H, W], or
float32 [N, C, H, W] in [0, 1]); with neither (a detection map, a text sequence) FP32 is the
only reference. Images become inputs through the model's declared
preprocessing; nothing is inferred from a shape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgekit.data.calibration import IMAGE_SUFFIXES, images_from_array, npz_arrays
from edgekit.data.datasets import Preprocess
from edgekit.errors import UserError


@dataclass
class EvalData:
    """Evaluation inputs float32 [N, C, H, W], the ground truth (``labels``: class indices int64
    [N], or target images float32 [N, C, H', W'] in [0, 1]; None: FP32 is the only reference),
    and what they are (``describe``: kind, path or source, count)."""
    images: torch.Tensor
    labels: torch.Tensor | None
    describe: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.describe.get("name") or self.describe.get("kind"))


def _class_names(root: Path, folders: list[str]) -> list[str]:
    txt, js = root / "classes.txt", root / "class_index.json"
    if txt.is_file():
        names = [ln.strip() for ln in txt.read_text().splitlines() if ln.strip()]
    elif js.is_file():
        try:
            d = json.loads(js.read_text())
        except ValueError as e:
            raise UserError(f"{js} is not valid JSON ({e}); give a list of class names or {{name: index}}") from None
        if isinstance(d, dict):
            names = [n for n, _ in sorted(d.items(), key=lambda kv: int(kv[1]))]
        elif isinstance(d, list):
            names = [str(n) for n in d]
        else:
            raise UserError(f"{js} must hold a list of class names or {{name: index}}")
    else:
        return sorted(folders)
    missing = sorted(set(folders) - set(names))
    if missing:
        raise UserError(f"{root}: class folder(s) {', '.join(missing[:3])} are not in its class index file")
    return names


def load_eval_data(path: str | Path, pre: Preprocess, limit: int | None = None,
                   bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> EvalData:
    """Labelled evaluation data from an ImageFolder-style folder or an ``.npz`` (see the module
    docstring), at most ``limit`` samples. Raises UserError naming the file and what to do for a
    missing path, no classes or images, an unreadable image, a size the model does not take,
    labels that do not match the images, or non-finite/out-of-range float inputs."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--eval-data {p} does not exist; give a folder with one subfolder per class, or an .npz")
    if p.is_dir():
        folders = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise UserError(f"--eval-data {p} has no class subfolders; put each class's images in a folder of its own")
        names = _class_names(p, folders)
        arrays, labels = [], []
        for idx, name in enumerate(names):
            d = p / name
            if not d.is_dir():
                continue
            for f in sorted(x for x in d.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES and x.is_file()):
                if limit is not None and len(arrays) >= limit:
                    break
                try:
                    with Image.open(f) as img:
                        arrays.append(pre.image(img))
                except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
                    raise UserError(f"{f} cannot be read as an image ({type(e).__name__}); remove or replace it") from None
                except UserError as e:
                    raise UserError(f"{f}: {e}") from None
                labels.append(idx)
        if not arrays:
            raise UserError(f"--eval-data {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
        return EvalData(pre.tensor(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64),
                        {"kind": "folder", "name": p.name, "path": str(p), "num_classes": len(names)})
    if p.suffix != ".npz":
        raise UserError(f"--eval-data {p} is neither a folder nor an .npz file")
    arrays = npz_arrays(p)
    if "images" not in arrays:
        raise UserError(f"{p} must hold the array 'images' (and 'labels' for top-1; it has {', '.join(sorted(arrays)) or 'none'})")
    images = images_from_array(arrays["images"], p, pre, bounds)
    if "targets" in arrays:
        if "labels" in arrays:
            raise UserError(f"{p} holds both 'labels' and 'targets'; give labels for a classifier, targets for an "
                            "image-to-image model")
        return EvalData(images[:limit], target_images(arrays["targets"], p, len(images))[:limit],
                        {"kind": "npz", "name": p.name, "path": str(p)})
    if "labels" not in arrays:  # a model whose output is not a class (a map, a sequence): FP32 is the reference
        return EvalData(images[:limit], None, {"kind": "npz", "name": p.name, "path": str(p),
                                               "note": "no labels: agreement and SQNR against FP32 only"})
    labels = arrays["labels"]
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise UserError(f"{p}: 'labels' must be integers [N] with N = {len(images)} images (it is "
                        f"{labels.dtype} {tuple(labels.shape)})")
    if len(labels) and labels.min() < 0:
        raise UserError(f"{p}: 'labels' holds a negative class index ({int(labels.min())})")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return EvalData(images, torch.from_numpy(labels.astype(np.int64)),
                    {"kind": "npz", "name": p.name, "path": str(p)})


def target_images(arr: np.ndarray, path: Path, n: int) -> torch.Tensor:
    """Ground-truth images of an image-to-image task -> float32 [N, C, H, W] in [0, 1]: uint8
    [N, H, W], [N, H, W, C] or [N, C, H, W] (C in 1, 3), or float [N, C, H, W] in [0, 1].
    Raises UserError naming the file for another count, shape, dtype or range."""
    if len(arr) != n or arr.ndim not in (3, 4):
        raise UserError(f"{path}: 'targets' must be {n} images [N, H, W(, C)] or [N, C, H, W] (it is "
                        f"{arr.dtype} {tuple(arr.shape)})")
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255
        if x.dim() == 3:
            x = x[:, None]
        elif x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2).contiguous()
        return x
    if arr.dtype.kind == "f" and arr.ndim == 4 and arr.shape[1] in (1, 3):
        x = torch.from_numpy(arr.astype(np.float32))
        if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
            raise UserError(f"{path}: float 'targets' must be finite images in [0, 1]")
        return x
    raise UserError(f"{path}: 'targets' of dtype {arr.dtype} and shape {tuple(arr.shape)}; give uint8 images "
                    "or float32 [N, C, H, W] in [0, 1]")
