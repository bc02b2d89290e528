"""The main job: quantize a model, lower it for each target, evaluate every artifact in its
runtime, and write the bundle. ``edgekit quantize`` and the benchmarks call ``quantize``."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from edgekit.version import __version__
from edgekit import bundle as bnd
from edgekit.backends.base import captured_output
from edgekit.config import VALID_A_BITS, VALID_BITS, RunConfig, SynthConfig, method_config, to_dict
from edgekit.data.calibration import CalibrationSource, load_calibration
from edgekit.data.eval_data import EvalData, load_eval_data
from edgekit.data.datasets import Preprocess, assumed_preprocess, declared_preprocess
from edgekit.runtimes.base import suffixes
from edgekit.runtimes.checks import check_artifact, probe_artifact
from edgekit.runtimes.trace import Trace
from edgekit.bundle import inside, sha256_file, verify
from edgekit.cache import Cache, library_versions, recipe_hash, tensor_hash
from edgekit.errors import UserError, first_line
from edgekit.evaluation import run_artifact, score, simulation_program
from edgekit import fp32_prefetch
from edgekit.fp32_prefetch import fp32_outputs, fp32_twin
from edgekit.models.canonical import CanonicalModel, canonicalize
from edgekit.models.zoo import LoadedModel, load_model
from edgekit.quant.complete import complete_recipe
from edgekit.quant.algorithms import plan_for
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import ALGORITHMS, RUNTIMES, SYNTHESIZERS, TARGETS, TASKS
from edgekit.tasks.base import Task, load_dataset, task_of_dataset


LOWER_LOG = "lower.log"  # the converters' own output


@dataclass
class RunResult:
    """What ``quantize`` produced: the bundle directory, its manifest, timings in seconds."""
    out: Path
    manifest: dict
    timings: dict[str, float] = field(default_factory=dict)


def resolve_quant(cfg: RunConfig) -> None:
    """Set ``cfg.quant`` to the method's config when it is None (its defaults, and its data-free
    ones with --data-free); raises UserError when it is another method's config."""
    algo = ALGORITHMS.get(cfg.method)
    if cfg.quant is None:
        cfg.quant = method_config(cfg.method, cfg.data_free)
    elif type(cfg.quant) is not algo.config:
        raise UserError(f"the quant config is a {type(cfg.quant).__name__}; method {cfg.method} takes a "
                        f"{algo.config.__name__}")


def validate(cfg: RunConfig) -> None:
    """Check flags before any work (``cfg.quant`` resolved); raises UserError naming the bad value."""
    for flag, bits, valid in (("--w-bits", cfg.quant.w_bits, VALID_BITS), ("--a-bits", cfg.quant.a_bits, VALID_A_BITS)):
        if bits not in valid:
            raise UserError(f"{flag} {bits} is not a bit width edgekit supports: use one of {list(valid)}")
    if cfg.data_free == bool(cfg.calib_path):
        raise UserError("give exactly one of --data-free (synthetic calibration) or --calib PATH (real images)")
    for t in cfg.targets:
        TARGETS.get(t)
    if cfg.task is not None:
        TASKS.get(cfg.task)
    algo = ALGORITHMS.get(cfg.method)
    if cfg.data_free and algo.synthesizer is None:
        raise UserError(f"--method {cfg.method} needs real calibration data: give --calib PATH, "
                        f"or use a data-free method ({', '.join(n for n in ALGORITHMS.names() if ALGORITHMS.get(n).synthesizer)})")
    validate_mixed_precision(cfg)


def validate_mixed_precision(cfg: RunConfig) -> None:
    """--mixed-precision flags: a method that honours per-layer bits, one budget, targets that
    run 2- and 4-bit weights. Raises UserError."""
    q = cfg.quant
    if not q.mixed_precision and (q.size_budget_kb is not None or q.avg_bits is not None):
        raise UserError("--size-budget-kb / --avg-bits choose per-layer bit widths: add --mixed-precision")
    if not q.mixed_precision:
        return
    if not ALGORITHMS.get(cfg.method).mixed_precision:
        raise UserError(f"--method {cfg.method} does not support --mixed-precision: use one of "
                        f"{', '.join(n for n in ALGORITHMS.names() if ALGORITHMS.get(n).mixed_precision)}")
    if (q.size_budget_kb is None) == (q.avg_bits is None):
        raise UserError("--mixed-precision needs exactly one budget: --size-budget-kb K or --avg-bits B")
    if q.size_budget_kb is not None and q.size_budget_kb <= 0:
        raise UserError(f"--size-budget-kb {q.size_budget_kb:g} must be positive")
    if q.avg_bits is not None and not 2 <= q.avg_bits <= 8:
        raise UserError(f"--avg-bits {q.avg_bits:g} is outside [2, 8]: per-layer widths come from {{2, 4, 8}}")
    for t in cfg.targets:
        bits = TARGETS.get(t).profile.constraints.weight_bits
        if not {2, 4} <= set(bits):
            raise UserError(f"target {t} runs weight bit widths {list(bits)} only, and --mixed-precision picks "
                            "2, 4 or 8 bits per layer: use --target simulation (or no --target)")


