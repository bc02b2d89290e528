"""Shared helpers: run the real ``edgekit`` CLI as a subprocess from the repository root."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the runs of a test session share one cache, never the user's (edgekit.cache); the process that
# made it (pytest's controller: xdist workers inherit the variable) removes it at the end
_OWN_CACHE = None
if not os.environ.get("EDGEKIT_CACHE_DIR"):
    _OWN_CACHE = os.environ["EDGEKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgekit-test-cache-")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores, one thread each
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``edgekit ARGS`` in a subprocess (cwd: repo root); returns the completed process."""
    return subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def pytest_sessionfinish(session, exitstatus):
    """Write the fuzz tests' example counts (``EDGEKIT_FUZZ_REPORT``, see tests/fuzzing.py)."""
    import sys
    fuzzing = sys.modules.get("tests.fuzzing")
    if fuzzing is not None:
        fuzzing.write_report()
    if _OWN_CACHE:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
