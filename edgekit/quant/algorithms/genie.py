"""Genie-M (Jeon et al. 2023, "Genie: Show Me the Data for Quantization", Sec. 3.2) on the
canonical BN-folded graph.

Block-wise reconstruction in the manner of BRECQ (Li et al. 2021, Sec. 3-4): the graph is cut into
blocks (the model's residual blocks, else its top-level children) and, block by block, the
quantized block fed with the quantized model's input is trained so that its output matches the
FP32 block's output on the FP32 input. Per block, jointly:

* weights: AdaRound soft rounding (Nagel et al. 2020, Sec. 4) with a *learned* per-channel step
  size, as Genie-M does: w_q = s * clamp(B + h(V), qmin, qmax) with B = floor(w / s0) fixed at the
  initial step s0 and h the rectified sigmoid; the rounding regulariser sum(1 - |2h - 1|^beta)
  (beta annealed 20 -> 2 after a 20 % warm-up) drives h to 0 or 1;
* activations: LSQ step sizes (Esser et al. 2020) with a straight-through round;
* QDrop (Wei et al. 2022, Sec. 4): in training each activation value of the block is left
  unquantized with probability p (0.5).

The first and last weighted layers (their weights, the model input, the last layer's input and
output) stay at 8 bits. Step sizes are learned in log space (s = s0 * exp(t)), which makes the
Adam step relative and replaces LSQ's gradient scaling.

Where quantize ops sit is decided by the XNNPACK PT2E quantizer (as the targets' quantizers place
them), so what is reconstructed is what the targets run. The result is data: learned scales in
the recipe's TensorQuant entries and the integer weights in ``recipe.rounded_weights``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import fx, nn
from tqdm import tqdm

from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import WEIGHTED_OPS, CanonicalModel, get_attr_tensor
from edgekit.quant.algorithms import Algorithm
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.observer import _source
from edgekit.quant.recipe import (FIRST_LAST_8BIT, QuantRecipe, TensorQuant, apply_overrides, plan_recipe)
from edgekit.registry import ALGORITHMS

ZETA, GAMMA = 1.1, -0.1  # AdaRound's rectified-sigmoid stretch


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def mse_weight_scale(w: torch.Tensor, qmax: int, per_channel: bool, steps: int = 40) -> torch.Tensor:
    """Symmetric step sizes float32 [Cout] (or [1]) minimising ||w - q(w)||^2 over clip ratios
    in [0.3, 1] of max|w| per channel (the MSE initialisation of BRECQ/Genie)."""
    flat = w.detach().flatten(1) if per_channel else w.detach().reshape(1, -1)
    amax = flat.abs().amax(1).clamp_min(1e-8)
    best_err = torch.full_like(amax, float("inf"))
    best = amax / qmax
    for r in torch.linspace(0.3, 1.0, steps).tolist():
        s = (amax * r / qmax).unsqueeze(1)
        err = ((torch.clamp(torch.round(flat / s), -qmax, qmax) * s - flat) ** 2).sum(1)
        better = err < best_err
        best_err, best = torch.where(better, err, best_err), torch.where(better, s.squeeze(1), best)
    return best


class WeightQuantizer(nn.Module):
    """Replaces a weight observer: returns the fake-quantized weight (its input is ignored).

    w: float32 folded weight [Cout, ...]; tq: its TensorQuant (bits, range, granularity).
    Modes: ``fp`` (the float weight), ``soft`` (AdaRound training), ``hard`` (h(V) >= 0.5).
    """

    def __init__(self, w: torch.Tensor, tq: TensorQuant) -> None:
        super().__init__()
        per_channel = tq.granularity == "per_channel"
        self.qmin, self.qmax = tq.quant_min, tq.quant_max
        shape = (-1,) + (1,) * (w.dim() - 1) if per_channel else (1,) * w.dim()
        s0 = mse_weight_scale(w, tq.quant_max, per_channel).view(shape)
        self.register_buffer("w", w.detach().clone())
        self.register_buffer("s0", s0)
        self.register_buffer("base", torch.floor(w.detach() / s0))
        frac = (w.detach() / s0 - self.base).clamp(0.01, 0.99)
        self.v = nn.Parameter(-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1))  # h(v) = frac
        self.log_s = nn.Parameter(torch.zeros_like(s0))
        self.mode = "fp"

    @property
    def scale(self) -> torch.Tensor:
        return self.s0 * torch.exp(self.log_s)

    def h(self) -> torch.Tensor:
        return _rect_sigmoid(self.v) if self.mode == "soft" else (self.v >= 0).float()

    def integers(self) -> torch.Tensor:
        """The rounded integer weight (int8, same shape as w) of the hard mode."""
        return torch.clamp(self.base + (self.v >= 0).float(), self.qmin, self.qmax).to(torch.int8)

    def round_reg(self, beta: float) -> torch.Tensor:
        return (1 - (2 * _rect_sigmoid(self.v) - 1).abs().pow(beta)).sum()

    def forward(self, _w: torch.Tensor) -> torch.Tensor:
        if self.mode == "fp":
            return self.w
        return self.scale * torch.clamp(self.base + self.h(), self.qmin, self.qmax)


class ActQuantizer(nn.Module):
    """Replaces an activation observer: LSQ fake quantization with a fixed zero point and QDrop.

    enabled False passes x through (FP32 reference); drop_p > 0 in training mode keeps each
    value of x unquantized with that probability.
    """

    def __init__(self, tq: TensorQuant) -> None:
        super().__init__()
        self.qmin, self.qmax = tq.quant_min, tq.quant_max
        self.zp = float(tq.zero_point[0])
        self.register_buffer("s0", torch.tensor(float(tq.scale[0])))
        self.log_s = nn.Parameter(torch.zeros(()))
        self.enabled, self.drop_p = False, 0.0
        self.generator: torch.Generator | None = None  # QDrop's masks

    @property
    def scale(self) -> torch.Tensor:
        return self.s0 * torch.exp(self.log_s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        s = self.scale
        t = x / s
        t = t + (torch.round(t) - t).detach()  # straight-through round
        xq = (torch.clamp(t + self.zp, self.qmin, self.qmax) - self.zp) * s
        if self.training and self.drop_p > 0:
            keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) < self.drop_p
            return torch.where(keep, x, xq)
        return xq


# ---- cutting the prepared graph into blocks ---------------------------------------------------

_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _block_key(n: fx.Node) -> str | None:
    """The block a node belongs to: the outermost module of its stack that is not the root nor a
    container (a residual block of a stage, or a top-level child); None at the top level."""
    for path, typ in (n.meta.get("nn_module_stack") or {}).values():
        if path and not str(typ).split(".")[-1].strip("'>").endswith(_CONTAINERS):
            return path
    return None


def _is_param(n: fx.Node) -> bool:
    """A weight/bias (get_attr) or a module applied to weights only (a weight quantizer)."""
    if n.op == "get_attr":
        return True
    return n.op == "call_module" and bool(n.all_input_nodes) and all(_is_param(a) for a in n.all_input_nodes)


def split_blocks(gm: fx.GraphModule) -> list[list[fx.Node]]:
    """Contiguous runs of compute nodes (call_function / call_module) of ``gm`` with the same
    block key, in graph order; observers go with the tensor they observe (an input's with its
    consumer), top-level ops with the preceding block, and blocks with no conv/linear are merged
    into a neighbour."""
    compute = [n for n in gm.graph.nodes if n.op in ("call_function", "call_module") and not _is_param(n)]
    keys: dict[fx.Node, str | None] = {}
    for n in compute:
        if n.op == "call_function":
            keys[n] = _block_key(n)
        else:
            src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
            keys[n] = keys.get(src) if src is not None and src.op in ("call_function", "call_module") else None
    last = None
    for n in compute:  # fill holes from the previous node; leading ones from the next
        keys[n] = keys[n] if keys[n] is not None else last
        last = keys[n]
    nxt = None
    for n in reversed(compute):
        keys[n] = keys[n] if keys[n] is not None else nxt
        nxt = keys[n]
    blocks: list[list[fx.Node]] = []
    prev = object()
    for n in compute:
        if keys[n] != prev:
            blocks.append([])
            prev = keys[n]
        blocks[-1].append(n)
    weighted = [any(n.target in WEIGHTED_OPS for n in b) for b in blocks]
    merged: list[list[fx.Node]] = []
    pending: list[fx.Node] = []
    for b, w in zip(blocks, weighted):
        if not w:
            if merged:
                merged[-1].extend(b)
            else:
                pending.extend(b)
        else:
            merged.append(pending + b)
            pending = []
    if pending:
        merged.append(pending)
    return merged


class Block:
    """One block as its own GraphModule: inputs/outputs are names of nodes of the full graph."""

    def __init__(self, gm: fx.GraphModule, nodes: list[fx.Node]) -> None:
        inside = set(nodes)
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        self.inputs: list[str] = []
        for n in nodes:  # external values become placeholders, in first-use order
            for a in n.all_input_nodes:
                if a not in inside and a not in env and not _is_param(a):
                    env[a] = g.placeholder(a.name)
                    self.inputs.append(a.name)

        def arg(a: fx.Node) -> fx.Node:
            if a not in env:  # weights, biases and their quantizers are copied into the block
                env[a] = g.node_copy(a, arg)
            return env[a]
        for n in nodes:
            env[n] = g.node_copy(n, arg)
        outs = [n for n in nodes if any(u not in inside for u in n.users)]
        self.outputs = [n.name for n in outs]
        g.output(tuple(env[n] for n in outs))
        self.module = fx.GraphModule(gm, g)
        self.nodes = nodes

    @torch.no_grad()
    def run_all(self, env: dict[str, torch.Tensor], batch: int = 128) -> None:
        """Run the block over every sample of ``env`` (name -> float32 [N, ...]) and store its outputs."""
        n = len(next(iter(env.values())))
        chunks = [self.module(*[env[i][s:s + batch] for i in self.inputs]) for s in range(0, n, batch)]
        for k, name in enumerate(self.outputs):
            env[name] = torch.cat([c[k] for c in chunks])


# ---- the algorithm -----------------------------------------------------------------------------

@dataclass
class GenieConfig(PTQConfig):
    """Genie-M: the PTQ fields (``PTQConfig``, which give the scales reconstruction starts from),
    then the block reconstruction's: Adam steps per block (``recon_iterations``), batch size,
    QDrop probability (``qdrop_p``, Wei et al. 2022 Sec. 4), AdaRound regulariser weight
    (``round_reg``, Nagel et al. 2020 Eq. 24), Adam learning rates of the rounding variables and
    of the (log) step sizes, and the seed of batch sampling and QDrop masks.

    ``overrides`` defaults to ``FIRST_LAST_8BIT`` (the first and last weighted layers at 8 bits,
    as Genie, Sec. 5, keeps them); patterns a user gives through --override or a config file
    are added after them (``QuantConfig.resolve``); a GenieConfig built with ``overrides=...``
    replaces them.
    """
    recon_iterations: int = 400
    recon_batch_size: int = 32
    qdrop_p: float = 0.5
    round_reg: float = 0.01
    recon_lr_rounding: float = 1e-3
    recon_lr_scale: float = 5e-4
    recon_seed: int = 0
    overrides: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: dict(v) for k, v in FIRST_LAST_8BIT.items()})


def plan_bits(canonical: CanonicalModel, cfg: GenieConfig, method: str) -> QuantRecipe:
    """The recipe's layout with per-layer bits: ``cfg.w_bits``/``cfg.a_bits``, then
    ``cfg.overrides`` (Genie's default ``FIRST_LAST_8BIT``, mixed precision's choice, the
    user's per-module bits, in that order; later ones win)."""
    gm = canonical.graph_module
    recipe = plan_recipe(gm, method, cfg.w_bits, cfg.a_bits, cfg.per_channel, bool(cfg.activation_symmetric))
    if cfg.overrides:
        apply_overrides(recipe, gm, cfg.overrides)
    return recipe


def reconstruct(canonical: CanonicalModel, recipe: QuantRecipe, images: torch.Tensor, cfg: GenieConfig,
                seed: int = 0, progress: bool = True, log=None, placement: str = "xnnpack") -> QuantRecipe:
    """Genie-M block reconstruction of a calibrated ``recipe`` on ``images`` (float32 [N, C, H, W]),
    with quantize ops where placement policy ``placement`` (edgekit.quant.placement) puts them.

    Updates the recipe in place (weight and activation scales, ``rounded_weights``) and returns it.
    """
    from torchao.quantization.pt2e.observer import ObserverBase
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from edgekit.quant.placement import quantizer_for

    g = torch.Generator().manual_seed(seed)
    prepared = prepare_pt2e(canonical.graph_module, quantizer_for(placement, recipe))
    for n in list(prepared.graph.nodes):  # export's input guard is no compute
        if n.op == "call_module" and n.target == "_guards_fn" and not n.users:
            prepared.graph.erase_node(n)
    prepared.recompile()
    for p in prepared.parameters():
        p.requires_grad_(False)
    wq: dict[str, WeightQuantizer] = {}
    aq: dict[str, ActQuantizer] = {}
    owner: dict[str, str] = {}  # quantizer module name -> recipe key
    for n in prepared.graph.nodes:
        if n.op != "call_module" or not isinstance(getattr(prepared, n.target), ObserverBase):
            continue
        src = _source(n.args[0], prepared)
        if src.op == "get_attr":
            layer = next(iter(n.users)).name
            if layer not in wq:
                wq[layer] = WeightQuantizer(get_attr_tensor(prepared, src).float(), recipe.layers[layer].weight)
            setattr(prepared, n.target, wq[layer])
        else:
            if src.name not in recipe.activations:
                raise ValueError(f"the recipe has no quantization parameters for the activation {src.name}")
            if src.name not in aq:
                aq[src.name] = ActQuantizer(recipe.activations[src.name].quant)
            setattr(prepared, n.target, aq[src.name])
        owner[n.target] = src.name
    blocks = [Block(prepared, b) for b in split_blocks(prepared)]
    placeholder = next(n.name for n in prepared.graph.nodes if n.op == "placeholder")

    # FP32 reference: every block's outputs on the FP32 inputs
    fp_env = {placeholder: images}
    for b in blocks:
        b.run_all(fp_env)
    q_env = {placeholder: images}
    iters, bs = cfg.recon_iterations, min(cfg.recon_batch_size, len(images))
    bar = tqdm(total=iters * len(blocks), desc="Genie-M reconstruction", unit="step", disable=not progress, leave=False)
    for bi, b in enumerate(blocks):
        mods = {b.module.get_submodule(n.target) for n in b.module.graph.nodes if n.op == "call_module"}
        bw = [m for m in mods if isinstance(m, WeightQuantizer)]
        ba = [m for m in mods if isinstance(m, ActQuantizer)]
        for m in bw:
            m.mode = "soft"
        for m in ba:
            m.enabled, m.drop_p, m.generator = True, cfg.qdrop_p, g
        b.module.train()
        params = [{"params": [m.v for m in bw], "lr": cfg.recon_lr_rounding},
                  {"params": [m.log_s for m in bw] + [m.log_s for m in ba], "lr": cfg.recon_lr_scale}]
        opt = torch.optim.Adam(params)
        warm = int(0.2 * iters)
        for it in range(iters):
            idx = torch.randint(0, len(images), (bs,), generator=g)
            outs = b.module(*[q_env[i][idx] for i in b.inputs])
            rec = sum(((o - fp_env[name][idx]) ** 2).flatten(1).sum(1).mean() for o, name in zip(outs, b.outputs))
            loss = rec
            if it >= warm and bw:
                beta = 2 + 18 * (1 + math.cos(math.pi * (it - warm) / max(1, iters - warm))) / 2
                loss = loss + cfg.round_reg * sum(m.round_reg(beta) for m in bw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            if it % 20 == 0:
                bar.set_postfix(block=bi, rec=f"{rec.item():.4f}")
        for m in bw:
            m.mode = "hard"
        for m in ba:
            m.drop_p = 0.0
        b.module.eval()
        b.run_all(q_env)
        if log:
            with torch.no_grad():
                err = sum(float(((q_env[o] - fp_env[o]) ** 2).mean()) for o in b.outputs)
            log(f"Genie-M block {bi + 1}/{len(blocks)} ({len(bw)} layers): output MSE {err:.5f}")
    bar.close()

    # the learned parameters back into the recipe
    for layer, m in wq.items():
        tq = recipe.layers[layer].weight
        tq.scale = m.scale.detach().flatten().tolist()
        tq.zero_point = [0] * len(tq.scale)
        recipe.rounded_weights[layer] = m.integers()
    for name, m in aq.items():
        tq = recipe.activations[name].quant
        s = m.scale.item()
        tq.scale = [s]
        tq.range_min, tq.range_max = (tq.quant_min - tq.zero_point[0]) * s, (tq.quant_max - tq.zero_point[0]) * s
    return recipe


def genie(canonical: CanonicalModel, cfg: GenieConfig, calib: CalibrationSource,
          placement: str = "xnnpack") -> QuantRecipe:
    """Genie-M on ``calib`` (Genie-D images with --data-free, real images with --calib): plan
    per-layer bits, initialise scales (MSE for low-bit activations), reconstruct block-wise with
    the target's ``placement``."""
    recipe = plan_bits(canonical, cfg, "genie")
    init_cfg = replace(cfg, act_estimator="mse" if cfg.a_bits < 8 else cfg.act_estimator)
    recipe = calibrate(canonical, init_cfg, calib, "genie", recipe=recipe, progress=False)
    return reconstruct(canonical, recipe, calib.images, cfg, seed=cfg.recon_seed, progress=False,
                       placement=placement)


ALGORITHMS.register("genie", Algorithm("genie", genie, GenieConfig, "genie",
                                       "Genie: Genie-D synthetic data + Genie-M block reconstruction (W4A4-capable)",
                                       mixed_precision=True))
