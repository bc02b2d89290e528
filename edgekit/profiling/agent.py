"""The HTTP profiling agent: a small WSGI app (werkzeug) that profiles uploaded bundles.

``python -m edgekit.profiling.agent --host H --port P --token-file F`` (``edgekit agent serve``).

Protocol (JSON answers; every request needs ``Authorization: Bearer TOKEN``, else 401):

- ``GET /v1/info``: device facts and which runtimes it can run.
- ``POST /v1/profile``: body = a gzip'd tar with ``job.json`` (a JobSpec) and the files it names;
  header ``X-Edgekit-Sha256`` = the body's sha256. Answers 200 with the trace; 400 bad archive,
  digest mismatch or bad job; 401 token; 411 no length; 413 over the upload limit; 422 the job's
  own problem (corrupted artifact, missing runtime, bad counts); 503 busy (one job at a time,
  ``Retry-After`` says when to try again); 504 the job ran past the per-job timeout.

The agent never runs a command a client sends: each job runs ``python -m edgekit.profiling.job``
(the known runners only) in a child process it can kill at the timeout. Archives are unpacked
member by member: regular files and folders only (no links, devices or fifos), relative paths
that stay inside the job folder, bounded count and size.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path, PurePosixPath

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from edgekit.errors import UserError
from edgekit.profiling.job import JOB_FILE, JobSpec

DEFAULT_MAX_UPLOAD = 256 * 1024 * 1024  # bytes
DEFAULT_JOB_TIMEOUT = 600.0  # s
MAX_MEMBERS = 64
API = "/v1"


class ArchiveError(ValueError):
    """An uploaded archive that may not be unpacked (path escape, link, too big)."""


def load_or_create_token(path: str | os.PathLike) -> str:
    """The token in ``path``; when the file is missing, a new random token is written there
    with mode 0600. Raises UserError when the file is empty or unreadable."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    try:
        token = p.read_text().strip()
    except OSError as e:
        raise UserError(f"cannot read token file {p} ({e.strerror})") from None
    if not token:
        raise UserError(f"token file {p} is empty; delete it to have a new token made")
    return token


def safe_extract(data: bytes, dest: Path, max_bytes: int) -> list[str]:
    """Unpack a (gzip'd) tar held in ``data`` into ``dest``; returns the member names.

    Raises ArchiveError for links, special files, absolute or ``..`` paths, paths resolving
    outside ``dest``, more than MAX_MEMBERS members or more than ``max_bytes`` unpacked."""
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as e:
        raise ArchiveError(f"not a tar archive ({e})") from None
    dest = dest.resolve()
    names, total = [], 0
    with tf:
        members = tf.getmembers()
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(f"archive has {len(members)} members (at most {MAX_MEMBERS})")
        for m in members:  # check everything before writing anything
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"archive member {m.name!r} is a link or special file")
            pp = PurePosixPath(m.name)
            if pp.is_absolute() or ".." in pp.parts or m.name.startswith("\\"):
                raise ArchiveError(f"archive member {m.name!r} escapes the job folder")
            target = (dest / pp).resolve()
            if target != dest and dest not in target.parents:
                raise ArchiveError(f"archive member {m.name!r} escapes the job folder")
            total += max(m.size, 0)
            if total > max_bytes:
                raise ArchiveError(f"archive unpacks to more than {max_bytes} bytes")
        for m in members:
            target = dest / PurePosixPath(m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            with open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, 0o600)
            names.append(m.name)
    return names


def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json",
                    headers=headers or {})


def _err(status: int, msg: str, headers: dict | None = None) -> Response:
    return _json(status, {"error": msg}, headers)


