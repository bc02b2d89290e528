"""The bundle: a directory with the artifacts, their debug maps, the recipe, the BN-folded float
program the recipe refers to, and ``manifest.json``. It is written into a marked staging folder
beside the destination and renamed into place, so a failed run leaves no half-written bundle; an
existing folder is replaced only when it is a bundle edgekit wrote (or with ``--force``).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

from edgekit.version import __version__
from edgekit.errors import UserError

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
FLOAT_PROGRAM = "model_float.pt2"
MANIFEST_VERSION = 2  # 2: the model's task; evaluation keyed by metric name, with "reference" metrics
READABLE_MANIFEST_VERSIONS = (1, 2)  # version 1: classification bundles (fp32_top1)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Written into a staging folder while a run is in flight; names the process that owns it, so
# that a later run can tell a folder abandoned by a killed run from one still being written.
PARTIAL_MARKER = ".edgekit-partial"
# Written into every finished bundle: the files edgekit put there. Only a folder whose every
# entry is listed in it may be replaced without --force.
BUNDLE_MARKER = ".edgekit-bundle"
# Bundles written before BUNDLE_MARKER existed hold only these files and their manifest's artifacts.
_LEGACY_FILES = {MANIFEST, RECIPE, FLOAT_PROGRAM, "recipe.weights.npz", "lower.log", "pareto.json", "pareto.png"}
STALE_PARTIAL_S = 24 * 3600.0  # a staging folder from another host is swept after a day


def _entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def edgekit_files(d: Path) -> set[str] | None:
    """The names edgekit wrote into bundle folder ``d`` (from its marker, or for an older bundle
    from its manifest), or None when ``d`` is not an edgekit bundle."""
    try:
        listed = json.loads((d / BUNDLE_MARKER).read_text())["files"]
        return {str(f) for f in listed} | {BUNDLE_MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        m = json.loads((d / MANIFEST).read_text())
        if not isinstance(m, dict) or "edgekit_version" not in m:
            return None
        names = set(_LEGACY_FILES)
        for a in m.get("artifacts") or []:
            names.update(str(v) for k, v in a.items() if k in ("file", "etrecord") and isinstance(v, str))
        return names
    except (OSError, ValueError):
        return None


def _refuse_dangerous(out: Path, flag: str) -> None:
    absolute = Path(os.path.abspath(out))
    cwd = Path.cwd()
    if absolute == cwd or absolute in cwd.parents:
        raise UserError(f"{flag} {out} is the current folder or one above it; give a new folder "
                        "for the bundle, e.g. ./bundle")
    if absolute == Path.home() or absolute == Path(absolute.anchor):
        raise UserError(f"{flag} {out} is your home or the root folder; give a new folder for the bundle")


def check_out_dir(out: Path, force: bool = False, flag: str = "--out") -> Path:
    """Check that ``out`` may receive a bundle, before any work is done; returns it.

    It may: not exist yet, be an empty folder, or be a bundle edgekit wrote (every entry listed
    in its marker). A folder holding anything else is replaced only with ``force``; the current
    folder, its parents, the home folder and ``/`` never are. Raises UserError (one line naming
    the path and what to do) otherwise, and for a file, a symbolic link or an unwritable parent.
    """
    shown = out = Path(out)
    _refuse_dangerous(out, flag)
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise UserError(f"{flag} {shown} is a symbolic link; give the folder itself or a new path")
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {shown} is a file; give a folder path for the bundle")
    if out.is_dir() and not force:
        try:
            entries = _entries(out)
        except OSError as e:
            raise UserError(f"{flag} {shown} cannot be read ({e.strerror}); give another path") from None
        ours = edgekit_files(out) if entries else set()
        foreign = [e for e in entries if ours is None or e not in ours]
        if foreign:
            what = "is not an edgekit bundle" if ours is None else "holds files edgekit did not write"
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"{flag} {shown} {what} ({listed}); give a new path, or add --force to "
                            "replace that folder and everything in it")
    probe = out.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{flag} {shown}: {probe} is a file, not a folder; give another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {shown}: cannot write in {probe} (permission denied); give another path")
    return shown


def _owner_alive(marker: dict) -> bool:
    if marker.get("host") != socket.gethostname():
        return time.time() - float(marker.get("created", 0)) < STALE_PARTIAL_S
    try:
        os.kill(int(marker["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def sweep_stale_partials(parent: Path, name: str) -> list[Path]:
    """Delete staging folders ``.NAME.*.partial`` in ``parent`` that edgekit left behind (their
    marker names a process of this host that is gone, or is more than a day old). Folders
    without edgekit's marker, links and files are never touched. Returns the removed paths."""
    removed = []
    for d in Path(parent).glob(f".{glob.escape(name)}.*.partial"):
        if d.is_symlink() or not d.is_dir():
            continue
        try:
            marker = json.loads((d / PARTIAL_MARKER).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(marker, dict) or _owner_alive(marker):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _make_partial(parent: Path, name: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent))
    (tmp / PARTIAL_MARKER).write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "created": time.time()}))
    return tmp


