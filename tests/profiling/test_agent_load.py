"""A bounded load test of the agent on loopback (issue 8): concurrent clients and a slow client
that trickles its upload; every job completes, none is lost. The full run with its figures is
``benchmarks/agent_load.py`` (no timing is asserted here)."""
from __future__ import annotations

import importlib.util

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_concurrent_clients_and_a_slow_one_lose_no_job(tmp_path):
    spec = importlib.util.spec_from_file_location("agent_load", ROOT / "benchmarks" / "agent_load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    res = load.run_load(clients=4, jobs=2, slow=1, runs=3, slow_seconds=4.0, work=tmp_path)
    assert res["jobs_lost"] == 0, res["lost"]
    assert res["jobs_completed"] == res["jobs_submitted"] == 8
    assert len(res["slow_client_s"]) == 1
    assert res["agent_peak_rss_mb"] > 0
