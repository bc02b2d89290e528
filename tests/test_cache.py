"""The content-addressed cache (edgekit.cache): entries are written atomically, a corrupt or
half-written entry is detected and rebuilt, never trusted, and ``--no-cache`` / ``edgekit cache
clear`` do what they say. The whole-run effect is measured by benchmarks/main_job.py."""
from __future__ import annotations


import pytest
import torch

from edgekit.cache import Cache, key_of, model_hash, tensor_hash


def test_keys_depend_on_every_part_and_model_hash_on_weights():
    assert key_of("a", 1) == key_of("a", 1) != key_of("a", 2)
    m = torch.nn.Conv2d(1, 2, 3)
    before = model_hash(m)
    with torch.no_grad():
        m.weight[0, 0, 0, 0] += 1e-6
    assert model_hash(m) != before
    assert tensor_hash(torch.zeros(2)) != tensor_hash(torch.zeros(3)) != tensor_hash(torch.zeros(3, dtype=torch.int32))


def test_store_then_load_and_no_cache(tmp_path):
    c = Cache(tmp_path)
    k = key_of("x")
    assert c.load_tensors("calibration", k) is None
    c.store_tensors("calibration", k, {"images": torch.arange(6.0).view(2, 3)}, {"seed": 3})
    tensors, meta = c.load_tensors("calibration", k)
    assert torch.equal(tensors["images"], torch.arange(6.0).view(2, 3)) and meta == {"seed": 3}
    assert c.hits == ["calibration"]
    assert Cache(tmp_path, enabled=False).load_tensors("calibration", k) is None
    assert not list((tmp_path / "calibration").glob(".tmp-*"))  # nothing half-written left


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop_entry", "bad_json"])
def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path, damage):
    c = Cache(tmp_path)
    k = key_of("y")
    c.store_tensors("fp32-outputs", k, {"outputs": torch.ones(100)}, {})
    d = tmp_path / "fp32-outputs" / k
    payload = d / "tensors.pt"
    if damage == "flip":
        data = bytearray(payload.read_bytes())
        data[len(data) // 2] ^= 1
        payload.write_bytes(bytes(data))
    elif damage == "truncate":
        payload.write_bytes(payload.read_bytes()[:10])
    elif damage == "drop_entry":
        (d / "entry.json").unlink()
    else:
        (d / "entry.json").write_text("{not json")
    assert c.load_tensors("fp32-outputs", k) is None and not d.exists()
    c.store_tensors("fp32-outputs", k, {"outputs": torch.ones(100)}, {})
    assert torch.equal(c.load_tensors("fp32-outputs", k)[0]["outputs"], torch.ones(100))


def test_files_entry_round_trip_and_disabled_cache_never_computes_its_key(tmp_path):
    c = Cache(tmp_path)
    made = []

    def make():
        (tmp_path / "out" / "a.bin").write_bytes(b"abc")
        made.append(1)
        return {"a.bin": tmp_path / "out" / "a.bin"}, {"n": 1}
    (tmp_path / "out").mkdir()
    assert c.files("artifact", lambda: ("k",), make, tmp_path / "out")[1] == {"n": 1}
    (tmp_path / "out" / "a.bin").unlink()
    files, meta = Cache(tmp_path).files("artifact", lambda: ("k",), make, tmp_path / "out")
    assert made == [1] and meta == {"n": 1} and files["a.bin"].read_bytes() == b"abc"
    off = Cache(tmp_path, enabled=False)
    assert off.tensors("calibration", lambda: 1 / 0, lambda: ({"x": torch.ones(1)}, {}))[1] == {}


def test_clear_removes_only_cache_entries(tmp_path, cli):
    import os
    import subprocess
    import sys
    (tmp_path / "mine.txt").write_text("user data")
    c = Cache(tmp_path)
    c.store_tensors("calibration", key_of("z"), {"images": torch.ones(3)}, {})
    env = dict(os.environ, EDGEKIT_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", "cache", "clear"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "removed" in proc.stdout, proc.stderr
    assert not (tmp_path / "calibration").exists() and (tmp_path / "mine.txt").read_text() == "user data"
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "notes.txt").write_text("also the user's")
    c.store_tensors("artifact", key_of("w"), {"x": torch.ones(1)}, {})
    proc = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", "cache", "clear"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "artifact").iterdir()] == ["notes.txt"]  # only edgekit's entries go
    proc = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", "cache", "dir"],
                          capture_output=True, text=True, env=env)
    assert proc.stdout.strip() == str(tmp_path)


