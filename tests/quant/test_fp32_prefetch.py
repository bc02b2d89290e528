"""The FP32 work done in a spawned child beside the main job (``edgekit.fp32_prefetch``): what
the child leaves in the cache is what this process would compute, and a child that fails
leaves the job to do the work itself."""
from __future__ import annotations

import torch

import pytest

from edgekit import fp32_prefetch
from edgekit.cache import Cache
from edgekit.evaluation import float_outputs
from edgekit.fp32_prefetch import WORKDIR, fp32_outputs, fp32_twin, start
from edgekit.registry import TARGETS


@pytest.fixture(autouse=True)
def _any_size(monkeypatch):
    monkeypatch.setattr(fp32_prefetch, "MIN_IMAGES", 0)


def _program(tiny_canonical, tmp_path):
    path = tmp_path / "model_float.pt2"
    torch.export.save(tiny_canonical.folded, str(path))
    return path


def test_the_childs_outputs_and_twin_are_this_processs(tiny_canonical, tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    target = TARGETS.get("litert")
    pf = start(tiny_canonical, _program(tiny_canonical, tmp_path), [target], cache, tmp_path, images)
    assert pf is not None
    assert pf.join(tmp_path / "lower.log") == {"fp32-outputs", "fp32-artifact"}
    assert not (tmp_path / WORKDIR).exists()
    got = fp32_outputs(tiny_canonical, images, Cache(tmp_path / "cache"))
    torch.testing.assert_close(got, float_outputs(tiny_canonical, images), rtol=0, atol=0)
    c = Cache(tmp_path / "cache")
    (tmp_path / "twin").mkdir()
    assert fp32_twin(target, tiny_canonical, tmp_path / "twin", c) > 0 and c.hits == ["fp32-artifact"]
    # everything is in the cache now: no child is started
    assert start(tiny_canonical, tmp_path / "model_float.pt2", [target], c, tmp_path, images) is None
    assert start(tiny_canonical, tmp_path / "model_float.pt2", [target], Cache(enabled=False), tmp_path, images) is None
    monkeypatch.setattr(fp32_prefetch, "MIN_IMAGES", 41)  # fewer images than that: not worth a child
    assert start(tiny_canonical, tmp_path / "model_float.pt2", [TARGETS.get("executorch-xnnpack")],
                 Cache(tmp_path / "other"), tmp_path, images) is None


def test_a_failed_child_leaves_the_work_to_the_job(tiny_canonical, tmp_path):
    cache = Cache(tmp_path / "cache")
    (tmp_path / "broken.pt2").write_bytes(b"not a program")
    images = torch.rand(4, 1, 28, 28)
    pf = start(tiny_canonical, tmp_path / "broken.pt2", [TARGETS.get("litert")], cache, tmp_path, images)
    assert pf.join(tmp_path / "lower.log") == set() and pf.process.returncode != 0
    assert (tmp_path / "lower.log").stat().st_size > 0  # the child's traceback, for the user
    assert not (tmp_path / WORKDIR).exists()
    (tmp_path / "twin").mkdir()
    assert fp32_twin(TARGETS.get("litert"), tiny_canonical, tmp_path / "twin", cache) > 0 and cache.hits == []
