"""Mixed-precision weight bit widths from a sensitivity Pareto frontier (ZeroQ, Cai et al. 2020,
Sec. 3.2).

Sensitivity of layer i at b bits: the KL divergence KL(p_fp || p_q) between the softmax outputs of
the FP32 model and of the model in which only layer i's weights are quantized to b bits
(symmetric per-channel max-abs, round to nearest), averaged over the calibration images (the
distilled data when data-free). The total sensitivity of an assignment is the sum over layers
(ZeroQ's additivity assumption). Size: sum over layers of weight count x bits / 8 bytes (scales,
biases and activations are the same for every assignment and left out).

The Pareto frontier (size vs summed sensitivity) over every assignment in {2, 4, 8}^L is exact:
a dynamic programme over layers that keeps, after each layer, only the non-dominated partial
assignments. The chosen assignment is the frontier point of least sensitivity within the size
budget (``--size-budget-kb``, kB = 1000 bytes, or ``--avg-bits`` x weight count / 8).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import fx

from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel, get_attr_tensor, module_path, weighted_nodes
from edgekit.quant.recipe import int_range

CANDIDATE_BITS = (2, 4, 8)
MAX_FRONTIER = 4000  # frontier points kept per DP step (thinned evenly by size beyond that)
PARETO_JSON, PARETO_PNG = "pareto.json", "pareto.png"


@dataclass
class LayerInfo:
    """A weighted layer: folded-graph node name, module path, weight count."""
    node: str
    module: str
    params: int


@dataclass
class MixedPrecisionResult:
    """Sensitivities, the frontier and the chosen assignment (all JSON-ready).

    sensitivity: node -> {bits: KL}; frontier: [{"bytes", "sensitivity", "avg_bits"}] by size;
    chosen: node -> bits; budget_bytes: the size budget used.
    """
    layers: list[LayerInfo]
    bits: tuple[int, ...]
    sensitivity: dict[str, dict[int, float]]
    frontier: list[dict]
    chosen: dict[str, int]
    chosen_bytes: int
    chosen_sensitivity: float
    budget_bytes: float
    uniform: dict[int, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sensitivity"] = {k: {str(b): v for b, v in s.items()} for k, s in self.sensitivity.items()}
        d["uniform"] = {str(b): v for b, v in self.uniform.items()}
        return d


def layer_infos(gm: fx.GraphModule) -> list[LayerInfo]:
    """The conv/linear layers of the folded graph ``gm`` with their weight counts."""
    return [LayerInfo(n.name, module_path(n) or n.name, int(get_attr_tensor(gm, n.args[1]).numel()))
            for n in weighted_nodes(gm)]


def size_bytes(layers: list[LayerInfo], bits: dict[str, int]) -> int:
    """Weight bytes of an assignment node -> bits (rounded up per layer)."""
    return sum((li.params * bits[li.node] + 7) // 8 for li in layers)


def budget_bytes(layers: list[LayerInfo], size_budget_kb: float | None, avg_bits: float | None) -> float:
    """The size budget in bytes; raises UserError when it is below the all-2-bit model or when
    neither or both of the budgets are given, or the average is outside [2, 8]."""
    if (size_budget_kb is None) == (avg_bits is None):
        raise UserError("--mixed-precision needs exactly one budget: --size-budget-kb K or --avg-bits B")
    total = sum(li.params for li in layers)
    if avg_bits is not None:
        if not 2 <= avg_bits <= 8:
            raise UserError(f"--avg-bits {avg_bits} is outside [2, 8]: per-layer widths are chosen from {list(CANDIDATE_BITS)}")
        budget = avg_bits * total / 8
    else:
        budget = size_budget_kb * 1000
    smallest = size_bytes(layers, {li.node: min(CANDIDATE_BITS) for li in layers})
    if budget < smallest:
        raise UserError(f"--size-budget-kb {budget / 1000:g} is smaller than the model with every layer at "
                        f"{min(CANDIDATE_BITS)} bits ({smallest / 1000:g} kB of weights); give at least that")
    return budget


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """ZeroQ's measure (Sec. 3.2): KL(softmax(p) || softmax(q)) in nats, averaged over the rows
    of logits [N, K]."""
    logp, logq = torch.log_softmax(p_logits, 1), torch.log_softmax(q_logits, 1)
    return float((logp.exp() * (logp - logq)).sum(1).mean())


Sensitivity = Callable[[torch.Tensor, torch.Tensor], float]  # (reference outputs, quantized outputs) -> >= 0


def rtn_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-channel max-abs round-to-nearest fake quantization of w (float32 [Cout, ...])."""
    _, qmax = int_range(bits, narrow=True)
    s = (w.abs().flatten(1).amax(1).clamp_min(1e-12) / qmax).view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / s), -qmax, qmax) * s


