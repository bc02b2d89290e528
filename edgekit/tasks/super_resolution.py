"""Single-image super-resolution: inputs are low-resolution images [N, C, h, w], outputs and
ground truth high-resolution images [N, C, s*h, s*w] in [0, 1] (C = 1: the Y channel; C = 3:
RGB, scored on its Y channel). Metrics as SR papers report them (e.g. ESPCN, Shi et al. 2016,
Sec. 4; SR-LUT, Jo & Kim 2021, Sec. 5): PSNR (dB) and SSIM on Y with ``s`` pixels shaved from each
border; output SQNR against FP32 and the simulation. Reference: FP32 and bicubic upsampling
(PIL's, the antialiased kernel of MATLAB's imresize). Mixed precision's sensitivity: output MSE.
No synthesis prior (BN statistics only)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from edgekit.registry import TASKS
from edgekit.tasks.base import Column, Task
from edgekit.tasks.sr_metrics import psnr, rgb_to_y, ssim

def y_channel(x: torch.Tensor) -> np.ndarray:
    """Images float [N, C, H, W] in [0, 1] -> Y float64 [N, H, W] in [0, 1] (C = 1: as is; C = 3:
    ITU-R BT.601 luma, (16 + 65.481 R + 128.553 G + 24.966 B) / 255). Raises ValueError otherwise."""
    x = x.detach().double().clamp(0, 1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"super-resolution outputs are [N, 1 or 3, H, W]; got {list(x.shape)}")
    return x[:, 0].numpy() if x.shape[1] == 1 else rgb_to_y(x.permute(0, 2, 3, 1).numpy())


def scale_of(inputs: torch.Tensor, out: torch.Tensor) -> int:
    """The upscaling factor s of outputs [N, C, s*h, s*w] from inputs [N, C, h, w]."""
    return max(1, round(out.shape[-1] / inputs.shape[-1]))


def bicubic(inputs: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic x``scale`` upsampling (PIL, from the images rounded to 8 bits) of inputs float32
    [N, 1 or 3, h, w] in [0, 1] -> [N, C, scale*h, scale*w]."""
    outs = []
    for img in inputs.clamp(0, 1).mul(255).round().to(torch.uint8):
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        up = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.BICUBIC)
        a = torch.from_numpy(np.asarray(up).copy()).float() / 255
        outs.append(a[None] if a.dim() == 2 else a.permute(2, 0, 1))
    return torch.stack(outs)


def _sr_photos(limit):
    from edgekit.data.sr_photos import load_sr_photos
    return load_sr_photos(limit)


class SuperResolution(Task):
    """See the module docstring; the border shaved is the scale, output width / input width."""
    name = "super_resolution"
    columns = (Column("psnr_y_db", "PSNR-Y dB", "db"), Column("ssim_y", "SSIM-Y"),
               Column("psnr_y_db_vs_fp32", "PSNR vs fp32", "db"), Column("sqnr_db_vs_simulation", "SQNR sim", "db"),
               Column("sqnr_db_vs_fp32", "SQNR dB", "db"))
    datasets = {"sr-photos": _sr_photos}
    ground_truth = "targets"

    def score(self, inputs, out, targets, fp32, sim):
        r: dict = {}
        b = scale_of(inputs, out)
        if targets is not None:
            y = y_channel(out)
            r["psnr_y_db"] = round(psnr(y, y_channel(targets), b), 3)
            r["ssim_y"] = round(ssim(y, y_channel(targets), b), 5)
        if fp32 is not None:
            r["psnr_y_db_vs_fp32"] = round(psnr(y_channel(out), y_channel(fp32), b), 3)
        return {**r, **super().score(inputs, out, targets, fp32, sim)}

    def reference(self, inputs, targets, fp32):
        if targets is None:
            return {}
        b, hr = scale_of(inputs, fp32), y_channel(targets)
        ref = {"fp32": fp32}
        if inputs.shape[1] in (1, 3) and float(inputs.min()) >= 0 and float(inputs.max()) <= 1:
            ref["bicubic"] = bicubic(inputs, b)
        return {k: {"psnr_y_db": round(psnr(y_channel(v), hr, b), 3), "ssim_y": round(ssim(y_channel(v), hr, b), 5)}
                for k, v in ref.items()}


TASKS.register("super_resolution", SuperResolution())
