"""The persistent compilation cache: a program compiled by one job is loaded, not compiled, by
the next (simulated in-process by clearing JAX's in-memory caches), with the same result."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from levi_core import compile_cache


def test_second_compile_of_a_program_is_a_cache_hit(tmp_path):
    folder = compile_cache.use(tmp_path / "cache")

    def f(x):
        return jnp.tanh(x @ x.T).sum(axis=0) * 3.0 + 0.123

    x = jnp.arange(12.0).reshape(3, 4) / 7
    with compile_cache.Meter() as first:
        a = np.asarray(jax.jit(f)(x))
    assert any((tmp_path / "cache" / "xla").iterdir()), "nothing was written to the cache"
    jax.clear_caches()  # a new process: nothing compiled in memory
    with compile_cache.Meter() as second:
        b = np.asarray(jax.jit(f)(x))
    assert first.hits == 0 and second.hits >= 1
    np.testing.assert_array_equal(a, b)
    assert folder == str(tmp_path / "cache" / "xla")
