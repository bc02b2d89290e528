"""The reference ESPCN x3 (edgekit/models/espcn.py) and its committed checkpoint, measured on the
held-out tiles of calibration/sr-photos/eval.npz against PIL bicubic upsampling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.models.espcn import ESPCN
from edgekit.tasks.sr_metrics import psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "edgekit/models/checkpoints/espcn_x3.pt"
EVAL = ROOT / "calibration/sr-photos/eval.npz"


def test_espcn_shapes_any_size():
    model = ESPCN().eval()
    assert model.example_input_shape == (1, 1, 64, 64)
    with torch.no_grad():
        assert model(torch.zeros(model.example_input_shape)).shape == (1, 1, 192, 192)
        assert model(torch.rand(2, 1, 17, 23)).shape == (2, 1, 51, 69)
    assert ESPCN(scale=2, channels=3)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_eval_data_layout():
    with np.load(EVAL, allow_pickle=False) as z:
        lr, hr, photos = z["lr"], z["hr"], z["photos"]
    assert lr.dtype == hr.dtype == np.uint8
    assert lr.shape[1:] == (1, 64, 64) and hr.shape[1:] == (1, 192, 192) and len(lr) == len(hr) == len(photos)
    with np.load(ROOT / "calibration/sr-photos/calib.npz", allow_pickle=False) as z:
        calib_photos = set(z["photos"].tolist())
        assert z["lr"].shape == (32, 1, 64, 64) and z["lr"].dtype == np.uint8
    assert not calib_photos & set(photos.tolist())  # calibration tiles never come from held-out photos


def test_checkpoint_beats_bicubic_on_held_out_photos():
    torch.set_num_threads(1)
    model = ESPCN()
    model.load_state_dict(torch.load(CKPT, map_location="cpu", weights_only=True))
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    with np.load(EVAL, allow_pickle=False) as z:
        lr, hr = z["lr"], z["hr"]
    with torch.no_grad():
        sr = model.eval()(torch.from_numpy(lr).float() / 255)
    assert sr.shape == (len(lr), 1, 192, 192) and sr.dtype == torch.float32
    bic = np.stack([np.asarray(Image.fromarray(t[0]).resize((192, 192), Image.BICUBIC)) for t in lr])[:, None]
    target = hr / 255.0
    p_sr, p_bic = psnr(sr.numpy(), target, 3), psnr(bic / 255.0, target, 3)
    assert p_sr >= p_bic + 1.0, f"ESPCN {p_sr:.3f} dB vs bicubic {p_bic:.3f} dB"
    assert ssim(sr.numpy(), target, 3) > ssim(bic / 255.0, target, 3)


@pytest.mark.slow
def test_espcn_quantized_with_real_photos_keeps_its_psnr_in_both_runtimes(tmp_path, cli):
    """``edgekit quantize espcn_x3 --calib`` (the super_resolution task end to end): the int8
    .pte and .tflite, run in ExecuTorch and LiteRT on the held-out tiles, stay within 0.3 dB
    PSNR-Y of FP32, which stays 1 dB above bicubic; the manifest records the task's metrics."""
    import json
    out = tmp_path / "espcn"
    proc = cli("quantize", "espcn_x3", "--calib", str(ROOT / "calibration/sr-photos/calib.npz"), "--out", str(out),
               "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    ev = m["evaluation"]
    assert m["model"]["task"] == ev["task"] == "super_resolution" and ev["dataset"] == "sr-photos"
    fp32, bic = ev["reference"]["fp32"]["psnr_y_db"], ev["reference"]["bicubic"]["psnr_y_db"]
    assert fp32 >= bic + 1.0
    assert {r["runtime"] for r in ev["results"]} == {"executorch", "litert"}
    for r in ev["results"]:
        assert r["psnr_y_db"] >= fp32 - 0.3, r
        assert r["sqnr_db_vs_simulation"] >= 35 and "top1" not in r, r
    assert "PSNR-Y dB" in proc.stdout and "bicubic" in proc.stdout
