"""What each part of the data-free calibration does on MobileNetV2, printed and written to
benchmarks/results/mobilenet_dfq.json.

    .venv/bin/python benchmarks/mobilenet_dfq.py

One set of ZeroQ images (the zoo entry's 8 x 60 budget, seed 0) is distilled once; each row then
calibrates a recipe from it and scores the PyTorch simulation (XNNPACK placement) against FP32
on foolbox's 20 ImageNet photos: agreement of the argmax and logit SQNR. Rows add, in order,
bias correction, range equalization into depthwise convs and the widened output range (the
``--data-free`` default is the last "x2" row), then the same calibration on the 20 photos
themselves (an upper reference: the evaluation images are the calibration images).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:

    from edgekit.config import RunConfig
    from edgekit.data.calibration import CalibrationSource
    from edgekit.tasks.base import load_dataset, sqnr_db
    from edgekit.evaluation import float_outputs, simulated_outputs
    from edgekit.tasks.classification import agreement
    from edgekit.pipeline import prepare_model
    from edgekit.quant.algorithms.ptq import calibrate
    from edgekit.quant.algorithms.zeroq import ZeroQConfig
    DATA_FREE_QUANT = ZeroQConfig.DATA_FREE
    from edgekit.registry import SYNTHESIZERS, TARGETS, TASKS

    loaded, can, _ = prepare_model("mobilenet_v2", None, RunConfig(model="mobilenet_v2"))
    photos, _ = load_dataset("imagenet-photos")
    ref = float_outputs(can, photos)
    t0 = time.time()
    distilled = SYNTHESIZERS.get("zeroq")(can, loaded.synth, True,
                                         output_prior=TASKS.get("classification").synthesis_prior(loaded.synth.label_loss))
    synth_s = time.time() - t0
    real = CalibrationSource(photos, {"kind": "real", "path": "foolbox photos"})
    sim = TARGETS.get("simulation")
    base = {**DATA_FREE_QUANT, "equalize": False, "bias_correction": False, "output_range_margin": 1.0}
    rows_spec = [
        ("no DFQ (BN ranges 6 sigma, clamp ranges)", base, distilled),
        ("+ bias correction", {**base, "bias_correction": True}, distilled),
        ("+ equalization (no bias correction)", {**base, "equalize": True}, distilled),
        ("+ bias correction + equalization", {**base, "bias_correction": True, "equalize": True}, distilled),
        ("+ both, output range x1.5", {**DATA_FREE_QUANT, "output_range_margin": 1.5}, distilled),
        ("+ both, output range x2 (the --data-free default)", DATA_FREE_QUANT, distilled),
        ("+ both, output range x3", {**DATA_FREE_QUANT, "output_range_margin": 3.0}, distilled),
        ("the 20 photos as calibration, no DFQ", {"equalize": False}, real),
        ("the 20 photos as calibration, bias correction + equalization", {"equalize": True, "bias_correction": True}, real),
    ]
    rows = []
    for name, overrides, src in rows_spec:
        t0 = time.time()
        recipe = calibrate(can, ZeroQConfig(**overrides), src, "zeroq", progress=False)
        out = simulated_outputs(can, recipe, sim, photos)
        row = {"calibration": name, "agreement": round(agreement(ref, out), 4),
               "sqnr_db": round(sqnr_db(ref, out), 2), "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(f"{name:62s} agreement {row['agreement']:.0%}  SQNR {row['sqnr_db']:.2f} dB", flush=True)
    out_path = ROOT / "benchmarks" / "results" / "mobilenet_dfq.json"
    out_path.write_text(json.dumps({"model": "mobilenet_v2", "eval": "foolbox 20 ImageNet photos",
                                    "runtime": "simulation (XNNPACK placement)", "synthesis_s": round(synth_s, 1),
                                    "distilled": dict(loaded.synth.__dict__), "rows": rows}, indent=1))
    print(f"wrote {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
