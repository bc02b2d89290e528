"""The DSP and Jetson targets (tensorrt, qnn-htp) against the flow a user would pick instead,
printed and written to benchmarks/results/dsp_jetson_targets.json.

    .venv/bin/python benchmarks/dsp_jetson_targets.py [--eval-samples N] [--skip-mobilenet]

1. The reference model (resnet20_fmnist), data-free W8A8 (``edgekit quantize --data-free``,
   the zoo's ZeroQ budget): one run per target (TensorRT's needs symmetric activations, HTP's
   are affine), each evaluated on the 10k Fashion-MNIST test images in onnxruntime (Q/DQ as the
   ONNX spec computes them): top-1, agreement with the recipe's simulation and with FP32, SQNR.
   The peer: onnxruntime's own ``quantize_static`` on the FP32 ONNX (QDQ, per-channel weights;
   symmetric int8 activations and float bias for TensorRT, uint8 and int32 bias for QNN), calibrated on 32
   Gaussian-noise images (what a user without data has) and on 512 real training images (an
   upper reference). Every file also goes through both rules checkers.
2. The trace of the reference model's TensorRT ONNX from the stand-in trtexec
   (tests/profiling/standin/trtexec.py: trtexec's formats, made-up times): the share of layer
   time and of layers mapped to modules.
3. MobileNetV2 data-free, qnn-htp 8a8w vs 16a8w: agreement and SQNR against FP32 on foolbox's 20
   ImageNet photos, in onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def edgekit_run(model: str, targets: list[str], out: Path, a_bits: int = 8, eval_samples: int | None = None) -> dict:
    """``edgekit quantize MODEL --data-free --target ...`` through the API; the manifest."""
    from edgekit.api import run
    from edgekit.config import RunConfig, method_config

    cfg = RunConfig(model=model, targets=targets)
    cfg.quant = method_config("zeroq", True)
    cfg.quant.a_bits = a_bits
    t0 = time.time()
    run(cfg, out, eval_samples=eval_samples, force=True)
    m = json.loads((out / "manifest.json").read_text())
    m["_seconds"] = round(time.time() - t0, 1)
    return m


def ort_stock(fp32_onnx: Path, calib: np.ndarray, out: Path, symmetric: bool) -> Path:
    """onnxruntime's static QDQ quantization, per-channel weights, calibrated on ``calib``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                                                "QuantizeBias": not symmetric})
    return out


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from edgekit.registry import RUNTIMES
    s = RUNTIMES.get("onnxruntime").load(path)
    return np.concatenate([s.run([x[i:i + 1]])[0] for i in range(len(x))])


def sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / max(((ref - out) ** 2).sum(), 1e-30)))


def rules(path: Path) -> dict:
    from edgekit.api import check_rules
    out = {}
    for t in ("tensorrt", "qnn-htp"):
        found = [v for v in check_rules(path, t) if v.severity == "error"]
        out[t] = {"errors": len(found), "rules": sorted({v.rule for v in found})}
    return out


