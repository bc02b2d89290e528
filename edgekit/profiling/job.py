"""Running a profiling job: ``python -m edgekit.profiling.job JOB_DIR --out TRACE.json`` is the
device-side entry point the HTTP agent and the SSH transport use. JOB_DIR holds ``job.json`` (a
:class:`edgekit.profiling.spec.JobSpec`) and the files it names. Only the runners in
:mod:`edgekit.profiling.runners` are ever run; the job names no command. Exit codes: 0 ok, 2 bad
input (message on stderr as one line), 1 failure.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

from edgekit.errors import UserError, run_main
from edgekit.profiling.runners import run_spec
from edgekit.profiling.spec import JOB_FILE, JobSpec
from edgekit.runtimes.trace import Trace


def run_job_dir(job_dir: Path) -> Trace:
    """Run the job described by ``job_dir/job.json`` with the matching host runner; every file
    it names must lie inside ``job_dir``."""
    try:
        spec = JobSpec.from_dict(json.loads((job_dir / JOB_FILE).read_bytes().decode("utf-8")))
    except FileNotFoundError:
        raise UserError(f"{job_dir} has no {JOB_FILE}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{job_dir / JOB_FILE} is not valid JSON ({e})") from None
    return run_spec(spec, base=job_dir)


def die_with_parent(parent_pid: int | None) -> None:
    """Make this process die when ``parent_pid`` (the agent) dies: PR_SET_PDEATHSIG on Linux,
    then a check that the parent is still the one expected (it may have died before the call)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Device-side entry: run JOB_DIR's job and write the trace to --out (JSON)."""
    ap = argparse.ArgumentParser(prog="python -m edgekit.profiling.job", description=main.__doc__)
    ap.add_argument("job_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="where to write the trace JSON")
    ap.add_argument("--deadline", type=float, help="seconds after which this process kills itself")
    ap.add_argument("--parent-pid", type=int, help="die when this process (the agent) dies")
    a = ap.parse_args(argv)
    if a.parent_pid is not None:
        die_with_parent(a.parent_pid)
    if a.deadline and hasattr(signal, "SIGALRM"):  # an orphan never runs on without a limit
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(max(1, math.ceil(a.deadline)))
    return run_main(lambda: run_job_dir(a.job_dir).save(a.out))


if __name__ == "__main__":
    sys.exit(main())
