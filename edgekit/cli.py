"""The ``edgekit`` command line (click), a thin layer over the Python API (``edgekit.api``): it
turns flags into configs and results into text. Exit codes: 0 ok, 2 bad input (one line on
stderr), 1 failure."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from edgekit.config import PRESETS, QuantConfig, RunConfig, method_config
from edgekit.errors import UserError


def _fail(msg: str, code: int) -> None:
    click.echo(f"edgekit: error: {msg}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns UserError into one stderr line and exit code 2, other exceptions into exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(str(e).splitlines()[0], 2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as e:  # a failure, not bad input
            if os.environ.get("EDGEKIT_DEBUG"):
                raise
            _fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                  "(set EDGEKIT_DEBUG=1 for the traceback)", 1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekit")
def cli() -> None:
    """Quantize PyTorch vision models (with or without data) and ship them to edge runtimes."""


def _shape(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise UserError(f"--input-shape {value!r} is not N,C,H,W integers") from None


def _floats(flag: str, value: str | None, count: int | None = None) -> list[float] | None:
    if value is None:
        return None
    try:
        vals = [float(v) for v in value.split(",")]
    except ValueError:
        raise UserError(f"{flag} {value!r} is not a comma-separated list of numbers") from None
    if count is not None and len(vals) != count:
        raise UserError(f"{flag} {value!r}: give {count} numbers separated by a comma")
    return vals


def _overrides(values: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """--override PATTERN:KEY=BITS[,KEY=BITS] values -> {pattern: {key: bits}}; UserError when malformed."""
    out: dict[str, dict[str, int]] = {}
    for v in values:
        pattern, _, spec = v.rpartition(":")
        try:
            pairs = dict(kv.split("=", 1) for kv in spec.split(","))
            out[pattern] = {k.strip(): int(b) for k, b in pairs.items()}
        except ValueError:
            pairs = None
        if not pattern or not pairs:
            raise UserError(f"--override {v!r}: give PATTERN:KEY=BITS[,KEY=BITS], e.g. 'layer1.*:w_bits=4'")
    return out


def _scale(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        num, _, den = value.partition("/")
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--pixel-scale {value!r} is not a number or a fraction such as 1/255") from None


@cli.command()
@click.argument("model", required=False)
@click.option("--data-free", is_flag=True, help="Calibrate on data synthesized from the model's BN statistics.")
@click.option("--calib", "calib", type=str, help="Real calibration images: an .npz or a folder of images.")
@click.option("--method", default=None, help="Quantization method (default: zeroq with --data-free, ptq with --calib).")
@click.option("--w-bits", type=int, default=None, help="Weight bit width (default 8; shift methods: the code's bits, 4).")
@click.option("--a-bits", type=int, default=8, show_default=True, help="Activation bit width.")
@click.option("--target", "targets", multiple=True, help="Target backend, repeatable (default: executorch-xnnpack and litert where they run the recipe, else simulation).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgekit-bundle"), show_default=True,
              help="Bundle directory to write (a new path, an empty folder or an earlier edgekit bundle).")
@click.option("--force", is_flag=True,
              help="Replace --out even when it is a folder edgekit did not write (never the current, home or root folder).")
@click.option("--act-estimator", type=click.Choice(["minmax", "percentile", "mse"]), default=None,
              help="Activation range estimator (default: the method's, percentile).")
@click.option("--percentile", type=float, default=None, help="Two-sided percentile of --act-estimator percentile (default 99.99).")
@click.option("--per-tensor", is_flag=True, help="Per-tensor instead of per-channel weights.")
@click.option("--override", "overrides", multiple=True, metavar="PATTERN:KEY=BITS[,KEY=BITS]",
              help="Per-module bit widths, repeatable: e.g. 'layer1.*:w_bits=4' or 'type:Linear:w_bits=8,a_bits=8' "
                   "(a glob over module paths or node names, or type:NAME; keys w_bits, a_bits).")
@click.option("--symmetric-activations", is_flag=True,
              help="Symmetric activations (zero point 0), as TensorRT needs (default: what the targets require).")
@click.option("--num-samples", type=int, default=None, help="Synthetic images to distil (data-free).")
@click.option("--iterations", type=int, default=None, help="Synthesis optimisation steps per batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
@click.option("--label-loss", type=float, default=None,
              help="Weight of the class prior in synthesis (cross-entropy to random classes; 0: plain ZeroQ).")
@click.option("--bn-ranges", type=click.Choice(["off", "union", "replace"]), default=None,
              help="BN-backed tensors' ranges from BN statistics: off, union with the data's, or replace "
                   "(default: the model's data-free setting with --data-free, off with --calib).")
@click.option("--calib-samples", type=int, default=512, show_default=True, help="Real images to calibrate on, at most.")
@click.option("--dataset", default=None, help="A named evaluation data set (default: the zoo model's).")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Your evaluation data: a folder with one subfolder of images per class (classes.txt or "
                   "class_index.json for the indices, else sorted names), or an .npz with images (and labels for top-1).")
@click.option("--eval-samples", type=int, default=None, help="Evaluate on the first N images only.")
@click.option("--input-shape", default=None, help="N,C,H,W for package.module:factory models.")
@click.option("--task", default=None, help="What the model's outputs are: classification (class scores) or "
              "super_resolution (images upscaled); default: the zoo entry's, else classification.")
@click.option("--mean", default=None, help="The model's normalisation: mean per channel (or one value), "
              "in units of pixel * --pixel-scale, e.g. 0.485,0.456,0.406. Never guessed: without it (or "
              "--input-range) a non-zoo model gets no pixel bound.")
@click.option("--std", default=None, help="The model's normalisation: std per channel (or one value), e.g. 0.229,0.224,0.225.")
@click.option("--pixel-scale", default=None, help="Pixel scale before --mean/--std (default 1/255; 1 for 0..255 means).")
@click.option("--input-range", default=None, help="LO,HI: the model's input for pixel 0 and pixel 255 (e.g. -1,1).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="The run's config: a TOML file, or a bundle's manifest.json (or folder) to reproduce that bundle; "
                   "only --out, --force, --eval-data, --eval-samples, --dataset, --no-progress and --no-cache may be added.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache of synthesized data, FP32 twin "
              "artifacts, FP32 outputs and, for the same recipe, int8 artifacts and their runtime outputs "
              "(see 'edgekit cache').")
@click.option("--mixed-precision", is_flag=True,
              help="Per-layer weight bits from {2,4,8} on the ZeroQ sensitivity Pareto frontier (needs a budget).")
@click.option("--size-budget-kb", type=float, default=None, help="Mixed precision: weight size budget in kB (1000 bytes).")
@click.option("--avg-bits", type=float, default=None, help="Mixed precision: average weight bit width budget.")
@click.option("--recon-iterations", type=int, default=None, help="Genie-M reconstruction steps per block.")
@click.option("--finetune-steps", type=int, default=None,
              help="Shift networks (--method denseshift|deepshift-q|deepshift-ps): distillation steps (default 2000).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Shift networks: save the fine-tuning here every 200 steps and resume from it.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default", show_default=True,
              help="Synthesis and reconstruction budget; small: 32 images x 20 steps, 30 Genie-M steps per block "
                   "(a quick check; --num-samples/--iterations/--recon-iterations still override it).")
def quantize(model, data_free, calib, method, w_bits, a_bits, targets, out, force, act_estimator, percentile, per_tensor,
             overrides, symmetric_activations,
             num_samples, iterations, seed, label_loss, bn_ranges, calib_samples, dataset, eval_data, eval_samples, input_shape,
             task, mean, std, pixel_scale, input_range, no_progress, config_path, no_cache,
             mixed_precision, size_budget_kb, avg_bits, recon_iterations, finetune_steps, checkpoint, preset) -> None:
    """Quantize MODEL (zoo name, .pt2 file or package.module:factory; default: the reference
    ResNet-20), lower it for each target, evaluate the artifacts in their runtimes, write a bundle."""
    from edgekit.api import run
    from edgekit.report import summary_table

    synth = {"seed": seed, **PRESETS[preset].get("synth", {})}
    if num_samples is not None:
        synth.update(num_samples=num_samples, batch_size=min(64, num_samples))
    if iterations is not None:
        synth["iterations"] = iterations
    if label_loss is not None:
        synth["label_loss"] = label_loss
    method = method or ("zeroq" if data_free or not calib else "ptq")
    given = {"w_bits": w_bits, "a_bits": a_bits, "act_estimator": act_estimator, "percentile": percentile,
             "per_channel": False if per_tensor else None, "activation_symmetric": True if symmetric_activations else None,
             "overrides": _overrides(overrides) or None, "mixed_precision": mixed_precision or None,
             "size_budget_kb": size_budget_kb, "avg_bits": avg_bits, "bn_ranges": bn_ranges,
             "recon_iterations": recon_iterations, "finetune_steps": finetune_steps,
             "checkpoint": str(checkpoint) if checkpoint else None}
    given = {k: v for k, v in given.items() if v is not None}
    if config_path is not None:
        cfg = _config_file(config_path, model)
    else:
        cfg = RunConfig(model=model or "resnet20_fmnist", task=task, method=method, data_free=data_free,
                        calib_path=calib, calib_samples=calib_samples,
                        targets=list(targets),  # none: the deployable defaults that run the recipe, else simulation
                        quant=_method_config(method, data_free, given, PRESETS[preset]), synth_overrides=synth,
                        mean=_floats("--mean", mean), std=_floats("--std", std),
                        pixel_scale=_scale(pixel_scale), input_range=_floats("--input-range", input_range, 2))
    log = (lambda m: None) if no_progress else (lambda m: click.echo(m, err=True))
    result = run(cfg, out, input_shape=_shape(input_shape), dataset=dataset, eval_data=eval_data,
                 eval_samples=eval_samples, force=force, cache=not no_cache, progress=not no_progress, log=log)
    click.echo(summary_table(result.manifest))
    for note in result.manifest.get("notes") or []:
        click.echo(f"note: {note}")
    click.echo(f"bundle: {result.out}")


def _method_config(method: str, data_free: bool, given: dict, preset: dict) -> QuantConfig:
    """The method's config from the quant flags the user gave (and the preset's budget where the
    method takes it); UserError naming a flag the method does not take."""
    from edgekit.registry import ALGORITHMS
    names = {f.name for f in dataclasses.fields(ALGORITHMS.get(method).config)}
    for key in given:
        if key not in names:
            flag = {"per_channel": "--per-tensor", "activation_symmetric": "--symmetric-activations",
                    "overrides": "--override"}.get(key, f"--{key.replace('_', '-')}")
            raise UserError(f"{flag} does not apply to --method {method}: its config "
                            f"({ALGORITHMS.get(method).config.__name__}) has no {key}")
    budget = {k: v for k, v in preset.items() if k in names and k != "synth"}
    return method_config(method, data_free, {**budget, **given})


@cli.group()
def cache() -> None:
    """The cache of synthesized calibration data, FP32 twin artifacts and FP32 outputs, and for
    the same recipe the int8 artifacts, simulation outputs and runtime outputs ($EDGEKIT_CACHE_DIR, else $XDG_CACHE_HOME/edgekit, else ~/.cache/edgekit)."""


@cache.command("dir")
def cache_dir() -> None:
    """Print the cache folder."""
    from edgekit.cache import default_root
    click.echo(str(default_root()))


@cache.command("clear")
def cache_clear() -> None:
    """Remove every cache entry."""
    from edgekit.cache import Cache
    c = Cache()
    click.echo(f"removed {c.clear() / 1e6:.1f} MB from {c.root}")


_WITH_CONFIG = {"config_path", "out", "force", "eval_data", "eval_samples", "dataset", "no_progress", "no_cache",
                "input_shape"}


def _config_file(path: Path, model: str | None) -> RunConfig:
    """The RunConfig of ``--config``; refuses (UserError) other flags that would change the run."""
    from click.core import ParameterSource
    from edgekit.config import load_run_config
    ctx = click.get_current_context()
    given = sorted(f"--{n.replace('_', '-')}" for n in ctx.params
                   if n not in _WITH_CONFIG and ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE)
    if model is not None:
        given.insert(0, "MODEL")
    if given:
        raise UserError(f"--config gives the whole run; drop {', '.join(given)} (or edit the config file)")
    return load_run_config(path)


@cli.command("eval")
@click.argument("bundle_or_artifact", type=click.Path(path_type=Path))
@click.option("--dataset", default=None, help="A named evaluation data set (default: the bundle's).")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Your evaluation data (class-per-folder images or an .npz with images, and labels for top-1).")
@click.option("--limit", type=int, default=None, help="Evaluate on the first N images only.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@click.option("--no-progress", is_flag=True)
@click.option("--scale", type=int, default=None,
              help="Super-resolution: score the x SCALE model on --eval-data, a folder of high-resolution photos "
                   "(PSNR/SSIM on Y against MATLAB-bicubic LR, and the bicubic baseline).")
def eval_cmd(bundle_or_artifact, dataset, eval_data, limit, as_json, no_progress, scale) -> None:
    """Run an artifact (or every artifact of a bundle) in its own runtime over a data set: top-1,
    and agreement with the PyTorch simulation of the bundle's recipe. With --scale: a
    super-resolution model's PSNR/SSIM on a folder of photos, against bicubic."""
    from edgekit.api import evaluate_bundle
    from edgekit.report import evaluation_table

    if scale is not None:
        from edgekit.api import evaluate_sr
        from edgekit.tasks.sr_folder import sr_table
        if dataset is not None:
            raise UserError("--dataset does not apply with --scale: give the photos with --eval-data DIR")
        evaluation = evaluate_sr(bundle_or_artifact, eval_data, scale, limit=limit)
        click.echo(json.dumps(evaluation, indent=2) if as_json else sr_table(evaluation))
        return
    evaluation = evaluate_bundle(bundle_or_artifact, dataset=dataset, eval_data=eval_data, limit=limit,
                                 progress=not no_progress)
    click.echo(json.dumps(evaluation, indent=2) if as_json else evaluation_table(evaluation))


