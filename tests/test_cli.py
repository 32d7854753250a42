"""The CLI's answers to user mistakes: one clear message, exit status 2, nothing written."""

from __future__ import annotations

import pytest

from bench.cli import main


def test_unknown_table(tmp_path, capsys):
    assert main(["run", "table99", "--results-dir", str(tmp_path), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert "unknown table 'table99'" in err and "synthetic" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, needle", [
    (["run", "synthetic", "--preset", "huge"], "invalid choice: 'huge'"),
    (["run", "synthetic", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["run", "synthetic", "--executor", "slurm"], "invalid choice: 'slurm'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_flags_exit_2_with_one_message(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_resources(tmp_path, capsys):
    assert main(["run", "synthetic", "--results-dir", str(tmp_path), "--cpus-per-job", "-1"]) == 2
    assert "--cpus-per-job must be >= 0" in capsys.readouterr().err


def test_report_without_records_says_what_to_run(tmp_path, capsys):
    assert main(["report", "--results-dir", str(tmp_path), "--tables-dir", str(tmp_path / "t")]) == 2
    assert "bench run TABLE" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_unknown_dataset_in_describe(capsys):
    assert main(["data", "describe", "nosuchdata"]) == 2
    assert "unknown dataset 'nosuchdata'" in capsys.readouterr().err


def test_status_counts_pending(tmp_path, capsys):
    assert main(["status", "synthetic", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("synthetic"))
    jobs, done, failed, diverged, pending = map(int, row.split()[1:])
    assert jobs > 0 and done == failed == diverged == 0 and pending == jobs


def test_ls_lists_everything(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for needle in ("tables:", "synthetic", "methods:", "ft", "levi", "datasets:", "presets:", "smoke"):
        assert needle in out


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_paper_preset_offline_fails_fast_with_instructions(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LEVI_WEIGHTS_DIR", raising=False)
    t0 = time.perf_counter()
    rc = main(["run", "table1", "--results-dir", str(tmp_path), "--executor", "local",
               "--data-dir", "amazon=" + str(tmp_path / "no-amazon-here")])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and elapsed < 30
    assert "cannot start" in err and "amazon" in err and "t5-small" in err and "Nothing was run" in err
    assert not (tmp_path / "paper" / "records").exists()


def test_data_dir_flag_validation(tmp_path, capsys):
    assert main(["run", "synthetic", "--results-dir", str(tmp_path), "--data-dir", "nosuch=/x"]) == 2
    assert "'nosuch' is not a dataset" in capsys.readouterr().err


def test_speed_forwards_its_own_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["speed", "--help"])
    assert e.value.code == 0
    assert "--backbones" in capsys.readouterr().out
