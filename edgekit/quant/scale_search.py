"""Search of each quantizer's parameters against the output error it causes: the engine of
Q-HyViT (Lee et al., Sec. IV), PTQ4ViT's Hessian-guided search (Yuan et al. 2022, Sec. 4.2) and
EasyQuant's cosine search (Wu et al. 2020, Sec. 3).

Every quantizer the target's placement puts in the graph (``prepare_pt2e`` with the placement's
quantizer; ``edgekit.quant.placement``) becomes a probe that fake-quantizes with a recipe entry.
Each probe is searched in a region:
- a weight: at its layer's output (conv2d, linear);
- an activation: at the outputs of the layers and matmuls that read it, and at itself when
  another op reads it;
- every quantizer of a bridge block (:func:`find_bridges`): at the block's outputs, jointly.
Region inputs are the FP32 model's values on the calibration images (PTQ4ViT's parallel
calibration); the quantizers inside a region use their current parameters. Candidates per
quantizer: ``candidates`` scales evenly spaced in [alpha_lo, alpha_hi] times the max-based one,
for each weight granularity and activation scheme allowed, ``rounds`` passes over all probes.

Metrics: ``hessian``: sum of w (Q(o) - o)^2 over the region outputs o, with w = E[g^2] +
damping * mean(E[g^2]) and g the gradient at o: the (damped) diagonal Fisher approximation of
the loss increase (BRECQ, Li et al. 2021, Sec. 3.2; Q-HyViT's objective). The loss is the KL
divergence to the FP32 model's own output; its gradient vanishes at the FP32 point and its
Hessian there, in the logits, is F = diag(p) - p p^T, so E[g^2] is estimated as the mean of
(J^T v)^2 over draws v = sqrt(p) * r - p (sqrt(p) . r), r ~ N(0, I) (covariance exactly F);
for outputs that are not logits [N, K], v = r (the Gauss-Newton Hessian of the squared error).
``cosine``: 1 - cosine similarity of each sample's output with the FP32 one (EasyQuant).
The model's outputs keep their whole min/max range: a clipped logit ties with its neighbours,
a large error no second-order estimate sees.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from torch import fx
from torchao.quantization.pt2e.observer import ObserverBase
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

from edgekit.models.canonical import WEIGHTED_OPS, CanonicalModel, get_attr_tensor
from edgekit.quant.algorithms.ptq import DATA_MOVEMENT_OPS as DATA_MOVEMENT
from edgekit.quant.placement import ATTENTION_MATMULS, quantizer_for
from edgekit.quant.qparams import EPS, WEIGHT_EPS, fake_quant, fill_affine, fill_twin, fill_unit_interval, fill_weight
from edgekit.quant.recipe import TWIN, TWIN_OPS, QuantRecipe, TensorQuant, fixed_range_nodes

METRICS = ("hessian", "cosine")


@dataclass(frozen=True)
class SearchSpace:
    """What the search may choose. metric: "hessian" or "cosine". Scale candidates:
    ``candidates`` values evenly spaced in [alpha_lo, alpha_hi] times the max-based scale.
    weight_granularities: of "per_channel" (each channel its own candidate) and "per_tensor".
    activation_schemes: True (symmetric, zero point 0) and/or False (asymmetric).
    bridges: search the quantizers of bridge blocks jointly at the block outputs.
    clear_choices: a scheme or granularity other than the first is taken only when clearly
    better (:func:`_first_unless_clearly_worse`); False takes the lowest error outright.
    Recipe entries planned twin-uniform (``plan_recipe(..., twin_uniform=True)``) get PTQ4ViT's
    twin-uniform quantizer (simulation only), searched as :func:`_search_twin` says."""
    metric: str = "hessian"
    alpha_lo: float = 0.01
    alpha_hi: float = 1.2
    candidates: int = 100
    rounds: int = 3
    weight_granularities: tuple[str, ...] = ("per_channel",)
    activation_schemes: tuple[bool, ...] = (True,)
    bridges: bool = False
    damping: float = 0.0
    clear_choices: bool = True

    def alphas(self) -> torch.Tensor:
        return torch.linspace(self.alpha_lo, self.alpha_hi, self.candidates)


class _Probe(torch.nn.Module):
    """Fake quantization with a recipe entry (identity while ``on`` is False or without one)."""

    def __init__(self, tq: TensorQuant | None, key: tuple[str, str] | None) -> None:
        super().__init__()
        self.tq, self.key, self.on = tq, key, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.on or self.tq is None or not self.tq.filled:
            return x
        return fake_quant(x, self.tq)


@dataclass
class _Region:
    probes: list[fx.Node]          # the probes searched here
    core: list[fx.Node]            # nodes computed, in graph order (the outputs last)
    outputs: list[fx.Node]
    bridge: bool = False           # a bridge block (its weights cannot be searched channel by channel)


def has_attention(gm: fx.GraphModule) -> bool:
    """Whether the graph multiplies two activations (q@kᵀ, attn@v) or calls fused attention."""
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target is torch.ops.aten.scaled_dot_product_attention.default:
            return True
        if n.target in ATTENTION_MATMULS and all(isinstance(a, fx.Node) and a.op != "get_attr" for a in n.args[:2]):
            return True
    return False


def _layer_kind(n: fx.Node) -> str | None:
    """"conv" for a conv2d, "token" for a linear on a sequence (input of 3 or more dims), None else."""
    if n.op != "call_function" or n.target not in WEIGHTED_OPS:
        return None
    if n.target is torch.ops.aten.conv2d.default:
        return "conv"
    val = n.args[0].meta.get("val") if isinstance(n.args[0], fx.Node) else None
    return "token" if isinstance(val, torch.Tensor) and val.dim() >= 3 else None


def find_bridges(gm: fx.GraphModule) -> list[tuple[str, list[str]]]:
    """Bridge blocks of a hybrid model, from its graph: a weighted layer and the weighted layers
    nearest downstream of it (fewest ops in between, not counting reshapes and permutes: the
    unfold/fold, LayerNorm, adds and activations count) when the layer is a conv and one of
    those is a linear on a sequence ([N, T, D]), or the reverse. A residual stream that runs on
    to a later part is longer than the path into the next layer, so it does not make a bridge.
    Returns [(start node, [end nodes])] in graph order. Replaces the hand-written block indices
    of Q-HyViT's public code (Sec. IV-C), so any hybrid model works."""
    import collections
    order = {m: i for i, m in enumerate(gm.graph.nodes)}
    out = []
    for n in gm.graph.nodes:
        kind = _layer_kind(n)
        if kind is None:
            continue
        cost: dict[fx.Node, int] = {}
        todo = collections.deque((u, 0) for u in n.users)
        while todo:  # 0-1 breadth-first search: data movement costs 0, any other op 1
            u, c = todo.popleft()
            if u.op == "output" or cost.get(u, c + 1) <= c:
                continue
            cost[u] = c
            if u.op == "call_function" and u.target in WEIGHTED_OPS:
                continue
            step = 0 if u.op == "call_function" and u.target in DATA_MOVEMENT else 1
            for w in u.users:
                (todo.appendleft if step == 0 else todo.append)((w, c + step))
        layers = {u: c for u, c in cost.items() if u.op == "call_function" and u.target in WEIGHTED_OPS}
        if not layers:
            continue
        nearest = min(layers.values())
        ends = sorted((u for u, c in layers.items() if c == nearest), key=order.get)
        kinds = {_layer_kind(e) for e in ends} - {None}
        if kinds and kinds != {kind}:
            out.append((n.name, [e.name for e in ends]))
    return out


