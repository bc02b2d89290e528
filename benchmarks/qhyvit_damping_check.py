"""Check for Q-HyViT's damping choice (docs/hybrid_vit.md, "Damping, chosen per model"): for a
reference hybrid at W6A6 and W4A4, the Q-HyViT search with damping 0, 1 and 100 alone on the
benchmark's 32 calibration images (``hybrid_vit.calibration_images``), then the KL per image of
the simulated model (full-integer placement) to FP32, and top-1 agreement, on those 32 images
and on 512 other training images (seed 123): does the calibration KL rank the dampings as
held-out data does?

    .venv/bin/python benchmarks/qhyvit_damping_check.py MODEL >> benchmarks/results/qhyvit_damping_check.log
"""
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def kl(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over images of KL(softmax(ref) || softmax(out)); logits [N, K]."""
    p, q = ref.log_softmax(1), out.log_softmax(1)
    return float((p.exp() * (p - q)).sum(1).mean())


def main() -> None:
    from edgekit import api
    from edgekit.data.calibration import CalibrationSource
    from edgekit.data.fashion_mnist import load_tensors, normalize
    from edgekit.quant.placement import quantizer_for
    from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
    from edgekit.registry import ALGORITHMS
    from hybrid_vit import calibration_images
    torch.set_num_threads(1)
    name = sys.argv[1]
    canonical, _ = api.prepare(name)
    xtr, _ = load_tensors("train")
    held = xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(123))[:512]]
    calib = CalibrationSource(normalize(calibration_images()), {"kind": "real"})
    algo = ALGORITHMS.get("qhyvit")
    for wb, ab in ((6, 6), (4, 4)):
        for d in (0.0, 1.0, 100.0):
            cfg = dataclasses.replace(algo.config(), w_bits=wb, a_bits=ab, damping=d)
            t0 = time.time()
            recipe = algo.fn(canonical, cfg, calib, placement="full-integer")
            gm = fused_for_simulation(quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe)))
            r = {}
            for tag, x in (("calib", calib.images), ("held", held)):
                f, o = canonical.run(canonical.graph_module, x), canonical.run(gm, x)
                r[tag] = (round(kl(o, f), 4), round(float((o.argmax(1) == f.argmax(1)).float().mean()), 4))
            print(name, f"W{wb}A{ab}", d, r, round(time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