class Agent:
    """The WSGI application. token: the shared secret. max_upload: request body limit (bytes).
    job_timeout: seconds a job may run before it is killed. work_dir: where job folders go.
    benchmark_model: a LiteRT benchmark_model binary on this device for per-op .tflite events
    (configured here, never taken from a client)."""

    def __init__(self, token: str, max_upload: int = DEFAULT_MAX_UPLOAD,
                 job_timeout: float = DEFAULT_JOB_TIMEOUT, work_dir: Path | None = None,
                 benchmark_model: str | None = None) -> None:
        self.token = token
        self.max_upload = int(max_upload)
        self.job_timeout = float(job_timeout)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="edgekit-agent-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.benchmark_model = benchmark_model
        self._busy = threading.Lock()
        self._current: subprocess.Popen | None = None
        self.url_map = Map([Rule(f"{API}/info", endpoint="info", methods=["GET"]),
                            Rule(f"{API}/profile", endpoint="profile", methods=["POST"])])

    # -- WSGI ------------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_upload
        try:
            resp = self.dispatch(request)
        except HTTPException as e:
            resp = _err(e.code or 500, e.description or e.name)
        return resp(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        endpoint, _ = adapter.match()  # raises 404/405 as HTTPException
        if not self._authorized(request):
            return _err(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' with "
                             "the token from the agent's --token-file",
                        {"WWW-Authenticate": "Bearer"})
        return getattr(self, f"on_{endpoint}")(request)

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            value.strip().encode(), self.token.encode())

    # -- endpoints ---------------------------------------------------------------------------------
    def on_info(self, request: Request) -> Response:
        import platform
        import socket

        from edgekit.profiling.runners import available_runtimes

        return _json(200, {"agent": "edgekit", "api": 1, "hostname": socket.gethostname(),
                           "os": f"{platform.system()} {platform.release()}",
                           "machine": platform.machine(), "python": platform.python_version(),
                           "runtimes": available_runtimes(), "busy": self._busy.locked(),
                           "max_upload_bytes": self.max_upload,
                           "job_timeout_s": self.job_timeout,
                           "benchmark_model": bool(self.benchmark_model)})

    def on_profile(self, request: Request) -> Response:
        length = request.content_length
        if length is None:
            return _err(411, "send the archive with a Content-Length header")
        if length > self.max_upload:
            return _err(413, f"upload of {length} bytes is over this agent's limit of "
                             f"{self.max_upload} bytes (--max-upload-mb)")
        if not self._busy.acquire(blocking=False):
            return _err(503, "the agent is busy with another job; retry later",
                        {"Retry-After": "2"})
        try:
            body = request.get_data(cache=False)
            want = request.headers.get("X-Edgekit-Sha256", "").lower()
            got = hashlib.sha256(body).hexdigest()
            if not want:
                return _err(400, "missing X-Edgekit-Sha256 header (the archive's sha256)")
            if got != want:
                return _err(400, f"archive sha256 {got[:12]}… does not match the sent "
                                 f"{want[:12]}…: the upload was damaged; retry")
            job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))
            try:
                return self._run_job(body, job_dir)
            finally:
                shutil.rmtree(job_dir, ignore_errors=True)
        finally:
            self._busy.release()

    def _run_job(self, body: bytes, job_dir: Path) -> Response:
        from edgekit.profiling.runners import RUNTIME_PACKAGES, available_runtimes

        try:
            safe_extract(body, job_dir, self.max_upload * 4)
        except ArchiveError as e:
            return _err(400, f"archive refused: {e}")
        try:
            spec = JobSpec.from_dict(json.loads((job_dir / JOB_FILE).read_text()))
            spec.validate()
        except FileNotFoundError:
            return _err(400, f"archive has no {JOB_FILE}")
        except (json.JSONDecodeError, TypeError) as e:
            return _err(400, f"{JOB_FILE} is not a valid job ({e})")
        except UserError as e:
            return _err(422, str(e))
        for name in [spec.artifact] + ([spec.etrecord] if spec.etrecord else []):
            if not (job_dir / name).is_file() or ".." in PurePosixPath(name).parts:
                return _err(400, f"the archive lacks {name}, which {JOB_FILE} names")
        if not available_runtimes().get(spec.runtime, False):
            return _err(422, f"this device lacks the {spec.runtime} runtime; install "
                             f"{RUNTIME_PACKAGES[spec.runtime][1]} on it, or profile another "
                             "artifact of the bundle (--runtime)")
        # options that run programs come from the agent's own configuration only
        spec.extra = {"benchmark_model": self.benchmark_model} if self.benchmark_model else {}
        (job_dir / JOB_FILE).write_text(json.dumps(spec.to_dict()))
        out = job_dir / "trace.json"
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen([sys.executable, "-m", "edgekit.profiling.job", str(job_dir),
                                 "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=job_dir,
                                start_new_session=True)
        self._current = proc
        try:
            _, err = proc.communicate(timeout=self.job_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return _err(504, f"the job ran past this agent's per-job timeout of "
                             f"{self.job_timeout:g} s and was stopped; lower --runs or raise "
                             "the agent's --job-timeout")
        finally:
            self._current = None
        last = (err or "").strip().splitlines()[-1:] or [""]
        if proc.returncode == 2:
            return _err(422, last[0].removeprefix("error: "))
        if proc.returncode != 0 or not out.exists():
            return _err(500, f"the runner failed (exit {proc.returncode}): {last[0][:300]}")
        trace = json.loads(out.read_text())
        trace["metadata"]["transport"] = "http"
        return _json(200, trace)

    def stop_job(self) -> None:
        """Kill the running job, if any (used on shutdown)."""
        proc = self._current
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def serve(host: str, port: int, token_file: str | os.PathLike, max_upload: int = DEFAULT_MAX_UPLOAD,
          job_timeout: float = DEFAULT_JOB_TIMEOUT, work_dir: Path | None = None,
          benchmark_model: str | None = None, ready=None) -> None:
    """Run the agent until SIGTERM/SIGINT. ``port`` 0 picks a free port; the first line printed
    is ``edgekit agent listening on http://HOST:PORT`` (``ready(url)`` is called with it too).
    Raises UserError when the token file is unusable or the address cannot be bound."""
    from werkzeug.serving import make_server

    token = load_or_create_token(token_file)
    app = Agent(token, max_upload, job_timeout, work_dir, benchmark_model)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    url = f"http://{host}:{server.server_port}"
    print(f"edgekit agent listening on {url} (token in {token_file})", flush=True)
    if ready:
        ready(url)

    def stop(*_):
        app.stop_job()
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        app.stop_job()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    """``python -m edgekit.profiling.agent``: the same options as ``edgekit agent serve``."""
    ap = argparse.ArgumentParser(prog="python -m edgekit.profiling.agent",
                                 description="edgekit profiling agent (HTTP)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD / 2**20)
    ap.add_argument("--job-timeout", type=float, default=DEFAULT_JOB_TIMEOUT)
    ap.add_argument("--work-dir", type=Path)
    ap.add_argument("--benchmark-model")
    a = ap.parse_args(argv)
    try:
        serve(a.host, a.port, a.token_file, int(a.max_upload_mb * 2**20), a.job_timeout,
              a.work_dir, a.benchmark_model)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
