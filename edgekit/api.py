"""The Python API: the main job's stages as functions on a user's own model.

``edgekit quantize`` composes the same stages (``edgekit.pipeline``) and writes a bundle; these
return objects instead, for a user who drives edgekit from Python::

    import edgekit, torch
    x = torch.zeros(1, 3, 224, 224)                       # the input the model takes, batch 1
    recipe = edgekit.quantize(model, example_input=x, mean=[123.7, 116.3, 103.5],
                              std=[58.4, 57.1, 57.4], pixel_scale=1)   # data-free W8A8
    art = edgekit.export(model, recipe, "executorch-xnnpack", "model.pte", example_input=x)
    metrics = edgekit.evaluate(art, images, model=model, example_input=x)  # in ExecuTorch
    trace = edgekit.profile(art.path, runs=50)            # p50/p90 ms, per-module breakdown
    edgekit.quantize(model, edgekit.GenieConfig(w_bits=4, a_bits=4), example_input=x)  # another method

``edgekit.run(RunConfig, out)`` is the whole main job and ``edgekit.evaluate_bundle(path)`` the
bundle check: what ``edgekit quantize`` and ``edgekit eval`` run (the CLI calls only this module).

``model`` is an ``nn.Module`` (with ``example_input``), a ``torch.export.ExportedProgram``, or
what the CLI takes: a zoo name, a ``.pt2`` path or ``package.module:factory``. The same model
must be given to ``quantize`` and ``export``: a recipe refers to the nodes of its canonical
(BN-folded, exported) graph. Bad input raises ``edgekit.errors.UserError`` with one line.
``examples/quantize_your_model.py`` runs all four on a model of its own.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from edgekit.backends.base import Artifact, Target, captured_output
from edgekit.config import QuantConfig, RunConfig, SynthConfig
from edgekit.data.calibration import CalibrationSource, load_calibration
from edgekit.data.datasets import Preprocess, assumed_preprocess, declared_preprocess
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel, canonicalize
from edgekit.quant.complete import complete_recipe
from edgekit.quant.placement import quantizer_for
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS, PLACEMENTS, SYNTHESIZERS, TARGETS, TASKS


def prepare(model, example_input: torch.Tensor | None = None, mean=None, std=None, pixel_scale: float | None = None,
            input_range=None) -> tuple[CanonicalModel, Preprocess | None]:
    """The canonical model of ``model`` and its declared preprocessing (mean/std in units of
    pixel * ``pixel_scale``, 1/255 by default, or ``input_range`` (lo, hi); None when neither is
    given, or the zoo entry's). Raises UserError when the model cannot be exported."""
    if isinstance(model, (str, os.PathLike)):
        from edgekit.config import RunConfig
        from edgekit.pipeline import prepare_model
        shape = tuple(example_input.shape) if example_input is not None else None
        cfg = RunConfig(model=str(model), mean=mean, std=std, pixel_scale=pixel_scale, input_range=input_range)
        _, canonical, pre = prepare_model(str(model), shape, cfg)
        return canonical, pre
    if isinstance(model, torch.export.ExportedProgram) and example_input is None and model.example_inputs:
        example_input = torch.zeros(model.example_inputs[0][0].shape)  # the shape it was exported at
    if example_input is None:
        raise UserError("give example_input: a float32 tensor [1, C, H, W] of the shape the model takes")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise UserError("example_input must be a float32 tensor [N, C, H, W] (an image model's input)")
    try:
        canonical = canonicalize(model, example_input, type(model).__name__)
    except Exception as e:
        raise UserError(f"the model cannot be exported with torch.export ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no message'}); make its forward traceable") from None
    pre = declared_preprocess(tuple(example_input.shape), mean, std, pixel_scale, input_range)
    if pre is not None:
        canonical.input_bounds = pre.bounds()
        canonical.input_prior = pre.input_prior()
    return canonical, pre


def quantize(model, config: QuantConfig | None = None, calibration=None, *, method: str | None = None,
             example_input: torch.Tensor | None = None, mean=None, std=None, pixel_scale: float | None = None,
             input_range=None, synth: SynthConfig | None = None, placement: str = "xnnpack",
             task: str = "classification", progress: bool = False) -> QuantRecipe:
    """Quantize ``model``; returns the recipe (per-layer weight and per-tensor activation scales
    and zero points, and any integer weights and corrected biases the method chose).

    config: the method's config, torchao-style: ``ZeroQConfig``, ``PTQConfig`` or ``GenieConfig``
    (``edgekit.quant.algorithms.*``; its type names the method). None: ``method``'s defaults
    (zeroq when None), with its data-free ones when ``calibration`` is None. calibration: None for
    data-free (images distilled by the method's synthesizer from the BN statistics), a float32
    tensor [N, C, H, W] of model inputs, or a path (``.npz`` or image folder, read with the
    declared preprocessing). placement: the placement policy of the targets to export to
    (``edgekit.quant.placement``). task: what the outputs are (``edgekit.tasks``): it gives
    data-free synthesis its output prior.

    Raises UserError for bad input (unknown method, a config of another method, a method that
    needs data, bad calibration).
    """
    from edgekit.quant.algorithms import algorithm_of
    if config is not None:
        algo = algorithm_of(config)
        if method not in (None, algo.name):
            raise UserError(f"config is a {type(config).__name__} (method {algo.name}), not a config of method {method}")
    else:
        algo = ALGORITHMS.get(method or "zeroq")
        config = algo.config.resolve(data_free=calibration is None)
    canonical, pre = prepare(model, example_input, mean, std, pixel_scale, input_range)
    if algo.check is not None:
        algo.check(canonical, algo.name)
    if calibration is None:
        if algo.synthesizer is None:
            raise UserError(f"method {algo.name} needs calibration data: pass calibration=images or a path")
        synth = synth or SynthConfig()
        calib = SYNTHESIZERS.get(algo.synthesizer)(canonical, synth, progress,
                                                   output_prior=TASKS.get(task).synthesis_prior(synth.label_loss))
    elif isinstance(calibration, torch.Tensor):
        if calibration.dim() != 4 or tuple(calibration.shape[1:]) != tuple(canonical.example_input.shape[1:]):
            raise UserError(f"calibration images have shape {tuple(calibration.shape)}; the model takes "
                            f"[N, {', '.join(map(str, canonical.example_input.shape[1:]))}]")
        calib = CalibrationSource(calibration.float(), {"kind": "real", "path": "tensor", "num_samples": len(calibration)})
    else:
        calib = load_calibration(calibration, pre or assumed_preprocess(tuple(canonical.example_input.shape)),
                                 bounds=canonical.input_bounds)
    if canonical.batch is not None:  # a program specialised to a static batch runs that many rows
        calib.batch_size, calib.pad_last = canonical.batch, True
    recipe = algo.fn(canonical, dataclasses.replace(config), calib, placement=placement)
    for name in PLACEMENTS.names():  # what any target's placement adds (TFLite's LayerNorm ops), for export
        complete_recipe(canonical, recipe, quantizer_for(name, recipe), calib)
    return recipe


def export(model, recipe: QuantRecipe | None, target: str, path: str | os.PathLike, *,
           example_input: torch.Tensor | None = None, overwrite: bool = False) -> Artifact:
    """Lower ``model`` quantized by ``recipe`` (None: FP32) for ``target`` and write the
    artifact to ``path`` (its side files, e.g. the .etrecord, beside it). Written to a temporary
    folder first, then renamed. Raises UserError when ``path`` exists (unless ``overwrite``),
    its suffix is not the target's format, or the target cannot run the recipe."""
    t = TARGETS.get(target)
    path = Path(path).expanduser()
    fmt = t.profile.artifact_format
    if path.suffix != f".{fmt}":
        raise UserError(f"{path}: target {target} writes .{fmt} files; give a path ending in .{fmt}")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists: give another path, or overwrite=True")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent} is not a folder")
    if recipe is not None:
        t.check(recipe)
    canonical, _ = prepare(model, example_input)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".edgekit-export.") as tmp:
        with captured_output(Path(tmp) / "lower.log"):
            art = t.lower(canonical, recipe, Path(tmp), path.stem)
        side = {}
        for key, p in art.side_files.items():
            tail = p.name[len(art.path.stem):] if p.name.startswith(art.path.stem) else p.suffix
            dest = path.with_name(path.stem + tail)  # model.float.onnx, model.encodings beside model.onnx
            os.replace(p, dest)
            side[key] = dest
        os.replace(art.path, path)
    return dataclasses.replace(art, path=path, side_files=side)


