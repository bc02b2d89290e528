"""Pictures of traces (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

from edgekit.runtimes.trace import Trace, compare


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_modules(trace: Trace, out: str | Path, stat: str = "p50", top: int = 25) -> Path:
    """Horizontal bar chart of milliseconds per module (``stat`` of each event, summed per
    module), largest first, at most ``top`` bars; writes ``out`` (PNG/SVG/PDF by suffix)."""
    plt = _pyplot()
    rows = sorted(trace.module_breakdown(stat).items(), key=lambda kv: -kv[1])[:top]
    total = sum(v for _, v in rows) or 1.0
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4))
    names = [k for k, _ in rows][::-1]
    vals = [v for _, v in rows][::-1]
    ax.barh(names, vals, color="#4878a8")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.3f} ({100 * v / total:.0f}%)", va="center", fontsize=7)
    md = trace.metadata
    ax.set_xlabel(f"{stat} latency per module (ms)")
    ax.set_title(f"{md.get('artifact', '')} on {md.get('device', '')} ({md.get('runtime', '')}): "
                 f"total p50 {trace.latency['p50']:.3f} ms", fontsize=9)
    ax.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def plot_compare(a: Trace, b: Trace, out: str | Path, labels: tuple[str, str] = ("A", "B"),
                 stat: str = "p50", top: int = 25) -> Path:
    """Grouped bars of per-module milliseconds in two traces; writes ``out``."""
    plt = _pyplot()
    rows = compare(a, b, stat)[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.4))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r[1] for r in rows], height=0.4, label=labels[0])
    ax.barh([y - 0.2 for y in ys], [r[2] for r in rows], height=0.4, label=labels[1])
    ax.set_yticks(list(ys), [r[0] for r in rows])
    ax.set_xlabel(f"{stat} latency per module (ms)")
    ax.set_title(f"{labels[0]}: p50 {a.latency['p50']:.3f} ms   {labels[1]}: p50 "
                 f"{b.latency['p50']:.3f} ms", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
