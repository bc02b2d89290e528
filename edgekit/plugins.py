"""Imports every module that registers an algorithm, synthesizer, target, task, zoo model,
placement or transport: each module of the packages below (so adding a backend, a method or a task
is adding its module), and the single modules after them."""
import importlib
import pkgutil

_PACKAGES = (
    "edgekit.quant.algorithms",
    "edgekit.synth",
    "edgekit.backends",
    "edgekit.tasks",
)
_MODULES = (
    "edgekit.models.zoo",
    "edgekit.quant.placement",
    "edgekit.profiling.transports",
)


def _modules():
    for pkg in _PACKAGES:
        yield pkg
        for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
            yield f"{pkg}.{info.name}"
    yield from _MODULES


for _name in _modules():
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as e:  # an optional part not installed
        if not (e.name and _name.startswith(e.name)):
            raise
