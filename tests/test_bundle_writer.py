"""The bundle writer never deletes or replaces what edgekit did not write, checks ``--out``
before any work, and sweeps the staging folders that killed runs left behind (issue 8)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit import bundle as bnd
from edgekit.errors import UserError

from .conftest import ROOT


def _write_bundle(out: Path, force: bool = False) -> None:
    with bnd.staged_dir(out, force) as tmp:
        (tmp / "model.pte").write_bytes(b"x")
        bnd.write_json(tmp / bnd.MANIFEST, {"edgekit_version": "0", "artifacts": [{"file": "model.pte"}]})


def _notes(d: Path) -> Path:
    d.mkdir()
    (d / "notes.txt").write_text("a year of notes")
    return d


def test_a_folder_that_is_not_a_bundle_is_refused_and_kept(tmp_path):
    out = _notes(tmp_path / "mine")
    with pytest.raises(UserError, match=r"not an edgekit bundle \(notes.txt\).*--force"):
        _write_bundle(out)
    assert (out / "notes.txt").read_text() == "a year of notes"
    assert not list(tmp_path.glob(".mine.*"))


def test_an_earlier_bundle_is_replaced_but_not_once_the_user_added_a_file(tmp_path):
    out = tmp_path / "b"
    _write_bundle(out)
    assert (out / bnd.BUNDLE_MARKER).is_file()
    _write_bundle(out)  # a bundle edgekit wrote: replaced
    (out / "my_results.csv").write_text("1,2")
    with pytest.raises(UserError, match="holds files edgekit did not write .my_results.csv."):
        _write_bundle(out)
    assert (out / "my_results.csv").exists()


def test_an_empty_folder_is_used_and_force_replaces_a_foreign_one(tmp_path):
    (tmp_path / "empty").mkdir()
    _write_bundle(tmp_path / "empty")
    out = _notes(tmp_path / "mine")
    _write_bundle(out, force=True)
    assert not (out / "notes.txt").exists() and (out / "model.pte").exists()


@pytest.mark.parametrize("which", ["cwd", "parent_of_cwd", "home"])
def test_current_parent_and_home_folders_are_never_replaced_even_with_force(tmp_path, monkeypatch, which):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = {"cwd": Path("."), "parent_of_cwd": Path(".."), "home": tmp_path / "home"}[which]
    with pytest.raises(UserError, match="current folder|home"):
        _write_bundle(out, force=True)
    assert work.is_dir() and (tmp_path / "home").is_dir()
    assert not list(tmp_path.rglob("*.partial"))


def test_a_file_a_link_and_a_parent_that_is_a_file_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        _write_bundle(tmp_path / "f")
    with pytest.raises(UserError, match="is a file, not a folder"):
        _write_bundle(tmp_path / "f" / "bundle")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UserError, match="symbolic link"):
        _write_bundle(tmp_path / "link")


def test_a_failed_run_leaves_nothing_and_keeps_the_old_bundle(tmp_path):
    out = tmp_path / "b"
    _write_bundle(out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RuntimeError):
        with bnd.staged_dir(out) as tmp:
            (tmp / "half").write_bytes(b"...")
            raise RuntimeError("lowering failed")
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_a_killed_run_leaves_a_partial_folder_that_the_next_run_sweeps(tmp_path):
    """A real process enters the writer and is killed with SIGKILL mid-write."""
    out = tmp_path / "b"
    code = textwrap.dedent(f"""
        import os, signal
        from edgekit import bundle
        with bundle.staged_dir({str(out)!r}) as tmp:
            (tmp / "model.pte").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    left = list(tmp_path.glob(".b.*.partial"))
    assert len(left) == 1 and (left[0] / bnd.PARTIAL_MARKER).is_file()
    # a look-alike the user made, and the staging folder of a run still going, are left alone
    (tmp_path / ".b.mine.partial").mkdir()
    live = bnd._make_partial(tmp_path, "b")
    _write_bundle(out)
    assert not left[0].exists()
    assert (tmp_path / ".b.mine.partial").is_dir() and live.is_dir()


def test_cli_refuses_a_foreign_out_before_any_work(cli, tmp_path):
    out = _notes(tmp_path / "notes")
    p = cli("quantize", "--data-free", "--out", str(out))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "--force" in lines[0], p.stderr
    assert "calibration data" not in p.stderr  # refused before synthesis
    assert (out / "notes.txt").read_text() == "a year of notes"


def test_cli_out_dot_is_refused_before_any_work(tmp_path):
    p = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", "quantize",
                        "--data-free", "--out", "."], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert p.returncode == 2 and "current folder" in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []


def test_bundle_marker_lists_every_file(tmp_path):
    out = tmp_path / "b"
    _write_bundle(out)
    listed = json.loads((out / bnd.BUNDLE_MARKER).read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != bnd.BUNDLE_MARKER)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