@cli.command("upscale")
@click.argument("artifact_or_bundle", type=click.Path(path_type=Path))
@click.argument("image_or_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for the upscaled images, <stem>_x<s>.png (created when missing).")
@click.option("--artifact", "artifact_name", default=None,
              help="The bundle's artifact to run, by file or target name "
                   "(default: its .pte, else .tflite, else .onnx).")
@click.option("--margin", type=int, default=8, show_default=True,
              help="Overlap of the tiles in low-resolution pixels (at least the model's receptive-field radius).")
@click.option("--threads", type=int, default=None, help="Runtime threads (default: the runtime's).")
@click.option("--force", is_flag=True, help="Overwrite output files that edgekit did not write.")
def upscale_cmd(artifact_or_bundle, image_or_dir, out, artifact_name, margin, threads, force) -> None:
    """Upscale an image (or every PNG/JPEG in a folder) with a super-resolution artifact or bundle,
    tile by tile: a Y model upscales the luma (Cb/Cr get bicubic), an RGB model all channels."""
    from edgekit.api import upscale
    for p in upscale(artifact_or_bundle, image_or_dir, out, pick=artifact_name, force=force, margin=margin,
                     threads=threads):
        click.echo(str(p))


@cli.group()
def targets() -> None:
    """List targets or show one's profile."""


