"""Bad input: one line naming the problem, exit code 2 (the transports' own cases are in
test_agent.py, test_ssh.py and test_adb.py)."""
import json
import shutil

import pytest
from click.testing import CliRunner

from edgekit.profiling.cli import main as cli


def _run(*args):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stderr.strip()


def _one_line(err):
    assert err.startswith("edgekit: error: ") and "\n" not in err, err


def test_runs_zero(bundle):
    code, err = _run("profile", str(bundle), "--runs", "0")
    assert code == 2 and "--runs 0" in err
    _one_line(err)


def test_bundle_without_the_runtime(bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["runtime"] != "litert"]
    (b / "manifest.json").write_text(json.dumps(m))
    code, err = _run("profile", str(b), "--runtime", "litert")
    assert code == 2 and "no artifact for runtime 'litert'" in err and "executorch" in err
    _one_line(err)


def test_corrupted_artifact_in_bundle(bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    data = bytearray((b / "model.pte").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.pte").write_bytes(bytes(data))
    code, err = _run("profile", str(b))
    assert code == 2 and "corrupted" in err and "model.pte" in err
    _one_line(err)


@pytest.mark.parametrize("name", ["model.pte", "model.tflite", "model.onnx"])
def test_corrupted_single_artifact(bundle, tmp_path, name):
    # no manifest to compare with: the runtime itself refuses the truncated file
    p = tmp_path / name
    p.write_bytes((bundle / name).read_bytes()[:200])
    code, err = _run("profile", str(p), "--runs", "1", "--warmup-runs", "0")
    assert code == 2 and ("corrupted" in err or "truncated" in err), err
    _one_line(err)


def test_missing_path_and_unknown_device(bundle, tmp_path):
    code, err = _run("profile", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    code, err = _run("profile", str(bundle), "--device", "bluetooth://x")
    assert code == 2 and "unknown device transport" in err and "adb" in err
    _one_line(err)


def test_unreachable_http_device(bundle, tmp_path):
    tok = tmp_path / "tok"
    tok.write_text("x")
    code, err = _run("profile", str(bundle), "--device", "http://127.0.0.1:9",
                     "--token-file", str(tok))
    assert code == 2 and "cannot reach the agent" in err
    _one_line(err)