def _ties(gm: fx.GraphModule, names: set[str]) -> dict[str, str]:
    """Recipe activation -> the entry whose parameters it must share (data movement keeps its
    input's; a concatenation and its inputs share one)."""
    parent = {k: k for k in names}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a, b):
        if a in parent and b in parent:
            parent[find(b)] = find(a)
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in DATA_MOVEMENT and isinstance(n.args[0], fx.Node):
            union(n.args[0].name, n.name)
        elif n.target is torch.ops.aten.cat.default:
            for a in n.args[0]:
                union(n.name, a.name)
    return {k: find(k) for k in names}


def _source_of(n: fx.Node, probes) -> fx.Node:
    """The node a chain of probes (or observers) observes (``n`` itself when it is none)."""
    while n in probes:
        n = n.args[0]
    return n


class _Graph:
    """The prepared graph with probes, the FP32 values the regions read, and their evaluation."""

    def __init__(self, canonical: CanonicalModel, recipe: QuantRecipe, placement: str) -> None:
        self.gm = prepare_pt2e(canonical.graph_module, quantizer_for(placement, recipe))
        observers = [n for n in self.gm.graph.nodes
                     if n.op == "call_module" and isinstance(getattr(self.gm, n.target), ObserverBase)]
        self.roots = _ties(canonical.graph_module, set(recipe.activations))  # the graph without observers
        self.probes: dict[fx.Node, _Probe] = {}
        for n in observers:
            src = _source_of(n.args[0], set(observers))
            if src.op == "get_attr":
                layer = next(iter(n.users))
                entry = recipe.layers.get(layer.name)
                probe = _Probe(entry.weight if entry else None, ("w", layer.name) if entry else None)
            else:
                root = self.roots.get(src.name)
                probe = _Probe(recipe.activations[root].quant if root else None, ("a", root) if root else None)
            self.probes[n] = probe
        for n, probe in self.probes.items():
            setattr(self.gm, n.target, probe)
        self.attrs: dict[fx.Node, torch.Tensor] = {}
        self.stored: dict[fx.Node, list[torch.Tensor]] = {}
        self.fisher: dict[fx.Node, list[torch.Tensor]] = {}  # E[g^2] per output element
        self.samples = 8  # Monte Carlo draws of the Fisher per chunk
        self.ranges: dict[str, list[float]] = {}

    def set_on(self, on: bool) -> None:
        for p in self.probes.values():
            p.on = on

    def attr(self, n: fx.Node) -> torch.Tensor:
        if n not in self.attrs:
            self.attrs[n] = get_attr_tensor(self.gm, n).detach()
        return self.attrs[n]

    def record(self, chunks: list[torch.Tensor], keep: set[fx.Node], grads_at: set[fx.Node], seed: int = 0) -> None:
        """Run the FP32 graph on each chunk (float32 [B, C, H, W]): keep the values of ``keep``,
        the diagonal Fisher E[g^2] at ``grads_at`` (``samples`` draws, see the module docstring)
        and the range of every recipe activation."""
        gen = torch.Generator().manual_seed(seed)
        self.set_on(False)
        with torch.enable_grad():
            for x in chunks:
                self._record_one(x, keep, grads_at, gen)

    def _record_one(self, x: torch.Tensor, keep: set[fx.Node], grads_at: set[fx.Node], gen) -> None:
        env: dict[fx.Node, object] = {}
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                v = x.clone().requires_grad_(True)
            elif n.op == "output":
                out = torch.utils._pytree.tree_leaves(self._args(n, env)[0])[0]
                break
            else:
                v = self._run(n, env)
            env[n] = v
            if n.name in self.roots and isinstance(v, torch.Tensor) and v.is_floating_point():
                lo, hi = float(v.detach().min()), float(v.detach().max())
                r = self.ranges.setdefault(n.name, [lo, hi])
                r[0], r[1] = min(r[0], lo), max(r[1], hi)
        at = [n for n in grads_at if isinstance(env[n], torch.Tensor) and env[n].requires_grad]
        fisher = {n: torch.zeros_like(env[n]) for n in grads_at}
        for s in range(self.samples):
            if out.dim() == 2:  # logits: v has covariance diag(p) - p p^T, the KL's Hessian at the FP32 point
                p = out.detach().softmax(1)
                r = torch.randn(p.shape, generator=gen)
                v = p.sqrt() * r - p * (p.sqrt() * r).sum(1, keepdim=True)
            else:  # another output: identity covariance (the Gauss-Newton Hessian of the squared error)
                v = torch.randn(out.shape, generator=gen)
            grads = torch.autograd.grad((out * v).sum(), [env[n] for n in at], retain_graph=s + 1 < self.samples,
                                        allow_unused=True)
            for n, g in zip(at, grads):
                if g is not None:
                    fisher[n] += g.detach().square() / self.samples
        for n in keep:
            v = env[n]
            self.stored.setdefault(n, []).append(v.detach() if isinstance(v, torch.Tensor) else v)
        for n in grads_at:
            self.fisher.setdefault(n, []).append(fisher[n])

    def _args(self, n: fx.Node, val):
        look = val if callable(val) else val.__getitem__
        return torch.fx.node.map_arg((n.args, n.kwargs), look)

    def _run(self, n: fx.Node, env):
        if n.op == "get_attr":
            return self.attr(n)
        args, kwargs = self._args(n, env)
        if n.op == "call_module":
            return getattr(self.gm, n.target)(*args, **kwargs)
        return n.target(*args, **kwargs)

    def evaluate(self, region: _Region, chunk: int) -> dict[fx.Node, torch.Tensor]:
        """The region's outputs on one chunk, quantizers on (inputs: stored FP32 values)."""
        env: dict[fx.Node, torch.Tensor] = {}
        core = set(region.core)

        def val(a: fx.Node):
            if a in env:
                return env[a]
            if a.op == "get_attr":
                return self.attr(a)
            if a in self.probes and a not in core:
                env[a] = self.probes[a](val(a.args[0]))
                return env[a]
            return self.stored[a][chunk]
        for n in region.core:
            env[n] = self._run(n, val)
        return {o: env[o] for o in region.outputs}

    def needs(self, region: _Region) -> set[fx.Node]:
        """The stored FP32 values evaluating ``region`` reads (and its outputs' references)."""
        core, need = set(region.core), set(region.outputs)

        def add(a: fx.Node):
            if a in core or a.op == "get_attr":
                return
            if a in self.probes:
                add(a.args[0])
            else:
                need.add(a)
        for n in region.core:
            for a in n.all_input_nodes:
                add(a)
        return need


