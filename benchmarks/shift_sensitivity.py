"""Why data-free DenseShift collapses on MobileNetV2: each weighted layer converted alone, before any
fine-tuning, and the logit SQNR (dB) against FP32 on foolbox's 20 ImageNet photos.

Per layer (BN folded, as edgekit quantizes it) and per weight format, the layer's weight SQNR
and the network's logit SQNR with only that layer converted; then every layer at once. Formats:
DenseShift's zero-free power of two at 4 and 3 code bits (``edgekit.quant.shift.ShiftWeight``,
the per-channel alpha of its least-squares search: the fine-tuning's starting point) beside
uniform symmetric per-channel int4 / int8 on the max (the 2018 whitepaper's per-channel PTQ
without any search). Weights only: activations stay float, so the figures isolate the weights.

    .venv/bin/python benchmarks/shift_sensitivity.py [--model mobilenet_v2] [--worst 12]
    # -> benchmarks/results/shift_sensitivity.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def uniform(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel fake quant of ``w`` at ``bits`` with the max as range."""
    top = 2 ** (bits - 1) - 1
    s = w.abs().reshape(w.shape[0], -1).amax(1).clamp_min(1e-12).view(-1, *[1] * (w.dim() - 1)) / top
    return (w / s).round().clamp(-top, top) * s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--worst", type=int, default=12, help="layers listed, worst first (by pow2 W4)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from edgekit.data.datasets import load_imagenet_photos
    from edgekit.models.canonical import canonicalize, get_attr_tensor, set_attr_tensor, weighted_nodes, module_path
    from edgekit.models.zoo import load_model
    from edgekit.quant.shift import ShiftWeight
    from edgekit.tasks.base import sqnr_db

    def db(ref: torch.Tensor, out: torch.Tensor) -> float:
        return round(sqnr_db(ref, out), 2)

    t0 = time.time()
    lm = load_model(args.model)
    gm = canonicalize(lm.model, lm.example_input, args.model).graph_module
    x, _ = load_imagenet_photos()
    with torch.no_grad():
        ref = gm(x)
    nodes = weighted_nodes(gm)
    orig = {n.name: get_attr_tensor(gm, n.args[1]).detach().clone() for n in nodes}
    formats = {"pow2_w4": lambda w: ShiftWeight(w, "denseshift", 4)().detach(),
               "pow2_w3": lambda w: ShiftWeight(w, "denseshift", 3)().detach(),
               "int4_per_channel": lambda w: uniform(w, 4), "int8_per_channel": lambda w: uniform(w, 8)}
    converted = {f: {n: fn(w) for n, w in orig.items()} for f, fn in formats.items()}

    def logits(fmt: str, chosen) -> tuple[float, float]:
        for n in nodes:
            set_attr_tensor(gm, n.args[1], converted[fmt][n.name] if chosen(n) else orig[n.name])
        with torch.no_grad():
            out = gm(x)
        return db(ref, out), round(float((out.argmax(1) == ref.argmax(1)).float().mean()), 3)

    def depthwise(n) -> bool:  # a grouped conv with one input channel per group
        return orig[n.name].dim() == 4 and orig[n.name].shape[1] == 1 and (n.args[6] if len(n.args) > 6 else 1) > 1

    every = {}
    for f in formats:
        s_all, a_all = logits(f, lambda n: True)
        s_pw, a_pw = logits(f, lambda n: not depthwise(n))
        s_fl, a_fl = logits(f, lambda n: n is not nodes[0] and n is not nodes[-1])
        every[f] = {"all_layers": {"logit_sqnr_db": s_all, "agreement_with_fp32": a_all},
                    "all_but_depthwise": {"logit_sqnr_db": s_pw, "agreement_with_fp32": a_pw},
                    "all_but_first_and_last": {"logit_sqnr_db": s_fl, "agreement_with_fp32": a_fl}}
    layers = []
    for m in nodes:
        row = {"node": m.name, "module": module_path(m), "shape": list(orig[m.name].shape), "depthwise": depthwise(m)}
        for f in formats:
            row[f] = {"weight_sqnr_db": db(orig[m.name], converted[f][m.name]),
                      "logit_sqnr_db": logits(f, lambda n: n is m)[0]}
        layers.append(row)
    for n in nodes:
        set_attr_tensor(gm, n.args[1], orig[n.name])
    layers.sort(key=lambda r: r["pow2_w4"]["logit_sqnr_db"])
    res = {"model": args.model, "photos": len(x), "layers": len(nodes), "every_layer": every,
           "median_single_layer_logit_sqnr_db": {
               f: sorted(r[f]["logit_sqnr_db"] for r in layers)[len(layers) // 2] for f in formats},
           "worst_layers": layers[:args.worst], "all_layer_rows": layers,
           "seconds": round(time.time() - t0, 1), "machine": "2-core x86_64 CPU, 1 thread"}
    out = ROOT / "benchmarks/results/shift_sensitivity.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    for f, v in every.items():
        print(f"{f:18s} every layer {v['all_layers']}  all but depthwise {v['all_but_depthwise']}  "
              f"all but first/last {v['all_but_first_and_last']}  "
              f"median single layer {res['median_single_layer_logit_sqnr_db'][f]} dB")
    for r in layers[:args.worst]:
        print(f"{r['module']:28s} {str(r['shape']):18s} " + "  ".join(
            f"{f} {r[f]['weight_sqnr_db']:5.1f}/{r[f]['logit_sqnr_db']:6.2f}" for f in formats))
    print(f"wrote {out} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