@targets.command("list")
def targets_list() -> None:
    """For every target: what it runs (bits, granularity, symmetry), the artifact it writes,
    how it is checked on this machine, and what a device needs."""
    from edgekit.backends.base import Target
    from edgekit.registry import TARGETS
    for name in TARGETS.names():
        t = TARGETS.get(name)
        p, c = t.profile, t.profile.constraints
        sym = {True: "symmetric", False: "affine", None: "any"}
        checks = [f"run in {t.check_runtime}"] + (["rules checker"] if type(t).rules is not Target.rules else [])
        click.echo(f"{name}  (.{p.artifact_format}) {p.description}")
        click.echo(f"    weights: {'/'.join(map(str, c.weight_bits))}-bit {' or '.join(c.weight_granularity)}, "
                   f"{sym[c.weight_symmetric]}; activations: {'/'.join(map(str, c.activation_bits))}-bit per-tensor, "
                   f"{sym[c.activation_symmetric]}" + (f" ({', '.join(c.activation_schemes)})" if len(c.activation_schemes) > 1 else ""))
        why_not = t.not_built_here()
        checked = f"nothing ({why_not})" if why_not else ", ".join(checks)
        click.echo(f"    checked here: {checked}; profiled with: {p.runtime}; device needs: {p.device_needs or '-'}")


