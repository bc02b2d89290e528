"""RGB <-> YCbCr of ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` compute them (the
convention of super-resolution papers), on values in [0, 1]:

    Y  = (16  +  65.481 R + 128.553 G +  24.966 B) / 255      in [16/255, 235/255]
    Cb = (128 -  37.797 R -  74.203 G + 112.0   B) / 255      in [16/255, 240/255]
    Cr = (128 + 112.0   R -  93.786 G -  18.214 B) / 255      in [16/255, 240/255]

with R, G, B in [0, 1] ("studio swing"; a grey pixel g gives Cb = Cr = 128/255).
"""
from __future__ import annotations

import numpy as np

_BT601 = np.array([65.481, 128.553, 24.966])
_T = np.array([_BT601, [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])


def _rgb(img: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"{what} needs an RGB image [..., H, W, 3]; got shape {a.shape}")
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """RGB image(s) [..., H, W, 3] -> BT.601 luma Y float64 [..., H, W] in [16/255, 235/255].

    uint8 input is read as pixel / 255; float input must already be in [0, 1].
    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (MATLAB ``rgb2ycbcr``, divided by 255).
    Raises ValueError when the last axis is not 3.
    """
    return (16.0 + _rgb(img, "rgb_to_y") @ _BT601) / 255.0


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """RGB image(s) [..., H, W, 3] (uint8 read as pixel / 255, or float in [0, 1]) -> YCbCr
    float64 [..., H, W, 3] in [0, 1] (see the module docstring; Y as :func:`rgb_to_y`). Raises
    ValueError when the last axis is not 3."""
    return (_OFFSET + _rgb(img, "rgb_to_ycbcr") @ _T.T) / 255.0


def ycbcr_to_rgb(img: np.ndarray) -> np.ndarray:
    """YCbCr [..., H, W, 3] float in [0, 1] (as :func:`rgb_to_ycbcr` gives; uint8 read as
    value / 255) -> RGB float64 [..., H, W, 3], the exact inverse (MATLAB ``ycbcr2rgb``), not
    clipped: YCbCr outside the BT.601 ranges maps outside [0, 1]. Raises ValueError when the
    last axis is not 3."""
    return (_rgb(img, "ycbcr_to_rgb") * 255.0 - _OFFSET) @ np.linalg.inv(_T).T


def y_u8(img: np.ndarray) -> np.ndarray:
    """RGB image(s) [..., H, W, 3] -> their BT.601 luma as uint8 [..., H, W] (``rgb_to_y`` times
    255, rounded: the 8-bit Y that SR papers score and train on)."""
    return np.clip(np.round(rgb_to_y(img) * 255.0), 0, 255).astype(np.uint8)
