"""Bad input to ``edgekit quantize``: one line on stderr naming the problem and what to do,
exit code 2, no traceback, and no bundle (not even a partial one) left behind."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def assert_refused(proc, out_dir, *fragments: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgekit: error: ") and "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert not out_dir.exists()
    assert not list(out_dir.parent.glob(f".{out_dir.name}.*"))


def test_missing_model_file(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", str(tmp_path / "missing.pt2"), "--data-free", "--out", str(out))
    assert_refused(p, out, "does not exist", "missing.pt2")


def test_random_bytes_named_pt2(cli, tmp_path):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "bundle"
    assert_refused(cli("quantize", str(bad), "--data-free", "--out", str(out)), out, "not a valid .pt2 model")


def test_data_free_on_a_model_without_batchnorm(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:no_bn", "--data-free", "--out", str(out))
    assert_refused(p, out, "no BatchNorm", "--calib")


def test_unknown_target_lists_known_ones(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--data-free", "--target", "coreml", "--out", str(out))
    assert_refused(p, out, "unknown target 'coreml'", "executorch-xnnpack", "litert")


def test_bit_width_the_target_cannot_run(cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--data-free", "--w-bits", "3",
            "--target", "executorch-xnnpack", "--out", str(out))
    assert_refused(p, out, "executorch-xnnpack cannot run layer conv1", "weight bit width 3", "--w-bits 8")


def test_bit_width_outside_the_supported_set(cli, tmp_path):
    out = tmp_path / "bundle"
    assert_refused(cli("quantize", "--data-free", "--a-bits", "12", "--out", str(out)), out, "--a-bits 12")


def test_calib_folder_without_images(cli, tmp_path):
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "readme.txt").write_text("no images here")
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--calib", str(tmp_path / "calib"), "--out", str(out))
    assert_refused(p, out, "no readable images")


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_calib_images_of_wrong_shape(cli, tmp_path, kind):
    if kind == "folder":
        (tmp_path / "calib").mkdir()
        for i in range(2):
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "calib" / f"{i}.png")
        calib = tmp_path / "calib"
    else:
        calib = tmp_path / "calib.npz"
        np.savez(calib, images=np.zeros((4, 3, 32, 32), np.uint8))
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--calib", str(calib), "--out", str(out))
    assert_refused(p, out, "the model takes")


def test_data_free_with_a_method_that_needs_data(cli, tmp_path):
    out = tmp_path / "bundle"
    assert_refused(cli("quantize", "--data-free", "--method", "ptq", "--out", str(out)), out, "--calib")


def test_config_file_refusals_are_one_line(cli, tmp_path):
    """--config gives the whole run: another flag that changes it, a missing file, a bad TOML or an
    unknown key is refused in one line, exit 2, with no bundle written."""
    good = tmp_path / "run.toml"
    good.write_text('method = "zeroq"\n[quant]\nw_bits = 8\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("method = \n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('methd = "zeroq"\n')
    cases = [(["--config", str(good), "--w-bits", "4"], "drop --w-bits"),
             (["resnet20_fmnist", "--config", str(good)], "drop MODEL"),
             (["--config", str(tmp_path / "none.toml")], "does not exist"),
             (["--config", str(bad)], "cannot be parsed"),
             (["--config", str(unknown)], "unknown keys ['methd']")]
    for args, want in cases:
        out = tmp_path / "out"
        proc = cli("quantize", *args, "--out", str(out), "--no-progress")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and want in lines[0], (args, proc.stderr[-1500:])
        assert not out.exists()


def test_bad_overrides_are_one_line(cli, tmp_path):
    """A malformed --override, or one that matches nothing in the model, exits 2 with one line
    before any synthesis, and leaves no bundle."""
    for value, want in (("w_bits4", "give PATTERN:KEY=BITS"), ("layer9.*:w_bits=4", "matches no layer"),
                        ("conv1:bits=4", "give {'w_bits'")):
        out = tmp_path / "out"
        proc = cli("quantize", "--data-free", "--override", value, "--out", str(out), "--no-progress")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and want in lines[0], (value, proc.stderr[-1500:])
        assert not out.exists()


def test_an_option_of_another_method(cli, tmp_path):
    """Per-method configs: a flag the method's config does not have is refused, not ignored."""
    out = tmp_path / "bundle"
    p = cli("quantize", "tests.fixtures.models:tiny_bn", "--data-free", "--recon-iterations", "5", "--out", str(out))
    assert_refused(p, out, "--recon-iterations does not apply to --method zeroq", "ZeroQConfig")
