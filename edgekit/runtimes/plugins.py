"""Imports every module that registers a runtime (none of them imports torch at import time)."""
import importlib

RUNTIME_MODULES = (
    "edgekit.runtimes.executorch",
    "edgekit.runtimes.litert",
    "edgekit.runtimes.onnxruntime",
)

for _name in RUNTIME_MODULES:
    importlib.import_module(_name)
