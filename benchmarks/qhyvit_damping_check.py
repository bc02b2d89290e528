"""Check for Q-HyViT's damping choice (docs/hybrid_vit.md, "Damping, chosen per model"): for
each reference hybrid at W6A6 and W4A4, the Q-HyViT search with damping 0, 1 and 100 alone on the
benchmark's 32 calibration images (hybrid_vit.py's: training split, seed 0), then the
KL per image of the simulated model (full-integer placement) to FP32, and top-1 agreement, on
those 32 images and on 512 other training images (seed 123): does the calibration KL rank the
dampings as held-out data does?

    .venv/bin/python benchmarks/qhyvit_damping_check.py MODEL > benchmarks/results/qhyvit_damping_check.log
"""
import dataclasses
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from edgekit import api
from edgekit.data.calibration import CalibrationSource
from edgekit.data.fashion_mnist import load_tensors, normalize
from edgekit.quant.placement import quantizer_for
from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
from edgekit.registry import ALGORITHMS
torch.set_num_threads(1)
name = sys.argv[1]
from edgekit.data.fashion_mnist import load_split  # noqa: E402
train_u8, _ = load_split("train")
calib_u8 = train_u8[np.random.default_rng(0).choice(len(train_u8), 32, replace=False)]  # as hybrid_vit.py
canonical, _ = api.prepare(name)
xtr, ytr = load_tensors("train")
g = torch.Generator().manual_seed(123)
idx = torch.randperm(len(xtr), generator=g)[:512]
xh = xtr[idx]
calib = CalibrationSource(normalize(calib_u8), {"kind": "real"})
xc = calib.images
def kl(out, ref):
    p = ref.log_softmax(1); q = out.log_softmax(1)
    return float((p.exp() * (p - q)).sum(1).mean())
algo = ALGORITHMS.get("qhyvit")
for wb, ab in ((6, 6), (4, 4)):
    for d in (0.0, 1.0, 100.0):
        cfg = dataclasses.replace(algo.config(), w_bits=wb, a_bits=ab, damping=d)
        t0 = time.time()
        recipe = algo.fn(canonical, cfg, calib, placement="full-integer")
        gm = fused_for_simulation(quantize_with_recipe(canonical, recipe, quantizer_for("full-integer", recipe)))
        r = {}
        for tag, x in (("calib", xc), ("held", xh)):
            f = canonical.run(canonical.graph_module, x); o = canonical.run(gm, x)
            r[tag] = (round(kl(o, f), 4), round(float((o.argmax(1) == f.argmax(1)).float().mean()), 4))
        print(name, f"W{wb}A{ab}", d, r, round(time.time() - t0), flush=True)