def _channel_dim(n: fx.Node) -> int:
    return 1 if n.target is torch.ops.aten.conv2d.default else -1


class _Scorer:
    def __init__(self, graph: _Graph, metric: str, damping: float = 0.0) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: use one of {METRICS}")
        self.g, self.metric, self.damping = graph, metric, damping
        self._weights: dict[tuple[fx.Node, int], torch.Tensor] = {}

    def weights(self, o: fx.Node, c: int) -> torch.Tensor:
        """g^2 at output ``o`` on chunk ``c``, plus ``damping`` times its mean over the chunk."""
        if (o, c) not in self._weights:
            g2 = self.g.fisher[o][c]
            self._weights[o, c] = g2 + self.damping * g2.mean()
        return self._weights[o, c]

    def error(self, region: _Region, per_channel: fx.Node | None = None, per_image: bool = False) -> torch.Tensor:
        """The region's error (a scalar), or per output channel of the layer ``per_channel``
        (the region's only output) as a vector [C], or per calibration image (``per_image``,
        a vector [N] over the chunks' images, padding included), float64."""
        total = 0.0
        chunks = len(next(iter(self.g.stored.values())))
        if per_image:
            parts = []
            for c in range(chunks):
                img = 0.0
                for o, q in self.g.evaluate(region, c).items():
                    fp = self.g.stored[o][c]
                    if self.metric == "hessian":
                        img = img + (self.weights(o, c) * (q - fp).square()).flatten(1).sum(1)
                    else:
                        img = img + 1 - torch.nn.functional.cosine_similarity(q.flatten(1), fp.flatten(1), dim=1,
                                                                              eps=1e-12)
                parts.append(torch.as_tensor(img, dtype=torch.float64).reshape(-1))
            return torch.cat(parts)
        for c in range(chunks):
            for o, q in self.g.evaluate(region, c).items():
                fp = self.g.stored[o][c]
                if self.metric == "hessian":
                    e = self.weights(o, c) * (q - fp).square()
                    total = total + (e.transpose(0, _channel_dim(per_channel)).flatten(1).sum(1)
                                     if per_channel is not None else e.sum())
                else:
                    if per_channel is not None:
                        d = _channel_dim(per_channel)
                        qa, fa = q.transpose(0, d).flatten(1), fp.transpose(0, d).flatten(1)
                        total = total + (1 - torch.nn.functional.cosine_similarity(qa, fa, dim=1, eps=1e-12))
                    else:
                        total = total + (1 - torch.nn.functional.cosine_similarity(
                            q.flatten(1), fp.flatten(1), dim=1, eps=1e-12)).sum()
        return torch.as_tensor(total, dtype=torch.float64)


