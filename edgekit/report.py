"""Plain-text summary tables of a manifest or an evaluation."""
from __future__ import annotations


def evaluation_table(ev: dict | None) -> str:
    """Per-artifact metrics of the evaluation's task (its ``columns``), then SQNR and seconds;
    the references' metrics (FP32, a task's baseline) on the first line."""
    if not ev:
        return "no evaluation (no data for this model; give --eval-data PATH)"
    from edgekit.registry import TASKS
    task = TASKS.get(ev.get("task") or "classification")
    what = (ev.get("data") or {}).get("kind", "")
    refs = ev.get("reference") or ({"fp32": {"top1": ev["fp32_top1"]}} if ev.get("fp32_top1") is not None else {})
    shown = {c.key: c for c in task.columns}
    ref_text = "; ".join(f"{name} " + ", ".join(f"{shown[k].header if k in shown else k} "
                                                 f"{shown[k].show(v) if k in shown else v}" for k, v in m.items())
                         for name, m in refs.items())
    lines = [f"evaluation ({task.name}) on {ev['dataset']}"
             f"{f' ({what})' if what and what not in ev['dataset'] and not what.startswith('held-out') else ''} "
             f"({ev['num_samples']} images){': ' + ref_text if ref_text else ''}",
             f"{'artifact':16s} {'runtime':10s} " + " ".join(f"{c.header:>12s}" for c in task.columns) + f" {'time s':>7s}"]
    for r in ev["results"]:
        lines.append(f"{r['file']:16s} {r['runtime']:10s} " + " ".join(f"{c.show(r.get(c.key)):>12s}" for c in task.columns)
                     + f" {r['seconds']:7.1f}")
    return "\n".join(lines)


def summary_table(m: dict) -> str:
    """The end-of-run summary of ``edgekit quantize``."""
    q = m["quantization"]
    c = q["calibration"]
    lines = [f"model {m['model']['name']}  method {q['method']}  W{q['w_bits']}A{q['a_bits']}  "
             f"data-free {q['data_free']}  calibration {c['kind']}/{c['method']} x{c['num_samples']}"
             + (f" ({c['seconds']} s)" if c.get("seconds") else ""),
             f"{'artifact':16s} {'target':20s} {'bytes':>10s} {'vs fp32':>8s}"]
    for a in m["artifacts"]:
        line = f"{a['file']:16s} {a['target']:20s} {a['bytes']:>10d} {a['size_ratio_vs_fp32']:>8.1%}"
        if a.get("latency_p50_ms") is not None:
            line += (f"  p50 {a['latency_p50_ms']:.3f} ms (fp32 {a['fp32_latency_p50_ms']:.3f} ms, "
                     f"{a['speedup_vs_fp32']:.2f}x)")
        ops = a.get("ops") or {}
        if ops.get("ops_total"):
            line += f"  delegated {ops['ops_delegated']}/{ops['ops_total']} ops"
        if ops.get("float_ops"):
            line += f"  float: {', '.join(sorted({o['op'] for o in ops['float_ops']}))}"
        lines.append(line)
        if a.get("slower_than_fp32"):
            lines.append(f"  slower than its fp32 twin on this machine; ops that can cost it: "
                         f"{', '.join(sorted({o['op'] for o in a.get('slow_ops') or []})) or 'none listed'}")
            if a.get("slower_operators"):
                lines.append("  operators slower in int8 (p50 ms int8 vs fp32): " + ", ".join(
                    f"{o['operator']} {o['int8_ms']:.3f} vs {o['fp32_ms']:.3f}" for o in a["slower_operators"][:4]))
    lines.append(evaluation_table(m.get("evaluation")))
    lines.append("timings: " + ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()))
    return "\n".join(lines)