def evaluate(artifact: Artifact | str | os.PathLike, images: torch.Tensor, *, labels: torch.Tensor | None = None,
             model=None, example_input: torch.Tensor | None = None, recipe: QuantRecipe | None = None,
             task: str = "classification", progress: bool = False) -> dict:
    """Run ``artifact`` in its own runtime on ``images`` (float32 [N, C, H, W] model inputs) and
    score it with ``task``'s metrics: against the ground truth ``labels`` (classification:
    int64 [N] -> top-1; super_resolution: target images [N, C, sH, sW] -> PSNR/SSIM on Y), and
    against the FP32 ``model`` (agreement, output SQNR in dB) and the simulation of ``recipe``
    when given. Returns the bundle's ``evaluation.results[]`` entry (fractions in [0, 1]).
    Raises UserError for an unknown suffix or task."""
    from edgekit.evaluation import float_outputs, run_artifact, score, simulated_outputs
    from edgekit.registry import TASKS
    from edgekit.runtimes.base import suffixes

    path = Path(artifact.path if isinstance(artifact, Artifact) else artifact)
    from edgekit.pipeline import format_targets
    name = format_targets().get(path.suffix)
    target = TARGETS.get(name) if name not in (None, "simulation") else None
    if target is None:
        raise UserError(f"{path}: not a {suffixes()} artifact")
    canonical = prepare(model, example_input)[0] if model is not None else None
    out, seconds = run_artifact(target, path, images, progress, canonical.batch if canonical else None)
    fp32 = float_outputs(canonical, images) if canonical is not None else None
    sim = simulated_outputs(canonical, recipe, target, images) if canonical is not None and recipe is not None else None
    return score(TASKS.get(task), path.name, target.check_runtime, images, out, labels, fp32, sim, seconds)


