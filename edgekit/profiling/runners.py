"""Host runners: run an artifact in its real runtime on this machine and return a Trace.

One runner per runtime (``runner_pte``, ``runner_tflite``, ``runner_onnx``); :func:`run_spec`
dispatches on ``JobSpec.runtime``. These are the only programs the agent ever runs. What the
runners share (timing loops, inputs, run metadata) is :mod:`edgekit.profiling.measure`.
"""
from __future__ import annotations

from pathlib import Path

from edgekit.errors import UserError
from edgekit.profiling.measure import base_metadata
from edgekit.profiling.spec import JobSpec, inside, normalize_runtime, verify
from edgekit.profiling.trace import Trace

def run_spec(spec: JobSpec, base: Path | None = None) -> Trace:
    """Run ``spec`` on this machine; paths in ``spec`` are relative to ``base`` when given.

    Raises UserError for bad counts, a file outside ``base``, a corrupted artifact (sha256,
    format identifier or load failure) or a missing runtime.
    """
    from edgekit.artifacts import check_artifact

    spec.validate()
    spec.runtime = normalize_runtime(spec.runtime)
    base = Path(base) if base else Path.cwd()
    art = inside(base, spec.artifact, "artifact")
    if not art.is_file():
        raise UserError(f"artifact {spec.artifact} is missing on the device")
    digest = verify(art, spec.sha256)
    check_artifact(art)  # the format's identifier and size, before the native loader
    et = inside(base, spec.etrecord, "etrecord") if spec.etrecord else None
    md = base_metadata(spec, art, digest)
    if spec.runtime == "executorch":
        from edgekit.profiling import runner_pte as r
        return r.run(art, spec, md, etrecord=et)
    if spec.runtime == "litert":
        from edgekit.profiling import runner_tflite as r
        return r.run(art, spec, md)
    from edgekit.profiling import runner_onnx as r
    return r.run(art, spec, md)
