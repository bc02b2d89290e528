"""What moves a corpus model's data-free W8A8 result: the xnnpack recipe's simulation, scored
against FP32 on the benchmark's real evaluation images (``benchmarks/third_party.py``), for the
data-free defaults, each of their BN-range / equalization settings changed alone, and PTQ on
the benchmark's real calibration images (the stock "real" flow's images).

One set of distilled images (ZeroQ synthesis, the CLI's defaults) serves every data-free row, so
the rows differ only in the setting named. The simulation is what edgekit's .pte computes (the
bundles record their agreement with it); the .pte row of ``third_party.json`` comes from a
separate synthesis, so it moves with the synthesis as the README's seed figures say.

    .venv/bin/python benchmarks/third_party_calibration.py [--model ppocr_cls] [--rows a,b]
    # -> benchmarks/results/third_party_calibration.json (rows of other models are kept)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "third_party"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ppocr_cls")
    ap.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import mlperf_tiny
    import onnx_wheels
    import photos
    from benchmarks.third_party import _agreement, _inputs, declared
    from edgekit.api import prepare, quantize
    from edgekit.config import SynthConfig
    from edgekit.evaluation import simulated_outputs
    from edgekit.quant.algorithms.ptq import PTQConfig
    from edgekit.quant.algorithms.zeroq import ZeroQConfig
    from edgekit.registry import SYNTHESIZERS, TARGETS, TASKS
    from edgekit.tasks.base import sqnr_db

    name = args.model
    source = mlperf_tiny if name in mlperf_tiny.MODELS else onnx_wheels
    if name in ("resnet_cifar10", "vww_mobilenet"):
        raise SystemExit(f"{name}: its evaluation photos are read by benchmarks/third_party.py only; use an OCR model")
    _, shape, flags = source.load(name)
    pt2 = ROOT / "build" / "third_party" / f"{name}.pt2"
    pt2.parent.mkdir(parents=True, exist_ok=True)
    if not pt2.exists():
        source.export(name, pt2)
    ep = torch.export.load(str(pt2))
    ev_u8, cal_u8 = photos.ocr_photos(name, shape)
    ev, cal = _inputs(flags, shape, ev_u8), _inputs(flags, shape, cal_u8)
    pre = declared(flags)  # mean, std, pixel_scale, input_range
    canonical, _ = prepare(ep, None, **pre)
    with torch.no_grad():
        fp32 = torch.cat([canonical.graph_module(ev[i:i + 1]) for i in range(len(ev))])
    target = TARGETS.get("executorch-xnnpack")
    t0 = time.time()
    synth = SYNTHESIZERS.get("zeroq")(canonical, SynthConfig(), False,
                                      output_prior=TASKS.get("classification").synthesis_prior(SynthConfig().label_loss))
    synth_s = time.time() - t0
    base = ZeroQConfig.resolve(data_free=True)
    rows = {
        "data_free_defaults": (base, None),
        "bn_ranges_off": (dataclasses.replace(base, bn_ranges="off"), None),
        "bn_ranges_union": (dataclasses.replace(base, bn_ranges="union"), None),
        "bn_range_sigmas_4": (dataclasses.replace(base, bn_range_sigmas=4.0), None),
        "no_equalization": (dataclasses.replace(base, equalize=False), None),
        "ptq_real_images": (PTQConfig.resolve(data_free=False), cal),
    }
    chosen = args.rows.split(",") if args.rows else list(rows)
    res = {}
    for k in chosen:
        cfg, calib = rows[k]
        t0 = time.time()
        recipe = quantize(ep, cfg, synth.images if calib is None else calib, **pre)
        sim = torch.cat([simulated_outputs(canonical, recipe, target, ev[i:i + 1]) for i in range(len(ev))])
        res[k] = {"sqnr_db_vs_fp32": round(sqnr_db(fp32, sim), 2), "agreement_with_fp32": round(_agreement(name, sim, fp32), 4),
                  "calibration": f"{len(cal)} real images" if calib is not None else f"{len(synth.images)} distilled images",
                  "seconds": round(time.time() - t0, 1)}
        print(f"{k:20s} {res[k]}", flush=True)
    out = ROOT / "benchmarks/results/third_party_calibration.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old[name] = {"eval_images": len(ev), "synthesis_seconds": round(synth_s, 1), "rows": res,
                 "machine": "2-core x86_64 CPU, 1 thread", "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out.write_text(json.dumps(old, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
