"""What to profile: resolving a BUNDLE_OR_ARTIFACT argument into one artifact, and running it.

``python -m edgekit.profiling.job JOB_DIR --out TRACE.json`` is the device-side entry point the
HTTP agent and the SSH transport use: JOB_DIR holds ``job.json`` (a :class:`JobSpec`) and the
files it names. Only the runners in :mod:`edgekit.profiling.runners` are ever run; the job
names no command. Exit codes: 0 ok, 2 bad input (message on stderr as one line), 1 failure.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle import read_manifest, sha256_file
from edgekit.errors import UserError

JOB_FILE = "job.json"

#: runtime name -> artifact suffix; aliases accepted on the command line
RUNTIMES = {"executorch": ".pte", "litert": ".tflite", "onnxruntime": ".onnx"}
_ALIASES = {"pte": "executorch", "et": "executorch", "tflite": "litert", "tflite-runtime": "litert",
            "onnx": "onnxruntime", "ort": "onnxruntime"}
_PREFERENCE = ("executorch", "litert", "onnxruntime")


def normalize_runtime(name: str | None) -> str | None:
    """Canonical runtime name (``executorch``, ``litert``, ``onnxruntime``) or None; raises
    UserError for an unknown one."""
    if name is None:
        return None
    n = _ALIASES.get(name.lower(), name.lower())
    if n not in RUNTIMES:
        raise UserError(f"unknown runtime {name!r} (--runtime): use one of {', '.join(RUNTIMES)}")
    return n


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
        """Raise UserError for counts out of range or an unknown runtime."""
        if int(self.runs) < 1:
            raise UserError(f"--runs {self.runs}: give at least 1 timed run")
        if int(self.warmup_runs) < 0:
            raise UserError(f"--warmup-runs {self.warmup_runs}: give 0 or more warm-up runs")
        if self.threads is not None and int(self.threads) < 1:
            raise UserError(f"--threads {self.threads}: give at least 1 thread")
        normalize_runtime(self.runtime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobSpec":
        known = set(cls.__dataclass_fields__)
        bad = [k for k in d if k not in known]
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
    p = Path(target)
    runtime = normalize_runtime(runtime)
    if not p.exists():
        raise UserError(f"{p} does not exist: give a bundle directory (edgekit quantize --out) "
                        "or a .pte/.tflite/.onnx file")
    if p.is_dir():
        manifest = read_manifest(p)
        arts = [a for a in manifest.get("artifacts", []) if isinstance(a, dict) and "file" in a]
        for a in arts:
            a.setdefault("runtime", _runtime_of_suffix(Path(a["file"]).suffix))
        have = sorted({str(a.get("runtime")) for a in arts})
        if runtime is None:
            ranked = sorted(arts, key=lambda a: _PREFERENCE.index(a["runtime"])
                            if a["runtime"] in _PREFERENCE else 99)
            chosen = ranked[0] if ranked else None
        else:
            chosen = next((a for a in arts if normalize_runtime(a["runtime"]) == runtime), None)
        if chosen is None:
            want = f"runtime {runtime!r}" if runtime else "any runtime"
            raise UserError(f"bundle {p} has no artifact for {want} (it has: "
                            f"{', '.join(have) or 'none'}); pick --runtime from those or re-run "
                            "'edgekit quantize' with the matching --target")
        art = p / chosen["file"]
        if not art.is_file():
            raise UserError(f"bundle {p} lists {chosen['file']} but the file is missing; "
                            "re-create the bundle with 'edgekit quantize'")
        et = p / chosen["etrecord"] if chosen.get("etrecord") else art.with_suffix(".etrecord")
        model = manifest.get("model") or {}
        return ResolvedArtifact(path=art, runtime=normalize_runtime(chosen["runtime"]),
                                sha256=chosen.get("sha256"), etrecord=et if et.is_file() else None,
                                input_shape=model.get("input_shape"),
                                input_dtype=model.get("input_dtype"),
                                model_name=model.get("name") or p.name)
    rt = _runtime_of_suffix(p.suffix)
    if rt is None:
        raise UserError(f"{p} is not a .pte, .tflite or .onnx file nor a bundle directory")
    if runtime is not None and runtime != rt:
        raise UserError(f"{p.name} is a {p.suffix} file, which runs on {rt}, not on {runtime}; "
                        "drop --runtime or give a bundle with that runtime's artifact")
    et = p.with_suffix(".etrecord")
    return ResolvedArtifact(path=p, runtime=rt, etrecord=et if (rt == "executorch" and et.is_file())
                            else None, model_name=p.stem)


def verify(path: Path, expected_sha256: str | None) -> str:
    """Hex sha256 of ``path``; raises UserError naming the file when it differs from
    ``expected_sha256`` (the artifact was corrupted or replaced)."""
    got = sha256_file(path)
    if expected_sha256 and got.lower() != expected_sha256.lower():
        raise UserError(f"artifact {path.name} is corrupted: its sha256 {got[:12]}… does not match "
                        f"the manifest's {expected_sha256[:12]}…; re-create the bundle with "
                        "'edgekit quantize'")
    return got


def _runtime_of_suffix(suffix: str) -> str | None:
    for rt, suf in RUNTIMES.items():
        if suffix.lower() == suf:
            return rt
    return None


def run_job_dir(job_dir: Path) -> "Trace":
    """Run the job described by ``job_dir/job.json`` with the matching host runner."""
    from edgekit.profiling.runners import run_spec

    try:
        spec = JobSpec.from_dict(json.loads((job_dir / JOB_FILE).read_text()))
    except FileNotFoundError:
        raise UserError(f"{job_dir} has no {JOB_FILE}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{job_dir / JOB_FILE} is not valid JSON ({e})") from None
    return run_spec(spec, base=job_dir)


def main(argv: list[str] | None = None) -> int:
    """Device-side entry: run JOB_DIR's job and write the trace to --out (JSON)."""
    ap = argparse.ArgumentParser(prog="python -m edgekit.profiling.job", description=main.__doc__)
    ap.add_argument("job_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="where to write the trace JSON")
    a = ap.parse_args(argv)
    try:
        trace = run_job_dir(a.job_dir)
        trace.save(a.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
