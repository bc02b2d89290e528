"""adb transport. A phone cannot be had here, so ``standin/adb`` (a script) stands in for adb
and runs the same commands (push, shell, pull) on this machine, with the "phone" file system
under a temporary folder; ``standin/executor_runner.py`` stands in for ExecuTorch's
executor_runner and writes a real ETDump with the real runtime."""
import sys
from pathlib import Path

import pytest

from edgekit.errors import UserError
from edgekit.profiling.spec import resolve
from edgekit.profiling.transports import job_spec_for, make_transport

from .conftest import ROOT, run_cli

STANDIN = Path(__file__).parent / "standin"


@pytest.fixture
def phone(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "phone"))
    monkeypatch.setenv("FAKE_ADB_SERIALS", "emulator-5554")
    runner = tmp_path / "executor_runner"
    runner.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "
                      f"{STANDIN / 'executor_runner.py'} \"$@\"\n")
    runner.chmod(0o755)
    return {"adb": str(STANDIN / "adb"), "runner": str(runner)}


def test_adb_pte_profile_is_parsed_and_mapped(phone, bundle):
    art = resolve(bundle, "executorch")
    t = make_transport("adb:emulator-5554", adb=phone["adb"], runner_binary=phone["runner"]) \
        .profile(art, job_spec_for(art, 2, 4))
    assert t.metadata["transport"] == "adb" and t.metadata["serial"] == "emulator-5554"
    assert len(t.latency_ms) == 4 and all(len(e.durations_ms) == 4 for e in t.events)
    assert "layer1.0.conv1" in {e.module for e in t.events}
    assert t.mapping_coverage() >= 0.95


def test_adb_serial_not_connected_is_exit_2(phone, bundle):
    r = run_cli("profile", str(bundle), "--device", "adb:R5CT00000", "--adb", phone["adb"],
                "--runner-binary", phone["runner"])
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "adb device 'R5CT00000' is not connected" in last
    assert "emulator-5554" in last


def test_adb_needs_a_runner_binary(phone, bundle):
    art = resolve(bundle, "executorch")
    with pytest.raises(UserError, match="executor_runner"):
        make_transport("adb", adb=phone["adb"]).profile(art, job_spec_for(art, 0, 1))