@targets.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--target", "target", required=True, help="The target whose rules to check (tensorrt, qnn-htp).")
def targets_check(file, target) -> None:
    """Check an ONNX file (edgekit's or any) against a target's rules: every broken rule, one
    line each naming the node; exit 2 when the vendor's tools would refuse it."""
    from edgekit.api import check_rules
    found = check_rules(file, target)
    errors = [v for v in found if v.severity == "error"]
    for v in found:
        click.echo(f"{v.severity}: {v}")
    if errors:
        _fail(f"{file} breaks {len(errors)} {target} rule(s) (listed above); re-create it with "
              f"'edgekit quantize --target {target}'", 2)
    click.echo(f"{file}: passes the {target} rules" + (f" ({len(found)} placement advice)" if found else ""))


@targets.command("show")
@click.argument("name")
def targets_show(name) -> None:
    """Show a target's profile (backend, runtime, constraints)."""
    from edgekit.backends.base import profiles_dir
    from edgekit.registry import TARGETS
    TARGETS.get(name)
    click.echo((profiles_dir() / f"{name}.toml").read_text())


try:  # profiling commands (profile, agent, trace)
    from edgekit.profiling.cli import register as _register_profiling
except ModuleNotFoundError as e:
    if not (e.name or "").startswith("edgekit.profiling"):
        raise
