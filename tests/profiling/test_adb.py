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


def test_adb_qnn_runner_gets_inputs_libs_and_iterations(phone, bundle, tmp_path):
    """The QNN path: qnn_executor_runner's flags, a raw input of the program's size in an input
    list, the QNN libraries (--device-libs) pushed beside it. ``standin/qnn_executor_runner.py``
    stands in for the runner (no Snapdragon here: the .pte it runs is the fixture's XNNPACK one,
    in the real ExecuTorch runtime) and, like the real one, fails without libQnnHtp.so."""
    runner = tmp_path / "qnn_executor_runner"
    runner.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "
                      f"{STANDIN / 'qnn_executor_runner.py'} \"$@\"\n")
    runner.chmod(0o755)
    libs = tmp_path / "qnn-libs"
    libs.mkdir()
    for name in ("libQnnHtp.so", "libQnnHtpV73Stub.so", "libqnn_executorch_backend.so"):
        (libs / name).write_bytes(b"\x7fELF stand-in")
    art = resolve(bundle, "executorch")
    t = make_transport("adb", adb=phone["adb"], runner_binary=str(runner), device_libs=str(libs)) \
        .profile(art, job_spec_for(art, 2, 5))
    assert len(t.latency_ms) == 5 and t.metadata["tracing"] == "etdump"
    assert "layer1.0.conv1" in {e.module for e in t.events}
    with pytest.raises(Exception, match="libQnnHtp.so"):  # without the libraries the runner cannot start
        make_transport("adb", adb=phone["adb"], runner_binary=str(runner)).profile(art, job_spec_for(art, 0, 1))
    r = run_cli("profile", str(bundle), "--device", "adb", "--adb", phone["adb"], "--runner-binary", str(runner),
                "--device-libs", str(tmp_path / "nope"))
    assert r.returncode == 2 and "--device-libs" in r.stderr.strip().splitlines()[-1]
