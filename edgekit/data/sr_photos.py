"""``sr-photos``: held-out tiles of real photographs for x3 super-resolution, shipped in
``calibration/sr-photos/`` (see its README for the photos, their licences and the split).

``eval.npz``: ``lr`` uint8 [N, 1, 64, 64] (the Y channel, bicubic x1/3 of ``hr``) and ``hr``
uint8 [N, 1, 192, 192]; ``calib.npz``: ``lr`` tiles of the training photos only, for ``--calib``.
"""
from __future__ import annotations

import numpy as np
import torch

from edgekit.data.shipped import shipped_dir
from edgekit.errors import UserError

SR_DIR = shipped_dir("sr-photos")


def load_sr_photos(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution inputs float32 [N, 1, 64, 64] and high-resolution targets float32
    [N, 1, 192, 192], both the Y channel in [0, 1]. Raises UserError when the file is missing."""
    path = SR_DIR / "eval.npz"
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall edgekit (it ships the sr-photos data set)")
    with np.load(path, allow_pickle=False) as z:
        lr, hr = z["lr"][:limit], z["hr"][:limit]
    return torch.from_numpy(lr).float() / 255, torch.from_numpy(hr).float() / 255
