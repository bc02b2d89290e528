"""Evaluation data sets and the preprocessing that turns images into model inputs.

``fashion-mnist``: the real 10,000-image Fashion-MNIST test split (shipped), 1x28x28.
``imagenet-photos``: foolbox 3.3.4's 20 labelled ImageNet photos (real, label in the file
name), resized to 256 and centre-cropped to 224, ImageNet mean/std.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgekit.errors import UserError


@dataclass(frozen=True)
class Preprocess:
    """uint8 image -> float32 model input [C, H, W]: optional resize+centre crop, /255, (x-mean)/std.

    resize: shorter side in pixels before the centre crop (None: the image must already be H x W).
    """
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None

    def image(self, img: Image.Image) -> np.ndarray:
        """A PIL image -> uint8 [H, W, C]; raises UserError on a size mismatch without resize."""
        img = img.convert("L" if self.channels == 1 else "RGB")
        if self.resize:
            w, h = img.size
            s = self.resize / min(w, h)
            img = img.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
        elif img.size != (self.size, self.size):
            raise UserError(f"image of {img.size[0]}x{img.size[1]} pixels: the model takes "
                            f"{self.size}x{self.size}; give images of that size")
        return np.asarray(img, dtype=np.uint8).reshape(self.size, self.size, self.channels)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (lo, hi) float32 [C] of a normalised input: pixel 0 and pixel 255."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (0.0 - mean) / std, (1.0 - mean) / std

    def tensor(self, images_u8: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, C] -> normalised float32 [N, C, H, W]."""
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).float().div_(255.0).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


FMNIST = Preprocess(1, 28, (0.2860,), (0.3530,))
IMAGENET = Preprocess(3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize=256)
PREPROCESS = {"fashion-mnist": FMNIST, "imagenet-photos": IMAGENET}


def preprocess_for(dataset: str | None, input_shape: tuple[int, ...]) -> Preprocess:
    """The preprocessing of ``dataset``, or plain /255 scaling at the model's input size."""
    if dataset in PREPROCESS:
        return PREPROCESS[dataset]
    c, h = int(input_shape[1]), int(input_shape[2])
    return Preprocess(c, h, (0.0,) * c, (1.0,) * c)


def foolbox_photos() -> tuple[list[Path], list[int]]:
    """Paths and ImageNet labels of foolbox's 20 labelled ImageNet photos."""
    try:
        import foolbox
    except ImportError:
        raise UserError("the imagenet-photos data set needs foolbox==3.3.4 installed") from None
    files = sorted((Path(foolbox.__file__).parent / "data").glob("imagenet_*.jpg"))
    return files, [int(f.stem.split("_")[-1]) for f in files]


def load_dataset(name: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 [N, C, H, W] (model input) and labels int64 [N] of data set ``name``.

    Raises UserError for an unknown name.
    """
    if name == "fashion-mnist":
        from edgekit.data.fashion_mnist import load_tensors
        return load_tensors("test", limit)
    if name == "imagenet-photos":
        files, labels = foolbox_photos()
        files, labels = files[:limit], labels[:limit]
        arr = np.stack([IMAGENET.image(Image.open(f)) for f in files])
        return IMAGENET.tensor(arr), torch.tensor(labels)
    raise UserError(f"unknown data set {name!r}: known ones are fashion-mnist, imagenet-photos")
