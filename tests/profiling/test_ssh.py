"""SSH transport against a real sshd on 127.0.0.1 (Debian's openssh-server), started for the
test with its own host key, authorized key and config; skipped where sshd is not installed."""
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.errors import UserError
from edgekit.profiling.spec import resolve
from edgekit.runtimes.trace import same_structure
from edgekit.profiling.transports import job_spec_for, make_transport

from .conftest import ROOT, run_cli

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")),
    reason="needs openssh-server (/usr/sbin/sshd) and openssh-client: apt-get install openssh-server")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.skip(f"sshd could not start here: {proc.stderr.read().decode()[-200:]}")
        time.sleep(0.1)
    py = d / "remote-python"  # the "device's" python: this venv, with the checkout importable
    py.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    opts = ["-i", str(d / "client"), "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR"]
    yield {"device": f"ssh://{getpass.getuser()}@127.0.0.1:{port}", "opts": opts,
           "python": str(py), "port": port}
    proc.terminate()
    proc.wait(10)


def test_ssh_profile_matches_local(sshd, bundle):
    art = resolve(bundle, "executorch")
    t = make_transport(sshd["device"], ssh_options=sshd["opts"],
                       remote_python=sshd["python"]).profile(art, job_spec_for(art, 1, 4))
    local = make_transport("local").profile(art, job_spec_for(art, 1, 4))
    assert t.metadata["transport"] == "ssh" and len(t.latency_ms) == 4
    assert same_structure(t, local) == []


def test_ssh_bad_input_from_the_device_is_exit_2(sshd, bundle, tmp_path):
    # a corrupted artifact is found on the device; its one-line message comes back
    p = tmp_path / "model.tflite"
    p.write_bytes((bundle / "model.tflite").read_bytes()[:100])
    args = ["profile", str(p), "--device", sshd["device"], "--remote-python", sshd["python"]]
    r = run_cli(*args, *[f"--ssh-opt={o}" for o in sshd["opts"]])
    assert r.returncode == 2 and "corrupted" in r.stderr.strip().splitlines()[-1]


def test_unreachable_ssh_device(sshd, bundle):
    art = resolve(bundle)
    dead = f"ssh://{getpass.getuser()}@127.0.0.1:{_free_port()}"
    with pytest.raises(UserError, match="cannot reach"):
        make_transport(dead, ssh_options=sshd["opts"]).profile(art, job_spec_for(art, 0, 1))
