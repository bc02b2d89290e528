"""The HTTP agent as a separate process on 127.0.0.1 (python -m edgekit.profiling.agent)."""
import hashlib
import io
import os
import stat
import tarfile
import threading
import time

import pytest
import requests

from edgekit.profiling.spec import resolve
from edgekit.runtimes.trace import same_structure
from edgekit.profiling.transports import TransportError, job_spec_for, make_transport, pack_job

from .conftest import AgentProc, run_cli


def _post(agent, body, token=None, sha=None):
    headers = {"X-Edgekit-Sha256": sha or hashlib.sha256(body).hexdigest()}
    if token is not False:
        headers["Authorization"] = f"Bearer {token or agent.token}"
    return requests.post(agent.url + "/v1/profile", data=body, headers=headers, timeout=120)


def _tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_token_file_is_created_private(agent):
    assert stat.S_IMODE(os.stat(agent.token_file).st_mode) == 0o600 and len(agent.token) > 20


def test_http_profile_matches_local_structure(agent, bundle):
    art = resolve(bundle, "executorch")
    spec = job_spec_for(art, 2, 5)
    remote = make_transport(agent.url, token_file=agent.token_file).profile(art, spec)
    local = make_transport("local").profile(art, job_spec_for(art, 2, 5))
    assert same_structure(remote, local) == []
    assert remote.metadata["transport"] == "http" and len(remote.latency_ms) == 5
    assert {e.module for e in remote.events} == {e.module for e in local.events}


@pytest.mark.parametrize("token", [False, "wrong-token"])
def test_requests_without_the_right_token_get_401(agent, token):
    headers = {} if token is False else {"Authorization": f"Bearer {token}"}
    assert requests.get(agent.url + "/v1/info", headers=headers, timeout=10).status_code == 401
    assert _post(agent, b"x", token=token).status_code == 401


def test_cli_wrong_token_is_one_line_exit_2(agent, bundle, tmp_path):
    bad = tmp_path / "tok"
    bad.write_text("nope")
    r = run_cli("profile", str(bundle), "--device", agent.url, "--token-file", str(bad))
    assert r.returncode == 2 and "refused the token (401)" in r.stderr
    # torchao prints its own load notices on import; ours is exactly one line
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("edgekit: error:")] == \
        [r.stderr.strip().splitlines()[-1]]


def test_archive_with_path_escape_or_link_is_refused(agent):
    up = tarfile.TarInfo("../evil.txt")
    up.size = 2
    assert _post(agent, _tar([(up, b"hi")])).status_code == 400
    link = tarfile.TarInfo("job.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    r = _post(agent, _tar([(link, None)]))
    assert r.status_code == 400 and "link" in r.json()["error"]
    hard = tarfile.TarInfo("a")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../x"
    assert _post(agent, _tar([(hard, None)])).status_code == 400


def test_damaged_upload_is_refused(agent, bundle):
    art = resolve(bundle)
    body = pack_job(art, job_spec_for(art, 0, 1))
    r = _post(agent, body, sha="0" * 64)
    assert r.status_code == 400 and "sha256" in r.json()["error"]


def test_upload_over_the_limit_is_refused(tmp_path, bundle):
    small = AgentProc(tmp_path, "--max-upload-mb", "0.001")
    try:
        r = _post(small, os.urandom(4096))
        assert r.status_code == 413 and "limit" in r.json()["error"]
        art = resolve(bundle)
        with pytest.raises(Exception) as e:
            make_transport(small.url, token_file=small.token_file).profile(art, job_spec_for(art, 0, 1))
        assert "upload limit" in str(e.value)
    finally:
        small.stop()


@pytest.mark.slow
def test_one_job_at_a_time_and_kill_mid_run(tmp_path, bundle):
    a = AgentProc(tmp_path)
    try:
        art = resolve(bundle, "onnxruntime")
        body = pack_job(art, job_spec_for(art, 0, 20000))
        first = {}
        t = threading.Thread(target=lambda: first.update(r=_post(a, body)))
        t.start()
        # wait until the agent says the first job is running (not a fixed sleep: on a quiet
        # machine a short job can finish before a second request arrives)
        auth = {"Authorization": f"Bearer {a.token}"}
        deadline = time.time() + 60
        while not requests.get(a.url + "/v1/info", headers=auth, timeout=10).json()["busy"]:
            assert time.time() < deadline and t.is_alive(), "the first job never showed as running"
            time.sleep(0.02)
        busy = _post(a, body)
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
        t.join(120)
        assert first["r"].status_code == 200

        # a job in flight when the agent dies: the client gets a clear error, no trace
        err = {}

        def run():
            try:
                make_transport(a.url, token_file=a.token_file).profile(art, job_spec_for(art, 0, 20000))
            except TransportError as e:
                err["e"] = e
        t = threading.Thread(target=run)
        t.start()
        time.sleep(2.0)
        a.proc.kill()
        t.join(60)
        assert "dropped during the job" in str(err.get("e")) and "retrying is safe" in str(err["e"])
    finally:
        a.stop()


def test_job_timeout_and_bad_job(tmp_path, bundle):
    a = AgentProc(tmp_path, "--job-timeout", "0.5")
    try:
        art = resolve(bundle)
        r = _post(a, pack_job(art, job_spec_for(art, 0, 1)))
        assert r.status_code == 504 and "timeout" in r.json()["error"]
        spec = job_spec_for(art, 0, 1)
        spec.runs = 0
        r = _post(a, pack_job(art, spec))
        assert r.status_code == 400 and "--runs 0" in r.json()["error"] and r.json()["code"] == "bad_job"
    finally:
        a.stop()
