"""The bundle: a directory with the artifacts, their debug maps, the recipe, the BN-folded float
program the recipe refers to, and ``manifest.json``. It is written into a temporary sibling
directory and renamed into place, so a failed run leaves no half-written bundle.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgekit.errors import UserError

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
FLOAT_PROGRAM = "model_float.pt2"
MANIFEST_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; on success it replaces ``out`` atomically
    (an existing ``out`` is removed only then); on failure it is deleted."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory path")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling file and a rename, so readers never
    see a half-written file; creates the parent directory. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON (temporary file, then rename)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_manifest(bundle: Path) -> dict:
    """The manifest of a bundle directory; raises UserError when it is missing or unreadable."""
    p = Path(bundle) / MANIFEST
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{bundle} is not an edgekit bundle (no {MANIFEST}); give a bundle directory "
                        "written by 'edgekit quantize' or an artifact file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not valid JSON ({e}); re-create the bundle with 'edgekit quantize'") from None
