"""edgekit: quantize trained PyTorch vision models (with or without data) and ship them to edge runtimes.

The Python API (``edgekit.quantize``, ``edgekit.export``, ``edgekit.evaluate``,
``edgekit.profile``) lives in :mod:`edgekit.api`; it is imported on first use, so that
``import edgekit`` stays light. Each method's config class is here by its name too
(``edgekit.ZeroQConfig``, ``edgekit.PTQConfig``, ``edgekit.GenieConfig``: ``Algorithm.config``
of the registered methods).
"""
from edgekit.version import __version__  # noqa: F401

_API = ("quantize", "export", "evaluate", "profile", "run", "evaluate_bundle")


def __getattr__(name: str):
    if name in _API:
        from edgekit import api
        return getattr(api, name)
    if name.endswith("Config"):
        from edgekit.registry import ALGORITHMS
        for method in ALGORITHMS.names():
            if ALGORITHMS.get(method).config.__name__ == name:
                return ALGORITHMS.get(method).config
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