else:
    _register_profiling(cli)


@cli.group()
def lut() -> None:
    """LUT networks for super-resolution (SR-LUT, MuLUT, AutoLUT-style): train, transfer to int8
    tables, fine-tune the tables, export .pte and .tflite."""


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, _, w = value.lower().partition("x")
        return int(h), int(w or h)
    except ValueError:
        raise UserError(f"--input-size {value!r}: give HxW in LR pixels, e.g. 256x256") from None


@lut.command("train")
@click.option("--method", type=click.Choice(["srlut", "mulut", "autolut"]), default="srlut", show_default=True)
@click.option("--scale", type=int, default=4, show_default=True, help="Upscaling factor (2, 3 or 4).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The bundle folder to write.")
@click.option("--steps", type=int, default=None, help="Training steps of the network (default per method).")
@click.option("--finetune-steps", type=int, default=None,
              help="LUT-aware fine-tuning steps of the tables (default 1000; 0 with --grid).")
@click.option("--batch", type=int, default=None, help="Patches per step (default 16; with --grid 64 for srlut, 32 otherwise).")
@click.option("--patch", type=int, default=None, help="LR patch side in pixels (default per method).")
@click.option("--train-data", type=click.Path(path_type=Path), default=None,
              help="A folder of high-resolution photos (default: the training photos edgekit ships or finds installed).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Resumable training state (default OUT.ckpt, removed on success).")
@click.option("--input-size", default=None, help="The artifacts' LR input, HxW (default: the held-out tile, 192/scale).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=None,
              help="The network's starting Adam learning rate, cosine-annealed to a tenth (default per method).")
@click.option("--precision", default="auto", show_default=True,
              help="The network's training arithmetic, auto, fp32 or bf16: bf16 runs its hidden layers in bfloat16 (faster on CPUs with "
                   "AVX512-BF16 or AMX); auto picks bf16 where the CPU has it.")
@click.option("--grid/--no-grid", default=None,
              help="Train the network through its tables: its MLP runs only on the table-grid vertices a batch touches and "
                   "is interpolated as deployed, so the tables are exactly the trained network, with no table fine-tuning "
                   "(default: --grid for mulut and autolut, --no-grid for srlut; default steps differ).")
@click.option("--force", is_flag=True, help="Replace --out even if it holds files edgekit did not write.")
@click.option("--no-progress", is_flag=True)
def lut_train(method, scale, out, steps, finetune_steps, batch, patch, train_data, checkpoint, input_size, seed,
              learning_rate, precision, grid, force, no_progress) -> None:
    """Train a LUT network on photos (through its tables with --grid), transfer it to int8 tables
    (17^4 entries per unit), fine-tune the tables (by default without --grid), and write a bundle:
    the tables, a .pte and a .tflite checked against the numpy reference on held-out photos."""
    from edgekit.api import train_lut

    m = train_lut(method, out, scale=scale, steps=steps, finetune_steps=finetune_steps, batch=batch, patch=patch,
                  train_data=train_data, checkpoint=checkpoint, input_size=_size(input_size), force=force,
                  progress=not no_progress, seed=seed, precision=precision,
                  learning_rate=learning_rate, grid=grid, log=click.echo)
    ev = m["evaluation"]
    click.echo(f"{method} x{scale}: tables {m['tables']['bytes']:,} bytes; held-out PSNR-Y "
               f"{ev['reference']['psnr_y_db']:.3f} dB (bicubic {ev['bicubic']['psnr_y_db']:.3f} dB)")
    for a in m["artifacts"]:
        e = a.get("evaluation")
        if e:
            click.echo(f"  {a['file']}: {e['psnr_y_db']:.3f} dB, identical pixels {100 * e['identical_pixels']:.3f}% "
                       f"of the numpy reference{' (bit-exact)' if e['bit_exact'] else ''}")
    click.echo(f"wrote {out}")


def quiet_libraries() -> None:
    """Keep import-time notices of torch/torchao (optional CUDA kernels, deprecations) off stderr,
    so that a bad input gives exactly one line there."""
    import logging
    import warnings

    import torch  # noqa: F401  (torch configures its loggers on import: set levels after it)
    for name in ("torchao", "torch.utils._pytree", "torch._export", "torch.export", "executorch", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def main() -> None:
    quiet_libraries()
    cli(prog_name="edgekit")


if __name__ == "__main__":
    main()
