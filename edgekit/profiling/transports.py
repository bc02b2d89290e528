"""Transports: move an artifact to a device, run it there, bring the trace back.

All share :class:`Transport` (``profile(artifact, spec) -> Trace``) and are registered in
``edgekit.registry.TRANSPORTS`` under ``local``, ``http``, ``ssh`` and ``adb``;
:func:`make_transport` turns a ``--device`` string into one:

- ``local``: the host runners in this process.
- ``http://HOST:PORT``: an ``edgekit agent serve`` agent (token from ``token_file``).
- ``ssh://USER@HOST[:PORT]``: copies the job with ``scp``, runs ``python -m edgekit.profiling.job``
  remotely (``remote_python``, default ``python3``; edgekit and the runtime must be installed
  there), copies the trace back.
- ``adb`` / ``adb:SERIAL``: pushes the artifact and a runner binary (``runner_binary``:
  ExecuTorch's ``executor_runner`` built with the event tracer for .pte, LiteRT's
  ``benchmark_model`` for .tflite), runs it, pulls the ETDump or CSV and parses it here.

Errors: a device that cannot be reached, a refused token, a disconnected adb serial raise
UserError (exit 2). A connection lost or a timeout during a run raises :class:`TransportError`
(exit 1); no trace is returned then, and running the same call again is safe (each run works in
a fresh job folder).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from edgekit.runtimes.checks import check_artifact, probe_artifact
from edgekit.errors import UserError
from edgekit.profiling.spec import JOB_FILE, JobSpec, ResolvedArtifact, resolve, verify
from edgekit.runtimes.trace import Trace
from edgekit.registry import RUNTIMES, TRANSPORTS


class TransportError(RuntimeError):
    """The device went away or timed out during a run; no trace was produced. Retry is safe."""


def job_spec_for(art: ResolvedArtifact, warmup_runs: int, runs: int, threads: int | None = None,
                 trace_ops: bool = True) -> JobSpec:
    """The JobSpec for ``art`` with paths relative to a job folder (file names only); the
    sha256 is the manifest's when there is one, else the file's own (guards the copy).
    Raises UserError for bad counts or when the file no longer matches its manifest."""
    spec = JobSpec(artifact=art.path.name, runtime=art.runtime, warmup_runs=warmup_runs,
                   runs=runs, threads=threads, trace_ops=trace_ops,
                   etrecord=art.etrecord.name if art.etrecord else None,
                   input_shape=art.input_shape, input_dtype=art.input_dtype)
    spec.validate()
    spec.sha256 = verify(art.path, art.sha256)
    check_artifact(art.path)  # a foreign or truncated file is refused before it travels
    return spec


def pack_job(art: ResolvedArtifact, spec: JobSpec) -> bytes:
    """A gzip'd tar holding ``job.json`` and the artifact (plus its ETRecord)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = json.dumps(spec.to_dict()).encode()
        info = tarfile.TarInfo(JOB_FILE)
        info.size = len(data)
        info.mode = 0o600
        tf.addfile(info, io.BytesIO(data))
        for f in art.files():
            tf.add(str(f), arcname=f.name, recursive=False)
    return buf.getvalue()


class Transport(ABC):
    """Runs a profiling job on one device. ``target`` is the part of ``--device`` after the
    scheme (``HOST:PORT``, ``USER@HOST``, a serial) or ``""``."""

    name = "?"

    def __init__(self, target: str = "", **options: Any) -> None:
        self.target = target
        self.options = options

    @abstractmethod
    def profile(self, art: ResolvedArtifact, spec: JobSpec) -> Trace:
        """Run ``spec`` for ``art`` on the device and return the complete trace.
        Raises UserError (bad input, unreachable device) or TransportError (lost mid-run)."""

    @staticmethod
    def _checked(trace: Trace, where: str) -> Trace:
        if not trace.complete:
            raise TransportError(f"the trace from {where} is incomplete; it was not kept")
        return trace


