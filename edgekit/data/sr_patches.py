"""Training pairs for super-resolution: aligned (LR, HR) patches of real photos.

Each HR photo (the Y channel, uint8) is mod-cropped to a multiple of the scale and downscaled
once, whole, with MATLAB-style antialiased bicubic (``edgekit.data.bicubic``), as SR training sets
such as DIV2K are made; patches are then cut at the same place in both, with a random rotation by
a multiple of 90 degrees and a random horizontal flip.

Default photos: the training photos of ``edgekit.data.photos`` (never the held-out ones), each at
the sizes ``TRAIN_SCALES`` of the original. A user's folder of photos (PNG/JPEG, any size) can be
given instead (read by the caller).
"""
from __future__ import annotations

import math
import numpy as np
import torch

from edgekit.errors import UserError

TRAIN_SCALES = (1.0, 0.8, 0.6)


def training_photos() -> list[np.ndarray]:
    """The default training photos' Y channels, uint8 [H, W] each, at every ``TRAIN_SCALES`` size
    (MATLAB-style bicubic)."""
    from edgekit.data.bicubic import imresize
    from edgekit.data.photos import TRAIN, load_y

    out = []
    for name in TRAIN:
        y = load_y(name)
        for s in TRAIN_SCALES:
            out.append(y if s == 1.0 else np.clip(np.round(imresize(y.astype(np.float64), s)), 0, 255).astype(np.uint8))
    return out


class PatchSampler:
    """Random aligned patches: ``batch(n)`` -> LR float32 [n, 1, p, p] and HR float32
    [n, 1, r*p, r*p], both pixel values / 255. A photo is drawn with probability proportional to
    the square root of its area. Raises UserError when no photo is at least ``r * p`` pixels on
    both sides."""

    def __init__(self, photos: list[np.ndarray], scale: int, patch: int, seed: int = 0) -> None:
        from edgekit.data.bicubic import downscale

        self.scale, self.patch = scale, patch
        self.rng = np.random.default_rng(seed)
        self.pairs = []
        for hr in photos:
            h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
            if min(h, w) >= scale * patch:
                hr = hr[:h, :w]
                self.pairs.append((downscale(hr, scale), hr))
        if not self.pairs:
            raise UserError(f"no training photo is at least {scale * patch} pixels on both sides; "
                            "give larger photos or a smaller --patch")
        w = np.array([math.sqrt(hr.size) for _, hr in self.pairs])
        self.p = w / w.sum()

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, r = self.patch, self.scale
        lrs, hrs = [], []
        for k in self.rng.choice(len(self.pairs), size=n, p=self.p):
            lr, hr = self.pairs[k]
            i = int(self.rng.integers(0, lr.shape[0] - p + 1))
            j = int(self.rng.integers(0, lr.shape[1] - p + 1))
            a, b = lr[i:i + p, j:j + p], hr[i * r:(i + p) * r, j * r:(j + p) * r]
            k90, flip = int(self.rng.integers(0, 4)), self.rng.random() < 0.5
            a, b = np.rot90(a, k90), np.rot90(b, k90)
            if flip:
                a, b = a[:, ::-1], b[:, ::-1]
            lrs.append(np.ascontiguousarray(a))
            hrs.append(np.ascontiguousarray(b))
        return (torch.from_numpy(np.stack(lrs)[:, None]).float() / 255,
                torch.from_numpy(np.stack(hrs)[:, None]).float() / 255)
