"""x4 super-resolution on the held-out photos: bicubic, ESPCN (FP32 and int8 .pte) and the LUT
networks (SR-LUT, MuLUT, AutoLUT-style: numpy reference, .pte in ExecuTorch, .tflite in LiteRT).

Per method: PSNR and SSIM on Y (4 px shaved) over the held-out tiles (``edgekit.lut_job.
held_out_tiles``: the five held-out photos, downscaled whole with MATLAB-style bicubic, cut into
48 px LR / 192 px HR tiles), bytes (tables / artifact), and p50 latency in the runtime at
256x256 -> 1024x1024 with the project's profiler (per-op breakdown of the .pte from its ETDump;
LiteRT's Python API reports no per-op times). Also a PNG of crops side by side.

The same runtimes are also scored on the five held-out photos whole, as SR papers score Set5 or
BSD100 (``edgekit eval ARTIFACT --eval-data DIR --scale 4``: each photo's PSNR, then the mean;
``whole_photos`` in the JSON). The two protocols weigh smooth and textured content differently
and give different gains over bicubic; both are reported.

The LUT bundles come from ``edgekit lut train`` (see docs/lut.md for the commands), the ESPCN
from ``examples/train_espcn_x4.py``; its int8 .pte is edgekit's PTQ (``--method ptq``) calibrated
on 32 LR patches of the training photos, lowered for executorch-xnnpack.

    .venv/bin/python benchmarks/super_resolution.py --bundles build/lut   # results/super_resolution.json + .png
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
SCALE = 4
SIZE = 256  # LR side for the latency runs


def _u8(y: torch.Tensor) -> np.ndarray:
    return np.clip(np.round(y.detach().numpy() * 255), 0, 255).astype(np.uint8)


def _op_breakdown(trace) -> dict:
    """p50 ms summed by operator kind, largest first (top 8)."""
    by: dict[str, float] = {}
    for e in trace.events:
        by[e.backend_op] = by.get(e.backend_op, 0.0) + e.stats["p50"]
    return {k: round(v, 3) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:8]}


def _latency(path: Path, runs: int) -> dict:
    from edgekit.api import profile

    tr = profile(path, runs=runs, warmup_runs=3, threads=1, trace_ops=path.suffix == ".pte")
    out = {"p50_ms": round(tr.latency["p50"], 2), "p90_ms": round(tr.latency["p90"], 2), "runs": runs}
    if tr.events:
        out["ops_p50_ms"] = _op_breakdown(tr)
    return out


def _crops(rows: dict[str, np.ndarray], hr: np.ndarray, path: Path) -> None:
    """One tile's 96x96 HR-pixel crop per method, side by side, labelled, as PNG."""
    from PIL import Image, ImageDraw

    k, (y, x), c = 0, (48, 48), 96
    panels = [("HR", hr[k])] + [(n, v[k]) for n, v in rows.items()]
    scale = 2
    canvas = Image.new("L", (len(panels) * (c * scale + 4), c * scale + 16), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (name, img) in enumerate(panels):
        crop = Image.fromarray(img[y:y + c, x:x + c]).resize((c * scale, c * scale), Image.NEAREST)
        canvas.paste(crop, (i * (c * scale + 4), 16))
        draw.text((i * (c * scale + 4) + 2, 2), name, fill=0)
    canvas.save(path)


def _whole_photos(artifacts: dict[str, Path], folder: Path) -> dict:
    """Each artifact (run tile by tile in its runtime) and bicubic on the held-out photos whole,
    through ``evaluate_sr_folder``: mean over photos of PSNR (dB) / SSIM on Y, 4 px shaved."""
    from PIL import Image

    from edgekit.data.photos import HELD_OUT, load_rgb
    from edgekit.tasks.sr_folder import evaluate_sr_folder

    folder.mkdir()
    for name in HELD_OUT:
        Image.fromarray(load_rgb(name)).save(folder / f"{name}.png")
    ev = evaluate_sr_folder(list(artifacts.values()), folder, SCALE, threads=1)

    def row(r: dict) -> dict:
        return {"psnr_y_db": round(r["psnr"], 3), "ssim_y": round(r["ssim"], 5),
                "per_photo_psnr_y_db": {p["photo"].removesuffix(".png"): round(p["psnr"], 3) for p in r["per_photo"]}}

    methods = {"bicubic": row(ev["bicubic"])}
    methods.update({label: row(r) for label, r in zip(artifacts, ev["results"])})
    return {"photos": ev["photos"], "methods": methods}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=Path, default=ROOT / "build/lut",
                    help="folder of x4 LUT bundles (srlut_x4, mulut_x4, autolut_x4, and any other)")
    ap.add_argument("--espcn", type=Path, default=ROOT / "edgekit/models/checkpoints/espcn_x4.pt")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per latency figure")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from edgekit.api import export, quantize
    from edgekit.data.bicubic import upscale_bicubic
    from edgekit.data.sr_patches import PatchSampler, training_photos
    from edgekit.kernels.lut_net import load_tables, upscale
    from edgekit.lut_job import held_out_tiles, quality, run_artifact, write_artifacts
    from edgekit.models.espcn import ESPCN
    from edgekit.quant.lut_nets import LutSpec
    from edgekit.quant.lut_tables import TableNet

    lr, hr, names = held_out_tiles(SCALE)
    x = torch.from_numpy(lr[:, None]).float() / 255
    res: dict = {"held_out": {"photos": sorted(set(names)), "tiles": len(lr), "lr_tile": lr.shape[1],
                              "hr_tile": hr.shape[1], "scale": SCALE},
                 "machine": "2-core x86_64 CPU, 1 thread per run", "methods": {}}
    images: dict[str, np.ndarray] = {}
    bic = np.stack([upscale_bicubic(t, SCALE) for t in lr])
    res["methods"]["bicubic"] = quality(bic, hr, SCALE)
    images["bicubic"] = bic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = ESPCN(scale=SCALE)
        model.load_state_dict(torch.load(args.espcn, map_location="cpu", weights_only=True))
        model.eval()
        with torch.no_grad():
            fp = _u8(model(x)[:, 0])
        res["methods"]["espcn_fp32"] = quality(fp, hr, SCALE)
        calib = PatchSampler(training_photos(), SCALE, lr.shape[1], seed=1).batch(32)[0]
        recipe = quantize(model, calibration=calib, method="ptq", example_input=x[:1], task="super_resolution")
        for size, stem in ((lr.shape[1], "espcn_int8"), (SIZE, "espcn_int8_256")):
            export(model, recipe, "executorch-xnnpack", tmp / f"{stem}.pte", example_input=torch.zeros(1, 1, size, size))
        export(model, None, "executorch-xnnpack", tmp / "espcn_fp32_256.pte", example_input=torch.zeros(1, 1, SIZE, SIZE))
        export(model, None, "executorch-xnnpack", tmp / "espcn_fp32.pte", example_input=x[:1])
        whole = {"ESPCN FP32 .pte": tmp / "espcn_fp32.pte", "ESPCN int8 .pte": tmp / "espcn_int8.pte"}
        got = run_artifact(tmp / "espcn_int8.pte", lr)
        p = tmp / "espcn_int8.pte"
        res["methods"]["espcn_int8_pte"] = {**quality(got, hr, SCALE), "bytes": p.stat().st_size,
                                            "latency_256": _latency(tmp / "espcn_int8_256.pte", args.runs)}
        res["methods"]["espcn_fp32"]["latency_256_pte"] = _latency(tmp / "espcn_fp32_256.pte", args.runs)
        images["ESPCN int8"] = got

        labels = {"srlut": "SR-LUT", "mulut": "MuLUT", "autolut": "AutoLUT-style"}
        for b in sorted(args.bundles.iterdir(), key=lambda p: (list(labels).index(p.name.split("_")[0])
                                                               if p.name.split("_")[0] in labels else 9, p.name)):
            manifest = json.loads((b / "manifest.json").read_text()) if (b / "manifest.json").is_file() else {}
            if manifest.get("kind") != "lut" or manifest["model"]["scale"] != SCALE:
                continue
            method = b.name.removesuffix(f"_x{SCALE}")
            label = labels.get(method, method)
            spec, tables, fixed = load_tables(b / "lut_tables.npz")
            t0 = time.time()
            ref = np.stack([upscale(t, spec, tables, fixed) for t in lr])
            row = {**quality(ref, hr, SCALE), "numpy_seconds_per_tile": round((time.time() - t0) / len(lr), 4),
                   "table_bytes": manifest["tables"]["bytes"], "training": manifest["training"],
                   "before_finetune": manifest["evaluation"]["tables_transferred"],
                   "network": manifest["evaluation"]["network"], "artifacts": {}}
            for a in manifest["artifacts"]:
                out = run_artifact(b / a["file"], lr)
                q = quality(out, hr, SCALE)
                row["artifacts"][a["file"]] = {**q, "bytes": a["bytes"], "bit_exact": bool((out == ref).all()),
                                               "identical_pixels": float((out == ref).mean()),
                                               "psnr_db_minus_reference": round(q["psnr_y_db"] - row["psnr_y_db"], 4)}
            net = TableNet(LutSpec.from_dict(spec), {k: torch.from_numpy(v) for k, v in tables.items()}, fixed)
            d = tmp / method
            d.mkdir()
            for e in write_artifacts(net, SIZE, SIZE, d):
                row["artifacts"][e["file"]]["latency_256"] = _latency(d / e["file"], args.runs)
            res["methods"][method] = row
            whole[f"{label} .pte"] = b / "model_lut.pte"
            images[label] = ref
            print(method, row["psnr_y_db"], {k: v["latency_256"]["p50_ms"] for k, v in row["artifacts"].items()})

        res["whole_photos"] = _whole_photos(whole, tmp / "held_out")

    out = ROOT / "benchmarks/results/super_resolution.json"
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(res, indent=2) + "\n")
    tmp_out.replace(out)
    _crops(images, hr, out.with_suffix(".png"))
    for k, v in res["methods"].items():
        print(f"{k:16s} PSNR {v['psnr_y_db']:.3f} dB SSIM {v['ssim_y']:.4f}  (tiles)")
    for k, v in res["whole_photos"]["methods"].items():
        print(f"{k:16s} PSNR {v['psnr_y_db']:.3f} dB SSIM {v['ssim_y']:.4f}  (whole photos)")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
