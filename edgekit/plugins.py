"""Imports every module that registers an algorithm, target, zoo model or transport."""
import importlib

_MODULES = (
    "edgekit.models.zoo",
    "edgekit.quant.placement",
    "edgekit.quant.algorithms.ptq",
    "edgekit.quant.algorithms.zeroq",
    "edgekit.quant.algorithms.genie",
    "edgekit.synth.zeroq",
    "edgekit.synth.genie",
    "edgekit.backends.executorch_xnnpack",
    "edgekit.backends.litert",
    "edgekit.backends.simulation",
    "edgekit.backends.onnx_qdq",
    "edgekit.profiling.transports",
    "edgekit.tasks.classification",
    "edgekit.tasks.super_resolution",
)

for _name in _MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as e:  # an optional part not written/installed yet
        if not (e.name and _name.startswith(e.name)):
            raise
