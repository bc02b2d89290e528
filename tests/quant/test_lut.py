"""LUT super-resolution networks: 4-simplex interpolation, transfer, the table network against the
numpy reference (bit for bit), the .pte and .tflite in their runtimes, resumable training, and
``edgekit lut train``'s refusals."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from edgekit.kernels.lut_net import interpolate, load_tables, upscale
from edgekit.quant import lut_train
from edgekit.quant.lut_nets import METHODS, LutNet, fixed_point_params
from edgekit.quant.lut_tables import TableNet, grid_inputs, simplex_interpolate, table_bytes, transfer


def _random_tables(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in range(spec.stages):
        r = spec.scale ** 2 if s == spec.stages - 1 else 1
        for m in spec.modes:
            out[f"s{s + 1}_{m}"] = torch.randint(-127, 128, (spec.levels ** 4, r), generator=g).to(torch.int8)
    return out


def test_simplex_interpolation_is_exact_on_the_grid_and_for_affine_tables():
    """On grid points (below 255) the table entry comes back; an affine table (in the inputs) is reproduced
    exactly anywhere (a simplex interpolation is exact for affine functions), in torch and numpy."""
    spec = METHODS["srlut"]
    grid = grid_inputs(spec)
    c = torch.tensor([3.0, -2.0, 1.0, 4.0])
    index = torch.stack(torch.meshgrid(*(torch.arange(17.0),) * 4, indexing="ij"), -1).reshape(-1, 4)
    table = (index @ c).view(-1, 1)                  # affine in the grid index (spacing q = 16)
    s = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5000, 4))).float()
    want = (s / 16) @ c
    assert torch.allclose(simplex_interpolate(table, s, 4)[:, 0], want, atol=1e-5)
    ref = interpolate(table.numpy().astype(np.int32), s.numpy().astype(np.int64), 4)[:, 0]
    assert np.allclose(ref, want.numpy(), atol=1e-9)
    # grid points below 255 (the top point, 255, is read as 15 + 15/16 steps, as SR-LUT does)
    keep = torch.nonzero((grid < 255).all(dim=1))[:, 0][::97]
    t8 = _random_tables(spec)["s1_s"]
    assert torch.equal(simplex_interpolate(t8, grid[keep], 4), t8[keep].float())


@pytest.mark.parametrize("method, scale", [("srlut", 4), ("mulut", 4), ("autolut", 4), ("srlut", 2), ("mulut", 3)])
def test_table_network_matches_the_numpy_reference_bit_for_bit(method, scale):
    spec = dataclasses.replace(METHODS[method], scale=scale)
    torch.manual_seed(0)
    net = LutNet(spec)
    with torch.no_grad():  # move AutoSample and AdaRL away from their initial values
        for p in net.parameters():
            if p.dim() <= 2 and p.shape[-1] in (1, 9) or p.dim() == 1 and p.numel() == 1:
                p.add_(torch.randn_like(p))
    tables, fixed = _random_tables(spec), fixed_point_params(net)
    img = np.random.default_rng(1).integers(0, 256, (19, 27)).astype(np.uint8)
    with torch.no_grad():
        out = TableNet(spec, tables, fixed)(torch.from_numpy(img).float()[None, None] / 255)
    got = torch.round(out * 255).to(torch.uint8)[0, 0].numpy()
    ref = upscale(img, spec.to_dict(), {k: v.numpy() for k, v in tables.items()}, json.loads(json.dumps(fixed)))
    assert got.shape == (19 * spec.scale, 27 * spec.scale)
    assert np.array_equal(got, ref)
    # and it is not a constant: the tables matter
    assert len(np.unique(ref)) > 10


def test_transfer_reproduces_the_network_on_grid_valued_images():
    """SR-LUT (one stage): on an image whose pixels are all grid values the table lookups are the
    network's rounded outputs, so the table network equals the trained network exactly."""
    spec = METHODS["srlut"]
    torch.manual_seed(0)
    net = LutNet(spec)
    tables = transfer(net)
    assert table_bytes(tables) == 17 ** 4 * 16 == 1_336_336
    img = torch.from_numpy(np.random.default_rng(2).integers(0, 16, (1, 1, 9, 11)) * 16.0).float() / 255
    with torch.no_grad():
        a = TableNet(spec, tables)(img)
        b = net(img).clamp(0, 1)
    assert torch.equal(torch.round(a * 255), torch.round(b * 255))