def _regions(graph: _Graph, bridges: list[tuple[str, list[str]]]) -> list[_Region]:
    gm, probes = graph.gm, graph.probes
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    by_name = {n.name: n for n in gm.graph.nodes}
    searchable = {n for n, p in probes.items() if p.key is not None}
    claimed: set[fx.Node] = set()
    regions: list[_Region] = []
    for start_name, end_names in bridges:
        start, ends = by_name[start_name], [by_name[e] for e in end_names]
        down, todo = set(), [start]
        while todo:
            n = todo.pop()
            if n not in down:
                down.add(n)
                todo.extend(n.users)
        up, todo = set(), list(ends)
        while todo:
            n = todo.pop()
            if n not in up:
                up.add(n)
                todo.extend(n.all_input_nodes)
        core = sorted(down & up, key=order.get)
        members = {n for n in core if n in searchable}
        members |= {a for n in core for a in n.all_input_nodes if a in searchable}
        members -= claimed
        claimed |= members
        first: dict = {}  # one probe per quantizer: probes of one tied tensor share its parameters
        for m in sorted(members, key=order.get):
            first.setdefault(probes[m].key, m)
        if first:  # a later bridge inside an earlier one has nothing left of its own
            regions.append(_Region(list(first.values()), core, ends, bridge=True))
    for p in sorted(searchable - claimed, key=order.get):
        layer = next(iter(p.users))
        if probes[p].key[0] == "w":
            outputs = [layer]
        else:
            users = list(p.users)
            outputs = [u for u in users if u.op == "call_function"
                       and (u.target in WEIGHTED_OPS or u.target in ATTENTION_MATMULS)]
            if len(outputs) < len(users) or not outputs:
                outputs.append(p)
        regions.append(_Region([p], sorted(outputs, key=order.get), sorted(outputs, key=order.get)))
    return regions