def default_tiers() -> list[list[str]]:
    """The targets lowered when none is named, by their profiles' ``default_tier`` (1: the
    deployable defaults, ExecuTorch and LiteRT; 2: tried when no tier-1 target runs the
    recipe, onnx-qdq's packed int4), in registry order within a tier."""
    tiers: dict[int, list[str]] = {}
    for name in TARGETS.names():
        tier = TARGETS.get(name).profile.default_tier
        if tier is not None:
            tiers.setdefault(tier, []).append(name)
    return [tiers[k] for k in sorted(tiers)]


def resolve_targets(cfg: RunConfig, plan: QuantRecipe, log=print) -> list:
    """The targets to lower for. Named targets must accept ``plan`` (check() raises UserError);
    with none named, the first tier of :func:`default_tiers` with targets that accept it, else
    ``simulation`` (the bundle then records simulated accuracy, marked
    "runtime": "simulation")."""
    if cfg.targets:
        targets = [TARGETS.get(t) for t in cfg.targets]
        for t in targets:
            t.check(plan)
        return targets
    why = []
    for names in default_tiers():
        ok = []
        for name in names:
            t = TARGETS.get(name)
            try:
                t.check(plan)
                ok.append(t)
            except UserError as e:
                why.append(str(e))
        if ok:
            return ok
    log("no deployable target runs this recipe (" + why[-1] + "); the bundle holds the PyTorch "
        "simulation, marked runtime 'simulation'")
    return [TARGETS.get("simulation")]


def prepare_model(spec: str | None, input_shape: tuple[int, ...] | None = None,
                  cfg: RunConfig | None = None) -> tuple[LoadedModel, CanonicalModel, Preprocess | None]:
    """Load and canonicalize a model and settle its preprocessing: the user's declaration
    (``cfg``), else the zoo entry's, else None (no dataset, no pixel bound). Raises UserError
    when the model cannot be exported or the declaration does not fit it."""
    loaded = load_model(spec, input_shape)
    try:
        canonical = canonicalize(loaded.model, loaded.example_input, loaded.name)
    except Exception as e:
        raise UserError(f"model {loaded.name} cannot be exported with torch.export "
                        f"({type(e).__name__}: {first_line(e, empty='no message')}); "
                        "make its forward traceable (no Python control flow on tensor values), or export it "
                        "yourself with torch.export.export(model, (torch.randn(1, C, H, W),)) and give the .pt2") from None
    pre = loaded.preprocess
    if cfg is not None:
        declared = declared_preprocess(tuple(loaded.example_input.shape), cfg.mean, cfg.std, cfg.pixel_scale,
                                       cfg.input_range)
        pre = declared or pre
    if pre is not None:
        canonical.input_bounds = pre.bounds()
        canonical.input_prior = pre.input_prior()
    return loaded, canonical, pre


def task_of(cfg: RunConfig, loaded: LoadedModel) -> Task:
    """The model's task: the user's --task, else the zoo entry's, else classification."""
    return TASKS.get(cfg.task or loaded.task or "classification")


def calibration_source(cfg: RunConfig, loaded: LoadedModel, canonical: CanonicalModel, pre: Preprocess | None,
                       progress: bool, notes: list[str] | None = None, cache: Cache | None = None) -> CalibrationSource:
    """Distilled data (--data-free, by the method's synthesizer, with the task's output prior;
    from ``cache`` when the same model, synthesis config and seed were distilled before) or
    real images (--calib); an assumption made on the way is appended to ``notes``."""
    if cfg.data_free:
        task = task_of(cfg, loaded)
        prior = task.synthesis_prior(cfg.synth.label_loss)
        synthesizer = ALGORITHMS.get(cfg.method).synthesizer
        bounds = [b.tolist() for b in canonical.input_bounds] if canonical.input_bounds is not None else None
        made = []

        def distil():
            made.append(SYNTHESIZERS.get(synthesizer)(canonical, cfg.synth, progress, output_prior=prior))
            return {"images": made[0].images}, made[0].provenance
        tensors, prov = (cache or NO_CACHE).tensors(
            "calibration", lambda: (canonical.content_hash, synthesizer, to_dict(cfg.synth), task.name,
                                    prior is not None, bounds, canonical.input_prior, canonical.batch), distil)
        return made[0] if made else CalibrationSource(tensors["images"], dict(prov, cached=True))
    if pre is None:
        pre = assumed_preprocess(tuple(loaded.example_input.shape))
        if notes is not None:
            notes.append("calibration images (if any are image files or uint8) were taken as pixels/255: give "
                         "--mean/--std or --input-range if the model expects otherwise")
    return load_calibration(cfg.calib_path, pre, cfg.calib_samples, canonical.input_bounds)


