"""Click commands for profiling: ``profile``, ``agent serve``, ``trace compare``.

Register them in the main group with ``from edgekit.profiling.cli import register;
register(cli)``. Each command turns UserError into one line on stderr and exit code 2, and a
run lost mid-way (TransportError) into one line and exit code 1.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from edgekit.errors import UserError


def _one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from edgekit.profiling.transports import TransportError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"edgekit: error: {e}", err=True)
            sys.exit(2)
        except TransportError as e:
            click.echo(f"edgekit: error: {e}", err=True)
            sys.exit(1)
    return wrapper


@click.command("profile")
@click.argument("bundle_or_artifact", type=click.Path(path_type=Path))
@click.option("--device", default="local", show_default=True,
              help="local | adb[:SERIAL] | ssh://user@host[:port] | http://host:port")
@click.option("--runtime", help="executorch | litert | onnxruntime | tensorrt (default: the bundle's first)")
@click.option("--warmup-runs", type=int, default=10, show_default=True, help="untimed runs first")
@click.option("--runs", type=int, default=50, show_default=True, help="timed runs (>= 1)")
@click.option("--threads", type=int, help="runtime threads (default: the runtime's choice)")
@click.option("--no-op-trace", is_flag=True, help="time end-to-end only (no ETDump/profiler)")
@click.option("--trace-out", type=click.Path(path_type=Path), help="write the trace JSON here")
@click.option("--chrome-trace", type=click.Path(path_type=Path),
              help="write Chrome-trace JSON (Perfetto) here")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path),
              help="write the per-module breakdown picture here (.png/.svg)")
@click.option("--top", type=int, default=10, show_default=True, help="operators in the summary")
@click.option("--token-file", type=click.Path(path_type=Path), help="http agent's token file")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="seconds a remote job may take")
@click.option("--ssh-opt", "ssh_opts", multiple=True,
              help="extra ssh/scp argument, repeatable (e.g. --ssh-opt=-i --ssh-opt=KEY)")
@click.option("--remote-python", default="python3", show_default=True,
              help="python with edgekit on the ssh device")
@click.option("--adb", "adb_path", help="adb binary (default: $ADB or adb)")
@click.option("--runner-binary", type=click.Path(path_type=Path),
              help="adb: executor_runner (.pte), qnn_executor_runner (a QNN .pte) or benchmark_model (.tflite) built for the phone")
@click.option("--device-libs", type=click.Path(path_type=Path),
              help="adb: a folder of .so files the runner needs on the phone (QNN's libQnnHtp*.so, libqnn_executorch_backend.so)")
@click.option("--benchmark-model", type=click.Path(path_type=Path),
              help="local: LiteRT benchmark_model binary for per-operator .tflite events")
@_one_line_errors
def profile_cmd(bundle_or_artifact, device, runtime, warmup_runs, runs, threads, no_op_trace,
                trace_out, chrome_trace, plot_out, top, token_file, timeout, ssh_opts,
                remote_python, adb_path, runner_binary, device_libs, benchmark_model):
    """Profile BUNDLE_OR_ARTIFACT (a bundle directory or a .pte/.tflite/.onnx file) on a device
    and print latency p50/p90 and the top operators with their modules."""
    from edgekit.profiling.transports import profile_artifact

    trace = profile_artifact(bundle_or_artifact, device, runtime, warmup_runs, runs, threads, trace_ops=not no_op_trace,
                             token_file=token_file, timeout=timeout, ssh_options=list(ssh_opts),
                             remote_python=remote_python, adb=adb_path, runner_binary=runner_binary,
                             device_libs=device_libs, benchmark_model=benchmark_model)
    click.echo(trace.summary(top))
    if trace_out:
        trace.save(trace_out)
        click.echo(f"trace: {trace_out}")
    if chrome_trace:
        trace.save_chrome_trace(chrome_trace)
        click.echo(f"chrome trace: {chrome_trace}")
    if plot_out:
        from edgekit.profiling.plot import plot_modules
        plot_modules(trace, plot_out)
        click.echo(f"plot: {plot_out}")


@click.group("agent")
def agent_group():
    """The profiling agent that runs on a device."""


@agent_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8765, show_default=True, help="0 picks a free port")
@click.option("--token-file", required=True, type=click.Path(path_type=Path),
              help="shared secret; created with mode 0600 when missing")
@click.option("--max-upload-mb", type=float, default=256, show_default=True)
@click.option("--job-timeout", type=float, default=600, show_default=True,
              help="seconds one job may run")
@click.option("--work-dir", type=click.Path(path_type=Path), help="where job folders go")
@click.option("--benchmark-model", type=click.Path(path_type=Path),
              help="LiteRT benchmark_model on this device, for per-op .tflite events")
@_one_line_errors
def serve_cmd(host, port, token_file, max_upload_mb, job_timeout, work_dir, benchmark_model):
    """Serve profiling jobs over HTTP (token on every request; one job at a time)."""
    from edgekit.profiling.agent import serve

    if max_upload_mb <= 0 or job_timeout <= 0:
        raise UserError("--max-upload-mb and --job-timeout must be positive")
    serve(host, port, token_file, int(max_upload_mb * 2**20), job_timeout, work_dir,
          str(benchmark_model) if benchmark_model else None)


@click.group("trace")
def trace_group():
    """Work with saved traces."""


@trace_group.command("compare")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--stat", type=click.Choice(["p10", "p50", "p90", "mean", "min", "max"]),
              default="p50", show_default=True)
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), help="write a picture here")
@click.option("--top", type=int, default=25, show_default=True, help="modules to list")
@_one_line_errors
def compare_cmd(a, b, stat, plot_out, top):
    """Per-module differences between trace A and trace B (e.g. fp32 vs int8, two devices)."""
    from edgekit.runtimes.trace import Trace, compare

    ta, tb = Trace.load(a), Trace.load(b)
    la, lb = ta.latency[stat], tb.latency[stat]
    click.echo(f"total {stat}: A {la:.3f} ms  B {lb:.3f} ms  B/A {lb / la if la else float('nan'):.2f}x"
               f"  (A/B speed-up {la / lb if lb else float('nan'):.2f}x)")
    rows = compare(ta, tb, stat)[:top]
    w = max([len(r[0]) for r in rows] + [6])
    click.echo(f"{'module':<{w}}  {'A ms':>9}  {'B ms':>9}  {'B-A ms':>9}")
    for name, x, y in rows:
        click.echo(f"{name:<{w}}  {x:9.3f}  {y:9.3f}  {y - x:+9.3f}")
    if plot_out:
        from edgekit.profiling.plot import plot_compare
        plot_compare(ta, tb, plot_out, (a.stem, b.stem), stat)
        click.echo(f"plot: {plot_out}")


def register(cli_group: click.Group) -> None:
    """Add ``profile``, ``agent`` (``serve``) and ``trace`` (``compare``) to ``cli_group``."""
    cli_group.add_command(profile_cmd, "profile")
    cli_group.add_command(agent_group, "agent")
    cli_group.add_command(trace_group, "trace")


@click.group()
def main():
    """edgekit profiling commands (standalone entry: python -m edgekit.profiling.cli)."""


register(main)

if __name__ == "__main__":
    main()
