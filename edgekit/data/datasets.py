"""Preprocessing that turns images into model inputs, and the classification data sets'
loaders (each task names its data sets: ``edgekit.tasks``).

``fashion-mnist``: the real 10,000-image Fashion-MNIST test split (shipped), 1x28x28.
``imagenet-photos``: foolbox 3.3.4's 20 labelled ImageNet photos (real, label in the file
name), resized to 256 and centre-cropped to 224, ImageNet mean/std.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgekit.errors import UserError


@dataclass(frozen=True)
class Preprocess:
    """uint8 image -> float32 model input [C, H, W]: optional resize+centre crop, then
    x = (pixel * scale - mean) / std per channel (torchvision's convention with scale 1/255).

    size, width: the input's height and width in pixels (width 0: square, size x size).
    resize: shorter side in pixels before the centre crop (None: the image must already be H x W).
    source: where it came from: "zoo" (the zoo entry), "user" (--mean/--std or --input-range),
    or "assumed" (nothing declared: pixels/255, said in one line where it matters).
    """
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    scale: float = 1 / 255
    source: str = "zoo"
    kind: str = "mean_std"  # "mean_std": inputs are normalised; "range": --input-range, not normalised
    width: int = 0

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of a model input in pixels."""
        return self.size, self.width or self.size

    @classmethod
    def from_dict(cls, d: dict, input_shape) -> "Preprocess | None":
        """The preprocessing a manifest recorded (``to_dict``) for a model taking ``input_shape``
        [N, C, H, W]; None when it recorded none (no mean/std)."""
        if not d or not d.get("mean"):
            return None
        return cls(int(input_shape[1]), int(input_shape[2]), tuple(d["mean"]), tuple(d["std"]), d.get("resize"),
                   d.get("pixel_scale", 1 / 255), d.get("source", "user"), d.get("kind", "mean_std"),
                   int(input_shape[3]))

    def input_prior(self) -> tuple[float, float] | None:
        """The (mean, std) synthesis should pull its images to: None (ZeroQ's 0 and 1) for a
        normalising preprocessing; the middle and a quarter of the range for ``--input-range``."""
        if self.kind != "range":
            return None
        lo, hi = self.bounds()
        return float((lo.min() + hi.max()) / 2), float((hi.max() - lo.min()) / 4)

    def to_dict(self) -> dict:
        """The manifest's record: mean, std, pixel scale, the input range they give, the source."""
        lo, hi = self.bounds()
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std), "pixel_scale": self.scale,
                "input_range": [round(float(lo.min()), 6), round(float(hi.max()), 6)],
                "resize": self.resize, "source": self.source}

    def image(self, img: Image.Image) -> np.ndarray:
        """A PIL image -> uint8 [H, W, C]; raises UserError on a size mismatch without resize."""
        img = img.convert("L" if self.channels == 1 else "RGB")
        th, tw = self.hw
        if self.resize:
            w, h = img.size
            s = self.resize / min(w, h)
            img = img.resize((max(tw, round(w * s)), max(th, round(h * s))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - tw) // 2, (h - th) // 2
            img = img.crop((left, top, left + tw, top + th))
        elif img.size != (tw, th):
            raise UserError(f"image of {img.size[0]}x{img.size[1]} pixels: the model takes "
                            f"{tw}x{th} (width x height); give images of that size")
        return np.asarray(img, dtype=np.uint8).reshape(th, tw, self.channels)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (lo, hi) float32 [C] of a normalised input: pixel 0 and pixel 255."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        lo, hi = (0.0 - mean) / std, (255.0 * self.scale - mean) / std
        return torch.minimum(lo, hi), torch.maximum(lo, hi)

    def tensor(self, images_u8: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, C] -> normalised float32 [N, C, H, W]."""
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).float().mul_(self.scale).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


FMNIST = Preprocess(1, 28, (0.2860,), (0.3530,))
IMAGENET = Preprocess(3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize=256)
PREPROCESS = {"fashion-mnist": FMNIST, "imagenet-photos": IMAGENET}


def declared_preprocess(input_shape: tuple[int, ...], mean=None, std=None, scale: float | None = None,
                        input_range=None) -> Preprocess | None:
    """The preprocessing a user declared for a model taking ``input_shape`` [N, C, H, W]:
    ``mean``/``std`` (one value or one per channel, in units of pixel * scale; scale 1/255 by
    default), or ``input_range`` (lo, hi): pixel 0 -> lo, pixel 255 -> hi. None when nothing
    was declared. Raises UserError for a bad combination or value."""
    c, h, w = int(input_shape[1]), int(input_shape[2]), int(input_shape[3])
    if input_range is not None and (mean is not None or std is not None):
        raise UserError("give either --mean/--std or --input-range, not both")
    if (mean is None) != (std is None):
        raise UserError("give --mean and --std together (one value, or one per input channel)")
    scale = 1 / 255 if scale is None else float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(f"--pixel-scale {scale!r} must be a positive number (1/255 for pixels in [0, 1])")
    if input_range is not None:
        lo, hi = (float(v) for v in input_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UserError(f"--input-range {lo:g},{hi:g}: give LO,HI with LO < HI")
        mean, std = (-lo / (hi - lo),) * c, (1.0 / (hi - lo),) * c
        return Preprocess(c, h, mean, std, None, 1 / 255, "user", "range", w)
    if mean is None:
        return None
    mean, std = _floats("--mean", mean), _floats("--std", std)
    for name, vals in (("--mean", mean), ("--std", std)):
        if len(vals) not in (1, c):
            raise UserError(f"{name} has {len(vals)} values; the model's input has {c} channels: give 1 or {c}")
    if not all(math.isfinite(v) for v in mean + std) or not all(v > 0 for v in std):
        raise UserError("--mean must be finite and --std positive")
    mean, std = mean * (c // len(mean)), std * (c // len(std))
    return Preprocess(c, h, mean, std, None, scale, "user", width=w)


def _floats(name: str, value) -> tuple[float, ...]:
    """``value`` (a number, or a sequence of numbers) as a tuple of floats; UserError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{name} {str(value)[:40]!r} is not a number or a list of numbers: "
                        "give one value or one per input channel") from None
    if not out:
        raise UserError(f"{name} is empty: give one value or one per input channel")
    return out


def assumed_preprocess(input_shape: tuple[int, ...]) -> Preprocess:
    """What edgekit assumes to turn images into inputs when nothing was declared: pixels/255."""
    c, h, w = int(input_shape[1]), int(input_shape[2]), int(input_shape[3])
    return Preprocess(c, h, (0.0,) * c, (1.0,) * c, None, 1 / 255, "assumed", width=w)


def foolbox_photos() -> tuple[list[Path], list[int]]:
    """Paths and ImageNet labels of foolbox's 20 labelled ImageNet photos."""
    try:
        import foolbox
    except ImportError:
        raise UserError("the imagenet-photos data set needs foolbox==3.3.4 installed") from None
    files = sorted((Path(foolbox.__file__).parent / "data").glob("imagenet_*.jpg"))
    return files, [int(f.stem.split("_")[-1]) for f in files]


def load_imagenet_photos(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's labelled ImageNet photos as model inputs float32 [N, 3, 224, 224] (``IMAGENET``
    preprocessing) and labels int64 [N]. Raises UserError when foolbox is missing."""
    files, labels = foolbox_photos()
    files, labels = files[:limit], labels[:limit]
    arr = np.stack([IMAGENET.image(Image.open(f)) for f in files])
    return IMAGENET.tensor(arr), torch.tensor(labels)