def quantize(cfg: RunConfig, out: Path, input_shape: tuple[int, ...] | None = None, dataset: str | None = None,
             eval_samples: int | None = None, progress: bool = True, log=print, force: bool = False,
             eval_data: str | Path | None = None, cache: Cache | None = None) -> RunResult:
    """Run the main job and write the bundle to ``out`` (atomically; an existing folder is
    replaced only when it is a bundle edgekit wrote, or with ``force``: see ``bundle.staged_dir``).
    cache: where synthesized calibration data, FP32 twin artifacts, FP32 outputs, and for the same
    recipe the int8 artifacts, the simulation's outputs and the artifacts' runtime outputs are
    reused from (``edgekit.cache``); None: no cache.

    ``cfg`` is not changed: the run works on a copy, and the manifest records that copy as the
    run resolved it (``quantization.config``, which ``--config`` takes back to reproduce the bundle).
    Raises UserError on bad input (``out`` is checked before any work); other exceptions are failures.
    """
    cfg = copy.deepcopy(cfg)
    resolve_quant(cfg)
    validate(cfg)
    with bnd.staged_dir(out, force) as tmp, contextlib.ExitStack() as stop_children:  # --out is checked first
        timings: dict[str, float] = {}
        t_all = time.time()
        loaded, canonical, pre = prepare_model(cfg.model, input_shape, cfg)
        task = task_of(cfg, loaded)
        notes: list[str] = []  # assumptions, said once in the summary and kept in the manifest
        if pre is None:
            notes.append("preprocessing: none declared and no zoo entry; no dataset and no pixel bound are "
                         "assumed, the input's range comes from the calibration data (give --mean/--std or "
                         "--input-range)")
        eval_set = None  # the user's evaluation data, read before any long work
        if eval_data is not None:
            eval_set = load_eval_data(eval_data, pre or assumed_preprocess(tuple(loaded.example_input.shape)),
                                      eval_samples, canonical.input_bounds)
            given = None if eval_set.labels is None else "labels" if eval_set.labels.dim() == 1 else "targets"
            if given not in (None, task.ground_truth):
                raise UserError(f"--eval-data {eval_data} gives {'labels' if given == 'labels' else 'target images'}; a {task.name} model is scored against "
                                f"'{task.ground_truth}': give those (or --task to say what the model is)")
            if pre is None and not str(eval_data).endswith(".npz"):
                notes.append("evaluation images were taken as pixels/255: give --mean/--std or --input-range "
                             "if the model expects otherwise")
        if canonical.batch is not None and (cfg.quant.mixed_precision or ALGORITHMS.get(cfg.method).synthesizer == "genie"
                                            or cfg.method == "genie"):
            raise UserError(f"model {loaded.name} is specialised to a static batch of {canonical.batch} "
                            f"(its code or export fixes the batch size); --method {cfg.method}"
                            f"{' --mixed-precision' if cfg.quant.mixed_precision else ''} needs a dynamic batch: "
                            "use --method zeroq or ptq, or export it with a dynamic batch dimension")
        base = cfg.synth or loaded.synth
        if cfg.synth is None and ALGORITHMS.get(cfg.method).synthesizer == "genie" and loaded.synth == SynthConfig():
            base = SynthConfig.genie()  # Genie-D's own CPU budget where the zoo sets none
        cfg.synth = dataclasses.replace(base, **cfg.synth_overrides)
        if cfg.synth.num_samples < 1 or cfg.synth.iterations < 0:
            raise UserError("--num-samples must be at least 1 and --iterations at least 0")
        if cfg.quant.activation_symmetric is None:  # the named targets' constraints feed the plan
            cfg.quant.activation_symmetric = any(TARGETS.get(t).profile.constraints.activation_symmetric
                                                 for t in cfg.targets)
        try:
            plan = plan_for(ALGORITHMS.get(cfg.method), canonical.graph_module, cfg.quant, cfg.method)
        except ValueError as e:
            raise UserError(f"{e}; fix --override or the config's [quant.overrides]") from None
        check = ALGORITHMS.get(cfg.method).check
        if check is not None:
            check(canonical, cfg.method)
        mp = None
        if cfg.quant.mixed_precision:  # the budget is checked against the model before any synthesis
            from edgekit.quant.mixed_precision import budget_bytes, layer_infos
            budget_bytes(layer_infos(canonical.graph_module), cfg.quant.size_budget_kb, cfg.quant.avg_bits)
        # with mixed precision the per-layer bits (and so the default targets) are known only later
        targets = resolve_targets(cfg, plan, log) if cfg.targets or not cfg.quant.mixed_precision else None
        dataset = dataset or loaded.dataset
        data = eval_data_of(eval_set if eval_set is not None else dataset, eval_samples) \
            if eval_set is not None or dataset else None
        torch.export.save(canonical.folded, str(tmp / bnd.FLOAT_PROGRAM))
        prefetch = fp32_prefetch.start(canonical, tmp / bnd.FLOAT_PROGRAM, targets or [], cache or NO_CACHE, tmp,
                                       data.images if data is not None else None)  # FP32 work, beside this
        if prefetch is not None:
            stop_children.callback(prefetch.stop)

        t0 = time.time()
        calib = calibration_source(cfg, loaded, canonical, pre, progress, notes, cache)
        if canonical.batch is not None:  # the program runs exactly this many images at a time
            calib.batch_size, calib.pad_last = canonical.batch, True
        if eval_set is None and not dataset and len(calib) >= 5:
            # no labelled data: agreement and SQNR on calibration images held out of calibration
            k = max(1, len(calib) // 5)
            eval_set = EvalData(calib.images[-k:], None, {
                "kind": f"held-out {calib.provenance['kind']} images", "name": "held-out "
                f"{calib.provenance['kind']} ({calib.provenance['method']})", "num_samples": k,
                "note": "not used for calibration; no labels, so no top-1"})
            calib.images = calib.images[:-k]
            calib.provenance = dict(calib.provenance, num_samples=len(calib.images), held_out=k)
            data = eval_set
        timings["calibration_data_s"] = time.time() - t0
        log(f"calibration data: {calib.provenance['kind']} ({calib.provenance['method']}), "
            f"{len(calib)} images, {timings['calibration_data_s']:.1f} s")
        if cfg.quant.mixed_precision:
            from edgekit.quant.mixed_precision import choose_bits
            t0 = time.time()
            mp = choose_bits(canonical, calib, cfg.quant.size_budget_kb, cfg.quant.avg_bits, task.sensitivity)
            cfg.quant.overrides = {**{node: {"w_bits": b} for node, b in mp.chosen.items()}, **cfg.quant.overrides}
            timings["mixed_precision_s"] = time.time() - t0
            log(f"mixed precision: {mp.chosen_bytes / 1000:.1f} kB of weights (budget {mp.budget_bytes / 1000:.1f} kB), "
                f"bits {sorted(mp.chosen.values())}")
        t0 = time.time()
        placement = targets[0].profile.placement if targets else TARGETS.get("simulation").profile.placement
        recipe: QuantRecipe = ALGORITHMS.get(cfg.method).fn(canonical, cfg.quant, calib, placement=placement)
        if targets is None:  # mixed precision: chosen for the final per-layer bits
            targets = resolve_targets(cfg, recipe, log)
        else:
            for t in targets:  # per-layer bits (Genie's first/last layers) may differ from the plan's
                t.check(recipe)
        for t in targets:  # tensors a target's placement adds (LayerNorm's inner ops for TFLite)
            added = complete_recipe(canonical, recipe, t.quantizer(recipe), calib)
            if added:
                log(f"{t.name}: {len(added)} tensors its placement adds, calibrated min/max")
        timings["quantize_s"] = time.time() - t0
        if prefetch is not None:
            prefetch.release()  # the int8 converters ahead are single-threaded: a core for the child
        recipe_key = functools.cache(lambda: recipe_hash(recipe))  # the cache's key of this recipe, made once

        recipe.save(tmp / bnd.RECIPE)
        if mp is not None:
            from edgekit.quant.mixed_precision import write_pareto
            write_pareto(mp, tmp)
        shift = shift_weights(canonical, recipe, tmp)
        artifacts, skipped = lower_targets(cfg, loaded, canonical, recipe, targets, tmp, cache, recipe_key,
                                           notes, log, timings, prefetch)
        evaluation = None
        if data is not None:
            t0 = time.time()
            images_key = functools.cache(lambda: tensor_hash(data.images))
            refs = reference_outputs(canonical, recipe, [t for t, _, _ in artifacts], data.images, cache, recipe_key,
                                     images_key)
            timings["references_s"] = time.time() - t0
        t0 = time.time()
        for t, art, entry in artifacts:
            if t.profile.host_latency:
                entry.update(latency_vs_fp32(art.path, tmp / f".fp32-{t.name}", art.runtime, art.ops))
            shutil.rmtree(tmp / f".fp32-{t.name}")
        timings["latency_s"] = time.time() - t0
        if data is not None:
            t0 = time.time()
            by_path = {a.path: a for _, a, _ in artifacts}
            evaluation = evaluate_bundle_parts(
                task, canonical, recipe, [(t, a.path) for t, a, _ in artifacts], data, progress, refs,
                run=lambda t, path: artifact_outputs(t, by_path[path], data.images, images_key, canonical.batch,
                                                     progress, cache or NO_CACHE))
            timings["evaluate_s"] = time.time() - t0 + timings.pop("references_s")
            for r in evaluation["results"]:
                if r.get("sqnr_db_vs_fp32", math.inf) < LOW_SQNR_DB:
                    notes.append(f"{r['file']}: output SQNR {r['sqnr_db_vs_fp32']:.1f} dB against FP32 on "
                                 f"{evaluation['dataset']}: it does not compute what the model computes; try "
                                 "--calib with real images or another --target")
        timings["total_s"] = time.time() - t_all
        manifest = build_manifest(cfg, loaded, canonical, recipe, calib, [e for _, _, e in artifacts],
                                  evaluation, timings)
        if cache is not None and cache.enabled:
            made_here = prefetch.made if prefetch is not None else set()  # by the FP32 child, this run
            manifest["cache"] = {"root": str(cache.root), "reused": sorted(set(cache.hits) - made_here)}
        manifest["model"]["static_batch"] = canonical.batch
        manifest["model"]["task"] = task.name
        manifest["notes"] = notes
        if skipped:
            manifest["skipped_targets"] = skipped
        manifest["preprocessing"] = pre.to_dict() if pre is not None else {
            "source": "calibration data", "input_range": None, "note": "none declared: no dataset, no pixel bound"}
        if mp is not None:
            manifest["quantization"]["mixed_precision"] = {
                "pareto": "pareto.json", "plot": "pareto.png", "budget_bytes": round(mp.budget_bytes),
                "weight_bytes": mp.chosen_bytes, "summed_sensitivity": mp.chosen_sensitivity,
                "sensitivity": task.sensitivity_name,
                "avg_weight_bits": round(8 * mp.chosen_bytes / sum(li.params for li in mp.layers), 4)}
        if shift:
            manifest["quantization"]["shift"] = shift
        bnd.write_json(tmp / bnd.MANIFEST, manifest)
    return RunResult(Path(out), manifest, timings)


SHIFT_FILE = "model.shift"


def shift_weights(canonical: CanonicalModel, recipe: QuantRecipe, out_dir: Path) -> dict | None:
    """For a shift network (layers of scheme "pow2"): write its packed weights
    (``edgekit.kernels.shift_pack``) to ``out_dir/model.shift`` and return the manifest's
    ``quantization.shift``: the file, its bytes, the bits per weight, and the op counts per
    inference (``edgekit.kernels.shift_net.op_counts``). None for any other recipe."""
    from edgekit.quant.recipe import POW2
    if not any(lq.weight.scheme == POW2 for lq in recipe.layers.values()):
        return None
    from edgekit.kernels.shift_net import op_counts
    from edgekit.kernels.shift_pack import pack
    data = pack(recipe, zero_free=recipe.method == "denseshift")
    (out_dir / SHIFT_FILE).write_bytes(data)
    bits = sorted({lq.weight.code_bits for lq in recipe.layers.values() if lq.weight.scheme == POW2})
    return {"packed_file": SHIFT_FILE, "packed_bytes": len(data), "code_bits": bits,
            "zero_free": recipe.method == "denseshift", "ops_per_inference": op_counts(canonical.graph_module, recipe)}


def lower_targets(cfg: RunConfig, loaded: LoadedModel, canonical: CanonicalModel, recipe: QuantRecipe, targets: list,
                  tmp: Path, cache: Cache | None, recipe_key: Callable[[], str], notes: list[str], log,
                  timings: dict[str, float], prefetch: fp32_prefetch.Prefetch | None = None) -> tuple[list, list]:
    """Lower every target's int8 artifact into ``tmp``, then (once ``prefetch``, the child
    making them, has finished) its FP32 twin into ``tmp/.fp32-<target>``. A default target whose
    converter fails is skipped with a note; a named one (or the last one) raises RuntimeError.
    Returns ([(target, Artifact, manifest entry)], [skipped])."""
    artifacts, skipped, lowered = [], [], []
    t0 = time.time()

    def failed(t, e: Exception) -> None:
        why = f"{type(e).__name__}: {first_line(e, empty='no message')}"
        shutil.rmtree(tmp / f".fp32-{t.name}", ignore_errors=True)
        if cfg.targets or len(targets) == 1:  # the user named it, or nothing else is left
            raise RuntimeError(f"target {t.name} could not lower model {loaded.name} ({why}); "
                               f"its converter's log is the last lines of {LOWER_LOG}; try another --target") from None
        skipped.append({"target": t.name, "error": why})
        notes.append(f"target {t.name} could not lower this model ({why}); the bundle holds the other targets")

    for t in targets:
        try:
            with captured_output(tmp / LOWER_LOG):
                lowered.append((t, lower_int8(t, canonical, recipe, tmp, cache, recipe_key)))
        except Exception as e:
            failed(t, e)
    if prefetch is not None:
        t1 = time.time()
        prefetch.join(tmp / LOWER_LOG)
        timings["fp32_prefetch_wait_s"] = time.time() - t1
        timings.update({f"prefetch_{k}": v for k, v in prefetch.seconds.items()})  # in the child, beside this
    for t, art in lowered:
        fp32_dir = tmp / f".fp32-{t.name}"
        fp32_dir.mkdir(exist_ok=True)
        try:
            with captured_output(tmp / LOWER_LOG):
                fp32_bytes = fp32_twin(t, canonical, fp32_dir, cache or NO_CACHE)
        except Exception as e:
            failed(t, e)
            continue
        entry = {"file": art.path.name, "target": t.name, "format": art.format, "runtime": art.runtime,
                 **({"checked_in": t.check_runtime} if t.check_runtime != art.runtime else {}),
                 "bytes": art.bytes, "sha256": art.sha256, "fp32_bytes": fp32_bytes,
                 "size_ratio_vs_fp32": round(art.bytes / fp32_bytes, 4)}
        entry.update({k: p.name for k, p in art.side_files.items()})
        if art.ops:
            entry["ops"] = art.ops
        artifacts.append((t, art, entry))
        log(f"{t.name}: wrote {art.path.name} ({art.bytes} bytes, {art.bytes / fp32_bytes:.1%} of fp32)")
    timings["lower_s"] = time.time() - t0
    if not artifacts:
        raise RuntimeError(f"no target could lower model {loaded.name}: " +
                           "; ".join(f"{x['target']}: {x['error']}" for x in skipped))
    return artifacts, skipped


LOW_SQNR_DB = 10.0  # below this an artifact's output is mostly quantization noise: said in a note
LATENCY_RUNS = 30  # timed runs per artifact for the int8-vs-fp32 check (warm-up: 5)


def latency_vs_fp32(path: Path, fp32_dir: Path, runtime: str, ops: dict) -> dict:
    """p50 latency (ms, this machine, the runtime's default threads, no op tracing) of the artifact
    at ``path`` and of its FP32 twin in ``fp32_dir``, and their ratio. When the int8 artifact is
    the slower one, ``slower_than_fp32`` is set and ``slow_ops`` names the ops that can cost it
    (left outside the delegate, or left in float by the quantizer). Empty for the simulation."""
    from edgekit.profiling.spec import JobSpec
    from edgekit.profiling.runners import run_spec

    twin = next(fp32_dir.glob(f"fp32{path.suffix}"), None)
    if runtime == "simulation" or twin is None or not RUNTIMES.get(runtime).installed():
        return {}  # no runtime here (TensorRT: measured on the device with edgekit profile)
    p50 = {}
    for key, p in (("int8", path), ("fp32", twin)):
        spec = JobSpec(artifact=p.name, runtime=runtime, warmup_runs=5, runs=LATENCY_RUNS, trace_ops=False)
        with captured_output(Path(os.devnull)):
            p50[key] = run_spec(spec, base=p.parent).latency["p50"]
    out = {"latency_p50_ms": round(p50["int8"], 4), "fp32_latency_p50_ms": round(p50["fp32"], 4),
           "speedup_vs_fp32": round(p50["fp32"] / p50["int8"], 3) if p50["int8"] else None}
    if p50["int8"] > p50["fp32"]:
        out["slower_than_fp32"] = True
        out["slow_ops"] = (ops.get("not_delegated") or []) + (ops.get("float_ops") or [])
        slower = slower_operators(path, twin, runtime)
        if slower:
            out["slower_operators"] = slower
    return out


def slower_operators(int8: Path, fp32: Path, runtime: str) -> list[dict]:
    """The operator kinds that take longer in the int8 artifact than in its FP32 twin, both traced
    in ``runtime`` (30 runs, its default threads, as the end-to-end check): :func:`excess_by_kind`
    of their traces. Empty when the runtime reports no per-operator events."""
    from edgekit.profiling.spec import JobSpec
    from edgekit.profiling.runners import run_spec

    traces = []
    for p in (int8, fp32):
        spec = JobSpec(artifact=p.name, runtime=runtime, warmup_runs=5, runs=LATENCY_RUNS, trace_ops=True)
        try:
            with captured_output(Path(os.devnull)):
                traces.append(run_spec(spec, base=p.parent))
        except Exception:  # a runtime without operator events: the end-to-end figures stand alone
            return []
    return excess_by_kind(*traces)


def excess_by_kind(int8: Trace, fp32: Trace) -> list[dict]:
    """Per operator kind (``Trace.operator_breakdown``: summed per-operator p50 in ms, event
    count) of the int8 and FP32 traces, the kinds that take longer in int8, the largest excess
    first: [{"operator", "int8_ms", "fp32_ms", "int8_count", "fp32_count"}]."""
    a, b = int8.operator_breakdown(), fp32.operator_breakdown()
    rows = [{"operator": k, "int8_ms": round(a.get(k, (0.0, 0))[0], 4), "fp32_ms": round(b.get(k, (0.0, 0))[0], 4),
             "int8_count": a.get(k, (0.0, 0))[1], "fp32_count": b.get(k, (0.0, 0))[1]} for k in {**a, **b}]
    return sorted((r for r in rows if r["int8_ms"] > r["fp32_ms"]), key=lambda r: r["fp32_ms"] - r["int8_ms"])


NO_CACHE = Cache(enabled=False)  # every lookup misses, nothing is stored


def lower_int8(target, canonical: CanonicalModel, recipe: QuantRecipe, out_dir: Path, cache: Cache | None,
               recipe_key: Callable[[], str]):
    """``target.lower`` of ``canonical`` quantized by ``recipe`` into ``out_dir``, from ``cache``
    when the same model and recipe (``recipe_key()``: its hash) were lowered by the same
    converter versions before (the files are copied; see :func:`artifact_outputs` for their runs)."""
    from edgekit.backends.base import Artifact

    def lower():
        art = target.lower(canonical, recipe, out_dir)
        files = {p.name: p for p in (art.path, *art.side_files.values())}
        return files, {"file": art.path.name, "format": art.format, "runtime": art.runtime, "ops": art.ops,
                       "side_files": {k: p.name for k, p in art.side_files.items()}}
    _, meta = (cache or NO_CACHE).files(
        "artifact", lambda: (canonical.content_hash, recipe_key(), target.name, library_versions()), lower, out_dir)
    return Artifact(out_dir / meta["file"], target.name, meta["format"], meta["runtime"],
                    {k: out_dir / v for k, v in meta["side_files"].items()}, meta["ops"])


def reference_outputs(canonical: CanonicalModel, recipe: QuantRecipe | None, targets: list, images: torch.Tensor,
                      cache: Cache | None = None, recipe_key: Callable[[], str] | None = None,
                      images_key: Callable[[], str] | None = None) -> dict:
    """What the artifacts are compared with on ``images`` (float32 [N, C, H, W]):
    ``{"fp32": outputs, "sims": {target name: outputs}}``, the FP32 model's outputs and, per
    target, those of the simulation of ``recipe`` as the target places it, from ``cache`` where
    present. The simulation runs once per distinct placement signature (``simulation_program``):
    targets whose quantizers place q/dq the same way share one pass. (Run in a thread beside the
    converters it saved 15 s of 113 s on the reference model, but each slowed the other by the GIL
    and the cores, and torch does not document eager runs beside torch.export as thread-safe.)"""
    cache = cache or NO_CACHE
    images_key = images_key or functools.cache(lambda: tensor_hash(images))
    recipe_key = recipe_key or functools.cache(lambda: recipe_hash(recipe))
    fp32 = fp32_outputs(canonical, images, cache, images_key() if cache.enabled else None)
    if recipe is None:
        return {"fp32": fp32, "sims": {}}
    by_signature: dict[str, torch.Tensor] = {}

    def simulate(target) -> tuple[dict, dict]:
        sig, gm = simulation_program(canonical, recipe, target)
        if sig not in by_signature:
            by_signature[sig] = canonical.run(gm, images)
        return {"outputs": by_signature[sig]}, {"placement": target.profile.placement, "program": sig}

    by_placement: dict[str, torch.Tensor] = {}
    for t in targets:
        p = t.profile.placement
        if p not in by_placement:
            by_placement[p] = cache.tensors("simulation-outputs",
                                            lambda: (canonical.content_hash, recipe_key(), images_key(), p),
                                            lambda: simulate(t))[0]["outputs"]
    return {"fp32": fp32, "sims": {t.name: by_placement[t.profile.placement] for t in targets}}


def artifact_outputs(target, art, images: torch.Tensor, images_key: Callable[[], str], static_batch: int | None,
                     progress: bool, cache: Cache) -> tuple[torch.Tensor, float, bool]:
    """Outputs [N, ...] of the artifact ``art`` run in its runtime on ``images`` (float32
    [N, C, H, W]), the seconds that run took, and whether they came from ``cache``: an entry
    made when the same bytes (the sha256 of the artifact and its side files) ran on the same
    images (``images_key()``) in the same runtime versions. The outputs are the runtime's either
    way: a cache hit is an earlier run of this exact file, never the PyTorch model's."""
    ran = []

    def run() -> tuple[dict, dict]:
        out, secs = run_artifact(target, art.path, images, progress, static_batch)
        ran.append(True)
        return {"outputs": out}, {"seconds": secs}
    tensors, meta = cache.tensors(
        "artifact-outputs", lambda: (art.sha256, sorted(sha256_file(p) for p in art.side_files.values()),
                                     target.check_runtime, library_versions(), images_key(), static_batch), run)
    return tensors["outputs"], meta["seconds"], not ran


def evaluate_bundle_parts(task: Task, canonical: CanonicalModel, recipe: QuantRecipe | None, artifacts: list,
                          data: EvalData, progress: bool, references: dict,
                          run: Callable[..., tuple[torch.Tensor, float, bool]] | None = None) -> dict:
    """The ``evaluation`` section: the task, the references' metrics (``reference``: the FP32
    model's, and a task's baseline such as bicubic), and per artifact its metrics in its runtime
    against the ground truth, FP32 and the simulation of ``recipe`` as the artifact's target
    places it, keyed by metric name. ``data``: a named data set's or the user's images (or
    held-out images without ground truth: then comparisons with FP32 and the simulation only).
    ``references``: what :func:`reference_outputs` returned for ``data.images``. ``run(target,
    path)``: the artifact's outputs, seconds and whether they were reused (the main job's
    :func:`artifact_outputs`); None: run each artifact now (``edgekit eval`` always does)."""
    images, labels = data.images, data.labels
    fp32, results = references["fp32"], []
    for target, path in artifacts:
        sim = references["sims"].get(target.name)
        if run is None:
            (out, secs), reused = run_artifact(target, Path(path), images, progress, canonical.batch), False
        else:
            out, secs, reused = run(target, path)
        results.append(score(task, Path(path).name, target.check_runtime, images, out, labels, fp32, sim, secs))
        if reused:
            results[-1]["outputs_reused"] = True  # from the cache: this file's earlier run in its runtime
    return {"task": task.name, "dataset": data.name, "data": data.describe, "num_samples": len(images),
            "reference": task.reference(images, labels, fp32), "results": results}


def eval_data_of(dataset: str | EvalData, limit: int | None) -> EvalData:
    """``dataset`` as EvalData: a named data set (its first ``limit`` images) is loaded."""
    if isinstance(dataset, EvalData):
        return dataset
    return EvalData(*load_dataset(dataset, limit), {"kind": "named data set", "name": dataset})


def build_manifest(cfg: RunConfig, loaded: LoadedModel, canonical: CanonicalModel, recipe: QuantRecipe,
                   calib: CalibrationSource, artifacts: list[dict], evaluation: dict | None,
                   timings: dict[str, float]) -> dict:
    """The bundle's manifest.json contents (see README: bundle manifest)."""
    prov = calib.provenance
    return {
        "manifest_version": bnd.MANIFEST_VERSION,
        "edgekit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "model": {"name": loaded.name, "spec": cfg.model, "input_shape": list(loaded.example_input.shape),
                  "input_dtype": "float32", "num_bn_layers": canonical.num_bn, "float_program": bnd.FLOAT_PROGRAM},
        "quantization": {
            "method": cfg.method, "data_free": cfg.data_free, "w_bits": cfg.quant.w_bits, "a_bits": cfg.quant.a_bits,
            "weight_granularity": "per_channel" if cfg.quant.per_channel else "per_tensor",
            "weight_symmetric": True, "activation_granularity": "per_tensor", "activation_symmetric": bool(cfg.quant.activation_symmetric),
            "act_estimator": getattr(cfg.quant, "act_estimator", None), "bn_folding": True, "recipe": bnd.RECIPE,
            "layer_bits": recipe.layer_bits(),
            "calibration": {"kind": prov["kind"], "method": prov["method"], "num_samples": prov["num_samples"],
                            "seed": prov.get("seed"), "iterations": prov.get("iterations"),
                            "seconds": prov.get("seconds"), "path": prov.get("path")},
            "config": to_dict(cfg),
        },
        "artifacts": artifacts,
        "evaluation": evaluation,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }


