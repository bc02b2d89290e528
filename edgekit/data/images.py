"""Photographs given by the user for super-resolution (``edgekit upscale``, ``edgekit eval
--scale``): PNG or JPEG files, one file or every such file directly inside a folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekit.errors import UserError

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def photo_files(path: str | Path, what: str = "IMAGE_OR_DIR") -> list[Path]:
    """``[path]`` for a PNG/JPEG file, or the PNG/JPEG files directly inside the folder ``path``
    (sorted by name). Raises UserError (naming ``what``, the argument) when ``path`` is missing,
    is a file of another suffix, or is a folder without such files."""
    p = Path(path).expanduser()
    kinds = "/".join(s.lstrip(".").upper() for s in PHOTO_SUFFIXES)
    if not p.exists():
        raise UserError(f"{what} {p} does not exist; give a {kinds} image or a folder of them")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in PHOTO_SUFFIXES and f.is_file())
        if not files:
            raise UserError(f"{what} {p} holds no {kinds} images; give a folder of photos")
        return files
    if p.suffix.lower() not in PHOTO_SUFFIXES:
        raise UserError(f"{what} {p} is not a {kinds} image (suffix {p.suffix or 'none'}); give an image or a folder")
    return [p]


def read_photo(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels of a photo file: uint8 [H, W] for a grey image or uint8 [H, W, 3] RGB, and its
    alpha channel uint8 [H, W] (None when it has none; palette images with a transparent colour
    get one). Raises UserError naming the file when it cannot be decoded or holds more than 8
    bits a sample (16-bit grey, float)."""
    try:
        with Image.open(path) as img:
            img.load()
            target = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGB": "RGB", "RGBA": "RGBA",
                      "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
                      "P": "RGBA" if "transparency" in img.info else "RGB"}.get(img.mode)
            if target is None:
                raise UserError(f"{path} has {img.mode} pixels (more than 8 bits a sample); save it as an "
                                "8-bit grey or RGB image")
            img = img.convert(target)
            a = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"{path} cannot be read as an image ({type(e).__name__}); remove it or replace it") from None
    if target == "LA":
        return a[..., 0].copy(), a[..., 1].copy()
    if target == "RGBA":
        return np.ascontiguousarray(a[..., :3]), a[..., 3].copy()
    return a, None
