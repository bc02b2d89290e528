"""Super-resolution of images of any size with an artifact whose input size is fixed.

An SR artifact (.pte, .tflite or .onnx) takes one float32 input [1, C, h, w] (C = 1: the luma Y
of BT.601; C = 3: RGB; values in [0, 1]) and returns float32 [1, C, s h, s w]; the scale s is read
from its output. :class:`TiledSR` upscales a larger image tile by tile: tiles of h x w LR pixels
overlap by ``2 * margin``, each keeps the centre of its output (``margin`` LR pixels from its
inner edges are dropped, nothing at the image's own border), and the kept parts are stitched. A
model whose receptive field reaches at most ``margin`` LR pixels from an output pixel gives the
same result as run once on the whole image. An image smaller than a tile is first padded by
replicating its last row/column (``edge``), and the output cropped back.

:func:`upscale_image` is ``edgekit upscale`` on one image: a Y model upscales Y, and Cb/Cr get
the MATLAB bicubic (as SR papers show colour results); an RGB model upscales all three channels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.data.bicubic import upscale_bicubic
from edgekit.data.ycbcr import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from edgekit.errors import UserError
from edgekit.runtimes.base import runtime_of_suffix, suffixes

DEFAULT_MARGIN = 8  # LR pixels: ESPCN x3 sees 4, SR-LUT 1 to 2 and MuLUT up to 6


def spans(n: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """Tiles of ``tile`` pixels covering ``n >= tile`` pixels along one axis: per tile
    ``(start, keep_from, keep_to)``, its first pixel and the part of the axis it writes. Tiles step
    by ``tile - 2 * margin`` and the last one ends at ``n``; each keeps all but ``margin`` pixels
    at its inner edges, so the kept parts cover [0, n) without gaps."""
    if n <= tile:
        return [(0, 0, n)]
    starts = list(range(0, n - tile, tile - 2 * margin)) + [n - tile]
    return [(a, a + margin if a else 0, a + tile - margin if a + tile < n else n) for a in starts]


class TiledSR:
    """An SR artifact loaded in its runtime (chosen by the file's suffix), run tile by tile.

    Attributes: ``channels`` (1: Y, 3: RGB), ``tile`` (h, w) in LR pixels, ``scale`` s,
    ``margin`` (LR pixels; capped at a quarter of the tile side so that a tile keeps at least
    half of it), ``name`` (file name), ``runtime`` (its name).

    Raises UserError for an unknown suffix, a file the runtime refuses, or a model that is not
    one image in [1, C, h, w] -> one image [1, C, s h, s w] with C 1 or 3 and an integer s >= 2.
    Check a foreign file first (``edgekit.runtimes.checks``): native loaders trust its bytes."""

    def __init__(self, path: str | Path, margin: int = DEFAULT_MARGIN, threads: int | None = None) -> None:
        path = Path(path)
        rt = runtime_of_suffix(path.suffix)
        if rt is None:
            raise UserError(f"{path.name}: unknown artifact type {path.suffix!r}; give a {suffixes()} file")
        if margin < 0:
            raise UserError(f"margin {margin} must be >= 0 LR pixels")
        self.name, self.runtime = path.name, rt.name
        self.session = rt.load(path, threads)
        shapes = [shape for shape, _ in self.session.inputs]
        if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][0] != 1 or shapes[0][1] not in (1, 3):
            raise UserError(f"{path.name} takes inputs {shapes}; a super-resolution model takes one image "
                            "[1, C, h, w] with C = 1 (Y) or 3 (RGB)")
        _, self.channels, h, w = shapes[0]
        self.tile = (h, w)
        out = self._run(np.zeros(shapes[0], np.float32))
        s = out.shape[-1] // w if out.ndim == 4 else 0
        if s < 2 or list(out.shape) != [1, self.channels, s * h, s * w]:
            raise UserError(f"{path.name} maps [1, {self.channels}, {h}, {w}] to {list(out.shape)}: not a "
                            f"super-resolution model (its output must be [1, {self.channels}, s*{h}, s*{w}], s >= 2)")
        self.scale = s
        self.margin = min(int(margin), h // 4, w // 4)

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = self.session.run([np.ascontiguousarray(x, dtype=np.float32)])
        if len(outs) != 1:
            raise UserError(f"{self.name} has {len(outs)} outputs; a super-resolution model has one image")
        return np.asarray(outs[0], dtype=np.float32)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """``lr`` float [C, H, W] in [0, 1], any H, W >= 1 -> float32 [C, s H, s W], the model's
        output (not clipped). Raises ValueError for another channel count."""
        x = np.asarray(lr, dtype=np.float32)
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise ValueError(f"{self.name} takes [{self.channels}, H, W] images; got {x.shape}")
        (th, tw), s, m = self.tile, self.scale, self.margin
        H, W = x.shape[1:]
        x = np.pad(x, ((0, 0), (0, max(0, th - H)), (0, max(0, tw - W))), mode="edge")
        out = np.empty((self.channels, s * x.shape[1], s * x.shape[2]), np.float32)
        for y0, y1, y2 in spans(x.shape[1], th, m):
            for x0, x1, x2 in spans(x.shape[2], tw, m):
                o = self._run(x[None, :, y0:y0 + th, x0:x0 + tw])[0]
                out[:, s * y1:s * y2, s * x1:s * x2] = o[:, s * (y1 - y0):s * (y2 - y0), s * (x1 - x0):s * (x2 - x0)]
        return out[:, :s * H, :s * W]


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def upscale_image(model: TiledSR, img: np.ndarray) -> np.ndarray:
    """``img`` uint8 [H, W] (grey) or [H, W, 3] (RGB) upscaled by ``model``: uint8 of the same
    kind, [s H, s W] or [s H, s W, 3].

    Y model (C = 1) on RGB: YCbCr (BT.601, ``edgekit.data.ycbcr``) rounded to 8 bits as MATLAB's
    ``rgb2ycbcr`` on uint8; Y through the model, Cb and Cr through the MATLAB bicubic
    (``edgekit.data.bicubic.upscale_bicubic``), back to RGB. RGB model: the three channels through
    the model. A grey image g is the RGB image (g, g, g): a Y model takes its luma and the output
    luma is mapped back to grey (``(255 Y - 16) / 219``); an RGB model's output is made grey the
    same way through its luma. Raises ValueError for another shape or dtype."""
    a = np.asarray(img)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"upscale_image takes uint8 [H, W] or [H, W, 3]; got {a.dtype} {a.shape}")
    rgb = a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
    if model.channels == 3:
        out = np.clip(model(rgb.transpose(2, 0, 1) / 255.0), 0, 1).transpose(1, 2, 0)
        return _u8(out) if a.ndim == 3 else _u8((rgb_to_y(out) * 255 - 16) / 219)
    ycc = _u8(rgb_to_ycbcr(rgb))
    y = np.clip(model(ycc[None, :, :, 0] / 255.0)[0], 0, 1)
    if a.ndim == 2:
        return _u8((y * 255 - 16) / 219)
    cbcr = upscale_bicubic(ycc[..., 1:], model.scale) / 255.0
    return _u8(ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=2)))