def test_lut_tables_file_round_trip(tmp_path):
    from edgekit.lut_job import save_tables

    spec = METHODS["mulut"]
    tables = _random_tables(spec)
    save_tables(tmp_path / "t.npz", spec, tables, {})
    s, t, f = load_tables(tmp_path / "t.npz")
    assert s == spec.to_dict() and f == {} and set(t) == set(tables)
    assert all(np.array_equal(t[k], tables[k].numpy()) for k in t)
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a LUT tables file"):
        load_tables(tmp_path / "bad.npz")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["srlut", "autolut"])
def test_pte_and_tflite_reproduce_the_numpy_reference(tmp_path, method):
    """The deployed graphs, run in ExecuTorch and LiteRT, give the numpy reference's pixels
    exactly (AutoLUT-style covers the fixed-point sampling conv and the adaptive residual)."""
    from edgekit.lut_job import run_artifact, write_artifacts

    spec = METHODS[method]
    torch.manual_seed(0)
    net = LutNet(spec)
    tables, fixed = _random_tables(spec, seed=3), fixed_point_params(net)
    entries = write_artifacts(TableNet(spec, tables, fixed), 12, 10, tmp_path)
    lr = np.random.default_rng(4).integers(0, 256, (3, 12, 10)).astype(np.uint8)
    ref = np.stack([upscale(x, spec.to_dict(), {k: v.numpy() for k, v in tables.items()}, fixed) for x in lr])
    for e in entries:
        assert e["input_shape"] == [1, 1, 12, 10] and e["bytes"] > table_bytes(tables)
        got = run_artifact(tmp_path / e["file"], lr)
        assert np.array_equal(got, ref), e["file"]
    tfl = next(e for e in entries if e["file"].endswith(".tflite"))
    assert any(k.startswith("GATHER") for k in tfl["ops"])


class _Stop(Exception):
    pass


