"""Run a profiling job on this machine: check the artifact, then its registered runtime
(``edgekit.registry.RUNTIMES``, one module per runtime in :mod:`edgekit.runtimes`) times and
traces it. This is the only program the agent ever runs.
"""
from __future__ import annotations

from pathlib import Path

from edgekit.errors import UserError
from edgekit.registry import RUNTIMES
from edgekit.runtimes.measure import base_metadata
from edgekit.profiling.spec import JobSpec, inside, normalize_runtime, verify
from edgekit.runtimes.trace import Trace

def run_spec(spec: JobSpec, base: Path | None = None) -> Trace:
    """Run ``spec`` on this machine; paths in ``spec`` are relative to ``base`` when given.

    Raises UserError for bad counts, a file outside ``base``, a corrupted artifact (sha256,
    format identifier or load failure) or a missing runtime.
    """
    from edgekit.runtimes.checks import check_artifact

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
    return RUNTIMES.get(spec.runtime).profile(art, spec, md, etrecord=et)
