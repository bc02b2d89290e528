"""Property-based fuzzing of the loaders and of the CLI's paths (issue 8). Properties: a loader
given any bytes either loads or raises UserError (never another exception, never a crash of this
process), and no ``--out`` path makes the bundle writer delete or change a file it did not write."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgekit import bundle as bnd
from edgekit.runtimes.checks import check_artifact, probe_artifact
from edgekit.data.calibration import load_calibration
from edgekit.data.datasets import FMNIST
from edgekit.errors import UserError
from tests.fuzzing import count

pytestmark = pytest.mark.fuzz

_HEADERS = {".pte": b"\x1c\x00\x00\x00ET12eh00", ".tflite": b"\x1c\x00\x00\x00TFL3", ".onnx": b"\x08\x08\x12\x07"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-loaders")


@pytest.fixture(scope="module")
def real_artifacts(tmp_path_factory):
    from tests.profiling.conftest import build_tiny_bundle
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny") / "b")


@given(suffix=st.sampled_from(sorted(_HEADERS)), header=st.booleans(), data=st.binary(max_size=256))
def test_fuzz_check_artifact_on_any_bytes(work, suffix, header, data):
    count("check_artifact")
    p = work / f"a{suffix}"
    p.write_bytes((_HEADERS[suffix] if header else b"") + data)
    try:
        assert check_artifact(p) in ("executorch", "litert", "onnxruntime")
    except UserError as e:
        assert p.name in str(e) and "\n" not in str(e)


@pytest.mark.slow
@given(suffix=st.sampled_from([".pte", ".tflite", ".onnx"]), edits=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_fuzz_runtimes_on_mutated_artifacts(work, real_artifacts, suffix, edits, cut):
    """Real artifacts with bytes changed or cut off: the runtime, in a child process, loads them
    or refuses them in one line; this process never goes down."""
    count("probe_artifact")
    data = bytearray((real_artifacts / f"model{suffix}").read_bytes())
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    p = work / f"m{suffix}"
    p.write_bytes(bytes(data))
    try:
        check_artifact(p)
        probe_artifact(p, timeout=120)
    except UserError as e:
        assert "\n" not in str(e)


@given(arr=hnp.arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.float16, np.bool_]),
                      shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=30),
                      elements=None),
       key=st.sampled_from(["images", "x"]))
def test_fuzz_npz_calibration(work, arr, key):
    count("npz_calibration")
    p = work / "c.npz"
    np.savez(p, **{key: arr})
    try:
        src = load_calibration(p, FMNIST, 16, FMNIST.bounds())
    except UserError as e:
        assert "c.npz" in str(e) and "\n" not in str(e)
        return
    assert src.images.dtype.is_floating_point and src.images.shape[1:] == (1, 28, 28)
    assert bool(src.images.isfinite().all())


@given(files=st.lists(st.tuples(st.sampled_from([".png", ".jpg", ".bmp", ".gif"]), st.binary(max_size=200)),
                      min_size=1, max_size=3))
def test_fuzz_image_folder_calibration(tmp_path_factory, files):
    count("image_folder_calibration")
    d = tmp_path_factory.mktemp("imgs")
    for i, (suffix, data) in enumerate(files):
        (d / f"{i}{suffix}").write_bytes(data)
    try:
        load_calibration(d, FMNIST, 16)
    except UserError as e:
        assert "\n" not in str(e)


@given(data=st.binary(max_size=512), zip_header=st.booleans())
def test_fuzz_pt2_loader(work, data, zip_header):
    count("pt2_loader")
    from edgekit.models.zoo import load_model
    p = work / "m.pt2"
    p.write_bytes((b"PK\x03\x04" if zip_header else b"") + data)
    with pytest.raises(UserError):
        load_model(str(p))


_seg = st.sampled_from([".", "..", "~", "", "out", "notes", "b", "a b", ".hidden", "x" * 20])


@given(parts=st.lists(_seg, min_size=1, max_size=4), absolute=st.sampled_from(["", "sandbox", "home", "root"]),
       force=st.booleans())
def test_fuzz_out_paths_never_lose_a_file(tmp_path_factory, monkeypatch_module, parts, absolute, force):
    """Any --out, with or without --force, from inside a folder of the user's: every file that
    existed before is still there, unchanged, unless it was inside an earlier edgekit bundle."""
    count("out_paths")
    root = tmp_path_factory.mktemp("outfuzz")
    home, sandbox = root / "home", root / "home" / "work"
    for d in (home, sandbox / "notes", sandbox / "b"):
        d.mkdir(parents=True, exist_ok=True)
    (sandbox / "notes" / "n.txt").write_text("notes")
    (home / "h.txt").write_text("home")
    (sandbox / "s.txt").write_text("sandbox")
    with bnd.staged_dir(sandbox / "b") as t:  # an earlier bundle, which may be replaced
        (t / "model.pte").write_bytes(b"1")
    earlier = sandbox / "b"
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and earlier not in p.parents}
    monkeypatch_module.setenv("HOME", str(home))
    monkeypatch_module.chdir(sandbox)
    base = {"": Path(), "sandbox": sandbox, "home": home, "root": Path("/")}[absolute]
    out = Path("/") if absolute == "root" else base.joinpath(*parts)  # never a real folder under /
    try:
        with bnd.staged_dir(out, force) as t:
            (t / "model.pte").write_bytes(b"2")
    except UserError as e:
        assert "\n" not in str(e)
    for p, content in before.items():
        if force and Path(os.path.abspath(out)) in p.parents:
            continue  # the user asked for that folder to be replaced
        assert p.is_file() and p.read_bytes() == content, p


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
