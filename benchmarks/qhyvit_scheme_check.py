"""Check for Q-HyViT's symmetric-only candidate (docs/hybrid_vit.md, "Symmetric activations
everywhere"): for a reference hybrid at the given bit widths, the Q-HyViT search with the
per-tensor scheme choice and with symmetric activations only (each alone, the default
dampings), on the benchmark's 32 calibration images; then the simulated model's (full-integer
placement) KL per image to FP32 on those images and on 512 other training images (seed 123),
whether ``clearly_lower`` would keep the symmetric recipe, and top-1, KL and logit SQNR on the
test split. DAMPINGS (comma-separated) replaces the default dampings.

    .venv/bin/python benchmarks/qhyvit_scheme_check.py MODEL single|twin WxAy[,WxAy...] [DAMPINGS] \
        >> benchmarks/results/qhyvit_scheme_check.log
"""
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def per_image_kl(out: torch.Tensor, ref: torch.Tensor) -> list[float]:
    """KL(softmax(ref) || softmax(out)) per image; logits [N, K]."""
    p, q = ref.log_softmax(1), out.log_softmax(1)
    return (p.exp() * (p - q)).sum(1).tolist()


def main() -> None:
    from edgekit import api
    from edgekit.data.calibration import CalibrationSource
    from edgekit.data.fashion_mnist import load_tensors, normalize
    from edgekit.quant.scale_search import clearly_lower
    from edgekit.quant.placement import quantizer_for
    from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
    from edgekit.registry import ALGORITHMS
    from edgekit.tasks.base import sqnr_db
    from hybrid_vit import calibration_images
    torch.set_num_threads(1)
    name, twin = sys.argv[1], sys.argv[2] == "twin"
    bits = [tuple(int(v) for v in b.upper().lstrip("W").split("A")) for b in sys.argv[3].split(",")]
    canonical, _ = api.prepare(name)
    xtr, _ = load_tensors("train")
    held = xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(123))[:512]]
    xte, yte = load_tensors("test")
    fte = canonical.run(canonical.graph_module, xte)
    calib = CalibrationSource(normalize(calibration_images()), {"kind": "real"})
    algo = ALGORITHMS.get("qhyvit")
    damping = tuple(float(v) for v in sys.argv[4].split(",")) if len(sys.argv) > 4 else algo.config().damping
    for wb, ab in bits:
        kls = {}
        for schemes in (("symmetric", "asymmetric"), ("symmetric",)):
            cfg = dataclasses.replace(algo.config(), w_bits=wb, a_bits=ab, activation_schemes=schemes,
                                      twin_uniform=twin, symmetric_candidate=False, damping=damping)
            t0 = time.time()
            recipe = algo.fn(canonical, cfg, calib, placement="full-integer")
            gm = fused_for_simulation(quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe)))
            r: dict = {}
            for tag, x in (("calib", calib.images), ("held_out_512", held)):
                k = per_image_kl(canonical.run(gm, x), canonical.run(canonical.graph_module, x))
                kls.setdefault(tag, {})[schemes] = k
                r[f"{tag}_kl"] = round(sum(k) / len(k), 6)
            o = canonical.run(gm, xte)
            r |= {"test_top1": round(float((o.argmax(1) == yte).float().mean()), 4),
                  "test_kl": round(sum(per_image_kl(o, fte)) / len(o), 6), "test_sqnr_db": round(sqnr_db(fte, o), 2),
                  "search_s": round(time.time() - t0)}
            print(name, "twin" if twin else "single", f"W{wb}A{ab}", "+".join(schemes), f"damping {damping}", r,
                  flush=True)
        c = kls["calib"]
        print(name, "twin" if twin else "single", f"W{wb}A{ab}", "clearly_lower keeps symmetric-only:",
              clearly_lower(c[("symmetric",)], c[("symmetric", "asymmetric")]), flush=True)


if __name__ == "__main__":
    main()