def _weight_candidates(tq: TensorQuant, gran: str, alpha: float, amax_c: torch.Tensor) -> None:
    """Set ``tq`` to ``alpha`` times the max-based symmetric scales (per channel of ``amax_c`` [C], or its max)."""
    tq.granularity, tq.axis = gran, (0 if gran == "per_channel" else None)
    amax = amax_c if gran == "per_channel" else amax_c.max().reshape(1)
    tq.scale = torch.clamp(alpha * amax / tq.quant_max, min=WEIGHT_EPS).tolist()
    tq.zero_point = [0] * len(tq.scale)


def search(canonical: CanonicalModel, recipe: QuantRecipe, images: torch.Tensor, space: SearchSpace,
           placement: str, fixed: set[str] = frozenset()) -> list[float]:
    """Search the parameters of every quantizer ``placement`` puts in ``canonical``'s graph and
    write them into ``recipe`` in place (weights: granularity and scales; activations: scheme, scale,
    zero point, range). Activations the placement does not quantize get their min/max range.

    images: calibration inputs float32 [N, C, H, W], run in chunks the program accepts.
    fixed: activation entries whose parameters are already final (the input's range when the
    preprocessing is known); softmax and sigmoid outputs are fixed (``fill_unit_interval``) unless
    planned twin-uniform.
    Returns the quantized model's loss against FP32 on each of ``images`` (KL of the softmax
    for logits [N, K], else relative squared error): a list of N floats.
    Raises ValueError for an unknown metric.
    """
    graph = _Graph(canonical, recipe, placement)
    scorer = _Scorer(graph, space.metric, space.damping)
    # found on the model's own graph: in the prepared one a linear reads a probe, which carries no
    # tensor metadata, so it would not count as a layer on tokens (node names are kept by prepare_pt2e)
    bridges = find_bridges(canonical.graph_module) if space.bridges else []
    regions = _regions(graph, bridges)
    keep, grads_at = set(), set()
    for r in regions:
        keep |= graph.needs(r)
        grads_at |= set(r.outputs)
    step = canonical.batch or len(images)
    chunks = [images[i:i + step] for i in range(0, len(images), step)]
    if canonical.batch is not None and len(chunks[-1]) < step:
        chunks[-1] = torch.cat([chunks[-1], chunks[-1][-1:].expand(step - len(chunks[-1]), *images.shape[1:])])
    graph.record(chunks, keep, grads_at)
    twins = _twin_minimums(graph, recipe)
    unit = fixed_range_nodes(graph.gm) & set(recipe.activations) - set(twins)
    for name in unit:
        fill_unit_interval(recipe.activations[name].quant)
    fixed = set(fixed) | unit
    for name, minimum in twins.items():  # the start: R1 as _search_twin fixes it, R2 max-based; a
        # softmax's R1 2^-7 of R2 (PTQ4ViT's code starts at a split of 0.01); a start with one grid
        # biases small probabilities up, and the matmul's other operand is then searched against that bias
        n = 2 ** (recipe.activations[name].quant.bits - 1)
        top = 1.0 if minimum == 0 else max(graph.ranges[name][1], EPS)
        fill_twin(recipe.activations[name].quant, -minimum / n if minimum else top / (n - 1) / 2 ** 7,
                  top / (n - 1), minimum)
    # the model's outputs keep their whole range: a clipped logit ties with its neighbours, a
    # large error the second-order estimate does not see (confident images weigh ~0 in the KL)
    out_node = next(n for n in graph.gm.graph.nodes if n.op == "output")
    outputs = {graph.roots.get(_source_of(a, graph.probes).name)
               for a in torch.utils._pytree.tree_leaves(out_node.args) if isinstance(a, fx.Node)} - {None}
    for name in outputs - fixed - set(twins):
        if name in graph.ranges:
            recipe.activations[name].quant.symmetric = False not in space.activation_schemes
            fill_affine(recipe.activations[name].quant, *graph.ranges[name])
    fixed |= outputs
    # the start: max-based scales, symmetric (Q-HyViT Sec. IV-A), the fixed ranges kept
    for name, aq in recipe.activations.items():
        if graph.roots.get(name) == name and name not in fixed and name not in twins and name in graph.ranges:
            aq.quant.symmetric = space.activation_schemes[0]
            fill_affine(aq.quant, *graph.ranges[name])
    for lq in recipe.layers.values():
        lq.weight.granularity = space.weight_granularities[0]
    weights = {n: get_attr_tensor(graph.gm, n.args[0]).detach() for n, p in graph.probes.items()
               if p.key is not None and p.key[0] == "w"}
    for n, w in weights.items():
        _weight_candidates(graph.probes[n].tq, space.weight_granularities[0], 1.0, w.abs().flatten(1).amax(1))
    graph.set_on(True)
    alphas = space.alphas().tolist()
    with torch.no_grad():
        for _ in range(space.rounds):
            for region in regions:
                for p in region.probes:
                    probe = graph.probes[p]
                    kind, key = probe.key
                    if kind == "w":
                        _search_weight(probe.tq, weights[p], region, scorer, space, alphas)
                    elif key in twins:
                        _search_twin(probe.tq, twins[key], graph.ranges[key], region, scorer, alphas)
                    elif key not in fixed and key in graph.ranges:
                        _search_activation(probe.tq, graph.ranges[key], region, scorer, space, alphas)
    for name, aq in recipe.activations.items():  # shared parameters, then the unquantized tensors
        root = graph.roots.get(name, name)
        if root != name and recipe.activations[root].quant.filled:
            src = recipe.activations[root].quant
            aq.quant.symmetric, aq.quant.scheme = src.symmetric, src.scheme
            aq.quant.scale, aq.quant.zero_point = list(src.scale), list(src.zero_point)
            aq.quant.range_min, aq.quant.range_max = src.range_min, src.range_max
        elif not aq.quant.filled:
            fill_affine(aq.quant, *graph.ranges.get(name, (0.0, 1.0)))
    nodes = {n.name: n for n in graph.gm.graph.nodes}
    probed = {p.key[1] for p in graph.probes.values() if p.key and p.key[0] == "w"}
    for name, lq in recipe.layers.items():
        if name not in probed:
            lq.weight.granularity, lq.weight.axis = "per_channel", 0  # a layer the placement leaves float
            fill_weight(lq.weight, get_attr_tensor(graph.gm, nodes[name].args[1]))
    return _task_loss(graph, chunks)[:len(images)]  # the last chunk's padding dropped