def profile(artifact: Artifact | str | os.PathLike, runs: int = 50, warmup_runs: int = 10,
            threads: int | None = None, trace_ops: bool = True, *, device: str = "local",
            runtime: str | None = None, **transport_options):
    """Profile ``artifact`` (an Artifact, a .pte/.tflite/.onnx file or a bundle folder) in its
    runtime on ``device`` (local, adb[:SERIAL], ssh://user@host[:port], http://host:port, with
    that transport's ``transport_options``): a ``Trace`` (latency p50/p90 in ms, per-op events
    mapped to the model's modules where the runtime reports them). What ``edgekit profile``
    runs. Raises UserError for a bad count or a file that is not an artifact, TransportError
    for a run lost on the device."""
    from edgekit.profiling.transports import profile_artifact
    path = artifact.path if isinstance(artifact, Artifact) else artifact
    return profile_artifact(path, device, runtime, warmup_runs, runs, threads, trace_ops, **transport_options)


def check_rules(path: str | os.PathLike, target: str) -> list:
    """The vendor rules of ``target`` (``tensorrt``, ``qnn-htp``) that the ONNX file at ``path``
    (edgekit's or anyone's) breaks: a list of ``edgekit.backends.onnx_rules.Violation`` (node,
    rule, detail, severity "error" or "advice"); empty when it passes. What ``edgekit targets
    check`` runs. Raises UserError for a missing or non-ONNX file, or a target without rules."""
    from edgekit.runtimes.checks import check_artifact
    t = TARGETS.get(target)
    p = Path(path).expanduser()
    if p.suffix.lower() != ".onnx":
        raise UserError(f"{p.name}: give an .onnx file (the rules checkers read ONNX Q/DQ models)")
    check_artifact(p)
    try:
        return t.rules(p)
    except NotImplementedError:
        have = [n for n in TARGETS.names() if type(TARGETS.get(n)).rules is not Target.rules]
        raise UserError(f"target {target} has no rules checker; use --target {' or '.join(have)}") from None
    except ValueError as e:
        raise UserError(f"{e}; give an ONNX model") from None


