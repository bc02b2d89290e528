"""Super-resolution tooling on any SR artifact: the tiled runner (edgekit.tasks.sr_tiling),
``edgekit upscale`` and ``edgekit eval --scale`` (edgekit.tasks.sr_folder), with tiny ONNX
models (conv + DepthToSpace, i.e. PixelShuffle) made here and photos cropped from the installed
scikit-image / scikit-learn photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper, save
from PIL import Image

from edgekit.api import evaluate_sr, upscale
from edgekit.cli import cli as edgekit_cli
from edgekit.data.bicubic import downscale, mod_crop, upscale_bicubic
from edgekit.data.photos import load_rgb
from edgekit.data.ycbcr import rgb_to_y
from edgekit.errors import UserError
from edgekit.tasks.sr_folder import evaluate_sr_folder, sr_table
from edgekit.tasks.sr_metrics import psnr, ssim
from edgekit.tasks.sr_tiling import TiledSR, spans, upscale_image

torch.set_num_threads(1)


class SRNet:
    """A k x k conv (C -> C s^2, zero padding) then PixelShuffle(s): as an ONNX file with a static
    [1, C, h, w] input, and its PyTorch twin. Weights: nearest-neighbour upsampling plus noise."""

    def __init__(self, tmp_path, channels=1, s=2, k=5, size=(16, 16), name="sr.onnx", seed=0):
        rng = np.random.default_rng(seed)
        self.s, self.k, self.channels = s, k, channels
        self.w = rng.normal(0, 0.02, (channels * s * s, channels, k, k)).astype(np.float32)
        for c in range(channels):
            self.w[c * s * s:(c + 1) * s * s, c, k // 2, k // 2] += 1.0
        self.b = rng.normal(0, 0.01, channels * s * s).astype(np.float32)
        h, w = size
        nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[k // 2] * 4),
                 helper.make_node("DepthToSpace", ["y"], ["out"], blocksize=s, mode="CRD")]
        g = helper.make_graph(nodes, "sr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, h, w])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, channels, s * h, s * w])],
                              [numpy_helper.from_array(self.w, "W"), numpy_helper.from_array(self.b, "B")])
        self.path = tmp_path / name
        save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(self.path))

    def twin(self, x: np.ndarray) -> np.ndarray:
        """float [C, H, W] of any size -> float32 [C, s H, s W]."""
        t = torch.from_numpy(np.asarray(x, np.float32))[None]
        with torch.no_grad():
            y = F.conv2d(t, torch.from_numpy(self.w), torch.from_numpy(self.b), padding=self.k // 2)
            y = F.pixel_shuffle(y, self.s)
        return y[0].numpy()


def _photos(folder, sizes=((96, 80), (75, 101)), suffixes=(".png", ".jpg")):
    """Crops of chelsea (RGB) written as PNG / JPEG; returns the paths."""
    folder.mkdir(exist_ok=True)
    rgb = load_rgb("chelsea")
    paths = []
    for i, ((h, w), suf) in enumerate(zip(sizes, suffixes)):
        p = folder / f"photo{i}{suf}"
        Image.fromarray(rgb[40 * i:40 * i + h, 60 * i:60 * i + w]).save(p, quality=95)
        paths.append(p)
    return paths


# ---- tiling -----------------------------------------------------------------------------------
def test_spans_cover_the_axis():
    for n, tile, m in [(53, 16, 4), (37, 16, 4), (16, 16, 4), (100, 64, 8), (65, 64, 8)]:
        covered = np.zeros(n, int)
        for start, a, b in spans(n, tile, m):
            assert 0 <= start and start + tile <= n and start <= a < b <= start + tile
            assert a == 0 or a - start >= m
            assert b == n or start + tile - b >= m
            covered[a:b] = 1
        assert covered.all()


@pytest.mark.parametrize("hw", [(37, 53), (10, 12)])
def test_tiles_agree_with_the_whole_image(tmp_path, hw):
    """A 5x5 conv sees 2 LR pixels each side, less than the margin (8, capped at 16 // 4 = 4): the
    tiled run equals the PyTorch twin on the whole image, and an image smaller than a tile equals
    the twin on the image replicate-padded to the tile, cropped."""
    net = SRNet(tmp_path)
    model = TiledSR(net.path, threads=1)
    assert (model.channels, model.tile, model.scale, model.margin) == (1, (16, 16), 2, 4)
    x = np.random.default_rng(1).random((1, *hw), dtype=np.float32)
    out = model(x)
    assert out.shape == (1, 2 * hw[0], 2 * hw[1]) and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, max(0, 16 - hw[0])), (0, max(0, 16 - hw[1]))), mode="edge")
    ref = net.twin(padded)[:, :2 * hw[0], :2 * hw[1]]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_tiling_margin_too_small_for_the_receptive_field_shows(tmp_path):
    """With margin 0 the 5x5 conv sees the tiles' zero padding: the seams differ from the twin."""
    net = SRNet(tmp_path)
    x = np.random.default_rng(2).random((1, 37, 53), dtype=np.float32)
    assert np.abs(TiledSR(net.path, margin=0, threads=1)(x) - net.twin(x)).max() > 1e-3


def test_not_a_super_resolution_model(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "id",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(tmp_path / "id.onnx"))
    with pytest.raises(UserError, match="not a super-resolution model"):
        TiledSR(tmp_path / "id.onnx")
    with pytest.raises(UserError, match="unknown artifact type"):
        TiledSR(tmp_path / "model.bin")


def test_upscale_image_y_model_rgb_and_grey(tmp_path):
    net = SRNet(tmp_path)
    model = TiledSR(net.path, threads=1)
    rgb = load_rgb("chelsea")[:30, :41]
    out = upscale_image(model, rgb)
    assert out.shape == (60, 82, 3) and out.dtype == np.uint8
    y8 = np.round(rgb_to_y(rgb) * 255) / 255
    expect_y = np.clip(net.twin(y8[None])[0], 0, 1)  # the luma is the model's, up to 8-bit RGB rounding
    assert np.abs(rgb_to_y(out) - expect_y).max() < 2.5 / 255
    grey = rgb[..., 1]
    g_out = upscale_image(model, grey)
    assert g_out.shape == (60, 82) and g_out.dtype == np.uint8
    y_grey = np.round(16 + 219 * (grey / 255.0)) / 255
    expect = np.clip((np.clip(net.twin(y_grey[None])[0], 0, 1) * 255 - 16) / 219, 0, 1) * 255
    assert np.abs(g_out - expect).max() <= 0.5 + 1e-6


def test_upscale_image_rgb_model(tmp_path):
    net = SRNet(tmp_path, channels=3, s=3, k=3, size=(12, 12))
    model = TiledSR(net.path, threads=1)
    assert (model.channels, model.scale) == (3, 3)
    rgb = load_rgb("chelsea")[:20, :27]
    out = upscale_image(model, rgb)
    expect = np.clip(net.twin(rgb.transpose(2, 0, 1) / 255.0), 0, 1).transpose(1, 2, 0) * 255
    assert out.shape == (60, 81, 3) and np.abs(out - expect).max() <= 0.5 + 1e-4
    assert upscale_image(model, rgb[..., 0]).shape == (60, 81)  # grey in, grey out


# ---- edgekit upscale ---------------------------------------------------------------------------
def test_upscale_writes_pngs_and_respects_foreign_files(tmp_path):
    net = SRNet(tmp_path)
    images = _photos(tmp_path / "in")
    Image.fromarray(load_rgb("camera")[:20, :24, 0]).save(tmp_path / "in" / "grey.png")
    rgba = np.dstack([load_rgb("chelsea")[:20, :24], np.full((20, 24), 200, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "in" / "alpha.png")
    out = tmp_path / "out"
    written = upscale(net.path, tmp_path / "in", out, threads=1)
    assert [p.name for p in written] == ["alpha_x2.png", "grey_x2.png", "photo0_x2.png", "photo1_x2.png"]
    modes = {p.name: Image.open(p).mode for p in written}
    assert modes == {"alpha_x2.png": "RGBA", "grey_x2.png": "L", "photo0_x2.png": "RGB", "photo1_x2.png": "RGB"}
    assert Image.open(out / "photo1_x2.png").size == (2 * 101, 2 * 75)
    assert Image.open(out / "photo0_x2.png").text["Software"].startswith("edgekit ")
    assert (np.asarray(Image.open(out / "alpha_x2.png"))[..., 3] == 200).all()
    assert not list(out.glob(".*"))  # no temporary file left
    upscale(net.path, images[0], out, threads=1)  # edgekit's own output: replaced
    (out / "photo0_x2.png").write_bytes(b"mine")
    with pytest.raises(UserError, match="edgekit did not write it"):
        upscale(net.path, images[0], out, threads=1)
    assert (out / "photo0_x2.png").read_bytes() == b"mine"
    upscale(net.path, images[0], out, force=True, threads=1)
    assert Image.open(out / "photo0_x2.png").size == (160, 192)


def test_upscale_picks_a_bundle_artifact(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    SRNet(bundle, name="a.onnx", s=2)
    SRNet(bundle, name="b.onnx", s=3, seed=1)
    (bundle / "manifest.json").write_text(json.dumps({"manifest_version": 2, "artifacts": [
        {"target": "onnx-qdq", "file": "a.onnx"}, {"target": "tensorrt", "file": "b.onnx"}, {"file": "recipe.json"}]}))
    photo = _photos(tmp_path / "in")[0]
    assert upscale(bundle, photo, tmp_path / "o1", threads=1)[0].name == "photo0_x2.png"
    assert upscale(bundle, photo, tmp_path / "o2", pick="b.onnx", threads=1)[0].name == "photo0_x3.png"
    assert upscale(bundle, photo, tmp_path / "o3", pick="tensorrt", threads=1)[0].name == "photo0_x3.png"
    with pytest.raises(UserError, match="a.onnx, b.onnx"):
        upscale(bundle, photo, tmp_path / "o4", pick="c.pte")


def test_pte_tiles_and_is_preferred_in_a_bundle(tmp_path):
    """An ExecuTorch (XNNPACK) .pte of a conv + PixelShuffle net: tiled over 37x53 it equals its
    PyTorch twin on the whole image; a bundle listing an .onnx first still runs its .pte."""
    exir = pytest.importorskip("executorch.exir")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.PixelShuffle(2)).eval()
    ep = torch.export.export(net, (torch.zeros(1, 1, 16, 16),))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.pte").write_bytes(
        exir.to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    model = TiledSR(bundle / "model.pte")
    assert (model.runtime, model.channels, model.tile, model.scale) == ("executorch", 1, (16, 16), 2)
    x = np.random.default_rng(3).random((1, 37, 53), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(model(x), ref, atol=1e-5)
    SRNet(bundle, name="model.onnx", s=3)
    (bundle / "manifest.json").write_text(json.dumps({"manifest_version": 2, "artifacts": [
        {"target": "onnx-qdq", "file": "model.onnx"}, {"target": "executorch-xnnpack", "file": "model.pte"}]}))
    photo = _photos(tmp_path / "in")[0]
    assert upscale(bundle, photo, tmp_path / "out")[0].name == "photo0_x2.png"


def _refused(result, *fragments):
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("edgekit: error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_upscale_bad_input_one_line_exit_2_nothing_written(tmp_path, cli):
    net = SRNet(tmp_path)
    photo = _photos(tmp_path / "in")[0]
    out = tmp_path / "out"
    p = cli("upscale", str(tmp_path / "missing.onnx"), str(photo), "--out", str(out))  # the real CLI
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "missing.onnx does not exist" in p.stderr
    run = CliRunner().invoke
    (tmp_path / "fake.png").write_text("not an image")
    (tmp_path / "model.bin").write_bytes(net.path.read_bytes())
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        ([str(net.path), str(tmp_path / "fake.png")], ["fake.png cannot be read as an image"]),
        ([str(net.path), str(tmp_path / "nope.png")], ["nope.png does not exist"]),
        ([str(net.path), str(tmp_path / "empty")], ["holds no PNG/JPG/JPEG images"]),
        ([str(tmp_path / "model.bin"), str(photo)], ["unknown artifact type '.bin'"]),
        ([str(tmp_path / "in"), str(photo)], ["not an edgekit bundle"]),
        ([str(net.path), str(photo), "--artifact", "x.pte"], ["--artifact", "drop --artifact"]),
    ]
    for args, fragments in cases:
        _refused(run(edgekit_cli, ["upscale", *args, "--out", str(out)]), *fragments)
        assert not out.exists()
    _refused(run(edgekit_cli, ["upscale", str(net.path), str(photo), "--out", str(tmp_path / "a_file")]),
             "a_file is a file")
    assert (tmp_path / "a_file").read_text() == "x"


# ---- edgekit eval --scale -----------------------------------------------------------------------
def test_evaluate_sr_folder_scores_like_the_whole_image(tmp_path):
    net = SRNet(tmp_path)
    _photos(tmp_path / "hr")
    r = evaluate_sr_folder([net.path], tmp_path / "hr", 2, threads=1)
    assert r["num_photos"] == 2 and r["scale"] == 2 and r["shave"] == 2
    assert [p["hr_size"] for p in r["photos"]] == [[96, 80], [74, 100]]  # mod-cropped
    (res,) = r["results"]
    assert res["file"] == "sr.onnx" and res["runtime"] == "onnxruntime" and len(res["per_photo"]) == 2
    rgb = np.asarray(Image.open(tmp_path / "hr" / "photo1.jpg"))
    hr = mod_crop(np.round(rgb_to_y(rgb) * 255).astype(np.uint8), 2)
    lr = downscale(hr, 2)
    sr = net.twin(lr[None] / 255.0)[0]
    assert res["per_photo"][1]["psnr"] == pytest.approx(psnr(sr, hr / 255.0, 2), abs=1e-4)
    assert res["per_photo"][1]["ssim"] == pytest.approx(ssim(sr, hr / 255.0, 2), abs=1e-5)
    bic = upscale_bicubic(lr, 2) / 255.0
    assert r["bicubic"]["per_photo"][1]["psnr"] == pytest.approx(psnr(bic, hr / 255.0, 2), abs=1e-9)
    assert 20 < r["bicubic"]["psnr"] < 45 and 0.5 < r["bicubic"]["ssim"] <= 1
    assert res["psnr"] == pytest.approx(np.mean([p["psnr"] for p in res["per_photo"]]))
    assert "bicubic" in sr_table(r) and "sr.onnx" in sr_table(r)


def test_eval_scale_cli_json_and_table(tmp_path):
    net = SRNet(tmp_path)
    _photos(tmp_path / "hr")
    run = CliRunner().invoke
    res = run(edgekit_cli, ["eval", str(net.path), "--eval-data", str(tmp_path / "hr"), "--scale", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["num_photos"] == 2 and data["results"][0]["file"] == "sr.onnx"
    res = run(edgekit_cli, ["eval", str(net.path), "--eval-data", str(tmp_path / "hr"), "--scale", "2", "--limit", "1"])
    assert res.exit_code == 0 and "1 photo(s)" in res.stdout and "bicubic" in res.stdout


def test_eval_scale_bad_input(tmp_path):
    net = SRNet(tmp_path)
    hr = tmp_path / "hr"
    _photos(hr)
    (tmp_path / "empty").mkdir()
    small = tmp_path / "small"
    _photos(small, sizes=((20, 40),), suffixes=(".png",))
    run = CliRunner().invoke
    cases = [
        (["--eval-data", str(hr), "--scale", "9"], ["--scale 9", "2..8"]),
        (["--scale", "2"], ["give --eval-data DIR"]),
        (["--eval-data", str(tmp_path / "empty"), "--scale", "2"], ["holds no PNG/JPG/JPEG images"]),
        (["--eval-data", str(small), "--scale", "3"], ["photo0.png is 20x40", "at least 24x24"]),
        (["--eval-data", str(hr), "--scale", "3"], ["sr.onnx upscales x2, not x3", "--scale 2"]),
        (["--eval-data", str(hr), "--scale", "2", "--dataset", "sr-photos"], ["--dataset does not apply"]),
    ]
    for args, fragments in cases:
        _refused(run(edgekit_cli, ["eval", str(net.path), *args]), *fragments)
    with pytest.raises(UserError, match="does not exist"):
        evaluate_sr(tmp_path / "nope.onnx", hr, 2)
