"""Real photographs that ship inside installed wheels (nothing is downloaded): scikit-image's,
scikit-learn's and matplotlib's sample photographs (public domain, CC0 or CC BY 2.0) and foolbox's
20 ImageNet photos (training only). ``calibration/sr-photos/README.md`` lists each photo's
package version, file and licence, and the split below.

Split by photo: ``HELD_OUT`` photos give the evaluation tiles of ``sr-photos`` and are never seen
in training; ``TRAIN`` photos give the training patches, and the redistributable ones among them
(``REDISTRIBUTABLE``, not foolbox's) the calibration tiles.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.data.ycbcr import y_u8
from edgekit.errors import UserError

# name -> (distribution that ships it, import package, path inside the package, licence)
PHOTOS = {
    "astronaut": ("scikit-image", "skimage", "data/astronaut.png", "public domain (NASA)"),
    "camera": ("scikit-image", "skimage", "data/camera.png", "CC0 (Lav Varshney)"),
    "chelsea": ("scikit-image", "skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    "coffee": ("scikit-image", "skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    "rocket": ("scikit-image", "skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    "coins": ("scikit-image", "skimage", "data/coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    "brick": ("scikit-image", "skimage", "data/brick.png", "CC0 (CC0Textures)"),
    "grass": ("scikit-image", "skimage", "data/grass.png", "CC0 (linolafett, DeviantArt)"),
    "gravel": ("scikit-image", "skimage", "data/gravel.png", "CC0 (CC0Textures)"),
    "hubble_deep_field": ("scikit-image", "skimage", "data/hubble_deep_field.jpg", "public domain (NASA)"),
    "retina": ("scikit-image", "skimage", "data/retina.jpg", "CC0 (Wikimedia Commons)"),
    "china": ("scikit-learn", "sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr)"),
    "flower": ("scikit-learn", "sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr)"),
    "grace_hopper": ("matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                     "public domain (U.S. Navy photograph)"),
}
# foolbox 3.3.4's 20 ImageNet photos (512x512 JPEG; copyright of their authors, as for the
# project's ``imagenet-photos`` evaluation set): used for training only, never copied into the repo.
FOOLBOX = tuple(f"imagenet_{i:02d}" for i in range(20))
HELD_OUT = ("camera", "chelsea", "coffee", "flower", "rocket")
REDISTRIBUTABLE = tuple(n for n in PHOTOS if n not in HELD_OUT)  # calib.npz comes from these only
TRAIN = REDISTRIBUTABLE + FOOLBOX


def photo_path(name: str) -> Path:
    """Where the installed wheel keeps the photo ``name`` (a key of ``PHOTOS`` or one of
    ``FOOLBOX``), found without importing the package. Raises UserError when the package that
    ships it is not installed or foolbox's file is not found once; KeyError for an unknown name."""
    if name in FOOLBOX:
        pkg, rel = "foolbox", None
    else:
        _, pkg, rel, _ = PHOTOS[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"photo {name!r} needs the package {pkg!r} installed")
    root = Path(list(spec.submodule_search_locations)[0])
    if rel is None:  # foolbox's files carry their ImageNet label: imagenet_{index}_{label}.jpg
        hits = sorted((root / "data").glob(f"{name}_*.jpg"))
        if len(hits) != 1:
            raise UserError(f"photo {name!r}: expected one file {root / 'data'}/{name}_*.jpg, found {len(hits)}")
        return hits[0]
    return root / rel


def load_rgb(name: str) -> np.ndarray:
    """The photo ``name`` as uint8 RGB [H, W, 3] (grey photos read as R = G = B). Raises as
    :func:`photo_path` does."""
    return np.asarray(Image.open(photo_path(name)).convert("RGB"))


def load_y(name: str) -> np.ndarray:
    """The photo's BT.601 luma as uint8 [H, W] (Y in [0, 1] times 255, rounded, so in [16, 235];
    ``edgekit.data.ycbcr.rgb_to_y``); grey photos are read as R = G = B. Raises as
    :func:`photo_path` does."""
    return y_u8(load_rgb(name))
