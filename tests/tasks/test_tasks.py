"""The task seam: each registered task scores outputs by its own metrics, names its data sets,
measures sensitivity and gives (or not) a synthesis prior; the report shows a task's columns."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgekit.errors import UserError
from edgekit.registry import TASKS


def test_both_tasks_are_registered_and_own_their_data_sets():
    from edgekit.tasks.base import task_of_dataset
    assert {"classification", "super_resolution"} <= set(TASKS.names())
    assert task_of_dataset("fashion-mnist").name == "classification"
    assert task_of_dataset("sr-photos").name == "super_resolution"
    assert task_of_dataset("nope") is None


def test_unknown_data_set_is_refused_naming_the_known_ones():
    from edgekit.tasks.base import load_dataset
    with pytest.raises(UserError, match="unknown data set 'cifar'.*fashion-mnist.*sr-photos"):
        load_dataset("cifar")


def test_classification_scores_top1_agreement_and_sqnr():
    task = TASKS.get("classification")
    fp32 = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 0.0, 1.0]])
    out = fp32.clone()
    out[3] = torch.tensor([0.0, 2.0, 1.0])  # one row changes class
    labels = torch.tensor([0, 1, 2, 1])
    r = task.score(torch.zeros(4, 1, 2, 2), out, labels, fp32, fp32)
    assert r["top1"] == 1.0 and r["simulation_top1"] == 0.75
    assert r["agreement_with_fp32"] == 0.75 and r["agreement_with_simulation"] == 0.75
    noise = float((fp32 - out).pow(2).sum())
    assert r["sqnr_db_vs_fp32"] == pytest.approx(10 * math.log10(float(fp32.pow(2).sum()) / noise), abs=1e-3)
    assert task.reference(torch.zeros(4, 1, 2, 2), labels, fp32) == {"fp32": {"top1": 0.75}}


def test_classification_scores_a_non_class_output_by_sqnr_only():
    task = TASKS.get("classification")
    fp32 = torch.rand(3, 1, 8, 8)
    r = task.score(torch.zeros(3, 1, 8, 8), fp32 * 1.01, torch.tensor([0, 1, 0]), fp32, None)
    assert "top1" not in r and "agreement_with_fp32" not in r and "not class scores" in r["output"]
    assert r["sqnr_db_vs_fp32"] == pytest.approx(40.0, abs=1e-3)  # 1 % error everywhere


def test_sensitivities_and_priors():
    cls, sr = TASKS.get("classification"), TASKS.get("super_resolution")
    a = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    assert cls.sensitivity(a, a) == pytest.approx(0.0, abs=1e-9) and cls.sensitivity(a, a.flip(1)) > 0.1
    assert sr.sensitivity(a, a + 0.5) == pytest.approx(0.25)
    assert sr.synthesis_prior(1.0) is None and cls.synthesis_prior(0.0) is None
    loss = cls.synthesis_prior(1.0)(5, torch.Generator().manual_seed(0))(a)
    assert loss.dim() == 0 and float(loss) > 0


def test_super_resolution_scores_psnr_and_ssim_on_y_with_the_border_shaved():
    """A constant offset of 0.01 inside the border is exactly 40 dB; errors in the shaved border
    (3 px at x3) do not count; the references are FP32 and bicubic."""
    from edgekit.tasks.super_resolution import bicubic
    task = TASKS.get("super_resolution")
    g = torch.Generator().manual_seed(0)
    hr = 0.2 + 0.6 * torch.rand(2, 1, 24, 24, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, 3)
    out = hr + 0.01
    out[..., :3, :] = 0.0  # ruined border rows
    r = task.score(lr, out, hr, hr, None)
    assert r["psnr_y_db"] == pytest.approx(40.0, abs=1e-2) and r["psnr_y_db_vs_fp32"] == pytest.approx(40.0, abs=1e-2)
    assert 0.9 < r["ssim_y"] <= 1.0
    ref = task.reference(lr, hr, hr)
    assert set(ref) == {"fp32", "bicubic"} and ref["fp32"]["ssim_y"] == pytest.approx(1.0)
    up = bicubic(lr, 3)
    assert up.shape == hr.shape and ref["bicubic"]["psnr_y_db"] < 40


def test_super_resolution_rgb_outputs_are_scored_on_luma():
    from edgekit.tasks.super_resolution import y_channel
    white_red = torch.zeros(1, 3, 1, 2)
    white_red[0, :, 0, 0] = 1.0
    white_red[0, 0, 0, 1] = 1.0
    y = y_channel(white_red)
    assert y.shape == (1, 1, 2) and y[0, 0, 0] == pytest.approx(235 / 255) and y[0, 0, 1] == pytest.approx((16 + 65.481) / 255)


def test_sr_photos_ship_as_low_and_high_resolution_pairs():
    from edgekit.tasks.base import load_dataset
    lr, hr = load_dataset("sr-photos", limit=4)
    assert lr.shape == (4, 1, 64, 64) and hr.shape == (4, 1, 192, 192)
    assert lr.dtype == hr.dtype == torch.float32 and 0 <= float(lr.min()) and float(hr.max()) <= 1


def test_eval_data_npz_targets_are_target_images(tmp_path):
    from edgekit.data.datasets import Preprocess
    from edgekit.data.eval_data import load_eval_data
    pre = Preprocess(1, 4, (0.0,), (1.0,))
    lr = np.zeros((3, 1, 4, 4), np.uint8)
    np.savez(tmp_path / "ok.npz", images=lr, targets=np.full((3, 12, 12, 1), 255, np.uint8))
    data = load_eval_data(tmp_path / "ok.npz", pre)
    assert data.labels.shape == (3, 1, 12, 12) and float(data.labels.min()) == 1.0
    np.savez(tmp_path / "both.npz", images=lr, targets=np.zeros((3, 12, 12), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(UserError, match="both 'labels' and 'targets'"):
        load_eval_data(tmp_path / "both.npz", pre)
    np.savez(tmp_path / "few.npz", images=lr, targets=np.zeros((2, 12, 12), np.uint8))
    with pytest.raises(UserError, match="'targets' must be 3 images"):
        load_eval_data(tmp_path / "few.npz", pre)


def test_report_shows_the_task_s_metrics():
    from edgekit.report import evaluation_table
    ev = {"task": "super_resolution", "dataset": "sr-photos", "num_samples": 2,
          "reference": {"fp32": {"psnr_y_db": 30.5, "ssim_y": 0.9}, "bicubic": {"psnr_y_db": 29.0, "ssim_y": 0.85}},
          "results": [{"file": "model.pte", "runtime": "executorch", "seconds": 0.1, "psnr_y_db": 30.4, "ssim_y": 0.89,
                       "sqnr_db_vs_fp32": 35.0}]}
    text = evaluation_table(ev)
    assert "PSNR-Y dB" in text and "30.40" in text and "bicubic PSNR-Y dB 29.00" in text and "top-1" not in text
    v1 = {"dataset": "fashion-mnist", "num_samples": 1, "fp32_top1": 0.9,
          "results": [{"file": "m.pte", "runtime": "executorch", "seconds": 0.1, "top1": 0.8}]}
    assert "fp32 top-1 90.00%" in evaluation_table(v1) and "80.00%" in evaluation_table(v1)