def _twin_minimums(graph: _Graph, recipe: QuantRecipe) -> dict[str, float]:
    """Recipe activations planned twin-uniform (scheme ``TWIN``: outputs of ``TWIN_OPS``) that
    share no parameters with another tensor, each with the minimum of its values: softmax
    outputs (0.0) and GELU/SiLU outputs (the function's minimum). PTQ4ViT (Sec. 4.1) names
    post-softmax and post-GELU values; SiLU's have the same shape (a small negative tail, a long
    positive one), so a MobileViT's SiLU outputs get the post-GELU form."""
    out = {}
    for n in graph.gm.graph.nodes:
        if (n.op == "call_function" and n.target in TWIN_OPS and n.name in recipe.activations
                and recipe.activations[n.name].quant.scheme == TWIN
                and graph.roots.get(n.name) == n.name and n.name in graph.ranges):
            out[n.name] = TWIN_OPS[n.target]
    return out


def _search_twin(tq: TensorQuant, minimum: float, rng: list[float], region: _Region, scorer: _Scorer,
                 alphas: list[float]) -> None:
    """PTQ4ViT's search of a twin-uniform quantizer (Sec. 4.1-4.2), n = 2^(bits-1) levels per
    range. Post-softmax (``minimum`` 0): R2's scale fixed at 1 / (n - 1), so R2 covers [0, 1];
    R1's scale is R2's / 2^m for m = 0 .. 19 (the power-of-two ratio that lets hardware compare
    the two ranges with a shift; PTQ4ViT's public code uses the same 20 candidates). Post-GELU:
    R1's scale fixed so that its n levels cover [minimum, 0]; R2's scale ``alphas`` times the
    max-based one (n - 1 levels over the observed maximum)."""
    n = 2 ** (tq.bits - 1)
    if minimum == 0:
        top = 1.0 / (n - 1)
        candidates = [(top / 2 ** m, top) for m in range(20)]
    else:
        low = -minimum / n
        candidates = [(low, max(a * rng[1] / (n - 1), EPS)) for a in alphas]
    best = (math.inf, candidates[0])
    for r1, r2 in candidates:
        fill_twin(tq, r1, r2, minimum)
        e = float(scorer.error(region))
        if e < best[0]:
            best = (e, (r1, r2))
    fill_twin(tq, *best[1], minimum)


