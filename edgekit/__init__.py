"""edgekit: quantize trained PyTorch vision models (with or without data) and ship them to edge runtimes.

The Python API (``edgekit.quantize``, ``edgekit.export``, ``edgekit.evaluate``,
``edgekit.profile``) lives in :mod:`edgekit.api`; it is imported on first use, so that
``import edgekit`` stays light.
"""
from edgekit.version import __version__  # noqa: F401

_API = ("quantize", "export", "evaluate", "profile")


def __getattr__(name: str):
    if name in _API:
        from edgekit import api
        return getattr(api, name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
