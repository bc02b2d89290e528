"""Figures of issue 4 (below 8 bits with no data), printed and written to
benchmarks/results/low_bit.json.

    nice -n 19 .venv/bin/python benchmarks/low_bit.py [--model resnet20_fmnist] [--quick]

On the full 10,000-image Fashion-MNIST test split, top-1 of the PyTorch simulation of each recipe
(placement of the XNNPACK quantizer; no deployed runtime runs 4-bit activations) and the seconds
each step took on this machine:

1. FP32;
2. ZeroQ data + round-to-nearest, W4A4 (same layout as Genie: first/last layer at 8 bits), with
   min/max (ZeroQ's own calibration), percentile (edgekit's default) and MSE range estimators, with
   and without the BN-analytic ranges of ``--data-free``; Genie's recovered share of the drop is
   given against each, and against the best of these as the headline;
3. Genie (Genie-D data + Genie-M), W4A4, data-free, default budget: the mean over ``--seeds``
   reconstruction seeds (each seed's figure is kept too);
4. Genie-M W4A4 on 1,024 real training images (needs Debian dataset-fashion-mnist), same seeds;
5. Genie W4A8 and W8A8, data-free (the same Genie-D images as 3); the W4A8 recipe also lowered
   to the onnx-qdq target (INT4 weights) and run in onnxruntime: top-1, bytes, agreement;
6. ZeroQ mixed precision at an average of 4 weight bits (A8) against uniform ZeroQ W4A8 (same size).

``--quick`` shrinks every budget (a smoke test of the script, not figures).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from edgekit.config import SynthConfig
    from edgekit.backends.base import evaluate_runner
    from edgekit.data.calibration import CalibrationSource
    from edgekit.data.fashion_mnist import load_tensors
    from edgekit.tasks.classification import top1
    from edgekit.pipeline import prepare_model
    from edgekit.quant.algorithms.zeroq import ZeroQConfig
    from edgekit.quant.algorithms.genie import GenieConfig, genie, plan_bits
    from edgekit.quant.algorithms.ptq import calibrate
    from edgekit.quant.recipe import FIRST_LAST_8BIT
    from edgekit.quant.mixed_precision import choose_bits
    from edgekit.quant.simulate import quantize_with_recipe, run_batched
    from edgekit.registry import TARGETS, TASKS
    from edgekit.synth.genie import genie_distill
    from edgekit.synth.zeroq import distill
    CLASS_PRIOR = TASKS.get("classification").synthesis_prior  # noqa: N806

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20_fmnist")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the script runs")
    ap.add_argument("--real-images", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=3, help="Genie-M W4A4 reconstruction seeds (mean reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "low_bit.json")
    args = ap.parse_args()

    loaded, canonical = prepare_model(args.model)
    images, labels = load_tensors("test", 500 if args.quick else None)
    sim_target = TARGETS.get("simulation")
    results: dict = {"model": loaded.name, "test_images": len(labels), "threads": torch.get_num_threads()}

    def score(recipe) -> float:
        gm = quantize_with_recipe(canonical, recipe, sim_target.quantizer(recipe))
        return round(100 * top1(run_batched(gm, images), labels), 2)

    def row(name: str, acc: float, seconds: dict) -> None:
        results[name] = {"top1": acc, **{k: round(v, 1) for k, v in seconds.items()}}
        print(f"{name:34s} top-1 {acc:6.2f} %   " + "  ".join(f"{k} {v:.1f}" for k, v in seconds.items()), flush=True)

    fp = round(100 * top1(run_batched(canonical.graph_module, images), labels), 2)
    row("fp32", fp, {})

    recon = 20 if args.quick else GenieConfig().recon_iterations
    BN = dict(ZeroQConfig.DATA_FREE)  # the ranges `edgekit quantize --data-free --method zeroq` uses
    zsynth = SynthConfig(num_samples=16, batch_size=16, iterations=20) if args.quick else loaded.synth
    gsynth = SynthConfig.genie(num_samples=32, batch_size=32, iterations=20) if args.quick else SynthConfig.genie()

    # ZeroQ data + round to nearest
    t0 = time.time()
    zdata = distill(canonical, zsynth, progress=False, output_prior=CLASS_PRIOR(zsynth.label_loss))
    t_zsynth = time.time() - t0
    # W4A4 with edgekit's default range estimator (percentile) and with MSE ranges, each with the
    # data-free BN-analytic ranges and with the distilled data's ranges only; W4A8 uniform is the
    # same-size reference for mixed precision
    rows = [(4, 4, est, bn) for est in ("minmax", "percentile", "mse") for bn in ("bn", "data")]
    rows.append((4, 8, "mse", "bn"))
    for w, a, est, bn in rows:
        cfg = ZeroQConfig(w_bits=w, a_bits=a, act_estimator=est, **(BN if bn == "bn" else {"bn_ranges": "off"}))
        t0 = time.time()
        plan = plan_bits(canonical, dataclasses.replace(cfg, overrides=FIRST_LAST_8BIT if (w, a) == (4, 4) else {}), "zeroq")
        r = calibrate(canonical, cfg, zdata, "zeroq", recipe=plan, progress=False)
        name = f"zeroq_rtn_w4a4_first_last_8_{est}_{bn}_ranges" if (w, a) == (4, 4) else "zeroq_rtn_w4a8_uniform"
        row(name, score(r), {"synth_s": t_zsynth, "quant_s": time.time() - t0})

    def genie_row(name: str, src, w: int, a: int, seeds, synth_s: float | None = None):
        """Genie-M on ``src`` once per reconstruction seed; top-1 is the mean over the seeds."""
        accs, t0 = [], time.time()
        for seed in seeds:
            r = genie(canonical, GenieConfig(w_bits=w, a_bits=a, recon_iterations=recon, recon_seed=seed), src)
            accs.append(score(r))
        secs = {"quant_s": (time.time() - t0) / len(seeds)}
        if synth_s is not None:
            secs = {"synth_s": synth_s, **secs}
        row(name, round(sum(accs) / len(accs), 2), secs)
        results[name]["per_seed"] = accs
        return r

    seeds = (0,) if args.quick else tuple(range(args.seeds))
    # Genie, data-free (Genie sets no data-free range defaults: its steps start from MSE ranges)
    t0 = time.time()
    gdata = genie_distill(canonical, gsynth, progress=False, output_prior=CLASS_PRIOR(gsynth.label_loss))
    t_gsynth = time.time() - t0
    genie_row("genie_w4a4_data_free", gdata, 4, 4, seeds, t_gsynth)
    w4a8 = genie_row("genie_w4a8_data_free", gdata, 4, 8, (0,), t_gsynth)
    genie_row("genie_w8a8_data_free", gdata, 8, 8, (0,), t_gsynth)

    # the W4A8 recipe deployed: onnx-qdq (packed INT4 weights) run in onnxruntime
    onnx_target = TARGETS.get("onnx-qdq")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        art = onnx_target.lower(canonical, w4a8, Path(tmp))
        fp32 = onnx_target.lower(canonical, None, Path(tmp), "fp32")
        logits = evaluate_runner(onnx_target.runner(art.path), images)
        sim = run_batched(quantize_with_recipe(canonical, w4a8, onnx_target.quantizer(w4a8)), images)
        row("genie_w4a8_onnx_int4_onnxruntime", round(100 * top1(logits, labels), 2), {"lower_eval_s": time.time() - t0})
        results["genie_w4a8_onnx_int4_onnxruntime"].update(
            bytes=art.bytes, fp32_bytes=fp32.bytes,
            agreement_with_simulation=round(float((logits.argmax(1) == sim.argmax(1)).float().mean()), 4))
        print(json.dumps(results["genie_w4a8_onnx_int4_onnxruntime"]))

    # Genie-M on real training images
    try:
        real, _ = load_tensors("train", 64 if args.quick else args.real_images)
    except FileNotFoundError as e:
        print(f"genie on real images: skipped ({e})")
    else:
        src = CalibrationSource(real, {"kind": "real", "method": "real", "num_samples": len(real)})
        genie_row(f"genie_w4a4_real_{len(real)}", src, 4, 4, seeds)

    # mixed precision at an average of 4 weight bits vs uniform W4 (ZeroQ data, A8)
    t0 = time.time()
    mp = choose_bits(canonical, zdata, avg_bits=4)
    cfg = ZeroQConfig(w_bits=4, a_bits=8, act_estimator="mse", **BN, overrides={n: {"w_bits": b} for n, b in mp.chosen.items()})
    r = calibrate(canonical, cfg, zdata, "zeroq", progress=False)
    row("zeroq_mixed_avg4_a8", score(r), {"synth_s": t_zsynth, "quant_s": time.time() - t0})
    results["zeroq_mixed_avg4_a8"].update(weight_bytes=mp.chosen_bytes, uniform_w4_bytes=mp.uniform[4]["bytes"],
                                          bits=sorted(mp.chosen.values()))

    drop_g = fp - results["genie_w4a4_data_free"]["top1"]
    zq = {k: v["top1"] for k, v in results.items() if k.startswith("zeroq_rtn_w4a4")}
    best = max(zq, key=zq.get)  # the strongest round-to-nearest baseline: the smallest drop
    drop_zq = fp - zq[best]
    results["summary"] = {"genie_w4a4_drop": round(drop_g, 2), "zeroq_rtn_w4a4_best": best,
                          "zeroq_rtn_w4a4_best_drop": round(drop_zq, 2),
                          "drop_recovered_vs_best": round(1 - drop_g / drop_zq, 3) if drop_zq > 0 else None,
                          "drop_recovered_vs_each": {k: round(1 - drop_g / (fp - v), 3) if fp > v else None
                                                     for k, v in zq.items()}}
    real = next((k for k in results if k.startswith("genie_w4a4_real")), None)
    if real:
        results["summary"]["data_free_minus_real"] = round(results["genie_w4a4_data_free"]["top1"] -
                                                           results[real]["top1"], 2)
    print(json.dumps(results["summary"]))
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