def _task_loss(graph: _Graph, chunks: list[torch.Tensor]) -> list[float]:
    """The quantized model's loss against the FP32 one on the calibration chunks, one value per
    image (summed over the model's outputs): KL(FP32 || quantized) of the softmax for outputs
    [N, K], else the squared error over the FP32 output's energy."""
    per_image: list[float] = []
    with torch.no_grad():
        for c in chunks:
            graph.set_on(False)
            fp = [t for t in torch.utils._pytree.tree_leaves(graph.gm(c)) if isinstance(t, torch.Tensor)]
            graph.set_on(True)
            q = [t for t in torch.utils._pytree.tree_leaves(graph.gm(c)) if isinstance(t, torch.Tensor)]
            loss = torch.zeros(len(c), dtype=torch.float64)
            for f, o in zip(fp, q):
                if f.dim() == 2:
                    lp, lq = f.log_softmax(1), o.log_softmax(1)
                    loss += (lp.exp() * (lp - lq)).sum(1).double()
                else:
                    err = (o - f).square().flatten(1).sum(1) / f.square().flatten(1).sum(1).clamp_min(1e-12)
                    loss += err.double()
            per_image += loss.tolist()
    return per_image


def _search_weight(tq: TensorQuant, w: torch.Tensor, region: _Region, scorer: _Scorer, space: SearchSpace,
                   alphas: list[float]) -> None:
    """Each granularity's best scales (per channel where the region is the layer alone); the
    first granularity is kept unless another is clearly better (:func:`_first_unless_clearly_worse`)."""
    amax_c = w.abs().flatten(1).amax(1)
    layer = region.outputs[0] if len(region.outputs) == 1 and not region.bridge else None
    found = []
    for gran in space.weight_granularities:
        separable = gran == "per_channel" and layer is not None
        errs = []
        for a in alphas:
            _weight_candidates(tq, gran, a, amax_c)
            errs.append(scorer.error(region, layer if separable else None))
        errs = torch.stack(errs)  # [K] or [K, C]
        if separable:  # each output channel depends on its own weights only: choose per channel
            idx = errs.argmin(0)
            scale = torch.clamp(torch.tensor(alphas)[idx] * amax_c / tq.quant_max, min=WEIGHT_EPS)
        else:
            _weight_candidates(tq, gran, alphas[int(errs.argmin())], amax_c)
            scale = torch.tensor(tq.scale)
        found.append((gran, scale))

    def put(gran, scale):
        tq.granularity, tq.axis = gran, (0 if gran == "per_channel" else None)
        tq.scale, tq.zero_point = scale.tolist(), [0] * len(scale)
    put(*_first_unless_clearly_worse(found, put, region, scorer, space.clear_choices))