def reference_model(work: Path, eval_samples: int | None) -> dict:
    import torch

    from edgekit.api import export
    from edgekit.data.fashion_mnist import load_tensors
    from edgekit.models.zoo import load_model

    res = {"edgekit": {}, "ort_quantize_static": {}}
    images, labels = load_tensors("test", eval_samples)
    x = images.numpy()
    loaded = load_model("resnet20_fmnist")
    fp32_path = export(loaded.model, None, "onnx-qdq", work / "fp32.onnx", example_input=images[:1], overwrite=True).path
    fp32 = ort_outputs(fp32_path, x)
    fp32_top1 = float((fp32.argmax(1) == labels.numpy()).mean())
    res["fp32_top1"] = round(fp32_top1, 4)
    for target in ("tensorrt", "qnn-htp"):
        m = edgekit_run("resnet20_fmnist", [target], work / target, eval_samples=eval_samples)
        r = m["evaluation"]["results"][0]
        art = m["artifacts"][0]
        row = {k: r[k] for k in ("top1", "agreement_with_simulation", "agreement_with_fp32", "sqnr_db_vs_fp32",
                                 "sqnr_db_vs_simulation")}
        row.update(fp32_top1=m["evaluation"]["reference"]["fp32"]["top1"], file=art["file"], bytes=art["bytes"],
                   rules=rules(work / target / art["file"]), seconds=m["_seconds"],
                   n=m["evaluation"]["num_samples"])
        res["edgekit"][target] = row
        print(f"edgekit {target:9s} top-1 {row['top1']:.2%} (fp32 {row['fp32_top1']:.2%})  agree sim "
              f"{row['agreement_with_simulation']:.2%}  agree fp32 {row['agreement_with_fp32']:.2%}  "
              f"SQNR {row['sqnr_db_vs_fp32']:.2f} dB  rules {row['rules']}", flush=True)
    # an affine file edgekit also writes (onnx-qdq), for the checker's refusal
    from edgekit.quant.recipe import QuantRecipe
    recipe = QuantRecipe.load(work / "qnn-htp" / "recipe.json")
    affine = export(loaded.model, recipe, "onnx-qdq", work / "affine.onnx", example_input=images[:1], overwrite=True).path
    res["onnx_qdq_affine_rules"] = rules(affine)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(32, *images.shape[1:], generator=g).numpy()
    train, _ = load_tensors("train", None)
    real = train[torch.randperm(len(train), generator=g)[:512]].numpy()
    for calib_name, calib in (("gaussian_noise_32", noise), ("real_train_512", real)):
        for target, symmetric in (("tensorrt", True), ("qnn-htp", False)):
            p = ort_stock(fp32_path, calib, work / f"ort_{calib_name}_{target}.onnx", symmetric)
            out = ort_outputs(p, x)
            row = {"top1": round(float((out.argmax(1) == labels.numpy()).mean()), 4),
                   "agreement_with_fp32": round(float((out.argmax(1) == fp32.argmax(1)).mean()), 4),
                   "sqnr_db_vs_fp32": round(sqnr(fp32, out), 2), "rules": rules(p)}
            res["ort_quantize_static"][f"{target}_{calib_name}"] = row
            print(f"ORT quantize_static ({'symmetric int8' if symmetric else 'uint8'}, {calib_name}) top-1 "
                  f"{row['top1']:.2%}  agree fp32 {row['agreement_with_fp32']:.2%}  SQNR "
                  f"{row['sqnr_db_vs_fp32']:.2f} dB  rules {row['rules']}", flush=True)
    return res


def stand_in_trace(work: Path) -> dict:
    from edgekit.profiling.transports import profile_artifact
    exe = work / "trtexec"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/profiling/standin/trtexec.py'} \"$@\"\n")
    exe.chmod(0o755)
    os.environ["EDGEKIT_TRTEXEC"] = str(exe)
    t = profile_artifact(work / "tensorrt", "local", "tensorrt", warmup_runs=2, runs=20)
    mapped = [e for e in t.events if e.module]
    row = {"layers": len(t.events), "layers_mapped_to_a_module": len(mapped),
           "layer_time_mapped": round(t.mapping_coverage(), 4),
           "note": "stand-in trtexec: trtexec's JSON formats and layer naming, made-up times"}
    print(f"stand-in trtexec trace: {row['layers_mapped_to_a_module']}/{row['layers']} layers, "
          f"{row['layer_time_mapped']:.1%} of layer time mapped to modules", flush=True)
    return row


def mobilenet(work: Path) -> dict:
    rows = {}
    for a_bits in (8, 16):
        m = edgekit_run("mobilenet_v2", ["qnn-htp"], work / f"mnv2_a{a_bits}", a_bits=a_bits)
        r = m["evaluation"]["results"][0]
        rows[f"{a_bits}a8w"] = {k: r.get(k) for k in ("agreement_with_fp32", "sqnr_db_vs_fp32", "agreement_with_simulation",
                                                     "sqnr_db_vs_simulation")}
        rows[f"{a_bits}a8w"].update(preset=m["artifacts"][0]["ops"]["qnn_preset"], seconds=m["_seconds"],
                                   n=m["evaluation"]["num_samples"], bytes=m["artifacts"][0]["bytes"])
        print(f"MobileNetV2 data-free qnn-htp {a_bits}a8w: agree fp32 {r['agreement_with_fp32']:.0%}  SQNR "
              f"{r['sqnr_db_vs_fp32']:.2f} dB  (agree sim {r['agreement_with_simulation']:.0%})", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-samples", type=int, default=None, help="test images (default: all 10k)")
    ap.add_argument("--skip-mobilenet", action="store_true")
    a = ap.parse_args()
    import subprocess
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res = {"commit": commit, "machine": os.uname().machine, "cpus": os.cpu_count(),
               "reference_model": reference_model(work, a.eval_samples), "stand_in_trace": stand_in_trace(work)}
        if not a.skip_mobilenet:
            res["mobilenet_v2_foolbox_photos"] = mobilenet(work)
    out = ROOT / "benchmarks" / "results" / "dsp_jetson_targets.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
