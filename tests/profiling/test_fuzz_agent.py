"""Property-based fuzzing of the agent's HTTP surface (issue 8), against a real agent process on
127.0.0.1: raw requests (methods, paths, headers, lengths), job specs and archives (member names,
types, sizes, counts). Properties: every answer is JSON with a stable code, no answer is an
internal error, nothing is written outside the agent's work folder, and the agent stays up."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from edgekit.profiling.agent import ERRORS
from tests.fuzzing import count

from .conftest import AgentProc

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def fuzz_agent(tmp_path_factory, bundle):
    root = tmp_path_factory.mktemp("fuzz-agent")
    (root / "canary.txt").write_text("do not touch")
    a = AgentProc(root)
    a.root = root
    a.onnx = (bundle / "model.onnx").read_bytes()
    yield a
    a.stop()


def _outside_work(agent) -> set[str]:
    return {str(p.relative_to(agent.root)) for p in agent.root.rglob("*")
            if "work" not in p.relative_to(agent.root).parts}


def _raw(agent, request: bytes) -> tuple[int, dict, bytes]:
    host, port = agent.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    if not reply:
        return 0, {}, b""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def _check_answer(status: int, content_type: str, body: bytes) -> dict:
    assert content_type.startswith("application/json"), (status, body[:200])
    data = json.loads(body)
    if status != 200:
        assert data["code"] in ERRORS and ERRORS[data["code"]] == status, data
        assert data["code"] != "internal", data
    return data


_token_chars = st.characters(min_codepoint=33, max_codepoint=126)
_header_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
       path=st.one_of(st.sampled_from(["/v1/info", "/v1/profile", "/", "/v1/profile/../info"]),
                      st.text(_token_chars, max_size=40).map(lambda t: "/" + t)),
       auth=st.one_of(st.none(), st.just("good"), _header_value),
       length=st.one_of(st.none(), st.integers(-5, 10**12).map(str), _header_value),
       extra=st.dictionaries(st.text(st.sampled_from("abcdefXY-"), min_size=1, max_size=12), _header_value,
                             max_size=4),
       body=st.binary(max_size=512))
def test_fuzz_requests_get_json_answers(fuzz_agent, method, path, auth, length, extra, body):
    count("agent_requests")
    headers = {"Host": "127.0.0.1"}
    if auth is not None:
        headers["Authorization"] = f"Bearer {fuzz_agent.token}" if auth == "good" else auth
    if length is not None:
        headers["Content-Length"] = length
    headers.update(extra)
    req = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"Connection: close\r\n\r\n" + body
    status, hdrs, data = _raw(fuzz_agent, req)
    if status == 0:  # no answer: only for a request whose body never arrived in full
        assert length is not None and length.strip().isdigit() and int(length) > len(body), req[:300]
        return
    if method == "HEAD":  # no body by definition
        assert status in ERRORS.values() or status == 200
        return
    _check_answer(status, hdrs.get("content-type", ""), data)


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                          st.floats(allow_nan=False), st.text(max_size=30))
_json = st.recursive(_json_scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                        st.dictionaries(st.text(max_size=10), c, max_size=4)),
                     max_leaves=12)
_fields = {"artifact": st.one_of(st.just("model.onnx"), st.text(max_size=40), _json),
           "runtime": st.one_of(st.sampled_from(["onnxruntime", "executorch", "litert", "ort"]), _json),
           "warmup_runs": st.one_of(st.integers(-3, 3), _json), "runs": st.one_of(st.integers(-3, 3), _json),
           "sha256": st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64), _json),
           "etrecord": st.one_of(st.none(), st.just("model.onnx"), _json),
           "input_shape": st.one_of(st.none(), st.lists(st.integers(-2, 64), max_size=5), _json),
           "input_dtype": st.one_of(st.none(), st.sampled_from(["float32", "int8", "x"]), _json),
           "trace_ops": st.one_of(st.booleans(), _json), "threads": st.one_of(st.none(), st.integers(-1, 4), _json),
           "extra": st.one_of(st.just({"benchmark_model": "/bin/sh"}), _json)}


@given(spec=st.fixed_dictionaries({"artifact": _fields["artifact"], "runtime": _fields["runtime"]},
                                  optional={k: v for k, v in _fields.items() if k not in ("artifact", "runtime")}),
       junk=st.one_of(st.none(), st.binary(max_size=64)))
def test_fuzz_job_specs(fuzz_agent, spec, junk):
    count("agent_job_specs")
    before = _outside_work(fuzz_agent)
    job = junk if junk is not None else json.dumps(spec).encode()
    body = _archive([("job.json", "file", job), ("model.onnx", "file", fuzz_agent.onnx)], gz=True)
    r = requests.post(fuzz_agent.url + "/v1/profile", data=body, timeout=120, headers={
        "Authorization": f"Bearer {fuzz_agent.token}", "X-Edgekit-Sha256": hashlib.sha256(body).hexdigest()})
    data = _check_answer(r.status_code, r.headers.get("Content-Type", ""), r.content)
    if r.status_code == 200:
        assert data["metadata"]["artifact"] == "model.onnx"
    else:
        assert r.status_code in (400, 422), data
    assert _outside_work(fuzz_agent) == before


_names = st.one_of(st.sampled_from(["job.json", "model.onnx", "a/b.onnx", "./job.json", "../x", "/etc/passwd",
                                    "a/../../x", "a\\b", "x" * 300, "", ".", "a//b", "job.json/x"]),
                   st.text(max_size=30))
_member = st.tuples(_names, st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "chardev"]),
                    st.binary(max_size=64))


def _archive(members, gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}[kind]
            info.linkname = "/etc/passwd" if kind in ("symlink", "hardlink") else ""
            tf.addfile(info)
    return buf.getvalue()


@given(members=st.lists(_member, max_size=8), many=st.integers(0, 100), gz=st.booleans(),
       cut=st.one_of(st.none(), st.integers(1, 400)))
def test_fuzz_archives(fuzz_agent, members, many, gz, cut):
    count("agent_archives")
    before = _outside_work(fuzz_agent)
    members = list(members) + [(f"m{i}", "file", b"") for i in range(many)]
    try:
        body = _archive(members, gz)
    except (ValueError, UnicodeEncodeError):
        return  # tarfile itself cannot write that member
    if cut is not None:
        body = body[:-cut]
    r = requests.post(fuzz_agent.url + "/v1/profile", data=body, timeout=120, headers={
        "Authorization": f"Bearer {fuzz_agent.token}", "X-Edgekit-Sha256": hashlib.sha256(body).hexdigest()})
    data = _check_answer(r.status_code, r.headers.get("Content-Type", ""), r.content)
    assert r.status_code in (200, 400, 422), data
    if len(members) > 64:
        assert r.status_code == 400
    assert _outside_work(fuzz_agent) == before
    assert (fuzz_agent.root / "canary.txt").read_text() == "do not touch"
