"""The long run of the fuzz suite (tests marked ``fuzz``): hypothesis's ``long`` profile
(400 examples per test) instead of the bounded one ``make test`` uses.

Usage: .venv/bin/python benchmarks/fuzz.py [--profile long] [--out benchmarks/results/fuzz.json]

Writes the examples run per property, the pytest outcome and the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="long", help="hypothesis profile (tests/fuzzing.py)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "counts.json"
        env = dict(os.environ, HYPOTHESIS_PROFILE=a.profile, EDGEKIT_FUZZ_REPORT=str(report))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "fuzz", "-p", "no:cacheprovider"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
        counts = json.loads(report.read_text()) if report.exists() else {}
    summary = [ln for ln in proc.stdout.splitlines() if " passed" in ln or " failed" in ln]
    res = {"profile": a.profile, "examples": counts, "examples_total": sum(counts.values()),
           "pytest_exit_code": proc.returncode, "pytest_summary": summary[-1] if summary else proc.stdout[-500:],
           "wall_s": round(wall, 1), "command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