@TRANSPORTS.register("local")
class LocalTransport(Transport):
    """This machine, in this process (after the runtime has loaded the artifact once in a child
    process, so that a file that crashes it cannot take this process down)."""

    name = "local"

    def profile(self, art: ResolvedArtifact, spec: JobSpec) -> Trace:
        from edgekit.profiling.runners import run_spec

        probe_artifact(art.path)  # a file that crashes the runtime does so in a child process
        spec.extra = dict(spec.extra or {})
        if self.options.get("benchmark_model"):
            spec.extra["benchmark_model"] = str(self.options["benchmark_model"])
        return self._checked(run_spec(spec, base=art.path.parent), "this machine")


@TRANSPORTS.register("http")
class HttpTransport(Transport):
    """An HTTP agent. Options: ``token_file`` (required), ``timeout`` (s for the whole job,
    default 900), ``busy_wait`` (s to keep retrying while the agent is busy, default 60)."""

    name = "http"

    def __init__(self, target: str = "", **options: Any) -> None:
        super().__init__(target, **options)
        self.url = target.rstrip("/")

    def _headers(self) -> dict[str, str]:
        tf = self.options.get("token_file")
        if not tf:
            raise UserError("--token-file is required with an http:// device: give the agent's "
                            "token file (copy it from the device)")
        try:
            token = Path(tf).read_text().strip()
        except OSError as e:
            raise UserError(f"cannot read --token-file {tf} ({e.strerror})") from None
        return {"Authorization": f"Bearer {token}"}

    def _raise_for(self, r) -> None:
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text.strip()[:200]
        if r.status_code == 401:
            raise UserError(f"the agent at {self.url} refused the token (401): pass the token "
                            "file the agent was started with as --token-file")
        if r.status_code in (400, 411, 413, 422):
            raise UserError(f"the agent at {self.url} refused the job ({r.status_code}): {msg}")
        if r.status_code == 504:
            raise TransportError(f"the agent at {self.url} stopped the job: {msg}")
        raise TransportError(f"the agent at {self.url} failed ({r.status_code}): {msg}")

    def info(self) -> dict[str, Any]:
        """The agent's /v1/info; UserError when unreachable or the token is refused."""
        import requests

        try:
            r = requests.get(f"{self.url}/v1/info", headers=self._headers(), timeout=10)
        except requests.RequestException as e:
            raise UserError(f"cannot reach the agent at {self.url} ({_reason(e)}): start it "
                            "with 'edgekit agent serve' on the device, or check --device") from None
        if r.status_code != 200:
            self._raise_for(r)
        return r.json()

    def profile(self, art: ResolvedArtifact, spec: JobSpec) -> Trace:
        import requests

        info = self.info()
        body = pack_job(art, spec)
        if len(body) > int(info.get("max_upload_bytes", len(body))):
            raise UserError(f"the job archive ({len(body)} bytes) is over the agent's upload "
                            f"limit of {info['max_upload_bytes']} bytes; start the agent with "
                            "a larger --max-upload-mb")
        headers = dict(self._headers(), **{"X-Edgekit-Sha256": hashlib.sha256(body).hexdigest(),
                                            "Content-Type": "application/x-tar"})
        timeout = float(self.options.get("timeout") or 900)
        deadline = time.monotonic() + float(self.options.get("busy_wait") or 60)
        while True:
            try:
                r = requests.post(f"{self.url}/v1/profile", data=body, headers=headers,
                                  timeout=(10, timeout))
            except requests.Timeout:
                raise TransportError(f"no answer from the agent at {self.url} within {timeout:g} s;"
                                     " no trace was written; retrying is safe") from None
            except requests.RequestException as e:
                raise TransportError(f"the connection to the agent at {self.url} dropped during "
                                     f"the job ({_reason(e)}); no trace was written; retrying is "
                                     "safe") from None
            if r.status_code == 503 and time.monotonic() < deadline:
                time.sleep(float(r.headers.get("Retry-After", "2")))
                continue
            if r.status_code == 503:
                raise TransportError(f"the agent at {self.url} stayed busy with another job; "
                                     "retry later")
            if r.status_code != 200:
                self._raise_for(r)
            try:
                trace = Trace.from_dict(r.json())
            except ValueError:
                raise TransportError(f"the agent at {self.url} sent a malformed trace") from None
            return self._checked(trace, self.url)


