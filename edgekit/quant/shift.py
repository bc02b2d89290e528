"""Shift (power-of-two) weights and their fine-tuning: every conv/linear weight becomes
``alpha_c * sign * 2^p`` (alpha per output channel), so a weight multiplication is a sign flip
and a shift of the activation. The integers ``sign * 2^p`` fit an int8 carrier (|q| <= 127), so
int8 runtimes run the network exactly; ``p`` is capped at 6 there.

Three parametrizations, one fine-tuning loop (knowledge distillation from the FP model):

- ``denseshift`` (Li et al., ICCV 2023, "DenseShift"): zero-free levels ``{+-1, +-2, ..., +-2^P}``
  (3 bits: sign + 2 exponent bits, P = 3; 4 bits: P = 6 in the int8 carrier, the 8th exponent
  would need +-128). Sign-scale decomposition: the sign comes from its own latent (binarised with
  a straight-through estimator), the scale ``2^p = prod_k 2^(2^k b_k)`` from binary latents
  ``b_k`` (one per exponent bit, each binarised with a straight-through estimator), so a weight's
  sign and magnitude are trained apart. Low-variance initialisation: the latents start at
  ``+-delta`` (``init_delta``, small) around zero on the side the trained FP weight gives, so the
  network starts at the FP weights' power-of-two rounding and any latent can flip within a few
  steps (the paper's point: small latent variance keeps sign and exponent bits from freezing).
- ``deepshift-q`` (Elhoushi et al., "DeepShift", DeepShift-Q): a latent FP weight rounded to the
  nearest power of two in the forward pass, with zero: ``{0, +-1, ..., +-2^P}``, P = 2^(b-1) - 2
  (3 bits: P = 2; 4 bits: P = 6); straight-through gradient to the latent weight.
- ``deepshift-ps`` (DeepShift-PS): the sign (ternary, -1/0/+1) and the shift trained directly as
  rounded latents, same levels as DeepShift-Q.

``alpha`` is per output channel, initialised by a search over 17 candidates (the channel's max
|w| over 2^P times 2^(-k/8), k = 0..16) for the least squared rounding error, then trained (as
its log). Only the weights' parametrization, ``alpha`` and the (BN-folded) biases are trained.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import fx, nn
from tqdm import tqdm

from edgekit.errors import UserError

KINDS = ("denseshift", "deepshift-q", "deepshift-ps")
INT8_MAX_EXPONENT = 6  # 2^6 = 64 <= 127; 2^7 = 128 does not fit a symmetric int8 weight


def max_exponent(kind: str, code_bits: int) -> int:
    """The largest exponent P of a ``code_bits``-bit shift weight of ``kind`` (levels 2^0..2^P)."""
    if code_bits not in (2, 3, 4, 5):
        raise ValueError(f"shift weights take 2 to 5 code bits, not {code_bits}")
    p = 2 ** (code_bits - 1) - 1 if kind == "denseshift" else 2 ** (code_bits - 1) - 2
    return min(p, INT8_MAX_EXPONENT)


def levels(kind: str, code_bits: int) -> list[int]:
    """The integers a weight of ``kind`` takes (times its channel's alpha)."""
    top = max_exponent(kind, code_bits)
    mags = [2 ** p for p in range(top + 1)]
    return sorted({s * m for m in mags for s in (-1, 1)} | ({0} if kind != "denseshift" else set()))


def nearest_pow2(v: torch.Tensor, top: int, zero: bool) -> torch.Tensor:
    """``v`` (weights over alpha) to the nearest level: sign * 2^round(log2|v|), the exponent
    clamped to [0, top]; with ``zero``, |v| below 2^-0.5 (closer to 0 than to 1) becomes 0."""
    mag = v.abs()
    p = torch.log2(mag.clamp_min(1e-30)).round().clamp(0, top)
    q = torch.where(v < 0, -1.0, 1.0) * torch.exp2(p)
    return torch.where(mag < 2 ** -0.5, torch.zeros_like(q), q) if zero else q


def _search_alpha(w: torch.Tensor, top: int, zero: bool) -> torch.Tensor:
    """Per output channel, the alpha of least squared error among max|w| / 2^top * 2^(-k/8)."""
    flat = w.detach().reshape(w.shape[0], -1)
    amax = flat.abs().amax(1).clamp_min(1e-12) / 2 ** top
    best, best_err = amax.clone(), torch.full_like(amax, float("inf"))
    for k in range(17):
        a = amax * 2 ** (-k / 8)
        err = (flat - nearest_pow2(flat / a[:, None], top, zero) * a[:, None]).pow(2).sum(1)
        better = err < best_err
        best, best_err = torch.where(better, a, best), torch.where(better, err, best_err)
    return best


def _ste(forward: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
    """``forward``'s value with ``proxy``'s gradient (straight-through estimator)."""
    return proxy + (forward - proxy).detach()


class ShiftWeight(nn.Module):
    """One layer's shift weight: ``forward()`` is the float weight [C_out, ...] = alpha * q, with q
    a signed power of two (or 0 for the DeepShift kinds) per element; ``integers()`` is q as int8
    and ``alpha`` float32 [C_out]. See the module docstring for the three kinds."""

    def __init__(self, w: torch.Tensor, kind: str, code_bits: int, init_delta: float = 0.05) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown shift kind {kind!r}: use one of {KINDS}")
        self.kind, self.code_bits, self.top = kind, code_bits, max_exponent(kind, code_bits)
        zero = kind != "denseshift"
        w = w.detach().float()
        alpha = _search_alpha(w, self.top, zero)
        self.shape = (-1,) + (1,) * (w.dim() - 1)
        self.log_alpha = nn.Parameter(alpha.log())
        v = w / alpha.view(self.shape)
        q0 = nearest_pow2(v, self.top, zero)
        if kind == "denseshift":
            p0 = torch.log2(q0.abs()).round().long()
            nbits = max(1, math.ceil(math.log2(self.top + 1)))
            bits = torch.stack([(p0 >> k) & 1 for k in range(nbits)]).float()
            self.sign_latent = nn.Parameter(torch.where(v < 0, -init_delta, init_delta))
            self.exp_latents = nn.Parameter((bits * 2 - 1) * init_delta)
        elif kind == "deepshift-q":
            self.latent = nn.Parameter(v.clone())
        else:
            self.sign_latent = nn.Parameter(torch.sign(q0))
            self.shift_latent = nn.Parameter(torch.log2(q0.abs().clamp_min(1)).clone())

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def levels_q(self) -> torch.Tensor:
        """q (float, the integers) with straight-through gradients to the latents."""
        if self.kind == "denseshift":
            sign = _ste(torch.where(self.sign_latent < 0, -1.0, 1.0), self.sign_latent.clamp(-1, 1))
            bits = _ste((self.exp_latents > 0).float(), self.exp_latents.clamp(-1, 1) * 0.5 + 0.5)
            weights = torch.tensor([2.0 ** k for k in range(len(bits))]).view(-1, *[1] * (bits.dim() - 1))
            p = (bits * weights).sum(0)
            p = _ste(p.clamp(max=self.top), p)  # the 4-bit code's 8th exponent is capped in int8
            return sign * torch.exp2(p)
        if self.kind == "deepshift-q":
            return _ste(nearest_pow2(self.latent, self.top, zero=True), self.latent)
        sign = _ste(self.sign_latent.clamp(-1, 1).round(), self.sign_latent)
        p = _ste(self.shift_latent.clamp(0, self.top).round(), self.shift_latent)
        return sign * torch.exp2(p)

    def forward(self) -> torch.Tensor:
        return self.levels_q() * self.alpha.view(self.shape)

    @torch.no_grad()
    def integers(self) -> torch.Tensor:
        """q as int8 [C_out, ...]: every value a signed power of two (or 0) within the levels."""
        return self.levels_q().round().to(torch.int8)


def _assign(gm: fx.GraphModule, target: str, value: torch.Tensor) -> None:
    """Make ``gm``'s attribute ``target`` the tensor ``value`` (a computed tensor, so gradients
    flow through it; a Parameter registers as one)."""
    owner_path, _, attr = target.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    owner._parameters.pop(attr, None)
    owner._buffers.pop(attr, None)
    if isinstance(value, nn.Parameter):
        owner.register_parameter(attr, value)
    else:
        object.__setattr__(owner, attr, value)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened class scores times T^2 (Hinton et al. 2015) for
    outputs [N, K]; the mean squared error for any other output (an image, a map)."""
    if student.dim() == 2:
        t = temperature
        return nn.functional.kl_div(nn.functional.log_softmax(student / t, 1), nn.functional.softmax(teacher / t, 1),
                                    reduction="batchmean") * t * t
    return nn.functional.mse_loss(student, teacher)


def finetune(gm: fx.GraphModule, teacher: fx.GraphModule, layers: dict[str, int], kind: str, images: torch.Tensor,
             steps: int, batch_size: int = 64, lr: float = 1e-3, latent_lr: float = 1e-2, temperature: float = 2.0,
             seed: int = 0, progress: bool = True, checkpoint: Path | None = None, checkpoint_key: str = "",
             checkpoint_every: int = 200) -> tuple[dict[str, ShiftWeight], dict[str, torch.Tensor], dict]:
    """Fine-tune ``gm`` (a BN-folded GraphModule, changed in place) with the weights of the
    weighted nodes in ``layers`` ({node name: code bits}) as :class:`ShiftWeight` of ``kind``,
    distilling ``teacher`` (the FP model) on ``images`` float32 [N, C, H, W] (random batches of
    ``batch_size``, ``steps`` Adam steps; latents at ``latent_lr``, alpha and biases at ``lr``).

    ``checkpoint``: saved every ``checkpoint_every`` steps (temporary file, then rename) and
    resumed from when it exists with the same ``checkpoint_key``; UserError when the file is not
    such a checkpoint (it is never overwritten then). Returns ({node: ShiftWeight},
    {node: trained bias float32 [C_out]}, {"steps", "seconds", "resumed_from", "final_loss"}).
    """
    torch.manual_seed(seed)
    nodes = {n.name: n for n in gm.graph.nodes}
    shifts: dict[str, ShiftWeight] = {}
    biases: dict[str, nn.Parameter] = {}
    for name, bits in layers.items():
        node = nodes[name]
        w = _get(gm, node.args[1].target)
        shifts[name] = ShiftWeight(w, kind, bits)
        if len(node.args) > 2 and isinstance(node.args[2], fx.Node):
            b = nn.Parameter(_get(gm, node.args[2].target).detach().float().clone())
            _assign(gm, node.args[2].target, b)
            biases[name] = b
    latents = [p for s in shifts.values() for n, p in s.named_parameters() if n != "log_alpha"]
    others = [s.log_alpha for s in shifts.values()] + list(biases.values())
    opt = torch.optim.Adam([{"params": latents, "lr": latent_lr}, {"params": others, "lr": lr}])
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start = _resume(Path(checkpoint), checkpoint_key, shifts, biases, opt)
    g = torch.Generator().manual_seed(seed)
    for _ in range(start):  # the same batches as an uninterrupted run
        torch.randint(len(images), (batch_size,), generator=g)
    t0, loss_v = time.time(), float("nan")
    bar = tqdm(range(start, steps), desc=f"fine-tune {kind}", unit="step", disable=None if progress else True,
               leave=False, initial=start, total=steps)
    for step in bar:
        x = images[torch.randint(len(images), (batch_size,), generator=g)]
        with torch.no_grad():
            t = teacher(x)
        for name, s in shifts.items():
            _assign(gm, nodes[name].args[1].target, s())
        loss = distillation_loss(gm(x), t, temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
        bar.set_postfix(loss=f"{loss_v:.4f}")
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            _save(Path(checkpoint), checkpoint_key, step + 1, shifts, biases, opt)
    with torch.no_grad():
        for name, s in shifts.items():
            _assign(gm, nodes[name].args[1].target, s().detach())
    return shifts, {k: b.detach().clone() for k, b in biases.items()}, {
        "steps": steps, "seconds": round(time.time() - t0, 1), "resumed_from": start, "final_loss": round(loss_v, 6)}


def _get(gm: fx.GraphModule, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


_MAGIC = "edgekit-shift-checkpoint"


def _save(path: Path, key: str, step: int, shifts, biases, opt) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"magic": _MAGIC, "key": key, "step": step, "shifts": {k: s.state_dict() for k, s in shifts.items()},
                "biases": {k: b.detach() for k, b in biases.items()}, "opt": opt.state_dict()}, tmp)
    os.replace(tmp, path)


def _resume(path: Path, key: str, shifts, biases, opt) -> int:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data: no pickled code
    except Exception:
        ck = None
    if not isinstance(ck, dict) or ck.get("magic") != _MAGIC:
        raise UserError(f"--checkpoint {path} exists and is not an edgekit shift checkpoint; give another path")
    if ck.get("key") != key:
        raise UserError(f"--checkpoint {path} is from another model, method or bit width; give another path "
                        "(or delete it to start over)")
    for k, s in shifts.items():
        s.load_state_dict(ck["shifts"][k])
    with torch.no_grad():
        for k, b in biases.items():
            b.copy_(ck["biases"][k])
    opt.load_state_dict(ck["opt"])
    return int(ck["step"])
