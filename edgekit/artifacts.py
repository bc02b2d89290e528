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
   (``python -m edgekit.artifacts PATH``). A crash there is reported as one line;
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

#: artifact suffix -> runtime that runs it
SUFFIX_RUNTIME = {".pte": "executorch", ".tflite": "litert", ".onnx": "onnxruntime"}
_MIN_BYTES = {".pte": 32, ".tflite": 16, ".onnx": 16}
# ModelProto field numbers (onnx.proto): ir_version 1, producer_name 2, producer_version 3,
# domain 4, model_version 5, doc_string 6, graph 7, opset_import 8, metadata_props 14,
# training_info 20, functions 25, configuration 26
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}
PROBE_TIMEOUT_S = 300.0

_REMAKE = "re-create it with 'edgekit quantize'"


def _le(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start:start + size], "little")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while i < len(data) and shift < 64:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    raise ValueError("truncated varint")


def check_artifact(path: str | os.PathLike) -> str:
    """Check that ``path`` is a .pte, .tflite or .onnx file of its format; returns its runtime.

    Reads only the first bytes and the size. Raises UserError naming the file when it is
    missing, not a regular file, of an unknown suffix, too small, of another format, or
    truncated (a .pte whose header promises more bytes than the file has)."""
    p = Path(path)
    rt = SUFFIX_RUNTIME.get(p.suffix.lower())
    if rt is None:
        raise UserError(f"{p.name}: unknown artifact type {p.suffix!r}; give a .pte, .tflite or .onnx file")
    if not p.is_file():
        raise UserError(f"{p} is not a file; give a .pte, .tflite or .onnx file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(64)
    suffix = p.suffix.lower()
    if size < _MIN_BYTES[suffix]:
        raise UserError(f"{p.name} has only {size} bytes: it is not a {suffix} model; {_REMAKE}")
    if suffix == ".pte":
        if head[4:6] != b"ET" or not head[6:8].isdigit():
            raise UserError(f"{p.name} is not an ExecuTorch program (no 'ET' file identifier at byte 4, "
                            f"found {head[4:8]!r}); {_REMAKE}")
        if _le(head, 0, 4) >= size:
            raise UserError(f"{p.name} is truncated (its root table lies past the end); {_REMAKE}")
        if head[8:12] == b"eh00":
            length, program = _le(head, 12, 4), _le(head, 16, 8)
            base, seg = _le(head, 24, 8), (_le(head, 32, 8) if length >= 32 else 0)
            if program > size or (base and base + seg > size):
                need = max(program, base + seg)
                raise UserError(f"{p.name} is truncated: its header promises {need} bytes, the file has "
                                f"{size}; {_REMAKE}")
    elif suffix == ".tflite":
        if head[4:8] != b"TFL3":
            raise UserError(f"{p.name} is not a LiteRT model (no 'TFL3' file identifier at byte 4, "
                            f"found {head[4:8]!r}); {_REMAKE}")
        if _le(head, 0, 4) >= size:
            raise UserError(f"{p.name} is truncated (its root table lies past the end); {_REMAKE}")
    else:
        try:
            tag, _ = _varint(head, 0)
        except ValueError:
            tag = 0
        if (tag >> 3) not in _ONNX_FIELDS or (tag & 7) not in (0, 2):
            raise UserError(f"{p.name} is not an ONNX model (its first bytes are not an ONNX ModelProto "
                            f"field); {_REMAKE}")
    return rt


def probe_artifact(path: str | os.PathLike, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Load ``path`` in its runtime (see the module docstring), in a child process.

    Raises UserError with one line when the runtime refuses the file, crashes on it (the
    signal is named) or runs past ``timeout`` seconds. Call :func:`check_artifact` first."""
    p = Path(path)
    rt = SUFFIX_RUNTIME.get(p.suffix.lower(), "?")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgekit.artifacts", str(p)], capture_output=True,
                              text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"{rt} did not finish loading {p.name} within {timeout:g} s; the file is "
                        f"damaged or too large for this machine") from None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise UserError(f"{rt} crashed ({sig}) loading {p.name}: the file is corrupted or was written for "
                        f"another runtime version; {_REMAKE}")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        raise UserError(lines[-1].removeprefix("error: ") if lines else
                        f"{rt} could not load {p.name} (exit {proc.returncode}); {_REMAKE}")


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


def _load_pte(path: Path) -> None:
    # the pybindings module alone loads in ~2 s; executorch.runtime (which imports exir and
    # torchao) takes ~7 s. Both verify the program the same way (InternalConsistency).
    import torch  # noqa: F401  (the extension resolves libtorch's symbols)
    try:
        import executorch.extension.pybindings._C as et
    except ImportError:
        from executorch.runtime import Runtime
        Runtime.get().load_program(str(path)).load_method("forward")
        return
    et._load_program(str(path), program_verification=et.Verification.InternalConsistency).load_method("forward")


def _load_and_run(path: Path) -> None:
    """The child side of :func:`probe_artifact`: load the file; UserError on refusal."""
    import numpy as np

    rt = check_artifact(path)
    try:
        with native_stderr():
            if rt == "executorch":  # delegates (XNNPACK) compile their payload in load_method
                _load_pte(path)
            elif rt == "litert":
                try:
                    from ai_edge_litert.interpreter import Interpreter
                except ImportError:
                    from tflite_runtime.interpreter import Interpreter  # type: ignore
                it = Interpreter(model_path=str(path))
                it.allocate_tensors()
                for d in it.get_input_details():
                    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
                it.invoke()
            else:
                import onnx
                import onnxruntime as ort
                onnx.load(str(path), load_external_data=False)
                ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except ImportError as e:
        raise UserError(f"the {rt} runtime is not installed here ({e})") from None
    except Exception as e:
        why = first_line(e)
        raise UserError(f"{rt} cannot load {path.name} ({why}): the file is corrupted or not a "
                        f"{path.suffix} model; {_REMAKE}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m edgekit.artifacts PATH``: exit 0 when PATH loads, 2 with one line otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("error: usage: python -m edgekit.artifacts PATH", file=sys.stderr)
        return 2
    return run_main(lambda: _load_and_run(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