def _reason(e: BaseException) -> str:
    # the innermost cause's message, one line
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text.split("): ")[-1][:160]


@TRANSPORTS.register("ssh")
class SshTransport(Transport):
    """SSH with the system ``ssh``/``scp`` (keys from the user's ssh set-up). Options:
    ``ssh_options`` (list of extra ``-o``-style arguments, e.g. ``["-i", "key"]``),
    ``remote_python`` (default ``python3``), ``timeout`` (s, default 900)."""

    name = "ssh"

    def __init__(self, target: str = "", **options: Any) -> None:
        super().__init__(target, **options)
        hostpart = target
        self.port = None
        if hostpart.count(":") == 1:
            hostpart, _, port = hostpart.partition(":")
            self.port = port
        if not hostpart:
            raise UserError("ssh device needs a host: --device ssh://user@host[:port]")
        self.host = hostpart

    def _base(self, prog: str) -> list[str]:
        args = [prog, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if self.port:
            args += ["-P" if prog == "scp" else "-p", self.port]
        return args + list(self.options.get("ssh_options") or [])

    def _ssh(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self._base("ssh") + [self.host, command], capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TransportError(f"ssh {self.host}: no answer within {timeout:g} s; no trace was "
                                 "written; retrying is safe") from None
        except FileNotFoundError:
            raise UserError("the ssh client is not installed here (install openssh-client)") from None

    def _scp(self, args: list[str], timeout: float) -> None:
        try:
            r = subprocess.run(self._base("scp") + ["-q"] + args, capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TransportError(f"scp to {self.host} timed out after {timeout:g} s") from None
        if r.returncode != 0:
            raise TransportError(f"scp with {self.host} failed: {_last(r.stderr)}")

    def profile(self, art: ResolvedArtifact, spec: JobSpec) -> Trace:
        timeout = float(self.options.get("timeout") or 900)
        py = self.options.get("remote_python") or "python3"
        r = self._ssh("mktemp -d /tmp/edgekit-job.XXXXXX", 30)
        if r.returncode != 0:
            raise UserError(f"cannot reach {self.host} over ssh ({_last(r.stderr)}); check "
                            "--device ssh://user@host[:port] and your ssh keys")
        remote = r.stdout.strip().splitlines()[-1]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / JOB_FILE).write_text(json.dumps(spec.to_dict()))
                files = [str(Path(tmp) / JOB_FILE)] + [str(f) for f in art.files()]
                self._scp(files + [f"{self.host}:{remote}/"], timeout)
                cmd = (f"cd {shlex.quote(remote)} && {py} -m edgekit.profiling.job "
                       f"{shlex.quote(remote)} --out {shlex.quote(remote + '/trace.json')}")
                r = self._ssh(cmd, timeout)
                if r.returncode == 2:
                    raise UserError(f"{self.host}: {_last(r.stderr).removeprefix('error: ')}")
                if r.returncode == 255:
                    raise TransportError(f"the ssh connection to {self.host} dropped during the "
                                         "job; no trace was written; retrying is safe")
                if r.returncode != 0:
                    raise TransportError(f"the runner on {self.host} failed (exit {r.returncode}): "
                                         f"{_last(r.stderr)}")
                local = Path(tmp) / "trace.json"
                self._scp([f"{self.host}:{remote}/trace.json", str(local)], timeout)
                trace = Trace.load(local)
        finally:
            self._ssh(f"rm -rf {shlex.quote(remote)}", 30)
        trace.metadata["transport"] = "ssh"
        return self._checked(trace, self.host)


def _last(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no message"


@TRANSPORTS.register("adb")
class AdbTransport(Transport):
    """An Android device over adb. Options: ``adb`` (the adb binary, default ``$ADB`` or
    ``adb``), ``runner_binary`` (required: executor_runner for .pte, qnn_executor_runner for a
    .pte delegated to Qualcomm QNN, benchmark_model for .tflite), ``device_libs`` (a folder
    whose ``*.so`` files the runner needs: QNN's libQnnHtp*.so and libqnn_executorch_backend.so;
    pushed beside it), ``device_dir`` (default ``/data/local/tmp/edgekit``), ``timeout`` (s)."""

    name = "adb"

    def _adb(self, args: list[str], timeout: float = 60, serial: bool = True):
        adb = self.options.get("adb") or os.environ.get("ADB") or "adb"
        cmd = [adb] + (["-s", self.serial] if serial else []) + args
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                   stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise UserError(f"adb not found ({adb}); install Android platform-tools or pass "
                            "--adb PATH") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"adb {' '.join(args[:2])} timed out after {timeout:g} s; no "
                                 "trace was written; retrying is safe") from None

    def _ok(self, args: list[str], timeout: float = 60) -> str:
        r = self._adb(args, timeout)
        if r.returncode != 0:
            raise TransportError(f"adb {' '.join(args[:2])} failed on {self.serial}: "
                                 f"{_last(r.stderr or r.stdout)}")
        return r.stdout

    def devices(self) -> list[str]:
        """Serials that ``adb devices`` lists in the ``device`` state."""
        r = self._adb(["devices"], 30, serial=False)
        if r.returncode != 0:
            raise UserError(f"adb devices failed: {_last(r.stderr)}")
        out = []
        for line in r.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "device":
                out.append(parts[0])
        return out

    def _pick_serial(self) -> None:
        have = self.devices()
        if self.target:
            if self.target not in have:
                raise UserError(f"adb device {self.target!r} is not connected (adb devices lists: "
                                f"{', '.join(have) or 'none'}); connect it or pick one of those "
                                "with --device adb:SERIAL")
            self.serial = self.target
        elif len(have) == 1:
            self.serial = have[0]
        elif not have:
            raise UserError("no adb device is connected; plug one in (USB debugging on) or use "
                            "'adb connect HOST'")
        else:
            raise UserError(f"several adb devices are connected ({', '.join(have)}); pick one "
                            "with --device adb:SERIAL")

    def profile(self, art: ResolvedArtifact, spec: JobSpec) -> Trace:
        self._pick_serial()
        runner = self.options.get("runner_binary")
        tool = RUNTIMES.get(art.runtime).device_tool
        if tool is None:
            phone = [RUNTIMES.get(n).suffix for n in RUNTIMES.names() if RUNTIMES.get(n).device_tool]
            raise UserError(f"adb profiling runs {' and '.join(phone)} artifacts, not {art.path.suffix}")
        if not runner or not Path(runner).is_file():
            raise UserError(f"--runner-binary: give {tool} built for the phone"
                            + (f" ({runner} does not exist)" if runner else ""))
        timeout = float(self.options.get("timeout") or 900)
        root = self.options.get("device_dir") or "/data/local/tmp/edgekit"
        ddir = f"{root}/{uuid.uuid4().hex[:12]}"
        rb = f"{ddir}/{Path(runner).name}"
        model = f"{ddir}/{art.path.name}"
        self._ok(["shell", f"mkdir -p {shlex.quote(ddir)}"])
        try:
            self._ok(["push", str(art.path), model], timeout)
            self._ok(["push", str(runner), rb], timeout)
            self._ok(["shell", f"chmod 755 {shlex.quote(rb)}"])
            for lib in self._libs():
                self._ok(["push", str(lib), f"{ddir}/{lib.name}"], timeout)
            with tempfile.TemporaryDirectory() as tmp:
                trace = self._run(art, spec, ddir, rb, model, Path(tmp), timeout)
        finally:
            self._adb(["shell", f"rm -rf {shlex.quote(ddir)}"], 60)
        return self._checked(trace, f"adb:{self.serial}")

    def _libs(self) -> list[Path]:
        d = self.options.get("device_libs")
        if not d:
            return []
        if not Path(d).is_dir():
            raise UserError(f"--device-libs {d} is not a folder: give the folder of the runner's .so files "
                            "(QNN: the SDK's lib/aarch64-android and its hexagon-vNN/unsigned skel)")
        libs = sorted(p for p in Path(d).iterdir() if p.suffix == ".so" and p.is_file())
        if not libs:
            raise UserError(f"--device-libs {d} holds no .so files")
        return libs

    def _metadata(self, art: ResolvedArtifact, spec: JobSpec, tracing: str) -> dict[str, Any]:
        props = {}
        for key in ("ro.product.model", "ro.build.version.release", "ro.product.cpu.abi"):
            r = self._adb(["shell", f"getprop {key}"], 30)
            props[key] = r.stdout.strip() if r.returncode == 0 else ""
        return {"device": props["ro.product.model"] or self.serial, "serial": self.serial,
                "os": f"Android {props['ro.build.version.release']}".strip(),
                "machine": props["ro.product.cpu.abi"], "runtime": art.runtime,
                "runtime_version": None, "threads": spec.threads,
                "warmup_runs": spec.warmup_runs, "runs": spec.runs, "artifact": art.path.name,
                "artifact_bytes": art.path.stat().st_size, "artifact_sha256": spec.sha256,
                "tracing": tracing, "transport": "adb",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "aggregated": False}

    def _run(self, art, spec, ddir, rb, model, tmp: Path, timeout) -> Trace:
        """Run the runtime's device command on the phone, pull what it wrote, parse it here."""
        rt = RUNTIMES.get(art.runtime)
        cmd, written = rt.device_command(rb, model, ddir, spec, local=art.path)
        r = self._adb(["shell", cmd], timeout)
        if r.returncode != 0:
            raise TransportError(f"{Path(rb).name} failed on {self.serial} (exit {r.returncode}): "
                                 f"{_last(r.stderr or r.stdout)}")
        self._ok(["pull", f"{ddir}/{written}", str(tmp / written)], timeout)
        lat, events, extra = rt.trace_from_device(art.path, art.etrecord, spec, tmp / written,
                                                  r.stdout + "\n" + r.stderr)
        md = self._metadata(art, spec, extra.pop("tracing"))
        md.update(extra)
        return Trace(metadata=md, latency_ms=lat, events=events)


def parse_device(device: str) -> tuple[str, str]:
    """``--device`` string -> (transport name, target). ``local``; ``adb``/``adb:SERIAL``;
    ``ssh://user@host[:port]``; ``http(s)://host:port``. Unknown schemes go to the registry,
    which raises UserError listing the known transports."""
    d = device.strip()
    if d == "local":
        return "local", ""
    if d == "adb" or d.startswith("adb:"):
        return "adb", d[4:]
    if d.startswith("ssh://"):
        return "ssh", d[len("ssh://"):].rstrip("/")
    if d.startswith(("http://", "https://")):
        return "http", d
    return d.split("://")[0].split(":")[0], d


def make_transport(device: str, **options: Any) -> Transport:
    """The Transport for a ``--device`` string, built with ``options`` (see each class)."""
    name, target = parse_device(device)
    cls = TRANSPORTS.get(name)
    return cls(target, **options)


def profile_artifact(path, device: str = "local", runtime: str | None = None, warmup_runs: int = 10,
                     runs: int = 50, threads: int | None = None, trace_ops: bool = True, **options: Any) -> Trace:
    """Profile ``path`` (a bundle folder or a .pte/.tflite/.onnx file) on ``device`` (local,
    adb[:SERIAL], ssh://user@host[:port] or http://host:port; ``options`` go to its transport):
    a Trace with latency p50/p90 in ms and per-op events mapped to modules where the runtime
    reports them. ``edgekit profile`` and ``edgekit.profile`` both run this. Raises UserError for
    bad counts or a file that is not an artifact, TransportError for a run lost mid-way."""
    if runs < 1:
        raise UserError(f"--runs {runs}: give at least 1 timed run")
    if warmup_runs < 0:
        raise UserError(f"--warmup-runs {warmup_runs}: give 0 or more")
    art = resolve(path, runtime)
    spec = job_spec_for(art, warmup_runs, runs, threads, trace_ops=trace_ops)
    return make_transport(device, **options).profile(art, spec)


__all__ = ["Transport", "TransportError", "LocalTransport", "HttpTransport", "SshTransport",
           "AdbTransport", "make_transport", "parse_device", "job_spec_for", "pack_job", "profile_artifact"]