@torch.no_grad()
def sensitivities(canonical: CanonicalModel, images: torch.Tensor, bits: tuple[int, ...] = CANDIDATE_BITS,
                  max_images: int = 256, measure: Sensitivity | None = None) -> dict[str, dict[int, float]]:
    """Sensitivity (>= 0) of every weighted layer at each bit width on ``images`` (float32
    [N, C, H, W], the first ``max_images`` used): ``measure`` (the task's; None: ZeroQ's KL of
    the softmax outputs, nats) between the outputs with that layer's weights rounded and FP32."""
    measure = measure or kl_divergence
    gm = canonical.graph_module
    x = images[:max_images]
    ref = gm(x)
    out: dict[str, dict[int, float]] = {}
    for n in weighted_nodes(gm):
        owner_path, _, attr = n.args[1].target.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        w = getattr(owner, attr)
        out[n.name] = {}
        for b in bits:
            setattr(owner, attr, torch.nn.Parameter(rtn_weight(w.detach(), b), requires_grad=False))
            out[n.name][b] = max(0.0, measure(ref, gm(x)))
        setattr(owner, attr, w)
    return out


def pareto_frontier(layers: list[LayerInfo], sens: dict[str, dict[int, float]],
                    bits: tuple[int, ...] = CANDIDATE_BITS) -> list[tuple[int, float, tuple[int, ...]]]:
    """Every non-dominated (bytes, summed sensitivity, bits per layer) sorted by size."""
    front: list[tuple[int, float, tuple[int, ...]]] = [(0, 0.0, ())]
    for li in layers:
        cand = [(s + (li.params * b + 7) // 8, k + sens[li.node][b], a + (b,)) for s, k, a in front for b in bits]
        cand.sort(key=lambda t: (t[0], t[1]))
        front, best = [], float("inf")
        for c in cand:
            if c[1] < best - 1e-15:
                front.append(c)
                best = c[1]
        if len(front) > MAX_FRONTIER:
            step = len(front) / MAX_FRONTIER
            front = [front[int(i * step)] for i in range(MAX_FRONTIER)] + [front[-1]]
    return front


def choose_bits(canonical: CanonicalModel, calib: CalibrationSource, size_budget_kb: float | None = None,
                avg_bits: float | None = None, measure: Sensitivity | None = None) -> MixedPrecisionResult:
    """Per-layer weight bits in {2, 4, 8} of least summed sensitivity (``measure``, the task's;
    None: KL) within the budget.

    Raises UserError for a missing/invalid budget or one below the all-2-bit model.
    """
    gm = canonical.graph_module
    layers = layer_infos(gm)
    budget = budget_bytes(layers, size_budget_kb, avg_bits)
    sens = sensitivities(canonical, calib.images, measure=measure)
    front = pareto_frontier(layers, sens)
    size, k, assign = min((p for p in front if p[0] <= budget), key=lambda p: p[1])
    total = sum(li.params for li in layers)
    uniform = {}
    for b in CANDIDATE_BITS:
        u = {li.node: b for li in layers}
        uniform[b] = {"bytes": size_bytes(layers, u), "sensitivity": sum(sens[li.node][b] for li in layers)}
    return MixedPrecisionResult(
        layers, CANDIDATE_BITS, sens,
        [{"bytes": s, "sensitivity": v, "avg_bits": round(8 * s / total, 4)} for s, v, _ in front],
        {li.node: b for li, b in zip(layers, assign)}, size, k, budget, uniform)


def write_pareto(result: MixedPrecisionResult, out_dir: Path) -> None:
    """Write ``pareto.json`` and ``pareto.png`` (size in kB vs summed sensitivity, log scale,
    uniform 2/4/8-bit models and the chosen point marked, the budget as a vertical line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    d = result.to_dict()
    d["chosen_by_module"] = {li.module: result.chosen[li.node] for li in result.layers}
    (out_dir / PARETO_JSON).write_text(json.dumps(d, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    floor = 1e-6
    ax.plot([p["bytes"] / 1000 for p in result.frontier], [max(p["sensitivity"], floor) for p in result.frontier],
            ".-", ms=2, lw=0.8, label="Pareto frontier")
    for b, u in result.uniform.items():
        ax.plot(u["bytes"] / 1000, max(u["sensitivity"], floor), "s", ms=5, label=f"uniform W{b}")
    ax.plot(result.chosen_bytes / 1000, max(result.chosen_sensitivity, floor), "r*", ms=14, label="chosen")
    ax.axvline(result.budget_bytes / 1000, color="gray", ls="--", lw=0.8, label="budget")
    ax.set_yscale("log")
    ax.set_xlabel("weight size (kB)")
    ax.set_ylabel("summed sensitivity (the task's measure)")
    ax.set_title("ZeroQ mixed precision: size vs sensitivity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / PARETO_PNG)
    plt.close(fig)