def format_targets() -> dict[str, str]:
    """Artifact suffix -> the target that reads it, from the registered targets' profiles (the
    first registered name wins where two targets write one format)."""
    out: dict[str, str] = {}
    for name in TARGETS.names():
        out.setdefault(f".{TARGETS.get(name).profile.artifact_format}", name)
    return out


def evaluate_path(path: Path, dataset: str | None = None, limit: int | None = None, progress: bool = True,
                  eval_data: str | Path | None = None) -> dict:
    """``edgekit eval``: evaluate a bundle's artifacts, or one artifact file, in their runtimes.

    With a bundle (or an artifact inside one) the simulation of the bundle's recipe is the
    reference for agreement. Each file is checked before its runtime loads it: its sha256
    against the manifest's, its format identifier, and one load in a child process (a runtime
    that crashes on it cannot take this process down). Raises UserError for a missing path, a
    changed or corrupted file, an unknown artifact type, or no data set.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a bundle directory or a {suffixes()} file")
    bundle_dir = path if path.is_dir() else path.parent
    manifest = bnd.read_manifest(bundle_dir) if (path.is_dir() or (bundle_dir / bnd.MANIFEST).exists()) else None
    if manifest and manifest.get("kind") == "lut":
        raise UserError(f"{path} is a LUT super-resolution bundle: score it on your photos with "
                        f"--eval-data DIR --scale {manifest['model']['scale']}")
    if path.is_dir():
        listed = manifest.get("artifacts") or []
        entries = [(a["target"], inside(bundle_dir, a["file"], "artifact"), a.get("sha256")) for a in listed]
    else:
        known = format_targets()
        if path.suffix not in known:
            raise UserError(f"{path}: unknown artifact type {path.suffix!r}; give a {suffixes()} file")
        entry = next((a for a in (manifest or {}).get("artifacts", []) if a["file"] == path.name), None)
        entries = [(entry["target"] if entry else known[path.suffix], path, (entry or {}).get("sha256"))]
    for _, p, digest in entries:  # before any runtime sees the files
        if not p.is_file():
            raise UserError(f"{p} is missing; re-create the bundle with 'edgekit quantize'")
        verify(p, digest)
        if p.suffix != ".pt2":
            check_artifact(p)
            probe_artifact(p)
    entries = [(t, p) for t, p, _ in entries]
    # version-1 bundles predate tasks: they are classifiers
    task = TASKS.get(((manifest or {}).get("model") or {}).get("task") or "classification")
    if manifest:
        canonical = canonical_from_bundle(bundle_dir, manifest)
        recipe = QuantRecipe.load(bundle_dir / manifest["quantization"]["recipe"])
        dataset = dataset or (manifest.get("evaluation") or {}).get("dataset")
    else:
        canonical, recipe = None, None
    if eval_data is not None:
        shape = (manifest or {}).get("model", {}).get("input_shape")
        if canonical is None or not shape:
            raise UserError("--eval-data needs a bundle (its manifest gives the model's input and preprocessing); "
                            "give the bundle directory")
        recorded = Preprocess.from_dict(manifest.get("preprocessing"), shape)
        pre = recorded or assumed_preprocess(tuple(shape))
        dataset = load_eval_data(eval_data, pre, limit, recorded.bounds() if recorded else None)
    if not dataset:
        raise UserError(f"no evaluation data known for {path}; give --eval-data PATH (a class-per-folder "
                        "image folder or an .npz with images and labels) or --dataset (fashion-mnist, imagenet-photos, sr-photos)")
    artifacts = [(TARGETS.get(t), p) for t, p in entries]
    if canonical is not None:
        data = eval_data_of(dataset, limit)
        refs = reference_outputs(canonical, recipe, [t for t, _ in artifacts], data.images)
        return evaluate_bundle_parts(task, canonical, recipe, artifacts, data, progress, refs)
    task = task_of_dataset(dataset) or task  # a lone artifact: the named data set's task
    images, targets = load_dataset(dataset, limit)
    results = []
    for target, p in artifacts:
        out, secs = run_artifact(target, p, images, progress)
        results.append(score(task, p.name, target.check_runtime, images, out, targets, None, None, secs))
    return {"task": task.name, "dataset": dataset, "num_samples": len(images), "reference": {}, "results": results}


def canonical_from_bundle(bundle_dir: Path, manifest: dict) -> CanonicalModel:
    """The canonical model stored in a bundle (its BN-folded float program)."""
    prog = bundle_dir / manifest["model"]["float_program"]
    try:
        ep = torch.export.load(str(prog))
    except Exception as e:
        raise UserError(f"{prog} cannot be loaded ({type(e).__name__}); re-create the bundle") from None
    gm = ep.module()
    example = torch.zeros(manifest["model"]["input_shape"])
    return CanonicalModel(manifest["model"]["name"], gm, ep, example, {}, manifest["model"].get("num_bn_layers", 0),
                          batch=manifest["model"].get("static_batch"))