def _search_activation(tq: TensorQuant, rng: list[float], region: _Region, scorer: _Scorer, space: SearchSpace,
                       alphas: list[float]) -> None:
    """Each scheme's best clipping ``alpha`` of the observed range; the first scheme is kept
    unless another is clearly better (:func:`_first_unless_clearly_worse`)."""
    found = []
    for symmetric in space.activation_schemes:
        tq.symmetric = symmetric
        best = (math.inf, None)
        for a in alphas:
            fill_affine(tq, a * rng[0], a * rng[1])
            e = float(scorer.error(region))
            if e < best[0]:
                best = (e, a)
        found.append((symmetric, best[1]))

    def put(symmetric, a):
        tq.symmetric = symmetric
        fill_affine(tq, a * rng[0], a * rng[1])
    put(*_first_unless_clearly_worse(found, put, region, scorer, space.clear_choices))


def _first_unless_clearly_worse(found: list[tuple], put, region: _Region, scorer: _Scorer, clear: bool = True) -> tuple:
    """Of the options ``found`` (each the best parameters of one scheme or granularity, the
    first the default), the first, unless another's region error is lower image by image beyond
    the calibration images' noise (:func:`clearly_lower` on the per-image errors; ``put(*option)``
    sets an option). Q-HyViT (Sec. IV-A) takes the lower error outright; from 32 images that
    choice is noise where the options are close (an asymmetric grid on a range such as
    [-4.66, 4.66] is the symmetric one). Over three calibration draws the rule moved no
    model's mean top-1 consistently either way; it gives mostly symmetric, per-channel recipes
    (docs/hybrid_vit.md). ``clear`` False: the option of lowest summed error (the paper's choice)."""
    if len(found) == 1:
        return found[0]
    errs = []
    for option in found:
        put(*option)
        errs.append(scorer.error(region, per_image=True).tolist())
    kept = 0
    for i in range(1, len(found)):
        if clearly_lower(errs[i], errs[kept]) if clear else sum(errs[i]) < sum(errs[kept]):
            kept = i
    return found[kept]


def clearly_lower(losses: list[float], than: list[float], z: float = 2.0) -> bool:
    """Whether the per-image ``losses`` (same images, same order as ``than``) are lower than
    ``than`` by more than ``z`` standard errors of their mean paired difference: a one-sided
    paired test. Used by the per-tensor choices (:func:`_first_unless_clearly_worse`) and by
    Q-HyViT's whole-model symmetric candidate (``edgekit.quant.algorithms.qhyvit``). Raises
    ValueError when the lengths differ."""
    if len(losses) != len(than):
        raise ValueError(f"{len(losses)} losses against {len(than)}")
    d = [b - a for a, b in zip(losses, than)]
    if len(d) < 2:
        return sum(d) > 0
    return statistics.fmean(d) > z * statistics.stdev(d) / math.sqrt(len(d))
