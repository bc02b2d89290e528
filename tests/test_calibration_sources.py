import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data.calibration import load_calibration
from edgekit.data.datasets import FMNIST, IMAGENET
from edgekit.errors import UserError


def test_npz_uint8_images_are_normalised(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", images=imgs)
    src = load_calibration(tmp_path / "c.npz", FMNIST, limit=8)
    assert src.images.shape == (8, 1, 28, 28) and src.images.dtype == torch.float32
    expect = (imgs[0] / 255.0 - FMNIST.mean[0]) / FMNIST.std[0]
    assert np.allclose(src.images[0, 0].numpy(), expect, atol=1e-5)
    assert src.provenance == {"kind": "real", "method": "real", "path": str(tmp_path / "c.npz"),
                              "num_samples": 8, "seed": None, "seconds": 0.0}


def test_npz_of_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "c.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(UserError, match=r"shape \(32, 32, 3\).*\(1, 28, 28\)"):
        load_calibration(tmp_path / "c.npz", FMNIST)


def test_folder_of_photos_is_resized_for_imagenet_models(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((300, 400, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    src = load_calibration(tmp_path, IMAGENET)
    assert src.images.shape == (3, 3, 224, 224)


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UserError, match="no readable images"):
        load_calibration(tmp_path, FMNIST)
    (tmp_path / "b.png").write_bytes(b"not really a png")  # a broken image is named, not skipped
    with pytest.raises(UserError, match="b.png cannot be read as an image"):
        load_calibration(tmp_path, FMNIST)


def test_folder_images_of_wrong_size_are_refused(tmp_path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="32x32 pixels: the model takes 28x28"):
        load_calibration(tmp_path, FMNIST)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_calibration(tmp_path / "nope", FMNIST)
