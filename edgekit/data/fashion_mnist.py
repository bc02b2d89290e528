"""Fashion-MNIST (Xiao et al. 2017, MIT licence) in the IDX format.

The 10,000-image test split ships in ``calibration/fashion-mnist/`` (in the wheel:
``edgekit/calibration/fashion-mnist/``) so evaluation needs no install; the 60,000-image training split comes from Debian's ``dataset-fashion-mnist``
package (``/usr/share/datasets/fashion-mnist``) and is only needed to train the reference
model or to calibrate on real training images.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from edgekit.data.shipped import shipped_dir

MEAN = 0.2860
STD = 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

SHIPPED_DIR = shipped_dir("fashion-mnist")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file into a uint8 array (images [N, 28, 28] or labels [N])."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _split_dir(split: str) -> Path:
    if split == "test" and (SHIPPED_DIR / "t10k-images-idx3-ubyte.gz").exists():
        return SHIPPED_DIR
    if (DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists():
        return DEBIAN_DIR
    raise FileNotFoundError(
        f"Fashion-MNIST {split} split not found: install the Debian package "
        "'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist)"
    )


def load_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) for ``split`` in {"train", "test"}.

    Raises FileNotFoundError when the split is not on this machine.
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    d = _split_dir(split)
    images = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def normalize(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> normalised float32 tensor [N, 1, 28, 28] (the model's input)."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).float().div_(255.0)
    return ((x - MEAN) / STD).unsqueeze(1)


def load_tensors(split: str = "test", limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images float32 [N, 1, 28, 28] and labels int64 [N] of ``split``."""
    images, labels = load_split(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return normalize(images), torch.from_numpy(labels)
