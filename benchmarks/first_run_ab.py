"""First and second runs of ``edgekit quantize --data-free`` on the reference model, for two
commits back to back on this machine (its speed drifts, so a change is timed against its parent
in the same sitting). Each checkout is made with ``git worktree`` and run with this checkout's
virtual environment (``PYTHONPATH`` points at the worktree); each first run gets a fresh, empty
cache folder, and the second run of each commit reuses its own cache.

    .venv/bin/python benchmarks/first_run_ab.py OLD_REV [NEW_REV]   # NEW_REV: HEAD

Writes ``benchmarks/results/first_run_ab_OLD_NEW.json`` (short hashes): per run, the wall seconds and the manifest's
``timings_s`` and top-1 of each artifact.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGEKIT = ROOT / ".venv" / "bin" / "edgekit"


def run(checkout: Path, cache: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), EDGEKIT_CACHE_DIR=str(cache))
    t0 = time.time()
    proc = subprocess.run([str(EDGEKIT), "quantize", "--data-free", "--out", str(out), "--no-progress"],
                          cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"edgekit quantize failed in {checkout}:\n{proc.stderr[-3000:]}")
    m = json.loads((out / "manifest.json").read_text())
    return {"wall_s": round(wall, 1), "timings_s": m["timings_s"],
            "top1": {r["file"]: r.get("top1") for r in m["evaluation"]["results"]}}


def main() -> None:
    old, new = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "HEAD")
    revs = {k: subprocess.check_output(["git", "rev-parse", "--short", r], cwd=ROOT, text=True).strip()
            for k, r in (("old", old), ("new", new))}
    results: dict = {"revisions": revs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for key, rev in revs.items():
            subprocess.run(["git", "worktree", "add", "-f", "--detach", str(tmp / key), rev], cwd=ROOT,
                           check=True, capture_output=True)
        try:
            for key in ("old", "new"):
                results["runs"][f"{key}_first"] = r = run(tmp / key, tmp / f"cache-{key}", tmp / f"out-{key}")
                print(key, "first", r, flush=True)
            for key in ("old", "new"):
                results["runs"][f"{key}_second"] = r = run(tmp / key, tmp / f"cache-{key}", tmp / f"out-{key}")
                print(key, "second", r, flush=True)
        finally:
            for key in revs:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / key)], cwd=ROOT, capture_output=True)
    dest = ROOT / "benchmarks" / "results" / f"first_run_ab_{revs['old']}_{revs['new']}.json"
    dest.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written: {dest}")


if __name__ == "__main__":
    main()
