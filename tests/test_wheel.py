"""The built wheel, installed without the source tree: it holds the target profiles, the reference
checkpoint and the Fashion-MNIST test split, and its `edgekit quantize --data-free` evaluates the
default model from them.

The dependencies are this environment's; the source tree is hidden from the child process by
removing the editable install's import finder and running outside the checkout, so every edgekit
file it reads comes from the wheel's copy."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# run edgekit's CLI from ``sys.argv[1]`` (the unpacked wheel), never from an editable install
_BOOT = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '') "
         "and 'editable' not in type(f).__module__ and 'editable' not in getattr(f, '__name__', '')]; "
         "sys.path.insert(0, sys.argv.pop(1)); import edgekit; assert edgekit.__file__.startswith(sys.path[0]), "
         "edgekit.__file__; from edgekit.cli import main; sys.argv[0] = 'edgekit'; main()")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("edgekit-*.whl")
    return whl


def test_wheel_holds_profiles_checkpoint_and_test_split(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("edgekit/targets/executorch-xnnpack.toml", "edgekit/targets/litert.toml",
                   "edgekit/models/checkpoints/resnet20_fmnist.pt",
                   "edgekit/calibration/fashion-mnist/t10k-images-idx3-ubyte.gz",
                   "edgekit/calibration/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                   "edgekit/calibration/fashion-mnist/LICENSE",
                   "edgekit/models/checkpoints/espcn_x3.pt", "edgekit/models/checkpoints/mobilevit_fmnist.pt",
                   "edgekit/models/checkpoints/efficientformer_fmnist.pt",
                   "edgekit/calibration/sr-photos/eval.npz", "edgekit/calibration/sr-photos/calib.npz",
                   "edgekit/calibration/sr-photos/README.md"):
        assert needed in names, needed
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "edgekit").rglob("*.py")}
    assert sources <= names, sorted(sources - names)  # every module, every subpackage
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_main_job(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-c", _BOOT, str(site), "quantize", "--data-free", "--num-samples", "8",
                           "--iterations", "5", "--eval-samples", "200", "--no-progress", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ev = json.loads((out / "manifest.json").read_text())["evaluation"]
    assert ev["num_samples"] == 200 and "fashion" in ev["dataset"].lower()