def run(config: RunConfig, out: str | os.PathLike, *, input_shape: tuple[int, ...] | None = None,
        dataset: str | None = None, eval_data: str | os.PathLike | None = None, eval_samples: int | None = None,
        force: bool = False, cache: bool = True, progress: bool = False, log=lambda message: None):
    """The main job, what ``edgekit quantize`` runs: quantize ``config.model`` with
    ``config.method`` and its config (``config.quant``; None: the method's defaults), lower it
    for each target, evaluate every artifact in its own runtime and write the bundle to ``out``
    (through a temporary folder; an existing folder is replaced only when edgekit wrote it, or
    with ``force``). ``config`` is not changed. cache: reuse synthesized data, FP32 twins and FP32
    outputs from the user's cache folder (``edgekit.cache``). Returns ``RunResult`` (``out``,
    ``manifest``, ``timings`` in s). Raises UserError for bad input, before any long work."""
    from edgekit.cache import Cache
    from edgekit.pipeline import quantize as run_job
    return run_job(config, Path(out), input_shape, dataset, eval_samples, progress=progress, log=log, force=force,
                   eval_data=eval_data, cache=Cache(enabled=cache))


def evaluate_bundle(path: str | os.PathLike, *, dataset: str | None = None, eval_data: str | os.PathLike | None = None,
                    limit: int | None = None, progress: bool = False) -> dict:
    """What ``edgekit eval`` runs: every artifact of the bundle at ``path`` (or the one artifact
    file ``path``) in its own runtime over ``dataset``/``eval_data`` (default: the bundle's),
    scored against the simulation of the bundle's recipe. Each file is checked (sha256, format,
    a load in a child process) before its runtime sees it. Returns the bundle's ``evaluation``
    section. Raises UserError for a missing, changed or unknown file or no data set."""
    from edgekit.pipeline import evaluate_path
    return evaluate_path(Path(path), dataset, limit, progress=progress, eval_data=eval_data)


def _sr_artifacts(path: str | os.PathLike, pick: str | None = None, every: bool = False) -> list[Path]:
    """The SR artifact file ``path``, or from the bundle folder ``path`` the artifact named ``pick``
    (its file or target), else every artifact (``every``) or the first of .pte, .tflite, .onnx.
    Each is checked (sha256 against the manifest, format, a load in a child process) before any
    runtime here sees it. Raises UserError naming what is wrong."""
    from edgekit.bundle import inside, read_manifest, verify
    from edgekit.runtimes.base import runtime_of_suffix, suffixes
    from edgekit.runtimes.checks import check_artifact, probe_artifact

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p} does not exist; give a {suffixes()} super-resolution model or a bundle folder")
    maker = "edgekit quantize"  # what re-creates a bundle whose artifact is missing
    if not p.is_dir():
        if pick:
            raise UserError(f"--artifact picks one artifact of a bundle folder; {p} is a file: drop --artifact")
        files = [(p, None)]
    else:
        manifest = read_manifest(p)
        if manifest.get("kind") == "lut":
            maker = "edgekit lut train"
        listed = [a for a in manifest.get("artifacts") or [] if isinstance(a, dict)
                  and isinstance(a.get("file"), str) and runtime_of_suffix(Path(a["file"]).suffix)]
        if not listed:
            raise UserError(f"{p}/manifest.json lists no {suffixes()} artifact; give an artifact file")
        chosen = [a for a in listed if pick in (a["file"], a.get("target"))] if pick else listed
        if not chosen:
            raise UserError(f"--artifact {pick!r} is not in {p}; use one of {', '.join(a['file'] for a in listed)}")
        chosen.sort(key=lambda a: runtime_of_suffix(Path(a["file"]).suffix).preference)
        files = [(inside(p, a["file"], "artifact"), a.get("sha256")) for a in (chosen if every else chosen[:1])]
    for f, digest in files:
        if digest is not None and not f.is_file():
            raise UserError(f"{f} is missing; re-create the bundle with '{maker}'")
        check_artifact(f)
        verify(f, digest)
        probe_artifact(f)
    return [f for f, _ in files]


