"""Imports every module of ``edgekit.runtimes`` (one per runtime registers it; none of them
imports torch at import time), so adding a runtime is adding its module."""
import importlib
import pkgutil

import edgekit.runtimes

for _info in pkgutil.iter_modules(edgekit.runtimes.__path__):
    if _info.name != "plugins":
        importlib.import_module(f"edgekit.runtimes.{_info.name}")
