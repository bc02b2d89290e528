"""A content-addressed cache of what does not change between runs of the same model: the
synthesized calibration images, the FP32 twin artifacts, the FP32 model's outputs on an
evaluation set, and, for the same recipe, the lowered int8 artifact, the simulation's outputs and
the int8 artifact's outputs in its runtime (keyed by the artifact's sha256, the runtime versions
and the images: an earlier run of the same file; ``edgekit eval`` always runs afresh). Each entry is keyed by the sha256 of everything it depends on (the model's
hash, the config, the seed, library versions).

Layout: ``<root>/<kind>/<key>/`` holding the payload files and ``entry.json`` (each file's
sha256 and size). An entry is written into a temporary folder and renamed into place, so a
killed run leaves no entry; one whose files do not match ``entry.json`` (corrupt, truncated,
edited) is removed and rebuilt, never trusted. The root is ``$EDGEKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/edgekit``, else ``~/.cache/edgekit``; edgekit only ever deletes inside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from edgekit.bundle import sha256_file
from edgekit.version import __version__

ENTRY = "entry.json"
META = "meta.json"  # an entry's metadata (provenance of distilled images, an artifact's op report)
KINDS = ("calibration", "fp32-artifact", "fp32-outputs", "artifact", "simulation-outputs", "artifact-outputs")


def default_root() -> Path:
    """The cache folder: $EDGEKIT_CACHE_DIR, else $XDG_CACHE_HOME/edgekit, else ~/.cache/edgekit."""
    if os.environ.get("EDGEKIT_CACHE_DIR"):
        return Path(os.environ["EDGEKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit"


def key_of(*parts) -> str:
    """The hex sha256 of ``parts`` (JSON-able values; others by ``str``), with edgekit's and
    torch's versions, so an upgrade never reads an older entry."""
    blob = json.dumps([__version__, torch.__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the converters and runtimes an FP32 artifact depends on (None: not installed)."""
    from importlib import metadata
    out = {}
    for pkg in ("executorch", "torchao", "litert-torch", "ai-edge-litert", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _update(h, t: torch.Tensor, name: str = "") -> None:
    """Feed a tensor's name, dtype, shape and bytes to hash ``h``."""
    t = t.detach().contiguous().cpu()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def tensor_hash(t: torch.Tensor) -> str:
    """The hex sha256 of a tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    _update(h, t)
    return h.hexdigest()


def recipe_hash(recipe) -> str:
    """The hex sha256 of a QuantRecipe as ``save`` writes it (JSON and any integer weights)."""
    with tempfile.TemporaryDirectory() as t:
        recipe.save(Path(t) / "recipe.json")
        h = hashlib.sha256()
        for f in sorted(Path(t).iterdir()):
            h.update(f.name.encode() + sha256_file(f).encode())
        return h.hexdigest()


def model_hash(gm: torch.nn.Module) -> str:
    """The hex sha256 of a graph module's code and of every parameter and buffer (name, dtype,
    shape, bytes): two models with the same hash compute the same function."""
    h = hashlib.sha256(getattr(gm, "code", type(gm).__name__).encode())
    for name, t in sorted({**dict(gm.named_parameters()), **dict(gm.named_buffers())}.items()):
        _update(h, t, name)
    return h.hexdigest()


class Cache:
    """The cache at ``root`` (None: :func:`default_root`); ``enabled=False`` (``--no-cache``)
    makes every lookup miss and every store a no-op."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.enabled = enabled
        self.hits: list[str] = []  # "<kind>" of each hit, for the run's timings and notes

    def _dir(self, kind: str, key: str) -> Path:
        assert kind in KINDS and _is_key(key), (kind, key)
        return self.root / kind / key

    def has(self, kind: str, parts: tuple) -> bool:
        """Whether an entry keyed by ``parts`` (see :func:`key_of`) exists; a quick check of its
        index only (``lookup`` verifies the files). False when disabled."""
        return self.enabled and (self._dir(kind, key_of(kind, *parts)) / ENTRY).is_file()

    def lookup(self, kind: str, key: str) -> Path | None:
        """The folder of a valid entry, or None. An entry whose files do not match its
        ``entry.json`` is removed (and so rebuilt by the caller)."""
        if not self.enabled:
            return None
        d = self._dir(kind, key)
        try:
            files = json.loads((d / ENTRY).read_text())["files"]
            ok = all((d / name).is_file() and (d / name).stat().st_size == meta["bytes"]
                     and sha256_file(d / name) == meta["sha256"] for name, meta in files.items())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
            return None
        self.hits.append(kind)
        return d

    def store(self, kind: str, key: str, files: dict[str, Path]) -> None:
        """Copy ``files`` (name in the entry -> source path) into a new entry, atomically;
        best effort: a full or read-only disk leaves the run unaffected."""
        if not self.enabled:
            return
        d = self._dir(kind, key)
        try:
            d.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=".tmp-"))
            meta = {}
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
                meta[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
            (tmp / ENTRY).write_text(json.dumps({"files": meta, "edgekit_version": __version__}))
            try:
                os.rename(tmp, d)  # atomic; another run may have stored the same entry first
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass

    def load_tensors(self, kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(tensors, metadata) of a ``store_tensors`` entry, or None."""
        d = self.lookup(kind, key)
        if d is None:
            return None
        try:
            tensors = torch.load(d / "tensors.pt", map_location="cpu", weights_only=True)
            return tensors, json.loads((d / META).read_text())
        except Exception:  # a payload that passed its checksum but does not load: drop it
            shutil.rmtree(d, ignore_errors=True)
            self.hits.pop()
            return None

    def store_tensors(self, kind: str, key: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Store tensors and JSON metadata under (kind, key)."""
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as t:
            torch.save({k: v.detach().contiguous() for k, v in tensors.items()}, Path(t) / "tensors.pt")
            (Path(t) / META).write_text(json.dumps(meta, default=str))
            self.store(kind, key, {"tensors.pt": Path(t) / "tensors.pt", META: Path(t) / META})

    def tensors(self, kind: str, parts: Callable[[], tuple], make: Callable[[], tuple[dict, dict]]
                ) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) of the entry keyed by ``parts()`` (see :func:`key_of`), else
        ``make()``'s, stored. Disabled: ``make()``, and ``parts`` is never computed."""
        if not self.enabled:
            return make()
        key = key_of(kind, *parts())
        hit = self.load_tensors(kind, key)
        if hit is not None:
            return hit
        tensors, meta = make()
        self.store_tensors(kind, key, tensors, meta)
        return tensors, meta

    def files(self, kind: str, parts: Callable[[], tuple], make: Callable[[], tuple[dict[str, Path], dict]],
              dest: Path) -> tuple[dict[str, Path], dict]:
        """Files in ``dest`` ({name: path}) and metadata of the entry keyed by ``parts()``, copied
        from the cache, else written there by ``make()`` (which returns them) and stored.
        Disabled: ``make()``, and ``parts`` is never computed."""
        if not self.enabled:
            return make()
        key = key_of(kind, *parts())
        d = self.lookup(kind, key)
        if d is not None:
            try:
                meta = json.loads((d / META).read_text())
                names = [n for n in json.loads((d / ENTRY).read_text())["files"] if n != META]
                for name in names:
                    shutil.copyfile(d / name, dest / name)
                return {n: dest / n for n in names}, meta
            except (OSError, ValueError, KeyError):  # checksummed but unusable: rebuild it
                shutil.rmtree(d, ignore_errors=True)
                self.hits.pop()
        files, meta = make()
        with tempfile.TemporaryDirectory() as t:
            (Path(t) / META).write_text(json.dumps(meta, default=str))
            self.store(kind, key, {**files, META: Path(t) / META})
        return files, meta

    def clear(self) -> int:
        """Remove every entry edgekit wrote (folders named by a key, or its temporary folders,
        in the kinds' folders); anything else in the cache folder stays. Returns bytes freed."""
        freed = 0
        for kind in KINDS:
            d = self.root / kind
            if not d.is_dir():
                continue
            for entry in d.iterdir():
                if entry.is_dir() and not entry.is_symlink() and (_is_key(entry.name) or entry.name.startswith(".tmp-")):
                    freed += sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
                    shutil.rmtree(entry)
            with contextlib.suppress(OSError):
                d.rmdir()  # only when nothing else is left in it
        return freed


def _is_key(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)
