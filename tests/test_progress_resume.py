"""Long jobs show progress and keep their work: progress lines at a steady pace with rate and
ETA off a terminal (what a Ray worker's relayed stderr shows), running jobs and their phase in
`bench status` (with stale heartbeats told apart), and a feature extraction that resumes from the
chunks an interrupted run finished."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import toy_family  # noqa: F401  (dataset `toy`)
from levi_core import features, progress

ML = "movielens:fixture=1,max_train=384,max_eval=96"


def test_progress_lines_come_at_a_steady_pace_with_rate_and_eta(monkeypatch, capsys):
    now = [100.0]
    monkeypatch.setattr(progress, "_clock", lambda: now[0])
    monkeypatch.setenv("LEVI_PROGRESS", "0")  # as in a log or a Ray worker: no redrawn bar
    monkeypatch.setenv(progress.EVERY_ENV, "30")
    progress.set_job("lp movielens seed=0 lr=0.1")
    try:
        with progress.bar("forward", total=10_000, unit="example") as b:
            for _ in range(100):  # 100 s at 100 examples/s
                now[0] += 1.0
                b.update(100)
    finally:
        progress.set_job("")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[levi] lp movielens seed=0 lr=0.1 | forward: 10000 examples"
    ticks = lines[1:-1]
    assert ticks == [
        "[levi] lp movielens seed=0 lr=0.1 | forward: 3,000/10,000 examples (30%), 100 examples/s, ETA 1m10s",
        "[levi] lp movielens seed=0 lr=0.1 | forward: 6,000/10,000 examples (60%), 100 examples/s, ETA 40s",
        "[levi] lp movielens seed=0 lr=0.1 | forward: 9,000/10,000 examples (90%), 100 examples/s, ETA 10s",
    ]
    assert lines[-1].startswith("[levi] lp movielens seed=0 lr=0.1 | forward: done, 10000 examples in 100.0s")
    with progress.bar(None, total=5) as quiet:  # an inner loop: nothing at all
        quiet.update(5)
    assert capsys.readouterr().err == ""


def test_an_interrupted_extraction_resumes_from_its_finished_chunks(tmp_path, monkeypatch):
    """Interrupted after k chunks, the next run computes only the rest, and the states equal
    those of an uninterrupted extraction (the same batches: chunks are whole batches)."""
    from levi_core.data.base import load_dataset
    from levi_core.engines import engine_for, transformer
    from levi_core.methods.registry import RunContext
    from levi_core.settings import Settings

    ds = load_dataset(ML)
    typed = Settings.from_mapping({"text": {"backbone": "bert-tiny", "weights": "random",
                                            "max_len": 64, "eval_batch_size": 40}})
    monkeypatch.setattr(features, "CHUNK_ROWS", 80)  # two batches of 40 per chunk
    calls, limit = [], [None]
    real = transformer._forward

    def counting(*args, **kwargs):
        if limit[0] is not None and len(calls) >= limit[0]:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the pass
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformer, "_forward", counting)

    def extract(cache):
        engine = engine_for(RunContext(ds, 0, {}, typed, None, cache_dir=str(cache)))
        return engine._pretrained_states(ds.eval_roles)

    want = extract(tmp_path / "whole")
    total = len(calls)
    assert total >= 6, "the fixture should take several chunks"
    k = 2
    calls.clear()
    limit[0] = 2 * k + 1  # the third chunk's second batch is interrupted
    with pytest.raises(KeyboardInterrupt):
        extract(tmp_path / "cut")
    kept = sorted((tmp_path / "cut" / "features").glob("*.parts/*/*.npz"))
    assert len(kept) == k  # the finished chunks, not the half-done one
    calls.clear()
    limit[0] = None
    n_reused = len(features.CHUNKS_REUSED)
    got = extract(tmp_path / "cut")
    assert len(calls) == total - 2 * k  # the first k chunks were not recomputed
    assert len(features.CHUNKS_REUSED) - n_reused == k
    assert set(got) == set(want)
    for role in want:
        np.testing.assert_array_equal(got[role], want[role])
    assert not list((tmp_path / "cut" / "features").glob("*.parts"))  # done: the entries hold it


def test_run_in_chunks_recomputes_a_chunk_file_cut_short(tmp_path):
    seen = []

    def compute(lo, hi):
        seen.append(lo)
        return {"x": np.arange(lo, hi)}

    out = np.zeros(10, int)

    def place(lo, hi, arrays):
        out[lo:hi] = arrays["x"]

    features.run_in_chunks(tmp_path, 10, 4, compute, place)
    (tmp_path / f"{4:010d}-{8:010d}.npz").write_bytes(b"PK\x03\x04 cut short")
    seen.clear()
    out[:] = 0
    features.run_in_chunks(tmp_path, 10, 4, compute, place)
    assert seen == [4] and out.tolist() == list(range(10))


@pytest.fixture
def probe_table(monkeypatch):
    """Method ``heartbeat_probe`` (enters a phase and a bar, then waits for the test) and a table
    running it, registered for one test."""
    from bench import specs
    from levi_core.methods import registry
    from levi_core.methods.registry import Method, RunOutput

    inside, release = threading.Event(), threading.Event()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_IMPLS", dict(registry._IMPLS))
    monkeypatch.setattr(specs, "TABLES", dict(specs.TABLES))
    monkeypatch.setattr(progress, "NOTIFY_S", 0.0)
    registry.register_method(Method("heartbeat_probe", "waits for the test", {"lr": (1,)}))

    @registry.implements("heartbeat_probe", "toy")
    def probe(ctx):
        with progress.phase("train_large"):
            with progress.bar("probe train", total=10, unit="step") as b:
                b.update(3)
                inside.set()
                release.wait(30)
        return RunOutput(predictions={r: s.labels for r, s in ctx.dataset.splits.items()})

    specs.register_table(specs.TableSpec(
        name="probe", title="Probe", caption="Probe.", seeds=(0,),
        sections=(specs.MetricGrid(rows=("heartbeat_probe",),
                                   columns=(specs.Column("id", "ID", "toy", "id_test", "rmse"),)),)))
    return inside, release


def test_bench_status_shows_running_jobs_and_their_phase(probe_table, tmp_path, capsys):
    from bench.cli import main
    from bench.executors import LocalExecutor
    from bench.jobs import plan
    from bench.heartbeats import heartbeat_path
    from bench.ledger import Ledger
    from bench.runner import run_jobs
    from bench.specs import get_table

    inside, release = probe_table
    spec = get_table("probe")
    ledger = Ledger(tmp_path / "smoke")
    job = plan(spec, "smoke")[0]
    runner = threading.Thread(target=run_jobs, args=(plan(spec, "smoke"), spec, "smoke",
                                                     LocalExecutor(), ledger),
                              kwargs={"out": open(os.devnull, "w")}, daemon=True)
    runner.start()
    try:
        assert inside.wait(30)
        capsys.readouterr()
        assert main(["status", "probe", "--preset", "smoke", "--results-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "running now: 1 job(s)" in out
        assert re.search(r"heartbeat_probe toy seed=0 lr=1: train_large \(probe train: 3/10 steps "
                         r"\(30%\).*\) for \d+s, started \d\d:\d\d:\d\d UTC", out), out
    finally:
        release.set()
        runner.join(30)
    assert ledger.read(job.id)["state"] == "done"
    assert not heartbeat_path(ledger.root, job.id).exists()  # the worker removed it
    main(["status", "probe", "--preset", "smoke", "--results-dir", str(tmp_path)])
    assert "running now" not in capsys.readouterr().out

    # a killed worker's heartbeat file: its process is gone (this host), or it stopped beating (any host)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = heartbeat_path(ledger.root, job.id)
    info = {"job_id": job.id, "job": job.describe(), "host": socket.gethostname(),
            "pid": gone.pid, "started": time.time() - 600, "phase": "features",
            "phase_since": time.time() - 500, "updated": time.time() - 5}
    path.write_text(json.dumps(info))
    main(["status", "--preset", "smoke", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "running now: 0 job(s); 1 stale heartbeat(s)" in out
    assert f"stale heartbeat (its worker (pid {gone.pid}) is gone; last phase features" in out
    path.write_text(json.dumps({**info, "host": "elsewhere", "updated": time.time() - 300}))
    main(["status", "--preset", "smoke", "--results-dir", str(tmp_path)])
    assert "stale heartbeat (no heartbeat for 5m00s" in capsys.readouterr().out


# ------------------------------------------------------------ a killed training run resumes
def _linear_run():
    """A tiny regression trained by ``training.fit``: 10 steps of 4 rows."""
    import jax.numpy as jnp

    from levi_core import training

    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(40, 3)).astype(np.float32),
            "y": rng.normal(size=40).astype(np.float32)}
    params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}

    def apply_fn(p, extra, batch):
        return (batch["x"] @ p["w"] + p["b"])[:, None, :], extra

    idx = training.batch_indices(40, 4, 1, [0])
    return training, apply_fn, params, data, idx


class _Killed(Exception):
    pass


def test_a_killed_training_run_resumes_from_its_checkpoint(tmp_path):
    training, apply_fn, params, data, idx = _linear_run()
    seen = []

    def watch(kill_at=None):
        def transform(batch, step):
            if step == kill_at:
                raise _Killed
            seen.append(step)
            return batch
        return transform

    def ckpt(folder):  # save after every chunk of 3 steps
        return training.TrainCheckpoint(folder, every_s=0.0, steps_per_chunk=3)

    def fit(transform, checkpoint):
        return training.fit(apply_fn, params, {}, data, idx, 0.05, "regression",
                            transform=transform, checkpoint=checkpoint, optimize=False)

    whole = fit(watch(), ckpt(tmp_path / "whole"))
    seen.clear()
    with pytest.raises(_Killed):  # killed while gathering step 7: steps 0-5 were saved
        fit(watch(kill_at=7), ckpt(tmp_path / "run"))
    assert (tmp_path / "run" / training.TrainCheckpoint.FILE).exists()
    seen.clear()
    resumed = fit(watch(), ckpt(tmp_path / "run"))
    assert seen == list(range(6, 10))  # only the steps after the last save ran again
    for a, b in zip(jax_leaves(whole[0]), jax_leaves(resumed[0])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole[2], resumed[2])  # the losses of all 10 steps
    assert len(resumed[2]) == 10 and not resumed[3]


def test_a_finished_run_killed_later_is_not_trained_again(tmp_path):
    """A job killed in its evaluation, after its training ended, gets the trained state back
    without running a step (the steps' data here would raise if any ran)."""
    training, apply_fn, params, data, idx = _linear_run()
    ckpt = training.TrainCheckpoint(tmp_path, every_s=0.0, steps_per_chunk=3)
    first = training.fit(apply_fn, params, {}, data, idx, 0.05, "regression", optimize=False,
                         checkpoint=ckpt)
    assert ckpt.path.exists()  # kept for the rest of the job, marked finished

    def no_step(batch, step):
        raise AssertionError(f"step {step} ran again")

    again = training.fit(apply_fn, params, {}, data, idx, 0.05, "regression", optimize=False,
                         transform=no_step, checkpoint=ckpt)
    for a, b in zip(jax_leaves(first[0]), jax_leaves(again[0])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[2], again[2])
    ckpt.clear()
    assert not ckpt.path.exists()


def test_a_checkpoint_of_another_run_is_ignored(tmp_path):
    training, apply_fn, params, data, idx = _linear_run()
    folder = tmp_path / "run"

    def transform(batch, step):
        if step == 7:
            raise _Killed
        return batch

    with pytest.raises(_Killed):
        training.fit(apply_fn, params, {}, data, idx, 0.05, "regression", transform=transform,
                     checkpoint=training.TrainCheckpoint(folder, every_s=0.0, steps_per_chunk=3),
                     optimize=False)
    seen = []

    def record(batch, step):
        seen.append(step)
        return batch

    training.fit(apply_fn, params, {}, data, idx, 0.01, "regression", optimize=False,
                 transform=record,
                 checkpoint=training.TrainCheckpoint(folder, every_s=0.0, steps_per_chunk=3))
    assert seen == list(range(10))  # started over: the saved state was lr 0.05's


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_params_digest_names_the_parameters_bytes():
    import jax.numpy as jnp

    from levi_core import training

    a = {"w": jnp.ones((2, 3)), "b": jnp.zeros((3,))}
    same = {"b": jnp.zeros((3,)), "w": jnp.ones((2, 3))}
    moved = {"w": jnp.ones((2, 3)).at[1, 2].set(1.0000001), "b": jnp.zeros((3,))}
    assert training.params_digest(a) == training.params_digest(same)
    assert training.params_digest(a) != training.params_digest(moved)


def test_timings_count_parallel_jobs_once_and_pauses_as_idle():
    """Two workers side by side, then a pause between sessions, then one more job: the idle
    time is the pause, not negative time clipped to zero."""
    from bench.timings import harness_minutes

    def rec(start: str, minutes: float):
        return {"timings": {"started": start, "total_s": minutes * 60.0}}

    spans = [rec("2026-12-04T10:00:00Z", 10), rec("2026-12-04T10:00:00Z", 10),
             rec("2026-12-04T10:10:00Z", 5),  # the workers finish at 10:10 and 10:15
             rec("2026-12-04T11:00:00Z", 30)]  # a later session, after 45 idle minutes
    wall, idle, at_once = harness_minutes(spans)
    assert wall == 90.0 and idle == 45.0
    assert at_once == (10 + 10 + 5 + 30) / 45.0
