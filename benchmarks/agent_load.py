"""Load test of the profiling agent on loopback: N clients upload and profile concurrently,
with slow clients among them that trickle their upload, against one real agent process.

Usage: .venv/bin/python benchmarks/agent_load.py [--clients 12] [--jobs 4] [--slow 2]
       [--runs 20] [--out benchmarks/results/agent_load.json]

Each client profiles the tiny test bundle's .onnx/.tflite/.pte in turn through the HTTP
transport (which waits and retries while the agent answers 503 busy). A slow client sends its
headers and then its body in small pieces over ``--slow-seconds``, then completes a job itself.
Records: jobs submitted, completed and lost (a job is lost when its client got no trace),
p50/p99 latency of a profile request as the client sees it (upload, queueing, run, answer; s),
the slow clients' total time, and the agent's peak RSS (VmHWM, MB). The agent runs one job at a
time, so the latency mostly measures the queue; the point is that nothing is lost or stuck.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _hwm_mb(pid: int) -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def _slow_upload(url: str, token: str, body: bytes, seconds: float, pieces: int = 20) -> int:
    """Send a valid job's headers, then its body in ``pieces`` spread over ``seconds``; returns
    the answer's status (200, or 503 busy). Raises on anything else."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=300) as s:
        s.sendall(f"POST /v1/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"X-Edgekit-Sha256: {hashlib.sha256(body).hexdigest()}\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n".encode())
        step = max(1, len(body) // pieces)
        for i in range(0, len(body), step):
            s.sendall(body[i:i + step])
            time.sleep(seconds / pieces)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    if status not in (200, 503):
        raise RuntimeError(f"slow client got {status}: {reply[-300:]!r}")
    return status


def run_load(clients: int, jobs: int, slow: int, runs: int, slow_seconds: float, work: Path) -> dict:
    """Run the load test with a fresh agent and the tiny bundle under ``work``; returns figures."""
    from edgekit.profiling.spec import resolve
    from edgekit.profiling.transports import job_spec_for, make_transport, pack_job
    from tests.profiling.conftest import AgentProc, build_tiny_bundle

    bundle = build_tiny_bundle(work / "bundle")
    arts = [resolve(bundle, rt) for rt in ("onnxruntime", "litert", "executorch")]
    agent = AgentProc(work)
    lat: list[float] = []
    lost: list[str] = []
    slow_s: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        tr = make_transport(agent.url, token_file=agent.token_file, timeout=600, busy_wait=1800)
        for j in range(jobs):
            art = arts[(i + j) % len(arts)]
            t0 = time.monotonic()
            try:
                trace = tr.profile(art, job_spec_for(art, 2, runs))
                ok = len(trace.latency_ms) == runs
            except Exception as e:  # a lost job: recorded, not raised
                ok, err = False, f"{type(e).__name__}: {e}"
            with lock:
                if ok:
                    lat.append(time.monotonic() - t0)
                else:
                    lost.append(f"client {i} job {j}: {err if not ok else ''}")

    def slow_client(i: int) -> None:
        art = arts[0]
        body = pack_job(art, job_spec_for(art, 0, 2))
        t0 = time.monotonic()
        try:
            while _slow_upload(agent.url, agent.token, body, slow_seconds) == 503:
                time.sleep(1)  # busy: retry, as the HTTP transport does
            with lock:
                slow_s.append(time.monotonic() - t0)
        except Exception as e:
            with lock:
                lost.append(f"slow client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=slow_client, args=(i,)) for i in range(slow)]
    threads += [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        peak = _hwm_mb(agent.proc.pid)
    finally:
        agent.stop()
    return {"clients": clients, "jobs_per_client": jobs, "slow_clients": slow, "runs_per_job": runs,
            "jobs_submitted": clients * jobs, "jobs_completed": len(lat), "jobs_lost": len(lost),
            "lost": lost[:10], "latency_s_p50": _pct(lat, 50), "latency_s_p99": _pct(lat, 99),
            "latency_s_mean": statistics.fmean(lat) if lat else None, "slow_client_s": slow_s,
            "wall_s": wall, "jobs_per_s": len(lat) / wall if wall else None, "agent_peak_rss_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=4, help="jobs per client")
    ap.add_argument("--slow", type=int, default=2, help="slow clients")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per job")
    ap.add_argument("--slow-seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "agent_load.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_load(a.clients, a.jobs, a.slow, a.runs, a.slow_seconds, Path(tmp))
    res["command"] = "python benchmarks/agent_load.py " + " ".join(sys.argv[1:])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
