"""Executors: where jobs run. Ray (default; local instance or a cluster) or in-process.

An executor takes payloads with ``submit`` and hands back finished results with ``wait``, in
completion order. The scheduler (bench.runner) decides what is ready; executors only run.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

from levi_core.errors import ConfigError

from bench.worker import execute


class LocalExecutor:
    """Runs each job in this process, one at a time, when its result is asked for."""

    name = "local"

    def __init__(self) -> None:
        self._queue: deque[Mapping[str, Any]] = deque()

    def submit(self, payload: Mapping[str, Any]) -> None:
        self._queue.append(payload)

    def pending(self) -> int:
        return len(self._queue)

    def wait(self) -> dict[str, Any]:
        return execute(self._queue.popleft())

    def close(self) -> None:
        self._queue.clear()


@dataclass
class Resources:
    """Resources each job asks Ray for."""

    cpus: float = 1.0
    gpus: float = 0.0
    tpus: float = 0.0

    def validate(self) -> None:
        for name, value in (("--cpus-per-job", self.cpus), ("--gpus-per-job", self.gpus),
                            ("--tpus-per-job", self.tpus)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0 (got {value})")
        if self.cpus == 0 and self.gpus == 0 and self.tpus == 0:
            raise ConfigError("a job must ask for some resource: set --cpus-per-job above 0")

    def env_vars(self) -> dict[str, str]:
        """JAX preallocates 75% of a GPU per process: a job sharing a GPU gets its share."""
        if 0 < self.gpus < 1:
            return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * self.gpus:.3f}"}
        return {}


class RayExecutor:
    """Runs jobs as Ray tasks: starts a local instance on demand, or joins ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None, resources: Resources | None = None,
                 num_cpus: int | None = None) -> None:
        self.resources = resources or Resources()
        self.resources.validate()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # fork warning after jax import
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                          "configure_logging": False}
                if address:
                    kwargs["address"] = address
                else:
                    kwargs["num_cpus"] = num_cpus or os.cpu_count()
                    tmp = os.environ.get("RAY_TMPDIR")
                    if tmp:
                        kwargs["_temp_dir"] = tmp
                try:
                    ray.init(**kwargs)
                except ConnectionError as e:
                    raise ConfigError(f"cannot join the Ray cluster at {address!r}: {e}. "
                                      "Start it with `ray start --head`, or drop --address to "
                                      "start a local instance.") from e
                self._started_here = True
        opts: dict[str, Any] = {"num_cpus": self.resources.cpus, "max_retries": 0}
        if self.resources.gpus:
            opts["num_gpus"] = self.resources.gpus
        if self.resources.tpus:
            opts["resources"] = {"TPU": self.resources.tpus}
        env = self.resources.env_vars()
        if env:
            opts["runtime_env"] = {"env_vars": env}
        self._remote = ray.remote(execute).options(**opts)
        self._refs: list[Any] = []
        self._job_of: dict[Any, str] = {}

    def submit(self, payload: Mapping[str, Any]) -> None:
        ref = self._remote.remote(dict(payload))
        self._refs.append(ref)
        self._job_of[ref] = payload["job_id"]

    def pending(self) -> int:
        return len(self._refs)

    def wait(self) -> dict[str, Any]:
        done, self._refs = self._ray.wait(self._refs, num_returns=1)
        job_id = self._job_of.pop(done[0])
        try:
            return self._ray.get(done[0])
        except self._ray.exceptions.RayError as e:  # worker died (OOM, node lost)
            return {"state": "failed", "error": f"Ray task failed: {e}", "job_id": job_id,
                    "timings": {}}

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs = []
        self._job_of = {}
        if self._started_here:
            self._ray.shutdown()


def make_executor(name: str, address: str | None, resources: Resources):
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, resources=resources)
    raise ConfigError(f"unknown executor {name!r}; use 'ray' or 'local'")
