"""Plain-text summary tables of a manifest or an evaluation."""
from __future__ import annotations


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def evaluation_table(ev: dict | None) -> str:
    """Per-artifact top-1, agreement with the simulation and with FP32, SQNR (dB)."""
    if not ev:
        return "no evaluation (no data for this model; give --eval-data PATH)"
    what = (ev.get("data") or {}).get("kind", "")
    lines = [f"evaluation on {ev['dataset']}{f' ({what})' if what and what not in ev['dataset'] and not what.startswith('held-out') else ''} "
             f"({ev['num_samples']} images), fp32 top-1 {_pct(ev.get('fp32_top1'))}",
             f"{'artifact':16s} {'runtime':10s} {'top-1':>8s} {'sim top-1':>9s} {'agree sim':>9s} "
             f"{'agree fp32':>10s} {'SQNR dB':>8s} {'time s':>7s}"]
    for r in ev["results"]:
        lines.append(f"{r['file']:16s} {r['runtime']:10s} {_pct(r.get('top1')):>8s} {_pct(r.get('simulation_top1')):>9s} "
                     f"{_pct(r.get('agreement_with_simulation')):>9s} {_pct(r.get('agreement_with_fp32')):>10s} "
                     f"{r.get('sqnr_db_vs_fp32', float('nan')):8.2f} {r['seconds']:7.1f}")
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
    lines.append(evaluation_table(m.get("evaluation")))
    lines.append("timings: " + ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()))
    return "\n".join(lines)