@pytest.mark.slow
def test_a_second_identical_run_reuses_synthesis_fp32_twins_and_outputs(tmp_path, monkeypatch):
    """Two identical data-free runs of the reference model (small budgets) through the pipeline:
    the second reuses the distilled images, the FP32 twin, the FP32 outputs, the int8 artifact,
    the simulation's outputs and the artifact's outputs in its runtime (said per result), and
    records the same artifacts and evaluation; a changed artifact file misses; --no-cache reuses
    nothing."""
    from edgekit.config import RunConfig
    from edgekit import fp32_prefetch
    from edgekit.pipeline import quantize
    monkeypatch.setattr(fp32_prefetch, "MIN_IMAGES", 0)  # the FP32 child runs on this small set too
    cache = Cache(tmp_path / "cache")

    def run(name, c):
        cfg = RunConfig(targets=["executorch-xnnpack"], synth_overrides={"num_samples": 8, "batch_size": 8, "iterations": 5})
        return quantize(cfg, tmp_path / name, eval_samples=64, progress=False, log=lambda m: None, cache=c).manifest

    first = run("a", cache)
    assert first["cache"]["reused"] == []  # what the FP32 child made this run is not "reused"
    assert "prefetch_fp32_twin_executorch-xnnpack_s" in first["timings_s"]  # the child made the twin
    assert not [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".fp32")]
    second = run("b", Cache(tmp_path / "cache"))
    assert second["cache"]["reused"] == ["artifact", "artifact-outputs", "calibration", "fp32-artifact", "fp32-outputs",
                                         "simulation-outputs"]
    assert [r.get("outputs_reused") for r in first["evaluation"]["results"]] == [None]
    assert [r.get("outputs_reused") for r in second["evaluation"]["results"]] == [True]
    assert second["quantization"]["calibration"]["seed"] == 0
    assert [a["sha256"] for a in first["artifacts"]] == [a["sha256"] for a in second["artifacts"]]
    strip = lambda ev: [{k: v for k, v in r.items() if k not in ("seconds", "outputs_reused")}  # noqa: E731
                        for r in ev["results"]]
    assert strip(first["evaluation"]) == strip(second["evaluation"])
    assert first["evaluation"]["reference"] == second["evaluation"]["reference"]
    third = run("c", Cache(tmp_path / "cache", enabled=False))
    assert "cache" not in third


def test_artifact_outputs_are_reused_only_for_the_same_bytes_images_and_runtime(tmp_path, monkeypatch):
    """The runtime's outputs of an int8 artifact are keyed by its file's sha256, the images and
    the runtime: the same file on the same images is reused, a changed file or other images run
    again. (The runtime is replaced by a counter here: the real runs are in the test above.)"""
    import types
    from edgekit import pipeline
    from edgekit.backends.base import Artifact
    from edgekit.cache import tensor_hash
    calls = []

    def fake_run(target, path, images, progress, static_batch):
        calls.append(path.read_bytes())
        return images.sum(dim=(1, 2, 3))[:, None] + len(calls), 0.5
    monkeypatch.setattr(pipeline, "run_artifact", fake_run)
    f = tmp_path / "model.pte"
    f.write_bytes(b"program v1")
    art = Artifact(f, "executorch-xnnpack", "pte", "executorch")
    target = types.SimpleNamespace(profile=types.SimpleNamespace(runtime="executorch"), check_runtime="executorch")
    cache, x = Cache(tmp_path / "cache"), torch.ones(3, 1, 2, 2)

    def outputs(images):
        return pipeline.artifact_outputs(target, art, images, lambda: tensor_hash(images), None, False, cache)
    out1, secs, reused = outputs(x)
    assert (reused, secs, len(calls)) == (False, 0.5, 1)
    out2, _, reused = outputs(x)
    assert reused and len(calls) == 1 and torch.equal(out1, out2)
    f.write_bytes(b"program v2")
    assert outputs(x)[2] is False and len(calls) == 2
    assert outputs(2 * x)[2] is False and len(calls) == 3
    assert outputs(2 * x)[2] is True and len(calls) == 3
    assert pipeline.artifact_outputs(target, art, x, lambda: tensor_hash(x), None, False,
                                     Cache(tmp_path / "cache", enabled=False))[2] is False and len(calls) == 4
