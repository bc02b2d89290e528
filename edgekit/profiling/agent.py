"""The HTTP profiling agent: a WSGI app served by waitress that profiles uploaded bundles.

``python -m edgekit.profiling.agent --host H --port P --token-file F`` (``edgekit agent serve``).

Protocol (every request needs ``Authorization: Bearer TOKEN``):

- ``GET /v1/info``: device facts and which runtimes it can run.
- ``POST /v1/profile``: body = a (gzip'd) tar with ``job.json`` (a JobSpec) and the files it
  names; header ``X-Edgekit-Sha256`` = the body's sha256. Answers 200 with the trace.

Every other answer is JSON ``{"error": MESSAGE, "code": CODE}`` with one of the stable codes of
:data:`ERRORS` (its HTTP status beside it), also for errors raised by the server library.

The contract, enforced here:

- **The server.** waitress, not werkzeug's development server: waitress receives the whole
  request (headers within ``channel_timeout`` of inactivity, the body spooled to a temporary
  file past 512 kB, at most ``max_upload`` bytes) before the application sees it, so a client
  that stalls mid-upload holds a connection, never the job slot; connections are bounded
  (``connection_limit``) and served by a fixed pool of threads.
- **Uploads.** The body is copied to the job folder and its sha256 checked before the job slot
  is taken. The archive is then read twice as a stream: first every member is checked (count,
  type, name, declared and decompressed size) and only then is anything written.
- **Files.** A job may name only files of its own upload (relative paths inside the job folder,
  regular files, no links); nothing else on the device is ever opened.
- **Jobs.** One at a time (503 ``busy`` otherwise). Each runs ``python -m edgekit.profiling.job``
  (the known runners only; never a command a client sends) in a child process that dies with
  the agent (``PR_SET_PDEATHSIG`` on Linux, and its own deadline everywhere) and is killed at
  the per-job timeout. Artifacts are checked (format identifier, size) before the runtime sees
  them; a runtime that crashes on one is reported by signal, as one line.
- **Folders.** Job folders live in ``WORK_DIR/agent-XXXX/`` (mode 0700), which the agent holds
  a lock on; at start-up the folders of agents that are gone (killed) are swept.
- **Token.** Created with mode 0600; an existing token file that others can read, or that
  another user owns, is refused.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import zlib
from pathlib import Path, PurePosixPath

from edgekit.errors import UserError, first_line, run_main
from edgekit.profiling.spec import JOB_FILE, JobSpec, normalize_runtime

DEFAULT_MAX_UPLOAD = 256 * 1024 * 1024  # bytes
DEFAULT_JOB_TIMEOUT = 600.0  # s
MAX_MEMBERS = 64
MAX_NAME = 255  # bytes of a member path
CHANNEL_TIMEOUT = 30  # s of inactivity before waitress drops a connection
CONNECTION_LIMIT = 64
THREADS = 8
API = "/v1"
UPLOAD = "upload.tar"  # the body, in the job folder; members go to FILES
FILES = "files"

#: stable error code -> HTTP status
ERRORS = {
    "bad_request": 400, "bad_digest": 400, "bad_archive": 400, "bad_job": 400,
    "unauthorized": 401, "not_found": 404, "method_not_allowed": 405, "request_timeout": 408,
    "length_required": 411, "too_large": 413, "headers_too_large": 431,
    "bad_artifact": 422, "runtime_missing": 422, "runtime_crashed": 422, "job_refused": 422,
    "internal": 500, "job_failed": 500, "busy": 503, "job_timeout": 504,
}


class AgentError(Exception):
    """An answer other than 200: ``code`` (a key of ERRORS), one-line message, extra headers."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.status, self.headers = code, ERRORS[code], headers or {}


class ArchiveError(ValueError):
    """An uploaded archive that may not be unpacked (path escape, link, too big, damaged)."""