def test_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A run interrupted after its checkpoint and resumed ends with the same weights as an
    uninterrupted run; a foreign file or another network's checkpoint is refused."""
    from edgekit.data.sr_patches import PatchSampler
    from edgekit.errors import UserError

    monkeypatch.setattr(lut_train, "CHECKPOINT_EVERY", 3)
    photos = [np.random.default_rng(i).integers(0, 256, (64, 72)).astype(np.uint8) for i in range(3)]
    spec = METHODS["srlut"]
    cfg = lut_train.TrainConfig(steps=6, batch=2, patch=8)

    def sampler():
        return PatchSampler(photos, 4, 8, seed=0)

    whole, rec = lut_train.train_net(spec, sampler(), cfg, None, progress=False)
    assert rec["resumed_at"] is None
    ckpt = tmp_path / "run.ckpt"
    s = sampler()
    real, calls = s.batch, []

    def interrupted(n):
        calls.append(n)
        if len(calls) == 4:
            raise _Stop
        return real(n)
    s.batch = interrupted
    with pytest.raises(_Stop):
        lut_train.train_net(spec, s, cfg, ckpt, progress=False)
    resumed, rec = lut_train.train_net(spec, sampler(), cfg, ckpt, progress=False)
    assert rec["resumed_at"] == 3
    for (n, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n
    (tmp_path / "foreign.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not an edgekit LUT checkpoint"):
        lut_train.train_net(spec, sampler(), cfg, tmp_path / "foreign.ckpt", progress=False)
    with pytest.raises(UserError, match="another LUT network"):
        lut_train.train_net(METHODS["mulut"], sampler(), cfg, ckpt, progress=False)
    with pytest.raises(UserError, match="without grid training"):
        lut_train.train_net(spec, sampler(), dataclasses.replace(cfg, grid=True), ckpt, progress=False)


@pytest.mark.parametrize("args, says", [
    (["--scale", "5"], "--scale 5"),
    (["--steps", "0"], "at least 1"),
    (["--lr", "2"], "--lr 2.0"),
    (["--precision", "fp16"], "--precision"),
    (["--input-size", "axb"], "--input-size"),
    (["--train-data", "MISSING"], "is not a folder"),
    (["--train-data", "EMPTY"], "holds no PNG/JPG/JPEG images"),
    (["--out", "FILE"], "is a file"),
    (["--checkpoint", "FOREIGN", "--steps", "1"], "not an edgekit LUT checkpoint"),
])
def test_lut_train_refuses_bad_input_in_one_line(cli, tmp_path, args, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("mine")
    (tmp_path / "foreign.ckpt").write_text("mine too")
    subst = {"MISSING": str(tmp_path / "nope"), "EMPTY": str(tmp_path / "empty"), "FILE": str(tmp_path / "file"),
             "FOREIGN": str(tmp_path / "foreign.ckpt")}
    args = [subst.get(a, a) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "bundle")]
    r = cli("lut", "train", *out, *args, "--no-progress")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert not (tmp_path / "bundle").exists()
    assert (tmp_path / "file").read_text() == "mine" and (tmp_path / "foreign.ckpt").read_text() == "mine too"


@pytest.mark.slow
def test_lut_train_bundle_then_upscale_and_eval_on_a_photo_folder(cli, tmp_path):
    """The user's path: ``edgekit lut train`` (a few steps, on the user's own photo folder) writes a
    bundle whose .pte and .tflite reproduce the numpy reference on the held-out tiles; ``edgekit
    upscale`` runs the bundle on a photo of another size; ``edgekit eval --scale 4`` scores it;
    plain ``edgekit eval`` on it says what to give instead."""
    from PIL import Image

    from edgekit.data.photos import load_rgb

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(load_rgb("astronaut")[:200, :240]).save(photos / "a.png")
    Image.fromarray(load_rgb("coffee")[100:300, 50:330]).save(photos / "b.jpg")
    out = tmp_path / "srlut"
    r = cli("lut", "train", "--method", "srlut", "--steps", "3", "--finetune-steps", "2", "--batch", "2",
            "--train-data", str(photos), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "lut" and m["tables"]["bytes"] == 1_336_336
    assert m["training"]["net"]["photos"] == 2 and m["training"]["tables"]["steps"] == 2
    assert {a["file"] for a in m["artifacts"]} == {"model_lut.pte", "model_lut.tflite"}
    assert all(a["evaluation"]["bit_exact"] for a in m["artifacts"])
    assert not out.with_name("srlut.ckpt").exists()  # edgekit's default checkpoint is removed on success
    spec, tables, fixed = load_tables(out / "lut_tables.npz")
    assert spec["method"] == "srlut" and set(tables) == {"s1_s"}

    up = tmp_path / "up"
    r = cli("upscale", str(out), str(photos / "b.jpg"), "--out", str(up))
    assert r.returncode == 0, r.stderr[-2000:]
    img = Image.open(up / "b_x4.png")
    assert img.size == (280 * 4, 200 * 4) and img.mode == "RGB"

    r = cli("eval", str(out), "--eval-data", str(photos), "--scale", "4", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"psnr' in r.stdout and "bicubic" in r.stdout
    r = cli("eval", str(out))
    assert r.returncode == 2 and "--scale 4" in r.stderr
    (out / "model_lut.pte").rename(tmp_path / "moved.pte")  # a missing artifact: made by lut train, not quantize
    r = cli("upscale", str(out), str(photos / "b.jpg"), "--out", str(tmp_path / "up2"))
    assert r.returncode == 2 and "is missing" in r.stderr and "edgekit lut train" in r.stderr


def test_bf16_training_runs_only_the_hidden_layers_in_bfloat16():
    """Under bf16 training a unit's first layer (8-bit inputs / 255) and last layer (127 * tanh,
    rounded) compute in float32 and its hidden layers in bfloat16, and AutoSample's samples stay
    exact; float32 training is unchanged."""
    from torch import nn

    net = LutNet(METHODS["mulut"])
    unit = net.units["s2_d"]
    seen = {}
    for name, m in unit.named_modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, out.dtype))
    x = torch.randint(0, 256, (1, 1, 8, 8)).float() / 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.float32
    assert seen["first"] == seen["last"] == torch.float32
    assert {seen[f"hidden.{i}"] for i in range(4)} == {torch.bfloat16}
    seen.clear()
    net(x)
    assert set(seen.values()) == {torch.float32}
    auto = LutNet(METHODS["autolut"]).units["s1_y"]  # AutoSample's rounded samples index the tables: exact
    xp = torch.randint(0, 256, (2, 12, 12)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s_bf16 = auto.samples(xp, 1, 8, 8)
    assert s_bf16.dtype == torch.float32 and torch.equal(s_bf16, auto.samples(xp, 1, 8, 8))


def test_bf16_training_learns_as_float32_does(monkeypatch):
    """150 SR-LUT steps on real photos in bf16 end within 0.05 dB (patch PSNR of the running loss)
    of the float32 run; ``auto`` picks bf16 only on a CPU with native bf16 dot products; an unknown
    precision is refused."""
    import math

    from edgekit.data.photos import TRAIN, load_y
    from edgekit.data.sr_patches import PatchSampler
    from edgekit.errors import UserError

    photos = [load_y(name) for name in TRAIN[:3]]
    db = {}
    for p in lut_train.PRECISIONS:
        cfg = lut_train.TrainConfig(steps=150, batch=4, patch=8, lr=3e-3, precision=p)
        _, rec = lut_train.train_net(METHODS["srlut"], PatchSampler(photos, 4, 8, seed=0), cfg, None, progress=False)
        assert rec["precision"] == p
        db[p] = -10 * math.log10(rec["final_loss"])
    assert db["fp32"] > 20 and abs(db["bf16"] - db["fp32"]) < 0.05, db  # it learned, and alike
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(lut_train, "native_bf16", lambda native=native: native)
        assert lut_train.resolve_precision("auto") == want
    with pytest.raises(UserError, match="--precision 'fp16'"):
        lut_train.resolve_precision("fp16")


def _photo_crop(h=20, w=26):
    from edgekit.data.photos import TRAIN, load_y

    y = load_y(TRAIN[0])
    return torch.from_numpy(y[100:100 + h, 140:140 + w].copy()).float()[None, None] / 255


@pytest.mark.parametrize("method", ["srlut", "mulut", "autolut"])
def test_grid_network_computes_exactly_what_its_tables_compute(method):
    """A GridLutNet (the MLP evaluated on the grid vertices, interpolated) gives the same pixels as
    the TableNet of its transferred tables, AutoSample and AdaRL included: grid training trains the
    deployed function."""
    from edgekit.quant.lut_grid import GridLutNet

    spec = METHODS[method]
    torch.manual_seed(0)
    net = GridLutNet(spec)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() <= 2 and p.shape[-1] in (1, 9) or p.dim() == 1 and p.numel() == 1:
                p.add_(torch.randn_like(p))
        x = _photo_crop()
        got = torch.clamp(net(x), 0, 1)
        want = TableNet(spec, transfer(net), fixed_point_params(net))(x)
    assert got.shape == want.shape == (1, 1, 20 * spec.scale, 26 * spec.scale)
    assert torch.equal(got, want)


def test_simplex_vertices_give_the_tables_interpolation_and_gradients_reach_every_stage():
    """sum(weights * table[vertices]) is simplex_interpolate's value, exactly; the compiled
    interpolation gives the eager values and gradients; one MuLUT step sends a gradient to every
    unit, stage 1 included (through stage 2's interpolation weights)."""
    from edgekit.quant import lut_grid

    spec = METHODS["mulut"]
    table = _random_tables(spec)["s2_s"]
    s = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3000, 4))).float()
    vertex, weight = lut_grid.simplex_vertices(s, spec.interval)
    assert torch.allclose(weight.sum(dim=1), torch.ones(3000))
    assert torch.equal((weight.unsqueeze(2) * table[vertex].float()).sum(dim=1), simplex_interpolate(table, s, 4))
    inputs, slot = lut_grid.grid_values(vertex, grid_inputs(spec))
    assert len(inputs) == len(torch.unique(vertex)) and torch.equal(grid_inputs(spec)[vertex], inputs[slot])

    t = table[:500].float().requires_grad_()
    w = weight.clone().requires_grad_()
    sl = slot % 500
    grads = []
    for fn in (lut_grid._interpolate, lut_grid.interpolate):
        out = fn(t, sl, w)
        g = torch.autograd.grad((out * torch.linspace(-1, 1, 16)).square().sum(), (t, w))
        grads.append((out.detach(), *g))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))

    torch.manual_seed(0)
    net = lut_grid.GridLutNet(spec)
    lr_img = _photo_crop(12, 12)
    hr = torch.rand(1, 1, 48, 48)
    torch.nn.functional.mse_loss(net(lr_img), hr).backward()
    for name, unit in net.units.items():
        assert unit.first.weight.grad is not None and unit.first.weight.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_grid_training_bundle_is_its_network(tmp_path):
    """``edgekit lut train --grid`` (API form, a few steps): the manifest records grid training and
    its defaults (64 patches per step for SR-LUT, no table fine-tuning), the transferred tables
    score exactly what the trained network scored, and the artifacts are bit-exact."""
    from edgekit.api import train_lut

    m = train_lut("srlut", tmp_path / "b", grid=True, steps=4, patch=8, progress=False)
    net = m["training"]["net"]
    assert net["grid"] is True and net["batch"] == 64 and net["patches"] == 256
    assert m["training"]["tables"] is None
    ev = m["evaluation"]
    assert ev["network"] == ev["tables_transferred"] == ev["reference"]
    assert all(a["evaluation"]["bit_exact"] for a in m["artifacts"])