def _written_by_edgekit(path: Path) -> bool:
    """Whether ``path`` is a PNG that :func:`upscale` wrote (its ``Software`` text chunk)."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return str(getattr(img, "text", {}).get("Software", "")).startswith("edgekit ")
    except Exception:
        return False


def upscale(artifact: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
            pick: str | None = None, force: bool = False, margin: int = 8, threads: int | None = None,
            log=lambda message: None) -> list[Path]:
    """What ``edgekit upscale`` runs: upscale the PNG/JPEG image ``images`` (or every one directly
    inside that folder) with the SR artifact ``artifact`` (a .pte/.tflite/.onnx file, or a bundle
    folder: its artifact ``pick``, else its .pte, .tflite or .onnx in that order), tile by tile
    (``edgekit.tasks.sr_tiling``, ``margin`` LR pixels of overlap). A Y model upscales the luma
    and Cb/Cr get the MATLAB bicubic; an RGB model all three channels; grey images stay grey; an
    alpha channel gets the bicubic. Each result is written as ``<stem>_x<s>.png`` (8 bits a
    sample) into the folder ``out`` (created), through a temporary file and a rename. Returns the
    paths written.

    Raises UserError, before anything is written, for a missing path, a file that is not an
    image or not an artifact, an artifact that is not an SR model, ``out`` naming a file, two
    inputs with the same output name, or an output that exists and that edgekit did not write
    (unless ``force``)."""
    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from edgekit.data.bicubic import upscale_bicubic
    from edgekit.data.images import photo_files, read_photo
    from edgekit.tasks.sr_tiling import TiledSR, upscale_image
    from edgekit.version import __version__

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (new or existing) for the upscaled images")
    files = photo_files(images)
    model_path = _sr_artifacts(artifact, pick)[0]
    for f in files:  # every input readable before anything is written
        read_photo(f)
    model = TiledSR(model_path, margin, threads)
    dests = [out / f"{f.stem}_x{model.scale}.png" for f in files]
    for i, d in enumerate(dests):
        if d in dests[:i]:
            raise UserError(f"{files[dests.index(d)].name} and {files[i].name} would both be written to {d.name}; "
                            "rename one of them")
        if d.is_dir() or (d.exists() and not force and not _written_by_edgekit(d)):
            raise UserError(f"{d} exists and edgekit did not write it; move it away, give another --out, "
                            "or add --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    for f, d in zip(files, dests):
        pixels, alpha = read_photo(f)
        sr = upscale_image(model, pixels)
        if alpha is not None:
            sr = np.dstack([sr, upscale_bicubic(alpha, model.scale)])
        info = PngInfo()
        info.add_text("Software", f"edgekit {__version__} upscale")
        info.add_text("Comment", f"{f.name} upscaled x{model.scale} by {model.name}")
        fd, tmp = tempfile.mkstemp(prefix=f".{d.name}.", suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(sr).save(fh, format="PNG", pnginfo=info)
            os.replace(tmp, d)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log(f"{f} -> {d}")
    return dests


def evaluate_sr(path: str | os.PathLike, eval_data: str | os.PathLike | None, scale: int, *,
                limit: int | None = None, margin: int = 8, threads: int | None = None) -> dict:
    """What ``edgekit eval PATH --eval-data DIR --scale S`` runs: the SR artifact file ``path`` (or
    every artifact of the bundle folder ``path``) and the bicubic baseline scored on the photos of
    ``eval_data`` at x``scale``: PSNR (dB) and SSIM on Y with ``scale`` pixels shaved
    (``edgekit.tasks.sr_folder.evaluate_sr_folder``, whose dict it returns). Raises UserError for a
    scale outside 2..8, no or a bad folder, a bad artifact (checked before it is loaded, as
    :func:`upscale` does) or one of another scale."""
    from edgekit.data.images import photo_files
    from edgekit.tasks.sr_folder import SCALES, evaluate_sr_folder

    if scale not in SCALES:
        raise UserError(f"--scale {scale} is not one of {SCALES.start}..{SCALES.stop - 1}; give the upscaling factor")
    if eval_data is None:
        raise UserError("--scale scores super-resolution on your photos: give --eval-data DIR (a folder of "
                        "high-resolution PNG/JPEG photos)")
    photo_files(eval_data, "--eval-data")
    return evaluate_sr_folder(_sr_artifacts(path, every=True), eval_data, scale, margin, limit, threads)


def train_lut(method: str, out: str | os.PathLike, **kwargs) -> dict:
    """What ``edgekit lut train`` runs (``edgekit.lut_job.train_lut``: the arguments, the bundle
    and the errors are described there); returns the bundle's manifest."""
    from edgekit.lut_job import train_lut as _train
    return _train(method, out, **kwargs)
