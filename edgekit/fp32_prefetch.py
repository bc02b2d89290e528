"""The FP32 work of the main job, which needs no recipe, done beside it in a child process.

Each run lowers the FP32 twin of every target (for the int8-vs-FP32 size and latency columns)
and runs the FP32 model over the evaluation images (the reference of agreement and SQNR). None
of it depends on calibration or the recipe, so a spawned child does it while this process
synthesizes, calibrates and lowers the int8 artifacts, and leaves the results in the cache
(``edgekit.cache``), where :func:`fp32_twin` and :func:`fp32_outputs` then find them. The child
works from the bundle's own float program (``model_float.pt2``, saved first) under the parent's
model key, with one thread; its output (the converters', a traceback) goes to a log that the
parent appends to ``lower.log``, never to the user's terminal. If it fails or is slower, the parent does the work itself (a cache miss), so the
result never depends on it. Only with the cache enabled: with ``--no-cache`` everything runs here.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgekit.cache import Cache, library_versions, tensor_hash
from edgekit.evaluation import float_outputs
from edgekit.models.canonical import CanonicalModel

WORKDIR = ".fp32-prefetch"  # the child's folder in the bundle's staging folder, removed by join/stop
LOG = "converters.log"
IMAGES = "images.pt"
# The child costs about 10 s of one core to start (its imports): it pays only where the FP32
# work is larger, as on a full test split (the reference model: 10,000 images, about 57 s of
# FP32 work in the child; 150 -> 145 s per cold run on a 2-core AMD EPYC machine).
MIN_IMAGES = 1000
SPEC = "spec.json"
MADE = "made.json"  # the cache kinds the child made (not found) in this run


def fp32_twin(target, canonical: CanonicalModel, fp32_dir: Path, cache: Cache) -> int:
    """Lower the FP32 twin of ``canonical`` for ``target`` into ``fp32_dir`` (``fp32.<suffix>``),
    from ``cache`` when the same model was lowered by the same converter versions before;
    returns its size in bytes."""
    def lower():
        art = target.lower(canonical, None, fp32_dir, "fp32")
        return {art.path.name: art.path}, {}
    files, _ = cache.files("fp32-artifact", lambda: (canonical.content_hash, target.name, library_versions()),
                           lower, fp32_dir)
    return files[f"fp32.{target.profile.artifact_format}"].stat().st_size


def fp32_outputs(canonical: CanonicalModel, images: torch.Tensor, cache: Cache,
                 images_key: str | None = None) -> torch.Tensor:
    """FP32 outputs [N, ...] of ``canonical`` on ``images`` (float32 [N, C, H, W]), from
    ``cache`` when this model ran on these images before (``images_key``: their tensor hash)."""
    tensors, _ = cache.tensors("fp32-outputs", lambda: (canonical.content_hash, images_key or tensor_hash(images)),
                               lambda: ({"outputs": float_outputs(canonical, images)}, {"num_samples": len(images)}))
    return tensors["outputs"]


@dataclass
class Prefetch:
    """A running child (see the module docstring); ``join`` waits for it, ``stop`` ends it.
    ``made``: after ``join``, the cache kinds it made in this run (so not reused from before)."""
    process: subprocess.Popen
    workdir: Path
    made: set[str] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=dict)  # the child's, per piece of work

    def release(self) -> None:
        """Let the child start its work: until then it only imports and loads the program, so
        that it does not slow the multi-threaded synthesis; the int8 converters that follow are
        single-threaded Python and leave a core to it."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.write(b"go\n")
                self.process.stdin.close()
            except OSError:  # it has ended already
                pass

    def join(self, log_path: Path) -> set[str]:
        """Release and wait for the child; append its output (converters' logs, a failure's
        traceback) to ``log_path``. Returns the cache kinds it made in this run (empty when it
        failed: the caller then does the work)."""
        self.release()
        self.process.wait()
        log = self.workdir / LOG
        if log.exists():
            with open(log_path, "ab") as out:
                out.write(log.read_bytes())
        try:
            done = json.loads((self.workdir / MADE).read_text()) if self.process.returncode == 0 else {}
            self.made, self.seconds = set(done["made"]), done["seconds"]
        except (OSError, ValueError, KeyError):
            self.made = set()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.made

    def stop(self) -> None:
        """End the child if it still runs (the job failed or finished without it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(canonical: CanonicalModel, program: Path, targets: list, cache: Cache, staging: Path,
          images: torch.Tensor | None) -> Prefetch | None:
    """Start the child for ``targets``' FP32 twins and, when ``images`` is given, the FP32
    outputs on them; None when the cache is disabled or already holds all of it, or when there
    are fewer than ``MIN_IMAGES`` evaluation images (the child would cost more than it saves).
    ``program``: the saved folded program of ``canonical``; the child works in
    ``staging/.fp32-prefetch``. The child is ``python -m edgekit.fp32_prefetch`` (not a
    multiprocessing spawn, which would run the caller's own script again)."""
    if not cache.enabled or images is None or len(images) < MIN_IMAGES:
        return None
    versions = library_versions()
    needed = [t.name for t in targets if not cache.has("fp32-artifact", (canonical.content_hash, t.name, versions))]
    images_key = tensor_hash(images) if images is not None else None
    want_outputs = images is not None and not cache.has("fp32-outputs", (canonical.content_hash, images_key))
    if not needed and not want_outputs:
        return None
    workdir = staging / WORKDIR
    workdir.mkdir()
    if want_outputs:
        torch.save(images, workdir / IMAGES)
    spec = {"program": str(program), "name": canonical.name, "input_shape": list(canonical.example_input.shape),
            "batch": canonical.batch, "content_hash": canonical.content_hash, "targets": needed,
            "cache_root": str(cache.root), "images": str(workdir / IMAGES) if want_outputs else None,
            "images_key": images_key, "workdir": str(workdir)}
    (workdir / SPEC).write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(workdir / LOG, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edgekit.fp32_prefetch", str(workdir / SPEC)],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    return Prefetch(proc, workdir)


def _work(spec: dict) -> None:
    """Load the program, wait for the parent's "go" on stdin (EOF: it has gone, so stop), then
    make the FP32 outputs and twins into the cache, with one thread."""
    torch.set_num_threads(1)
    from edgekit.registry import TARGETS

    workdir = Path(spec["workdir"])
    ep = torch.export.load(spec["program"])
    canonical = CanonicalModel(spec["name"], ep.module(), ep, torch.zeros(spec["input_shape"]), batch=spec["batch"])
    canonical.__dict__["content_hash"] = spec["content_hash"]  # the parent's model key
    cache = Cache(Path(spec["cache_root"]))
    targets = [TARGETS.get(name) for name in spec["targets"]]  # their modules' imports, before the wait
    if sys.stdin.readline().strip() != "go":
        return
    made, seconds = [], {}
    if spec["images"]:
        t0 = time.time()
        images = torch.load(spec["images"], weights_only=True)
        fp32_outputs(canonical, images, cache, spec["images_key"])
        made.append("fp32-outputs")
        seconds["fp32_outputs_s"] = round(time.time() - t0, 2)
    for t in targets:
        t0 = time.time()
        scratch = workdir / t.name
        scratch.mkdir(exist_ok=True)
        fp32_twin(t, canonical, scratch, cache)
        made.append("fp32-artifact")
        seconds[f"fp32_twin_{t.name}_s"] = round(time.time() - t0, 2)
    (workdir / MADE).write_text(json.dumps({"made": made, "seconds": seconds}))


if __name__ == "__main__":
    _work(json.loads(Path(sys.argv[1]).read_text()))
