"""Shared set-up of the property-based (hypothesis) fuzz tests.

Profiles: ``ci`` (the default, a bounded number of examples so that ``make test`` stays fast)
and ``long`` (``HYPOTHESIS_PROFILE=long``, used by ``benchmarks/fuzz.py``). Every fuzz test
counts its examples with :func:`count`; with ``EDGEKIT_FUZZ_REPORT=FILE`` the counts are written
there as JSON when the session ends (see ``tests/conftest.py``).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

EXAMPLES: Counter = Counter()


def count(name: str) -> None:
    """Count one example of fuzz test ``name``."""
    EXAMPLES[name] += 1


def write_report() -> None:
    """Write the example counts to $EDGEKIT_FUZZ_REPORT, when set."""
    path = os.environ.get("EDGEKIT_FUZZ_REPORT")
    if path and EXAMPLES:
        Path(path).write_text(json.dumps(dict(sorted(EXAMPLES.items())), indent=1))
