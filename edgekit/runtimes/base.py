"""What every runtime provides, and the lookups over the registered ones.

A :class:`Runtime` checks an artifact's format from its first bytes, loads it into a
:class:`Session` that maps input arrays to output arrays (evaluation), loads and runs it once in a
child process (``probe``), and profiles it into a :class:`~edgekit.runtimes.trace.Trace`. Its
suffix, aliases and package are data on the class, so the suffix/runtime tables of the CLI, the
bundle resolver, the agent and adb are all read from ``edgekit.registry.RUNTIMES``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES

REMAKE = "re-create it with 'edgekit quantize'"


def le(data: bytes, start: int, size: int) -> int:
    """The little-endian unsigned integer of ``size`` bytes at ``start`` of ``data``."""
    return int.from_bytes(data[start:start + size], "little")


class Session:
    """An artifact loaded in its runtime.

    ``inputs``: per input, its shape and dtype name as the artifact declares them
    (e.g. ``([1, 3, 32, 32], "float32")``)."""

    inputs: list[tuple[list[int], str]]

    def run(self, arrays: list) -> list:
        """Outputs (numpy float32, dequantized where the artifact's outputs are integer) for
        ``arrays`` (numpy float32, quantized here where its inputs are integer)."""
        raise NotImplementedError


class Runtime:
    """Base of the runtimes: subclasses set the class attributes and implement the methods.

    name: the registry name (``executorch``). suffix: the artifact suffix (``.pte``).
    aliases: other names accepted for ``--runtime``. package: the module whose presence means
    the runtime is installed; requirement: what to install where it is not. min_bytes: the
    smallest file that can be of the format. preference: order among a bundle's artifacts when
    none is named (lower first). device_tool: the binary ``adb`` runs for it on a phone (None:
    adb cannot profile it)."""

    name = ""
    suffix = ""
    aliases: tuple[str, ...] = ()
    package = ""
    requirement = ""
    min_bytes = 16
    preference = 99
    device_tool: str | None = None

    def installed(self) -> bool:
        """Whether this machine has the runtime (``find_spec``, nothing is imported)."""
        return importlib.util.find_spec(self.package.split(".")[0]) is not None

    def missing(self, err: BaseException) -> UserError:
        """The UserError for a machine without this runtime."""
        return UserError(f"this device lacks the {self.name} runtime ({err}); install {self.requirement} "
                         "there, or pick another --runtime")

    def check_format(self, head: bytes, size: int, name: str) -> None:
        """Raise UserError naming ``name`` when its first 64 bytes ``head`` and its ``size``
        (bytes) are not those of this runtime's format."""
        raise NotImplementedError

    def load(self, path: Path, threads: int | None = None) -> Session:
        """Load ``path``; UserError (one line) for a file the runtime refuses or when the runtime
        is not installed."""
        raise NotImplementedError

    def probe(self, path: Path) -> None:
        """Load ``path`` and run it once on zeros (the child side of ``checks.probe_artifact``)."""
        import numpy as np

        s = self.load(path)
        s.run([np.zeros(shape, dtype) for shape, dtype in s.inputs])

    def device_command(self, runner: str, model: str, workdir: str, spec, local: Path | None = None) -> tuple[str, str]:
        """For ``adb``: the shell command that profiles ``model`` with ``runner`` (the
        ``device_tool`` pushed to the phone) inside ``workdir``, and the name of the file it
        writes there (pulled back for :meth:`trace_from_device`). ``local``: the artifact on
        this machine (for facts the command needs, such as its input size)."""
        raise NotImplementedError

    def trace_from_device(self, path: Path, etrecord: Path | None, spec, pulled: Path,
                          output: str) -> tuple[list[float], list, dict[str, Any]]:
        """Per-run latency (ms), per-op events and metadata (``tracing`` and extra keys) from the
        file the device command wrote (``pulled``, here) and its console ``output``; ``path``
        is the artifact on this machine, for the mapping to modules."""
        raise NotImplementedError

    def profile(self, path: Path, spec, metadata: dict[str, Any], etrecord: Path | None = None):
        """Time ``spec.runs`` runs after ``spec.warmup_runs`` (ms) and, with ``spec.trace_ops``,
        collect per-operator events; returns a Trace. Raises UserError as ``load`` does."""
        raise NotImplementedError


def runtime(name: str) -> Runtime:
    """The runtime called ``name`` or one of its aliases; UserError listing the known ones."""
    key = name.lower()
    for n in RUNTIMES.names():
        rt = RUNTIMES.get(n)
        if key == n or key in rt.aliases:
            return rt
    raise UserError(f"unknown runtime {name!r} (--runtime): use one of {', '.join(RUNTIMES.names())}")


def runtime_of_suffix(suffix: str) -> Runtime | None:
    """The runtime that runs artifacts ending in ``suffix`` (``.pte``), or None; of several
    (an .onnx runs in onnxruntime and TensorRT), the first by preference."""
    return next((RUNTIMES.get(n) for n in by_preference() if RUNTIMES.get(n).suffix == suffix.lower()), None)


def suffixes() -> str:
    """The artifact suffixes the runtimes take, for messages: ``.pte, .tflite or .onnx``."""
    s = list(dict.fromkeys(RUNTIMES.get(n).suffix for n in by_preference()))
    return ", ".join(s[:-1]) + f" or {s[-1]}" if len(s) > 1 else s[0]


def by_preference() -> list[str]:
    """Runtime names in the order a bundle's artifact is chosen when none is named."""
    return sorted(RUNTIMES.names(), key=lambda n: RUNTIMES.get(n).preference)
