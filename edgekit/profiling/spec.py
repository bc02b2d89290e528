"""What to profile: a job's specification (:class:`JobSpec`, ``job.json``) and the resolution of
a BUNDLE_OR_ARTIFACT argument into one artifact. Running a job is :mod:`edgekit.profiling.job`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle import inside, job_relative, read_manifest, verify  # noqa: F401  (re-exported)
from edgekit.errors import UserError

JOB_FILE = "job.json"
MAX_RUNS = 1_000_000
MAX_INPUT_ELEMENTS = 1 << 28
INPUT_DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")


def _int_field(name: str, value: Any, lo: int, hi: int, flag: str, hint: str) -> None:
    if type(value) is not int:  # bool, float (1e400 is inf), str are refused
        raise UserError(f"{name} must be an integer, not {type(value).__name__} {str(value)[:20]!r}")
    if not lo <= value <= hi:
        raise UserError(f"{flag} {value}: {hint}" if value < lo else f"{flag} {value}: at most {hi}")


def normalize_runtime(name: str | None) -> str | None:
    """Canonical runtime name (a name in ``edgekit.registry.RUNTIMES``) for a name or an alias
    (``ort``, ``tflite``), or None; raises UserError for an unknown one."""
    from edgekit.runtimes.base import runtime

    return None if name is None else runtime(name).name


@dataclass
class JobSpec:
    """One profiling job. Paths are relative to the job folder on the device.

    artifact: the .pte/.tflite/.onnx file. runtime: ``executorch``|``litert``|``onnxruntime``.
    sha256: the artifact's expected hex sha256 (from the manifest) or None.
    etrecord: ETRecord beside a .pte, or None. input_shape/input_dtype: the model input
    (e.g. [1, 1, 28, 28], "float32"); None to read them from the artifact.
    warmup_runs, runs: untimed and timed executions (runs >= 1).
    trace_ops: collect per-operator events (ETDump, profilers); False times end-to-end only.
    threads: runtime threads, None for the runtime's default.
    """

    artifact: str
    runtime: str
    warmup_runs: int = 10
    runs: int = 50
    sha256: str | None = None
    etrecord: str | None = None
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    trace_ops: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every field's type and range; raises UserError naming the field. Paths must be
        relative names inside the job folder (no ``..``, not absolute)."""
        for name in ("artifact", "runtime"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise UserError(f"{name} must be a non-empty string")
        for name in ("artifact", "etrecord"):
            value = getattr(self, name)
            if value is not None:
                job_relative(value, name)
        if self.sha256 is not None and not (isinstance(self.sha256, str) and len(self.sha256) == 64
                                            and all(c in "0123456789abcdefABCDEF" for c in self.sha256)):
            raise UserError("sha256 must be 64 hex digits or null")
        _int_field("runs", self.runs, 1, MAX_RUNS, "--runs", "give at least 1 timed run")
        _int_field("warmup_runs", self.warmup_runs, 0, MAX_RUNS, "--warmup-runs", "give 0 or more warm-up runs")
        if self.threads is not None:
            _int_field("threads", self.threads, 1, 1024, "--threads", "give at least 1 thread")
        if not isinstance(self.trace_ops, bool):
            raise UserError("trace_ops must be true or false")
        if self.input_shape is not None:
            if (not isinstance(self.input_shape, list) or not 1 <= len(self.input_shape) <= 8
                    or not all(type(d) is int and 1 <= d <= 1 << 16 for d in self.input_shape)
                    or math.prod(self.input_shape) > MAX_INPUT_ELEMENTS):
                raise UserError(f"input_shape must be a list of 1 to 8 positive integers with at most "
                                f"{MAX_INPUT_ELEMENTS} elements in all")
        if self.input_dtype is not None and self.input_dtype not in INPUT_DTYPES:
            raise UserError(f"input_dtype must be one of {', '.join(INPUT_DTYPES)}")
        if not isinstance(self.extra, dict):
            raise UserError("extra must be an object")
        normalize_runtime(self.runtime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobSpec":
        """Build from a dict (job.json); raises UserError for a non-object, unknown or missing
        fields. Call :meth:`validate` for the values."""
        if not isinstance(d, dict):
            raise UserError("a job spec must be a JSON object")
        known = set(cls.__dataclass_fields__)
        bad = [str(k)[:40] for k in d if k not in known]
        if bad or "artifact" not in d or "runtime" not in d:
            raise UserError(f"job spec has unknown or missing fields ({', '.join(bad) or 'artifact/runtime'})")
        return cls(**d)


@dataclass
class ResolvedArtifact:
    """A BUNDLE_OR_ARTIFACT argument resolved to one artifact on this machine.

    path: the artifact. runtime: its runtime. sha256: expected digest from the manifest, if any.
    etrecord: ETRecord path for a .pte, if present. input_shape/input_dtype from the manifest.
    model_name: from the manifest, else the file stem.
    """

    path: Path
    runtime: str
    sha256: str | None = None
    etrecord: Path | None = None
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    model_name: str | None = None

    def files(self) -> list[Path]:
        """Files a device needs: the artifact and, where present, its ETRecord or (ONNX) its
        external-data file ``NAME.data``."""
        extra = [self.etrecord] if self.etrecord else []
        data = self.path.with_name(self.path.name + ".data")
        if self.runtime == "onnxruntime" and data.is_file():
            extra.append(data)
        return [self.path] + extra


def resolve(target: str | Path, runtime: str | None = None) -> ResolvedArtifact:
    """Resolve a bundle directory or a single .pte/.tflite/.onnx file.

    For a bundle, picks the artifact of ``runtime`` from ``manifest.json`` (the first of
    executorch, litert, onnxruntime when ``runtime`` is None). Raises UserError when the path is
    missing, the manifest is unreadable, no artifact matches the runtime, or the file's suffix
    is not one of .pte/.tflite/.onnx. Does not check the sha256 (see :func:`verify`).
    """
    from edgekit.runtimes.base import by_preference, runtime as _runtime, runtime_of_suffix, suffixes

    p = Path(target)
    runtime = normalize_runtime(runtime)
    if not p.exists():
        raise UserError(f"{p} does not exist: give a bundle directory (edgekit quantize --out) "
                        f"or a {suffixes()} file")
    if p.is_dir():
        manifest = read_manifest(p)
        arts = [a for a in manifest.get("artifacts", []) if isinstance(a, dict) and "file" in a]
        for a in arts:
            a.setdefault("runtime", getattr(runtime_of_suffix(Path(a["file"]).suffix), "name", None))
        have = sorted({str(a.get("runtime")) for a in arts})
        if runtime is None:
            order = by_preference()
            ranked = sorted(arts, key=lambda a: order.index(a["runtime"]) if a["runtime"] in order else 99)
            chosen = ranked[0] if ranked else None
        else:
            chosen = next((a for a in arts if normalize_runtime(a["runtime"]) == runtime), None) or \
                next((a for a in arts if a.get("checked_in") == runtime), None)  # TensorRT's ONNX in onnxruntime
        if chosen is None:
            want = f"runtime {runtime!r}" if runtime else "any runtime"
            raise UserError(f"bundle {p} has no artifact for {want} (it has: "
                            f"{', '.join(have) or 'none'}); pick --runtime from those or re-run "
                            "'edgekit quantize' with the matching --target")
        art = inside(p, str(chosen["file"]), "artifact")
        if not art.is_file():
            raise UserError(f"bundle {p} lists {chosen['file']} but the file is missing; "
                            "re-create the bundle with 'edgekit quantize'")
        rt = runtime if runtime and chosen.get("checked_in") == runtime else normalize_runtime(chosen["runtime"])
        et = inside(p, str(chosen["etrecord"]), "etrecord") if chosen.get("etrecord") else art.with_suffix(".etrecord")
        model = manifest.get("model") or {}
        return ResolvedArtifact(path=art, runtime=rt, sha256=chosen.get("sha256"),
                                etrecord=et if rt == "executorch" and et.is_file() else None,
                                input_shape=model.get("input_shape"),
                                input_dtype=model.get("input_dtype"),
                                model_name=model.get("name") or p.name)
    rt = getattr(runtime_of_suffix(p.suffix), "name", None)
    if rt is None:
        raise UserError(f"{p} is not a {suffixes()} file nor a bundle directory")
    if runtime is not None and runtime != rt and _runtime(runtime).suffix == p.suffix.lower():
        rt = runtime  # an .onnx for TensorRT
    elif runtime is not None and runtime != rt:
        raise UserError(f"{p.name} is a {p.suffix} file, which runs on {rt}, not on {runtime}; "
                        "drop --runtime or give a bundle with that runtime's artifact")
    et = p.with_suffix(".etrecord")
    return ResolvedArtifact(path=p, runtime=rt, etrecord=et if (rt == "executorch" and et.is_file())
                            else None, model_name=p.stem)