@contextmanager
def staged_dir(out: Path, force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield a staging folder beside ``out`` (``.NAME.XXXX.partial``, marked as edgekit's); on
    success it becomes ``out``, replacing what was there only if :func:`check_out_dir` allows it
    (checked before the work and again before the swap); on failure it is deleted. Stale
    staging folders of killed runs are swept first. Raises UserError for an unusable ``out``."""
    shown = out
    out = Path(os.path.abspath(check_out_dir(Path(out), force, flag)))  # "a/../b" never walks through "a"
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_partials(parent, out.name)
        tmp = _make_partial(parent, out.name)
    except OSError as e:
        raise UserError(f"{flag} {shown}: cannot create the bundle folder in {parent} "
                        f"({e.strerror}); give another path") from None
    try:
        yield tmp
        (tmp / PARTIAL_MARKER).unlink()
        files = _entries(tmp)
        write_json(tmp / BUNDLE_MARKER, {"edgekit_version": __version__, "files": files})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        check_out_dir(out, force, flag)  # the folder may have changed during the run
        if out.exists():
            trash = _make_partial(parent, out.name)
            out.rename(trash / "old")
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    """The manifest of a bundle directory; raises UserError when it is missing, unreadable, or
    of a manifest_version this edgekit cannot read (a newer edgekit wrote it)."""
    p = Path(bundle) / MANIFEST
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{bundle} is not an edgekit bundle (no {MANIFEST}); give a bundle directory "
                        "written by 'edgekit quantize' or an artifact file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not valid JSON ({e}); re-create the bundle with 'edgekit quantize'") from None
    if not isinstance(m, dict):
        raise UserError(f"{p} does not hold a JSON object; re-create the bundle with 'edgekit quantize'")
    version = m.get("manifest_version", 1)  # hand-written manifests (a profiling job's) may omit it
    if version not in READABLE_MANIFEST_VERSIONS:
        raise UserError(f"{p}: manifest_version {version!r} is not one this edgekit reads "
                        f"({', '.join(map(str, READABLE_MANIFEST_VERSIONS))}); upgrade edgekit or re-create the bundle")
    return m


def job_relative(name: str, what: str = "path") -> str:
    """``name`` if it is a relative path that stays inside a folder; raises UserError for an
    absolute path, a ``..`` part, a backslash or an empty name."""
    pp = PurePosixPath(name) if isinstance(name, str) else None
    if (pp is None or not name or pp.is_absolute() or ".." in pp.parts or "\\" in name
            or name.startswith("~") or "\x00" in name):
        raise UserError(f"{what} {str(name)[:80]!r} must be a file name inside the folder")
    return name


def inside(base: Path, name: str, what: str = "file") -> Path:
    """``base/name``, refusing (UserError) any name that is not :func:`job_relative` or whose
    resolved path (links followed) leaves ``base``."""
    job_relative(name, what)
    p = (Path(base) / name)
    root = Path(base).resolve()
    real = p.resolve()
    if real != root and root not in real.parents:
        raise UserError(f"{what} {name[:80]!r} leads outside the folder")
    return p


def verify(path: Path, expected_sha256: str | None) -> str:
    """Hex sha256 of ``path``; raises UserError naming the file when it differs from
    ``expected_sha256`` (the artifact was corrupted or replaced)."""
    got = sha256_file(path)
    if expected_sha256 and got.lower() != expected_sha256.lower():
        raise UserError(f"artifact {path.name} is corrupted: its sha256 {got[:12]}… does not match "
                        f"the manifest's {expected_sha256[:12]}…; re-create the bundle with "
                        "'edgekit quantize'")
    return got
