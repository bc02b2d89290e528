"""edgekit's Python API on a model you hold as an nn.Module: quantize it data-free, export it for
ExecuTorch and LiteRT, check each artifact in its own runtime, profile the .pte.

    .venv/bin/python examples/quantize_your_model.py OUT_DIR [--quick]

"Your model" here is a ResNet-20 with the Fashion-MNIST weights edgekit ships, loaded as a plain
nn.Module with its own normalisation declared (mean 0.2860, std 0.3530 of pixels/255), so that the
example runs offline and is scored on real test images (the 10,000-image test split edgekit
ships; the first 500 here). ``--quick`` shrinks the synthesis budget (a smoke test, not figures).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgekit  # noqa: E402
from edgekit.config import SynthConfig  # noqa: E402
from edgekit.data.fashion_mnist import load_tensors  # noqa: E402
from edgekit.models.resnet import ResNet20  # noqa: E402
from edgekit.models.zoo import CHECKPOINTS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    model = ResNet20()
    model.load_state_dict(torch.load(CHECKPOINTS / "resnet20_fmnist.pt", map_location="cpu"))
    model.eval()
    x = torch.zeros(1, 1, 28, 28)
    norm = {"mean": [0.2860], "std": [0.3530]}  # of pixels / 255: the model's own normalisation

    synth = SynthConfig(num_samples=16, batch_size=16, iterations=20) if a.quick else None
    recipe = edgekit.quantize(model, example_input=x, synth=synth, progress=not a.quick, **norm)
    print(f"recipe: {len(recipe.layers)} layers, {len(recipe.activations)} activations, W{recipe.w_bits}A{recipe.a_bits}")

    images, labels = load_tensors("test", 500)
    for target, name in (("executorch-xnnpack", "model.pte"), ("litert", "model.tflite")):
        art = edgekit.export(model, recipe, target, a.out / name, example_input=x, overwrite=True)
        m = edgekit.evaluate(art, images, labels=labels, model=model, example_input=x, recipe=recipe)
        print(f"{name}: {art.bytes} bytes, top-1 {m['top1']:.2%}, agreement with FP32 {m['agreement_with_fp32']:.2%}, "
              f"SQNR {m['sqnr_db_vs_fp32']:.1f} dB, agreement with the simulation {m['agreement_with_simulation']:.2%}")

    trace = edgekit.profile(a.out / "model.pte", runs=20, warmup_runs=5)
    lat = trace.latency
    print(f"model.pte latency p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms")
    trace.save(a.out / "trace.json")


if __name__ == "__main__":
    main()
