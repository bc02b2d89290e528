"""Artifacts run in their own runtimes, the FP32 model and the recipe's simulation, on the same
inputs; the model's task (``edgekit.tasks``) scores their outputs."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from tqdm import tqdm

from edgekit.backends.base import Target
from edgekit.errors import first_line
from edgekit.models.canonical import CanonicalModel, run_batched
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
from edgekit.tasks.base import Task


def float_outputs(canonical: CanonicalModel, images: torch.Tensor) -> torch.Tensor:
    """FP32 outputs [N, ...] of the (BN-folded) model on inputs float32 [N, C, H, W]."""
    return canonical.run(canonical.graph_module, images)


def simulated_outputs(canonical: CanonicalModel, recipe: QuantRecipe, target: Target,
                      images: torch.Tensor) -> torch.Tensor:
    """Outputs [N, ...] of the PyTorch fake-quant simulation of ``recipe`` as ``target`` places it
    (run as ``fused_for_simulation``: the same arithmetic in fewer passes)."""
    return canonical.run(simulation_program(canonical, recipe, target)[1], images)


def simulation_program(canonical: CanonicalModel, recipe: QuantRecipe, target: Target) -> tuple[str, torch.fx.GraphModule]:
    """The simulation of ``recipe`` as ``target`` places it, ready to run (``fused_for_simulation``),
    and its signature: the sha256 (16 hex digits) of its generated code, which holds every q/dq
    op with its scale and zero point, so two targets whose quantizers place quantization the same
    way on this model get the same signature (their simulations are one computation)."""
    gm = quantize_with_recipe(canonical, recipe, target.quantizer(recipe))
    return hashlib.sha256(gm.code.encode()).hexdigest()[:16], fused_for_simulation(gm)


def run_artifact(target: Target, path: Path, images: torch.Tensor, progress: bool = True,
                 static_batch: int | None = None) -> tuple[torch.Tensor, float]:
    """Outputs [N, ...] of the artifact at ``path`` run in its runtime, and seconds taken.
    static_batch: the batch the artifact was lowered for when its program fixes it (every call
    then gets exactly that many images, the last call padded)."""
    try:
        run, bs = target.runner(path), static_batch or target.batch_size
    except Exception as e:  # the converter wrote a program its own runtime will not load
        why = first_line(e)
        raise RuntimeError(f"target {target.name} wrote {path.name}, which {target.check_runtime} cannot load "
                           f"({why}); try another --target, and report the model") from None
    t0 = time.time()
    if static_batch:
        return run_batched(run, images, static_batch=static_batch), time.time() - t0
    outs, i = [], 0
    with tqdm(total=len(images), desc=f"eval {path.name}", unit="img", disable=not progress, leave=False) as bar:
        while i < len(images):
            try:
                out = run(images[i:i + bs])
            except Exception:
                if bs == 1:
                    raise
                bs = 1  # a program exported with a static batch of 1: one image at a time from here
                continue
            outs.append(out)
            bar.update(len(out))
            i += len(out)
    return torch.cat(outs), time.time() - t0


def score(task: Task, name: str, runtime: str, inputs: torch.Tensor, out: torch.Tensor,
          targets: torch.Tensor | None, fp32: torch.Tensor | None, sim: torch.Tensor | None,
          seconds: float) -> dict:
    """One ``evaluation.results[]`` entry: the file, its runtime, seconds, and ``task``'s metrics
    keyed by metric name (accuracies as fractions in [0, 1], dB for PSNR/SQNR)."""
    return {"file": name, "runtime": runtime, "seconds": round(seconds, 2),
            **task.score(inputs, out, targets, fp32, sim)}