# ---- token ----------------------------------------------------------------------------------
def load_or_create_token(path: str | os.PathLike) -> str:
    """The token in ``path``; when the file is missing, a new random token is written there
    with mode 0600. Raises UserError when the file is empty, unreadable, readable or writable
    by group or others, or owned by another user."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    try:
        st = p.stat()
        if os.name == "posix" and st.st_mode & 0o077:
            raise UserError(f"token file {p} can be read by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                            f"run 'chmod 600 {p}' or delete it to have a new token made")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise UserError(f"token file {p} belongs to another user; use a token file of your own")
        token = p.read_text().strip()
    except OSError as e:
        raise UserError(f"cannot read token file {p} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"token file {p} is not text; delete it to have a new token made") from None
    if not token:
        raise UserError(f"token file {p} is empty; delete it to have a new token made")
    return token


# ---- archives -------------------------------------------------------------------------------
class _Limited:
    """A read-only stream that raises ArchiveError once more than ``limit`` bytes were read."""

    def __init__(self, raw, limit: int) -> None:
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(f"archive unpacks to more than {self.limit} bytes")
        return data


def _members(path: Path, max_bytes: int):
    """Iterate ``(member, tarfile)`` of the archive at ``path`` as a stream (plain or gzip'd tar),
    never reading more than ``max_bytes`` of decompressed data. Damage raises ArchiveError."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        src = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
        # tar headers and padding come on top of the members' own bytes
        stream = _Limited(src, max_bytes + 1024 * (MAX_MEMBERS + 2) + 20 * 512)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    yield m, tf
        except ArchiveError:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as e:
            raise ArchiveError(f"the archive is truncated or damaged ({type(e).__name__}: "
                               f"{first_line(e, 120, 'no detail')})") from None


def _member_path(m: tarfile.TarInfo) -> PurePosixPath:
    name = m.name
    if not name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise ArchiveError(f"archive member name {name[:40]!r} is empty or too long")
    if "\\" in name or any(ord(c) < 32 for c in name):
        raise ArchiveError(f"archive member {name[:80]!r} has a backslash or control character in its name")
    pp = PurePosixPath(name)
    if pp.is_absolute() or ".." in pp.parts or not pp.parts:
        raise ArchiveError(f"archive member {name[:80]!r} escapes the job folder")
    return pp


def check_archive(path: Path, max_members: int, max_bytes: int) -> list[tuple[str, bool]]:
    """Check every member of the archive at ``path`` (streaming; nothing is written).

    Returns ``[(normalised name, is_dir)]``. Raises ArchiveError for more than ``max_members``
    members, links or special files, absolute or ``..`` paths, duplicate names, a name used both
    as a file and a folder, more than ``max_bytes`` declared or decompressed, or a damaged
    archive."""
    seen: dict[str, bool] = {}
    total = 0
    for m, _ in _members(path, max_bytes):
        if len(seen) >= max_members:
            raise ArchiveError(f"archive has more than {max_members} members")
        if not (m.isfile() or m.isdir()):
            raise ArchiveError(f"archive member {m.name[:80]!r} is a link or special file")
        key = str(_member_path(m))
        if key in seen:
            raise ArchiveError(f"archive member {key!r} appears twice")
        for parent in PurePosixPath(key).parents:
            if seen.get(str(parent)) is False:
                raise ArchiveError(f"archive member {key!r} lies inside the file {str(parent)!r}")
        seen[key] = m.isdir()
        total += max(int(m.size), 0)
        if total > max_bytes:
            raise ArchiveError(f"archive unpacks to more than {max_bytes} bytes")
    if not seen:
        raise ArchiveError("the archive is empty")
    files = {k for k, d in seen.items() if not d}
    if any(str(p) in files for k in seen for p in PurePosixPath(k).parents):
        raise ArchiveError("an archive member lies inside a file of the same archive")
    return sorted(seen.items())


def safe_extract(path: Path, dest: Path, max_members: int = MAX_MEMBERS,
                 max_bytes: int = 4 * DEFAULT_MAX_UPLOAD) -> list[str]:
    """Unpack the archive at ``path`` into the empty folder ``dest`` after :func:`check_archive`
    passed; returns the regular files' names. Files are written with mode 0600. Raises
    ArchiveError as check_archive does, and when the archive changes between the two reads."""
    expected = dict(check_archive(path, max_members, max_bytes))
    dest = Path(dest)
    written: list[str] = []
    for m, tf in _members(path, max_bytes):
        key = str(_member_path(m))
        if key not in expected or expected[key] != m.isdir():
            raise ArchiveError("the archive changed while it was read")
        target = dest.joinpath(*PurePosixPath(key).parts)
        try:
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as out:
                if src is not None:
                    shutil.copyfileobj(src, out, 1 << 20)
        except OSError as e:
            raise ArchiveError(f"archive member {key!r} cannot be written ({e.strerror})") from None
        written.append(key)
    return written


# ---- job folders ----------------------------------------------------------------------------
def default_work_dir() -> Path:
    """``$TMPDIR/edgekit-agent-UID``: stable across restarts, so that start-up can sweep it."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"edgekit-agent-{uid}"


class WorkArea:
    """This agent's own folder ``WORK_DIR/agent-XXXX`` (mode 0700), locked for the agent's life.

    At start-up, sibling ``agent-*`` folders whose lock can be taken belong to agents that are
    gone: they and their job folders are deleted (``swept``). Nothing else in WORK_DIR is touched."""

    LOCK = ".edgekit-agent.lock"  # a name no user folder holds by chance: only these folders are swept

    def __init__(self, work_dir: Path | None = None) -> None:
        base = Path(work_dir) if work_dir else default_work_dir()
        try:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the work folder {base} ({e.strerror}); give another --work-dir") from None
        if base.is_symlink() or not base.is_dir():
            raise UserError(f"work folder {base} is not a folder; give another --work-dir")
        self.swept = self._sweep(base)
        self.root = Path(tempfile.mkdtemp(prefix="agent-", dir=base))
        self._lock = open(self.root / self.LOCK, "w")
        _flock(self._lock, blocking=True)

    @classmethod
    def _sweep(cls, base: Path) -> list[str]:
        swept = []
        for d in base.glob("agent-*"):
            if d.is_symlink() or not d.is_dir() or not (d / cls.LOCK).is_file():
                continue
            try:
                with open(d / cls.LOCK, "r+") as f:
                    if not _flock(f, blocking=False):
                        continue  # a live agent holds it
                    shutil.rmtree(d, ignore_errors=True)
                    swept.append(d.name)
            except OSError:
                continue
        return swept

    def new_job(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._lock.close()


def _flock(f, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # not POSIX: no locks, so other agents' folders are never swept
        return blocking
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


# ---- the application --------------------------------------------------------------------------
def _json_response(start_response, status: int, body: dict, headers: dict | None = None):
    from http import HTTPStatus

    data = json.dumps(body).encode()
    hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    hdrs += list((headers or {}).items())
    start_response(f"{status} {HTTPStatus(status).phrase}", hdrs)
    return [data]


class Agent:
    """The WSGI application. token: the shared secret. max_upload: request body limit (bytes).
    job_timeout: seconds a job may run before it is killed. work_dir: where job folders go
    (see :class:`WorkArea`). benchmark_model: a LiteRT benchmark_model binary on this device
    for per-op .tflite events (configured here, never taken from a client). max_members: archive
    members allowed."""

    def __init__(self, token: str, max_upload: int = DEFAULT_MAX_UPLOAD,
                 job_timeout: float = DEFAULT_JOB_TIMEOUT, work_dir: Path | None = None,
                 benchmark_model: str | None = None, max_members: int = MAX_MEMBERS) -> None:
        self.token = token
        self.max_upload = int(max_upload)
        self.job_timeout = float(job_timeout)
        self.work = WorkArea(work_dir)
        self.benchmark_model = benchmark_model
        self.max_members = int(max_members)
        self._busy = threading.Lock()
        self._current: subprocess.Popen | None = None
        self.routes = {("GET", f"{API}/info"): self.on_info, ("POST", f"{API}/profile"): self.on_profile}

    # -- WSGI ------------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        try:
            status, body, headers = self.dispatch(environ)
        except AgentError as e:
            status, body, headers = e.status, {"error": str(e), "code": e.code}, e.headers
        except Exception as e:  # never an HTML page, never a traceback to the client
            print(f"edgekit agent: internal error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            status, body, headers = 500, {"error": f"internal error ({type(e).__name__})", "code": "internal"}, {}
        return _json_response(start_response, status, body, headers)

    def dispatch(self, environ) -> tuple[int, dict, dict]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        handler = self.routes.get((method, path))
        if handler is None:
            if any(p == path for _, p in self.routes):
                raise AgentError("method_not_allowed", f"{method} is not allowed on {path}")
            raise AgentError("not_found", f"no such endpoint {path[:100]!r}: use {API}/info or {API}/profile")
        if not self._authorized(environ):
            raise AgentError("unauthorized", "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                             "with the token from the agent's --token-file",
                             {"WWW-Authenticate": "Bearer"})
        return 200, handler(environ), {}

    def _authorized(self, environ) -> bool:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = auth.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), self.token.encode())

    # -- endpoints ---------------------------------------------------------------------------------
    def on_info(self, environ) -> dict:
        import platform
        import socket

        from edgekit.runtimes.measure import available_runtimes

        return {"agent": "edgekit", "api": 1, "hostname": socket.gethostname(),
                "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
                "python": platform.python_version(), "runtimes": available_runtimes(),
                "busy": self._busy.locked(), "max_upload_bytes": self.max_upload,
                "max_archive_members": self.max_members, "job_timeout_s": self.job_timeout,
                "benchmark_model": bool(self.benchmark_model)}

    def on_profile(self, environ) -> dict:
        length = environ.get("CONTENT_LENGTH")
        if not length:
            raise AgentError("length_required", "send the archive with a Content-Length header")
        try:
            length = int(length)
        except ValueError:
            raise AgentError("bad_request", "the Content-Length header is not a number") from None
        if length > self.max_upload:
            raise AgentError("too_large", f"upload of {length} bytes is over this agent's limit of "
                                          f"{self.max_upload} bytes (--max-upload-mb)")
        want = environ.get("HTTP_X_EDGEKIT_SHA256", "").strip().lower()
        if not want:
            raise AgentError("bad_digest", "missing X-Edgekit-Sha256 header (the archive's sha256)")
        job_dir = self.work.new_job()
        try:
            got = self._receive(environ["wsgi.input"], length, job_dir / UPLOAD)
            if not secrets.compare_digest(got, want):
                raise AgentError("bad_digest", f"archive sha256 {got[:12]}… does not match the sent "
                                               f"{want[:12]}…: the upload was damaged; retry")
            if not self._busy.acquire(blocking=False):
                raise AgentError("busy", "the agent is busy with another job; retry later", {"Retry-After": "2"})
            try:
                return self._run_job(job_dir)
            finally:
                self._busy.release()
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _receive(self, stream, length: int, dest: Path) -> str:
        """Copy the request body (already received by the server) to ``dest``; its sha256."""
        h = hashlib.sha256()
        left = length
        with open(dest, "wb") as out:
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    raise AgentError("bad_request", f"the body ended {left} bytes before its Content-Length")
                h.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        return h.hexdigest()

    def _run_job(self, job_dir: Path) -> dict:
        from edgekit.registry import RUNTIMES
        from edgekit.runtimes.checks import check_artifact

        files = job_dir / FILES
        files.mkdir()
        try:
            uploaded = set(safe_extract(job_dir / UPLOAD, files, self.max_members, self.max_upload * 4))
        except ArchiveError as e:
            raise AgentError("bad_archive", f"archive refused: {e}") from None
        (job_dir / UPLOAD).unlink()
        spec = read_job(files, uploaded)
        if not RUNTIMES.get(spec.runtime).installed():
            raise AgentError("runtime_missing", f"this device lacks the {spec.runtime} runtime; install "
                                                f"{RUNTIMES.get(spec.runtime).requirement} on it, or profile another "
                                                "artifact of the bundle (--runtime)")
        try:
            check_artifact(files / spec.artifact)
        except UserError as e:
            raise AgentError("bad_artifact", str(e)) from None
        # options that run programs come from the agent's own configuration only
        spec.extra = {"benchmark_model": self.benchmark_model} if self.benchmark_model else {}
        (files / JOB_FILE).write_text(json.dumps(spec.to_dict()))
        return self._spawn(job_dir, files, spec)

    def _spawn(self, job_dir: Path, files: Path, spec: JobSpec) -> dict:
        out, log = job_dir / "trace.json", job_dir / "job.log"
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "edgekit.profiling.job", str(files), "--out", str(out),
               "--deadline", f"{self.job_timeout + 5:g}", "--parent-pid", str(os.getpid())]
        with open(log, "wb") as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                    env=env, cwd=files, start_new_session=True)
            self._current = proc
            try:
                proc.wait(timeout=self.job_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise AgentError("job_timeout", f"the job ran past this agent's per-job timeout of "
                                                f"{self.job_timeout:g} s and was stopped; lower --runs or raise "
                                                "the agent's --job-timeout") from None
            finally:
                self._current = None
        tail = _tail(log)
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            raise AgentError("runtime_crashed", f"the {spec.runtime} runtime crashed ({sig}) running "
                                                f"{spec.artifact}: the artifact is corrupted or was written for "
                                                "another runtime version; re-create it with 'edgekit quantize'")
        if proc.returncode == 2:
            raise AgentError("job_refused", tail.removeprefix("error: ") or "the job was refused")
        if proc.returncode != 0 or not out.is_file():
            raise AgentError("job_failed", f"the runner failed (exit {proc.returncode}): {tail[:300]}")
        trace = json.loads(out.read_text())
        trace["metadata"]["transport"] = "http"
        return trace

    def stop_job(self) -> None:
        """Kill the running job, if any (used on shutdown)."""
        proc = self._current
        if proc is not None and proc.poll() is None:
            _kill_group(proc)

    def close(self) -> None:
        self.stop_job()
        self.work.close()


def read_job(files: Path, uploaded: set[str]) -> JobSpec:
    """The validated JobSpec of an unpacked upload in ``files``; every file it names must be one
    of the ``uploaded`` regular files. Raises AgentError (400 ``bad_job``, 422 ``job_refused``)."""
    if JOB_FILE not in uploaded:
        raise AgentError("bad_job", f"the archive has no {JOB_FILE} file")
    try:
        raw = json.loads((files / JOB_FILE).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise AgentError("bad_job", f"{JOB_FILE} is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise AgentError("bad_job", f"{JOB_FILE} is not valid JSON ({str(e)[:120]})") from None
    try:
        spec = JobSpec.from_dict(raw)
        spec.validate()
        spec.runtime = normalize_runtime(spec.runtime)  # aliases ("ort", "tflite") name a runtime too
    except UserError as e:
        raise AgentError("bad_job", f"{JOB_FILE}: {e}") from None
    for name in [spec.artifact] + ([spec.etrecord] if spec.etrecord else []):
        key = str(PurePosixPath(name))
        if key not in uploaded or not (files / key).is_file() or (files / key).is_symlink():
            raise AgentError("bad_job", f"{JOB_FILE} names {name[:120]!r}, which is not a file of the upload")
    return spec


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _json_error_channel():
    """waitress's HTTP channel whose own error answers (400, 413, 431, 500) are JSON too."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    codes = {400: "bad_request", 408: "request_timeout", 413: "too_large", 431: "headers_too_large"}

    class JsonErrorTask(ErrorTask):
        def execute(self):
            e = self.request.error
            msg = f"{e.reason}: {e.body}"
            if e.code == 413:
                msg = (f"upload is over this agent's limit of {self.channel.server.adj.max_request_body_size} "
                       "bytes (--max-upload-mb)")
            body = json.dumps({"error": msg, "code": codes.get(e.code, "internal")}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


def serve(host: str, port: int, token_file: str | os.PathLike, max_upload: int = DEFAULT_MAX_UPLOAD,
          job_timeout: float = DEFAULT_JOB_TIMEOUT, work_dir: Path | None = None,
          benchmark_model: str | None = None, ready=None) -> None:
    """Run the agent until SIGTERM/SIGINT. ``port`` 0 picks a free port; the first line printed
    is ``edgekit agent listening on http://HOST:PORT`` (``ready(url)`` is called with it too).
    Raises UserError when the token file is unusable or the address cannot be bound."""
    from waitress import create_server

    token = load_or_create_token(token_file)
    app = Agent(token, max_upload, job_timeout, work_dir, benchmark_model)
    try:
        server = create_server(app, host=host, port=port, threads=THREADS, ident="edgekit-agent",
                               max_request_body_size=max_upload, channel_timeout=CHANNEL_TIMEOUT,
                               connection_limit=CONNECTION_LIMIT, clear_untrusted_proxy_headers=True)
    except OSError as e:
        app.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    except ValueError as e:
        app.close()
        raise UserError(f"cannot listen on {host}:{port} ({e}); give a valid --host") from None
    server.channel_class = _json_error_channel()
    url = f"http://{host}:{server.effective_port}"
    swept = f"; swept {len(app.work.swept)} folder(s) of stopped agents" if app.work.swept else ""
    print(f"edgekit agent listening on {url} (token in {token_file}{swept})", flush=True)
    if ready:
        ready(url)

    def stop(*_):
        app.stop_job()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.run()  # returns on KeyboardInterrupt/SystemExit
    finally:
        app.close()
        server.close()



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
    return run_main(lambda: serve(a.host, a.port, a.token_file, int(a.max_upload_mb * 2**20), a.job_timeout,
                                  a.work_dir, a.benchmark_model))


if __name__ == "__main__":
    sys.exit(main())
