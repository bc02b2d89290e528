"""The main job on the real reference model, through the real CLI, with small budgets so that it
fits CI: data-free quantization, both artifacts run in their runtimes, the bundle checked."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SMALL = ["--num-samples", "16", "--iterations", "40", "--eval-samples", "400", "--no-progress"]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, worker_id):
    """The shared bundle, built once per test session: under pytest-xdist the workers share the
    session's base folder and the first to take the lock builds it (xdist_group with --dist
    loadgroup did not keep these tests on one worker with pytest 9.2 / xdist 3.8, and each worker
    built its own)."""
    import fcntl
    import types
    from tests.conftest import run_cli
    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root  # the session's folder, shared by its workers
    out, record = root / "e2e" / "bundle", root / "e2e" / "run.json"
    (root / "e2e").mkdir(exist_ok=True)
    with open(root / "e2e" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            proc = run_cli("quantize", "--data-free", "--out", str(out), *SMALL)
            assert proc.returncode == 0, proc.stderr[-3000:]
            record.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}))
    return out, types.SimpleNamespace(**json.loads(record.read_text()))


def test_bundle_has_artifacts_and_manifest(bundle):
    out, proc = bundle
    m = json.loads((out / "manifest.json").read_text())
    q = m["quantization"]
    assert q["method"] == "zeroq" and q["data_free"] is True and q["w_bits"] == 8 and q["a_bits"] == 8
    assert q["calibration"]["kind"] == "synthetic" and q["calibration"]["num_samples"] == 16
    assert q["calibration"]["seed"] == 0 and q["calibration"]["seconds"] > 0
    files = {a["file"]: a for a in m["artifacts"]}
    assert set(files) == {"model.pte", "model.tflite"}
    for name, a in files.items():
        data = (out / name).read_bytes()
        assert a["bytes"] == len(data) and a["sha256"] == hashlib.sha256(data).hexdigest()
        assert a["bytes"] <= 0.35 * a["fp32_bytes"]
    assert (out / files["model.pte"]["etrecord"]).stat().st_size > 0
    assert not list(out.parent.glob(".bundle.*"))
    assert "model.pte" in proc.stdout and "fp32 top-1" in proc.stdout


def test_artifacts_match_fp32_and_simulation(bundle):
    out, _ = bundle
    ev = json.loads((out / "manifest.json").read_text())["evaluation"]
    assert ev["dataset"] == "fashion-mnist" and ev["num_samples"] == 400
    assert ev["reference"]["fp32"]["top1"] > 0.9
    assert {r["runtime"] for r in ev["results"]} == {"executorch", "litert"}
    for r in ev["results"]:
        assert 0 <= r["top1"] <= 1
        assert r["top1"] >= ev["reference"]["fp32"]["top1"] - 0.03, r
        assert r["agreement_with_simulation"] >= 0.99, r


def test_eval_command_reproduces_the_manifest(bundle, cli):
    out, _ = bundle
    proc = cli("eval", str(out / "model.tflite"), "--limit", "400", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    want = {r["file"]: r for r in json.loads((out / "manifest.json").read_text())["evaluation"]["results"]}
    (r,) = got["results"]
    assert r["top1"] == want["model.tflite"]["top1"]
    assert r["agreement_with_simulation"] == want["model.tflite"]["agreement_with_simulation"]


def test_real_calibration_through_calib_npz(tmp_path, cli):
    from edgekit.data.fashion_mnist import load_split
    images, _ = load_split("test")
    np.savez(tmp_path / "calib.npz", images=images[-64:])
    out = tmp_path / "real"
    proc = cli("quantize", "--calib", str(tmp_path / "calib.npz"), "--target", "litert", "--out", str(out),
               "--eval-samples", "300", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["quantization"]["method"] == "ptq" and m["quantization"]["data_free"] is False
    assert m["quantization"]["calibration"]["kind"] == "real"
    assert m["quantization"]["calibration"]["num_samples"] == 64
    (r,) = m["evaluation"]["results"]
    assert r["agreement_with_simulation"] >= 0.99 and r["top1"] >= m["evaluation"]["reference"]["fp32"]["top1"] - 0.03


def test_eval_refuses_a_bundle_whose_artifact_changed(bundle, cli, tmp_path):
    import shutil
    out, _ = bundle
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: the file still loads, its numbers are wrong
    (copy / "model.tflite").write_bytes(bytes(data))
    for target in (copy, copy / "model.tflite"):
        proc = cli("eval", str(target), "--limit", "8", "--no-progress")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert "model.tflite is corrupted" in lines[0] and "sha256" in lines[0]


def test_eval_reads_a_version_1_bundle_and_refuses_a_newer_one(bundle, cli, tmp_path):
    """A bundle written before tasks (manifest_version 1: no model task, ``fp32_top1``) is a
    classifier and evaluates as one; a manifest_version this edgekit does not know is refused in
    one line, exit 2, before any runtime runs."""
    import shutil
    out, _ = bundle
    old = tmp_path / "v1"
    shutil.copytree(out, old)
    m = json.loads((old / "manifest.json").read_text())
    m["manifest_version"] = 1
    del m["model"]["task"]
    ev = m["evaluation"]
    ev["fp32_top1"] = ev.pop("reference")["fp32"]["top1"]
    del ev["task"]
    (old / "manifest.json").write_text(json.dumps(m))
    proc = cli("eval", str(old), "--limit", "50", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["task"] == "classification" and got["reference"]["fp32"]["top1"] > 0.8
    assert {r["file"] for r in got["results"]} == {"model.pte", "model.tflite"}
    m["manifest_version"] = 99
    (old / "manifest.json").write_text(json.dumps(m))
    proc = cli("eval", str(old), "--limit", "8", "--no-progress")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "manifest_version 99" in lines[0], proc.stderr[-2000:]


def test_config_from_a_manifest_reproduces_the_bundle_byte_for_byte(bundle, cli, tmp_path):
    """``edgekit quantize --config BUNDLE/manifest.json`` (without the cache, so the images are
    distilled again from the same seed) writes artifacts with the same sha256 as the bundle's."""
    out, _ = bundle
    again = tmp_path / "again"
    proc = cli("quantize", "--config", str(out / "manifest.json"), "--out", str(again), "--no-cache",
               "--eval-samples", "50", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((out / "manifest.json").read_text())
    second = json.loads((again / "manifest.json").read_text())
    assert "cache" not in second
    assert {a["file"]: a["sha256"] for a in first["artifacts"]} == {a["file"]: a["sha256"] for a in second["artifacts"]}
    assert first["quantization"]["config"] == second["quantization"]["config"]
