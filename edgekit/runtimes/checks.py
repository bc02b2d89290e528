"""Checks of a deployable file before a native loader sees it.

Native runtimes (ExecuTorch, LiteRT, onnxruntime) trust the bytes they are given: a damaged
.pte can abort the whole process (SIGABRT) instead of raising. So a file that did not come from
this run is checked in two steps:

1. :func:`check_artifact`: the size and the format's identifier (``ET12`` at byte 4 of a .pte
   and, where present, its extended header ``eh00`` whose program and segment sizes must fit
   in the file; ``TFL3`` at byte 4 of a .tflite; a protobuf ``ModelProto`` whose first field
   is a known one for an .onnx). Cheap; runs everywhere, also in the profiling agent.
2. :func:`probe_artifact`: the runtime loads the file (ExecuTorch: the program and its
   ``forward`` method, which compiles the delegate payloads; LiteRT: allocates and invokes
   once on zeros; onnxruntime: parses and builds a session) in a child process
   (``python -m edgekit.runtimes.checks PATH``). A crash there is reported as one line;
   this process survives.

Both raise :class:`~edgekit.errors.UserError` naming the file and what to do.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.errors import UserError, first_line, run_main
from edgekit.runtimes.base import REMAKE

PROBE_TIMEOUT_S = 300.0


def check_artifact(path: str | os.PathLike) -> str:
    """Check that ``path`` is an artifact of a registered runtime's format (its suffix names the
    runtime); returns the runtime's name.

    Reads only the first bytes and the size. Raises UserError naming the file when it is
    missing, not a regular file, of an unknown suffix, too small, of another format, or
    truncated (a .pte whose header promises more bytes than the file has)."""
    from edgekit.runtimes.base import runtime_of_suffix, suffixes

    p = Path(path)
    rt = runtime_of_suffix(p.suffix)
    if rt is None:
        raise UserError(f"{p.name}: unknown artifact type {p.suffix!r}; give a {suffixes()} file")
    if not p.is_file():
        raise UserError(f"{p} is not a file; give a {suffixes()} file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(64)
    if size < rt.min_bytes:
        raise UserError(f"{p.name} has only {size} bytes: it is not a {rt.suffix} model; {REMAKE}")
    rt.check_format(head, size, p.name)
    return rt.name


def probe_artifact(path: str | os.PathLike, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Load ``path`` in its runtime (see the module docstring), in a child process.

    Raises UserError with one line when the runtime refuses the file, crashes on it (the
    signal is named) or runs past ``timeout`` seconds. Call :func:`check_artifact` first."""
    from edgekit.runtimes.base import runtime_of_suffix

    p = Path(path)
    rt = getattr(runtime_of_suffix(p.suffix), "name", "?")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgekit.runtimes.checks", str(p)], capture_output=True,
                              text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"{rt} did not finish loading {p.name} within {timeout:g} s; the file is "
                        f"damaged or too large for this machine") from None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise UserError(f"{rt} crashed ({sig}) loading {p.name}: the file is corrupted or was written for "
                        f"another runtime version; {REMAKE}")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        raise UserError(lines[-1].removeprefix("error: ") if lines else
                        f"{rt} could not load {p.name} (exit {proc.returncode}); {REMAKE}")


@contextlib.contextmanager
def native_stderr():
    """Send file descriptor 2 (and ``sys.stderr``) to a temporary file while native code runs,
    so that a runtime's own log lines never reach the user; yields a list that receives the
    captured text (one string) when the block ends."""
    captured: list[str] = []
    sys.stderr.flush()
    saved, saved_py = os.dup(2), sys.stderr
    buf = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = buf
        try:
            yield captured
        finally:
            sys.stderr = saved_py
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace") + buf.getvalue())


def _load_and_run(path: Path) -> None:
    """The child side of :func:`probe_artifact`: the runtime's ``probe``; UserError on refusal."""
    from edgekit.registry import RUNTIMES

    rt = check_artifact(path)
    try:
        with native_stderr():
            RUNTIMES.get(rt).probe(path)
    except UserError:
        raise
    except ImportError as e:
        raise UserError(f"the {rt} runtime is not installed here ({e})") from None
    except Exception as e:
        why = first_line(e)
        raise UserError(f"{rt} cannot load {path.name} ({why}): the file is corrupted or not a "
                        f"{path.suffix} model; {REMAKE}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m edgekit.runtimes.checks PATH``: exit 0 when PATH loads, 2 with one line otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("error: usage: python -m edgekit.runtimes.checks PATH", file=sys.stderr)
        return 2
    return run_main(lambda: _load_and_run(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
