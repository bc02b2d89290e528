"""What every target has: a declarative profile (``targets/NAME.toml``), a recipe check, a PT2E
quantizer that places quantize/dequantize the way the backend fuses ops (the profile's placement
policy), lowering to an artifact, and a runner that executes the artifact in its real runtime
(the profile's ``runtime``, one of ``edgekit.registry.RUNTIMES``) on this machine.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgekit.bundle import sha256_file
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe


def profiles_dir() -> Path:
    """``targets/`` of the source tree, or the copy packaged in the wheel."""
    pkg = Path(__file__).resolve().parents[1]  # the edgekit package
    for d in (pkg.parent / "targets", pkg / "targets"):
        if d.is_dir():
            return d
    raise FileNotFoundError("edgekit's targets/ profiles are missing from this installation")


@dataclass(frozen=True)
class Constraints:
    """Quantization a backend can run: allowed bit widths, weight granularity and symmetry."""
    weight_bits: tuple[int, ...]
    activation_bits: tuple[int, ...]
    weight_granularity: tuple[str, ...]
    weight_symmetric: bool | None = None
    activation_symmetric: bool | None = None
    # TensorQuant.scheme values its kernels run: shift weights ("pow2") are int8 integers, so any
    # int8 kernel runs them exactly
    weight_schemes: tuple[str, ...] = ("affine", "pow2")
    activation_schemes: tuple[str, ...] = ("affine",)  # and of activations ("twin_uniform": simulation only)


@dataclass(frozen=True)
class TargetProfile:
    """A target's TOML profile: backend, runtime (a name in ``edgekit.registry.RUNTIMES``, which
    knows how the artifact is run and profiled on each kind of device), artifact format,
    placement policy, constraints."""
    name: str
    backend: str
    runtime: str
    artifact_format: str
    description: str
    constraints: Constraints
    placement: str = "xnnpack"  # the placement policy (edgekit.quant.placement) its kernels need
    default_tier: int | None = None  # with no --target: tier 1 targets first, then tier 2; None: never
    check_runtime: str | None = None  # the runtime that checks the artifact on this machine (None: ``runtime``)
    device_needs: str = ""  # what a device needs to run the artifact
    host_latency: bool = True  # False: this machine's latency says nothing of the device's (a DSP's ONNX in onnxruntime)

    @classmethod
    def load(cls, name: str) -> "TargetProfile":
        d = tomllib.loads((profiles_dir() / f"{name}.toml").read_text())
        c = d["constraints"]
        return cls(d["name"], d["backend"], d["runtime"], d["artifact_format"], d.get("description", ""),
                   Constraints(tuple(c["weight_bits"]), tuple(c["activation_bits"]),
                               tuple(c["weight_granularity"]), c.get("weight_symmetric"),
                               c.get("activation_symmetric"), tuple(c.get("weight_schemes", ("affine", "pow2"))),
                               tuple(c.get("activation_schemes", ("affine",)))),
                   d["placement"], d.get("default_tier"), d.get("check_runtime"), d.get("device_needs", ""),
                   d.get("host_latency", True))


@dataclass
class Artifact:
    """A written deployable: path, target name, format, size in bytes, sha256, side files."""
    path: Path
    target: str
    format: str
    runtime: str
    side_files: dict[str, Path] = field(default_factory=dict)
    # what ran where (the manifest's ``ops``): ops_total / ops_delegated counts of compute ops,
    # not_delegated [{op, module}] (left to the runtime's portable kernels), float_ops [{op,
    # module}] (compute ops the target's quantizer left in float), integer_ops (those it
    # quantized), tflite_ops (LiteRT: {"OP dtype": count} of the file, read by the interpreter),
    # onnx_ops (ONNX: {op_type: count} of the file)
    ops: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)


class Target:
    """Base of the backends: subclasses set ``name`` and implement quantizer/lower/runner."""

    name: str = ""
    batch_size: int = 1  # images per runner call in evaluation (artifacts are lowered for batch 1)

    @property
    def profile(self) -> TargetProfile:
        return TargetProfile.load(self.name)

    @property
    def check_runtime(self) -> str:
        """The runtime that runs the artifact on this machine for evaluation (the profile's
        ``check_runtime``, else its ``runtime``; TensorRT's ONNX is checked in onnxruntime)."""
        return self.profile.check_runtime or self.profile.runtime

    def not_built_here(self) -> str | None:
        """Why this machine cannot build or check the target's artifact (listed by ``edgekit
        targets list``), or None when it can."""
        return None

    def rules(self, path: Path) -> list:
        """Violations (``edgekit.backends.onnx_rules.Violation``) of the vendor's rules in the
        file at ``path``; NotImplementedError for a target without a rules checker."""
        raise NotImplementedError

    def check(self, recipe: QuantRecipe) -> None:
        """Refuse a recipe this backend cannot run; raises UserError naming the layer and the rule."""
        c = self.profile.constraints
        for node, lq in recipe.layers.items():
            w, where = lq.weight, f"layer {lq.module or node} ({lq.op})"
            if w.bits not in c.weight_bits:
                raise UserError(f"target {self.name} cannot run {where}: weight bit width {w.bits} is not one of "
                                f"{list(c.weight_bits)}; use --w-bits {max(c.weight_bits)} or another --target")
            if w.granularity not in c.weight_granularity:
                raise UserError(f"target {self.name} cannot run {where}: {w.granularity} weights are not one of "
                                f"{list(c.weight_granularity)}")
            if w.scheme not in c.weight_schemes:
                raise UserError(f"target {self.name} cannot run {where}: {w.scheme} weights are not one of "
                                f"{list(c.weight_schemes)}; use another --target")
            if c.weight_symmetric is not None and w.symmetric != c.weight_symmetric:
                raise UserError(f"target {self.name} cannot run {where}: it needs "
                                f"{'symmetric' if c.weight_symmetric else 'affine'} weights")
        for node, aq in recipe.activations.items():
            a = aq.quant
            if a.bits not in c.activation_bits:
                raise UserError(f"target {self.name} cannot run tensor {aq.module} ({node}): activation bit width "
                                f"{a.bits} is not one of {list(c.activation_bits)}; use --a-bits "
                                f"{max(c.activation_bits)} or another --target")
            if a.scheme not in c.activation_schemes:
                raise UserError(f"target {self.name} cannot run tensor {aq.module} ({node}): {a.scheme} activations "
                                f"are not one of {list(c.activation_schemes)}; use --target simulation, or a "
                                "method with one scale per tensor")
            if c.activation_symmetric and not a.symmetric:
                raise UserError(f"target {self.name} cannot run tensor {aq.module} ({node}): it needs symmetric "
                                "activations (zero point 0)")

    def quantizer(self, recipe: QuantRecipe):
        """The PT2E quantizer of the profile's placement policy, for ``recipe``'s granularity."""
        from edgekit.quant.placement import quantizer_for
        return quantizer_for(self.profile.placement, recipe)

    def lower(self, canonical: CanonicalModel, recipe: QuantRecipe | None, out_dir: Path, stem: str = "model") -> Artifact:
        """Write the artifact for ``canonical`` quantized by ``recipe`` (None: float) into out_dir."""
        raise NotImplementedError

    def runner(self, path: Path):
        """A callable mapping the model's input tensor float32 [B, C, H, W] to its output tensor
        float32 [B, ...] (class scores, an image, a map: whatever the model returns), executing
        the artifact in its check runtime (``edgekit.registry.RUNTIMES``: the same load and
        run that profiling uses). Raises UserError when the runtime refuses the file."""
        from edgekit.registry import RUNTIMES

        session = RUNTIMES.get(self.check_runtime).load(Path(path))

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run([x.detach().contiguous().numpy()])[0])
        return run


def evaluate_runner(run, images: torch.Tensor) -> torch.Tensor:
    """Run ``run`` image by image (the artifact's batch is 1); returns its outputs float32 [N, ...]."""
    return torch.cat([run(images[i:i + 1]) for i in range(len(images))])


@contextlib.contextmanager
def captured_output(log_path: Path):
    """Send this process's stdout/stderr file descriptors (the converters' native logging) to
    ``log_path`` while the block runs; on an exception the log's last lines are attached to it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-5:]
            e.add_note("converter log tail:\n" + "\n".join(tail))
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
