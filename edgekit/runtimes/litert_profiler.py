"""LiteRT's own operator profiler, read through its C API (``libLiteRt.so`` inside the
``ai-edge-litert`` 2.3.0 wheel), for the per-operator events the Python API does not give.

How (the C API of LiteRT 2.3.0, called with ctypes):
- profiling is a runtime option: opaque options ``runtime_options_string`` holding the TOML
  ``enable_profiling = true``; the CPU options are opaque options ``xnnpack``
  (``num_threads``; ``kernel_mode``: ``delegate``, the default, or ``builtin``);
- ``LiteRtCompiledModelGetProfiler`` gives the profiler; per run: reset, start, run, stop, then
  ``LiteRtGetProfilerEvents`` copies the run's events, 104 bytes each in this build (the public
  header's C struct is 88: its memory-usage field is 16 bytes there, 24 here).
- Event types: 2 is a LiteRT node (``metadata1`` = its operator index in the model), 8 an
  operator inside the XNNPACK delegate (its label, e.g. ``Convolution (NHWC, QC8) IGEMM``;
  no node index), 1 the interpreter's own spans (``Invoke``). Durations are whole
  microseconds, so XNNPACK operators under 1 µs read 0.

``LiteRtCreateModelFromFile`` does not verify the flatbuffer (a truncated file segfaults), so
:func:`profile_ops` runs the profiler in a child process (``python -m
edgekit.runtimes.litert_profiler``) and turns a crash into one UserError line.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgekit.errors import UserError, first_line

NODE, DELEGATE_OP, SPAN = 2, 8, 1  # event types (tflite::Profiler::EventType)
TIMEOUT_S = 600.0
P, V, S = ctypes.POINTER, ctypes.c_void_p, ctypes.c_size_t
FREE = ctypes.CFUNCTYPE(None, V)


class _Event(ctypes.Structure):
    """One profiler event as ``LiteRtGetProfilerEvents`` writes it in ai-edge-litert 2.3.0."""
    _fields_ = [("tag", V), ("type", ctypes.c_int32), ("start_us", ctypes.c_uint64),
                ("elapsed_us", ctypes.c_uint64), ("mem", ctypes.c_uint8 * 48),
                ("metadata1", ctypes.c_uint64), ("metadata2", ctypes.c_uint64), ("source", ctypes.c_int32)]


assert ctypes.sizeof(_Event) == 104

_API = {  # name: argument types (every function returns a LiteRtStatus, 0 = ok)
    "LiteRtCreateEnvironment": [ctypes.c_int, V, P(V)],
    "LiteRtCreateModelFromFile": [V, ctypes.c_char_p, P(V)],
    "LiteRtGetModelSignature": [V, S, P(V)],
    "LiteRtGetNumSignatureInputs": [V, P(S)],
    "LiteRtGetNumSignatureOutputs": [V, P(S)],
    "LiteRtGetSignatureInputTensorByIndex": [V, S, P(V)],
    "LiteRtGetSignatureOutputTensorByIndex": [V, S, P(V)],
    "LiteRtGetRankedTensorType": [V, V],
    "LiteRtCreateOptions": [P(V)],
    "LiteRtSetOptionsHardwareAccelerators": [V, ctypes.c_int],
    "LiteRtCreateOpaqueOptions": [ctypes.c_char_p, V, FREE, P(V)],
    "LiteRtAddOpaqueOptions": [V, V],
    "LiteRtCreateCompiledModel": [V, V, V, P(V)],
    "LiteRtGetCompiledModelInputBufferRequirements": [V, S, S, P(V)],
    "LiteRtGetCompiledModelOutputBufferRequirements": [V, S, S, P(V)],
    "LiteRtCreateManagedTensorBufferFromRequirements": [V, V, V, P(V)],
    "LiteRtGetTensorBufferSize": [V, P(S)],
    "LiteRtLockTensorBuffer": [V, P(V), ctypes.c_int],
    "LiteRtUnlockTensorBuffer": [V],
    "LiteRtRunCompiledModel": [V, S, S, P(V), S, P(V)],
    "LiteRtCompiledModelGetProfiler": [V, P(V)],
    "LiteRtStartProfiler": [V],
    "LiteRtStopProfiler": [V],
    "LiteRtResetProfiler": [V],
    "LiteRtGetNumProfilerEvents": [V, P(ctypes.c_int)],
    "LiteRtGetProfilerEvents": [V, ctypes.c_int, P(_Event)],
}


def library_path() -> Path:
    """``libLiteRt.so`` of the installed ai-edge-litert. Raises UserError when absent."""
    import importlib.util

    spec = importlib.util.find_spec("ai_edge_litert")
    for d in (spec.submodule_search_locations or []) if spec else []:
        if (Path(d) / "libLiteRt.so").is_file():
            return Path(d) / "libLiteRt.so"
    raise UserError("LiteRT's operator profiler needs ai-edge-litert==2.3.0 (its libLiteRt.so); "
                    "install it, or profile without operator events (--no-op-trace)")


class _Api:
    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        for name, args in _API.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = ctypes.c_int, args
            setattr(self, name, fn)
        libc = ctypes.CDLL(None)
        libc.strdup.restype, libc.strdup.argtypes = V, [ctypes.c_char_p]
        self.strdup, self.free = libc.strdup, FREE(ctypes.cast(libc.free, V).value)

    def __call__(self, name: str, *args) -> None:
        status = getattr(self, name)(*args)
        if status != 0:
            raise RuntimeError(f"{name} returned LiteRT status {status}")

    def options(self, opts, identifier: bytes, toml: bytes) -> None:
        """Attach opaque options ``identifier`` with the TOML payload (LiteRT frees the copy)."""
        handle = V()
        self("LiteRtCreateOpaqueOptions", identifier, self.strdup(toml), self.free, ctypes.byref(handle))
        self("LiteRtAddOpaqueOptions", opts, handle)


def _buffers(api: _Api, env, model, compiled, signature, inputs: list[bytes]) -> tuple:
    """Input and output tensor buffers of signature 0; inputs filled from ``inputs`` (raw bytes,
    by position) where the sizes match, zeros elsewhere."""
    counts = (S(), S())
    api("LiteRtGetNumSignatureInputs", signature, ctypes.byref(counts[0]))
    api("LiteRtGetNumSignatureOutputs", signature, ctypes.byref(counts[1]))
    made = []
    for is_in, n in zip((True, False), counts):
        bufs = []
        for i in range(n.value):
            tensor, req, buf = V(), V(), V()
            api("LiteRtGetSignatureInputTensorByIndex" if is_in else "LiteRtGetSignatureOutputTensorByIndex",
                signature, i, ctypes.byref(tensor))
            ttype = ctypes.create_string_buffer(512)  # LiteRtRankedTensorType, handed back opaque
            api("LiteRtGetRankedTensorType", tensor, ttype)
            api("LiteRtGetCompiledModelInputBufferRequirements" if is_in
                else "LiteRtGetCompiledModelOutputBufferRequirements", compiled, 0, i, ctypes.byref(req))
            api("LiteRtCreateManagedTensorBufferFromRequirements", env, ttype, req, ctypes.byref(buf))
            if is_in:
                size, addr = S(), V()
                api("LiteRtGetTensorBufferSize", buf, ctypes.byref(size))
                api("LiteRtLockTensorBuffer", buf, ctypes.byref(addr), 1)
                data = inputs[i] if i < len(inputs) and len(inputs[i]) == size.value else bytes(size.value)
                ctypes.memmove(addr.value, data, size.value)
                api("LiteRtUnlockTensorBuffer", buf)
            bufs.append(buf.value)
        made.append((V * max(len(bufs), 1))(*bufs) if bufs else (V * 1)())
        made.append(len(bufs))
    return tuple(made)


def profile_in_process(path: Path, warmup: int, runs: int, threads: int | None,
                       inputs: list[bytes] = ()) -> dict[str, Any]:
    """Profile ``path`` with LiteRT's profiler in this process (a malformed file can crash it:
    use :func:`profile_ops`). Returns ``{"events": [{"type", "index", "tag", "us": [per run]}],
    "invoke_us": [per run]}``, events in execution order. Raises RuntimeError when a call fails
    or the runs do not give the same sequence of events."""
    api = _Api(library_path())
    env, model, opts, compiled, signature, profiler = V(), V(), V(), V(), V(), V()
    api("LiteRtCreateEnvironment", 0, None, ctypes.byref(env))
    api("LiteRtCreateModelFromFile", env, str(path).encode(), ctypes.byref(model))
    api("LiteRtGetModelSignature", model, 0, ctypes.byref(signature))
    api("LiteRtCreateOptions", ctypes.byref(opts))
    api("LiteRtSetOptionsHardwareAccelerators", opts, 1)  # the CPU
    api.options(opts, b"runtime_options_string", b"enable_profiling = true\n")
    if threads:
        api.options(opts, b"xnnpack", f"num_threads = {int(threads)}\n".encode())
    api("LiteRtCreateCompiledModel", env, model, opts, ctypes.byref(compiled))
    ins, n_in, outs, n_out = _buffers(api, env, model, compiled, signature, list(inputs))
    api("LiteRtCompiledModelGetProfiler", compiled, ctypes.byref(profiler))
    if not profiler.value:
        raise RuntimeError("LiteRT gave no profiler (its profiling option was not taken)")
    for _ in range(warmup):
        api("LiteRtRunCompiledModel", compiled, 0, n_in, ins, n_out, outs)
    events: list[dict[str, Any]] = []
    invoke: list[float] = []
    for r in range(runs):
        api("LiteRtResetProfiler", profiler)  # a reset also stops recording
        api("LiteRtStartProfiler", profiler)
        api("LiteRtRunCompiledModel", compiled, 0, n_in, ins, n_out, outs)
        api("LiteRtStopProfiler", profiler)
        count = ctypes.c_int()
        api("LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
        raw = (_Event * max(count.value, 1))()
        if count.value:
            api("LiteRtGetProfilerEvents", profiler, count.value, raw)
        run = [(e.type, int(e.metadata1) if e.type == NODE else None,
                ctypes.string_at(e.tag).decode(errors="replace") if e.tag else "", float(e.elapsed_us))
               for e in raw[:count.value]]
        invoke.append(sum(us for t, _, tag, us in run if t == SPAN and tag == "Invoke"))
        ops = [x for x in run if x[0] in (NODE, DELEGATE_OP)]
        if r == 0:
            events = [{"type": t, "index": i, "tag": tag, "us": []} for t, i, tag, _ in ops]
        if [(e["type"], e["index"], e["tag"]) for e in events] != [x[:3] for x in ops]:
            raise RuntimeError("LiteRT's profiler gave a different sequence of operators in two runs")
        for e, x in zip(events, ops):
            e["us"].append(x[3])
    return {"events": events, "invoke_us": invoke}


def profile_ops(path: Path, warmup: int, runs: int, threads: int | None,
                inputs: list[bytes] = ()) -> dict[str, Any]:
    """:func:`profile_in_process` in a child process (``inputs``: raw bytes per signature input).
    Raises UserError naming the file when the child fails or crashes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "inputs.bin"
        payload.write_bytes(json.dumps([b.hex() for b in inputs]).encode())
        cmd = [sys.executable, "-m", "edgekit.runtimes.litert_profiler", str(path), str(warmup), str(runs),
               str(threads or 0), str(payload)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        except subprocess.TimeoutExpired:
            raise UserError(f"LiteRT's profiler did not finish {path.name} in {TIMEOUT_S:.0f} s; "
                            "profile with fewer runs or without operator events (--no-op-trace)") from None
    if proc.returncode < 0:
        raise UserError(f"LiteRT crashed (signal {-proc.returncode}) profiling {path.name}: the file is "
                        "corrupted or not a .tflite; re-create it with 'edgekit quantize'")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise UserError(f"LiteRT's profiler failed on {path.name}: "
                        f"{first_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output')}")
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    path, warmup, runs, threads, payload = argv
    inputs = [bytes.fromhex(h) for h in json.loads(Path(payload).read_text())]
    try:
        out = profile_in_process(Path(path), int(warmup), int(runs), int(threads) or None, inputs)
    except (RuntimeError, OSError, AttributeError, UserError) as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
