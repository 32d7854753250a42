"""The persistent compilation cache: a program compiled by one job is loaded, not compiled, by
the next (simulated in-process by clearing JAX's in-memory caches), with the same result; and
where the machine's cache folder is."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from levi_core import compile_cache


def test_second_compile_of_a_program_is_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "xla"))
    folder = compile_cache.use(tmp_path / "results-cache")

    def f(x):
        return jnp.tanh(x @ x.T).sum(axis=0) * 3.0 + 0.123

    x = jnp.arange(12.0).reshape(3, 4) / 7
    with compile_cache.Meter() as first:
        a = np.asarray(jax.jit(f)(x))
    assert any((tmp_path / "xla").iterdir()), "nothing was written to the cache"
    jax.clear_caches()  # a new process: nothing compiled in memory
    with compile_cache.Meter() as second:
        b = np.asarray(jax.jit(f)(x))
    assert first.hits == 0 and second.hits >= 1
    np.testing.assert_array_equal(a, b)
    assert folder == str(tmp_path / "xla")


def test_the_machine_folder_is_shared_by_results_roots(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    machine = str(tmp_path / "home-cache" / "levi-bench" / "xla")
    assert compile_cache.folder() == machine
    assert compile_cache.use(tmp_path / "root-a" / "cache") == machine
    assert compile_cache.use(tmp_path / "root-b" / "cache") == machine
    assert compile_cache.use(None) is None  # a job without a cache folder compiles in memory


def test_off_and_unwritable_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.use(tmp_path / "cache") is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(compile_cache.ENV, str(blocker / "xla"))  # cannot be created
    assert compile_cache.use(tmp_path / "cache") == str(tmp_path / "cache" / "xla")
    assert Path(tmp_path / "cache" / "xla").is_dir()
