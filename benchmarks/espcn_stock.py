"""ESPCN x3 int8 .pte: edgekit's `quantize espcn_x3 --calib` against the peer a user would pick,
the stock ExecuTorch flow (XNNPACKQuantizer symmetric per-channel, PT2E, XnnpackPartitioner),
both calibrated on the same 32 real photo tiles (calibration/sr-photos/calib.npz) and run in
ExecuTorch on the 24 held-out tiles; PSNR/SSIM on Y with 3 px shaved, bicubic and FP32 beside.

    .venv/bin/python benchmarks/espcn_stock.py   # writes benchmarks/results/espcn_stock.json
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from benchmarks.third_party import _pte_outputs, stock_pte
    from edgekit.models.zoo import load_model
    from edgekit.registry import TASKS
    from edgekit.tasks.base import load_dataset
    from tests.conftest import run_cli

    task = TASKS.get("super_resolution")
    lr, hr = load_dataset("sr-photos")
    with np.load(ROOT / "calibration/sr-photos/calib.npz") as z:
        calib = torch.from_numpy(z["lr"]).float() / 255
    model = load_model("espcn_x3").model
    with torch.no_grad():
        fp32 = model(lr)
    rows = {"reference": task.reference(lr, hr, fp32)}
    with tempfile.TemporaryDirectory() as tmp:
        stock = Path(tmp) / "stock.pte"
        secs = stock_pte(model, (1, 1, 64, 64), calib, stock)
        out = _pte_outputs(stock, lr)
        rows["stock_executorch_pt2e"] = {**task.score(lr, out, hr, fp32, None), "bytes": stock.stat().st_size,
                                        "seconds": round(secs, 1)}
        p = run_cli("quantize", "espcn_x3", "--calib", str(ROOT / "calibration/sr-photos/calib.npz"),
                    "--target", "executorch-xnnpack", "--out", f"{tmp}/b", "--no-progress", "--no-cache")
        if p.returncode != 0:
            raise SystemExit(p.stderr[-3000:])
        out = _pte_outputs(Path(tmp) / "b" / "model.pte", lr)
        rows["edgekit_ptq"] = {**task.score(lr, out, hr, fp32, None), "bytes": (Path(tmp) / "b" / "model.pte").stat().st_size}
    path = ROOT / "benchmarks/results/espcn_stock.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
