"""Training a LUT network and fine-tuning its tables, resumable.

Phase ``net``: the network of ``edgekit.quant.lut_nets`` on (LR, HR) patches, MSE loss on the
[0, 1] image, Adam with a cosine learning rate from ``lr`` to ``lr / 10`` (MuLUT, Li et al. 2022,
Sec. 4.1: Adam, 1e-3 cosine-annealed to 1e-4, for far more steps than a CPU budget allows), optionally
with the hidden layers in bfloat16 (``precision``).
Phase ``tables``: after transfer, LUT-aware fine-tuning of the int8 tables (MuLUT Sec. 3.4): the
tables are parameters read through a straight-through round, Adam, same loss.

A checkpoint (``torch.save`` of a dict marked ``edgekit-lut-checkpoint``) is written every
``CHECKPOINT_EVERY`` steps and at the end, to a temporary file renamed into place; a run given an
existing checkpoint resumes from it when it was written for the same network and phase, and
refuses (UserError) any other file.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgekit.errors import UserError
from edgekit.quant.lut_nets import LutNet, LutSpec

MARK = "edgekit-lut-checkpoint"
CHECKPOINT_EVERY = 200


PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """steps: optimizer steps; batch: patches per step; patch: LR patch side (pixels); lr: the
    starting learning rate; seed: initialisation and patch sampling; precision: ``fp32``, or
    ``bf16`` (the network's hidden layers under CPU autocast to bfloat16, parameters, optimizer,
    loss and the units' first and last layers float32; see :meth:`Unit.mlp
    <edgekit.quant.lut_nets.Unit.mlp>`); grid: train the network through its tables
    (:class:`~edgekit.quant.lut_grid.GridLutNet`) instead of on every pixel."""
    steps: int
    batch: int = 16
    patch: int = 24
    lr: float = 1e-3
    seed: int = 0
    precision: str = "fp32"
    grid: bool = False


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 dot products (AVX512-BF16 or AMX), where bf16 matmuls are
    faster than float32 ones rather than emulated."""
    cpu = torch.cpu
    return any(bool(getattr(cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; ``fp32``/``bf16`` as given.
    Raises UserError for anything else."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: use auto, fp32 or bf16")
    return precision


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, lr_img: torch.Tensor, hr_img: torch.Tensor,
               precision: str = "fp32") -> float:
    """One optimizer step of MSE(model(lr_img), hr_img) (LR float32 [N, 1, h, w], HR
    [N, 1, r*h, r*w], both / 255), the forward under bf16 autocast when ``precision`` is
    ``bf16``; returns the loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        sr = model(lr_img)
    loss = F.mse_loss(sr.float(), hr_img)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load(path: Path, spec: LutSpec, phase: str) -> dict | None:
    """The checkpoint at ``path`` when it belongs to this run; None when there is none. Raises
    UserError for a file that is not an edgekit LUT checkpoint or is one of another network."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data: no pickled code
    except Exception as e:
        raise UserError(f"{path} is not an edgekit LUT checkpoint ({type(e).__name__}); give another --checkpoint") from None
    if not isinstance(state, dict) or state.get("mark") != MARK:
        raise UserError(f"{path} is not an edgekit LUT checkpoint; give another --checkpoint path")
    if state.get("spec") != spec.to_dict():
        raise UserError(f"{path} was written for another LUT network ({state.get('spec', {}).get('method')}); "
                        "give another --checkpoint path")
    return state if state.get("phase") == phase else None


def fit(model: torch.nn.Module, params: list, sampler, cfg: TrainConfig, spec: LutSpec,
        phase: str, checkpoint: Path | None, progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run ``cfg.steps`` Adam steps of MSE(model(lr), hr) on ``sampler.batch(cfg.batch)`` (a
    :class:`~edgekit.data.sr_patches.PatchSampler`, whose generator state is checkpointed); resumes from and writes
    ``checkpoint``. Returns {"steps", "seconds", "final_loss", "resumed_at"}."""
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * (1 + math.cos(math.pi * min(i, cfg.steps) / cfg.steps)) / 2)
    start, spent = 0, 0.0
    state = _load(checkpoint, spec, phase) if checkpoint else None
    if state is not None and state.get("grid", False) != cfg.grid:
        raise UserError(f"{checkpoint} was written {'with' if state.get('grid') else 'without'} grid training; "
                        "train the same way to resume it, or give another --checkpoint path")
    if state is not None and state.get("total", cfg.steps) != cfg.steps:
        raise UserError(f"{checkpoint} is a run of {state['total']} {phase} steps, not {cfg.steps}; give the same "
                        "steps to resume it, or another --checkpoint path")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, spent, loss_avg = state["step"], state["seconds"], state.get("loss")
        sampler.rng.bit_generator.state = state["rng"]  # the sampler's position
    else:
        loss_avg = None
    model.train()
    t0 = time.time()

    def snapshot(step: int) -> dict:
        return {"mark": MARK, "spec": spec.to_dict(), "phase": phase, "step": step, "model": model.state_dict(),
                "opt": opt.state_dict(), "sched": sched.state_dict(), "seconds": spent + time.time() - t0,
                "loss": loss_avg, "total": cfg.steps, "rng": sampler.rng.bit_generator.state, "grid": cfg.grid}

    with tqdm(total=cfg.steps, initial=start, desc=f"lut {phase}", unit="step", disable=not progress) as bar:
        for step in range(start, cfg.steps):
            lr_img, hr_img = sampler.batch(cfg.batch)
            v = train_step(model, opt, lr_img, hr_img, cfg.precision)
            sched.step()
            loss_avg = v if loss_avg is None else 0.98 * loss_avg + 0.02 * v
            bar.update(1)
            bar.set_postfix(psnr=f"{10 * math.log10(1 / max(loss_avg, 1e-12)):.2f}dB")
            if checkpoint and ((step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == cfg.steps):
                _save(checkpoint, snapshot(step + 1))
            if log and not progress and ((step + 1) % 500 == 0 or step + 1 == cfg.steps):  # lines instead of the bar
                log(f"{phase} step {step + 1}/{cfg.steps} loss {loss_avg:.6f} "
                    f"({10 * math.log10(1 / max(loss_avg, 1e-12)):.2f} dB patch PSNR) {spent + time.time() - t0:.0f} s")
    model.eval()
    return {"steps": cfg.steps, "seconds": round(spent + time.time() - t0, 1),
            "final_loss": loss_avg, "resumed_at": start or None, "precision": cfg.precision, "grid": cfg.grid}


def train_net(spec: LutSpec, sampler, cfg: TrainConfig, checkpoint: Path | None = None, progress: bool = True,
              log: Callable[[str], None] | None = None) -> tuple[LutNet, dict]:
    """Phase ``net``: a trained :class:`LutNet` (a :class:`~edgekit.quant.lut_grid.GridLutNet`
    when ``cfg.grid``) and its training record."""
    from edgekit.quant.lut_grid import GridLutNet

    torch.manual_seed(cfg.seed)
    net = (GridLutNet if cfg.grid else LutNet)(spec)
    rec = fit(net, list(net.parameters()), sampler, cfg, spec, "net", checkpoint, progress, log)
    return net, rec


def finetune_tables(table_net, spec: LutSpec, sampler, cfg: TrainConfig, checkpoint: Path | None = None,
                    progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Phase ``tables``: LUT-aware fine-tuning of a trainable
    :class:`~edgekit.quant.lut_tables.TableNet` in place (tables in int8 units, so ``cfg.lr`` is
    in table steps). Returns the training record."""
    params = [p for n, p in table_net.named_parameters() if n.startswith("table")]
    return fit(table_net, params, sampler, cfg, spec, "tables", checkpoint, progress, log)
