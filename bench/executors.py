"""Executors: where jobs run. Ray (default; local instance or a cluster) or in-process.

An executor takes payloads with ``submit`` and hands back finished results with ``wait``, in
completion order; ``slots`` says how many jobs it can run at once (the scheduler submits no
more, so a job's lease is taken just before it can start). The scheduler (bench.runner) decides what
is ready; executors only run.

System failures (a worker process killed, a node lost) are retried by Ray up to
``SYSTEM_RETRIES`` times; a job's own error never is (the worker turns it into a ``failed``
result, which is not an exception). A job whose retries are spent is recorded ``failed`` and the
next ``bench run`` runs it again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
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

    def slots(self) -> int:
        return 1

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
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
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number (got {value})")
            if value < 0:
                raise ConfigError(f"{name} must be >= 0 (got {value})")
            if value > 1024:
                raise ConfigError(f"{name} {value} is more than any machine has; give what one job needs")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ConfigError(f"--gpus-per-job above 1 must be a whole number (got {self.gpus}): "
                              "Ray cannot give a job part of a second GPU")
        if self.cpus == 0 and self.gpus == 0 and self.tpus == 0:
            raise ConfigError("a job must ask for some resource: set --cpus-per-job above 0")

    def env_vars(self) -> dict[str, str]:
        """JAX preallocates 75% of a GPU per process: a job sharing a GPU gets its share."""
        if 0 < self.gpus < 1:
            return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * self.gpus:.3f}"}
        return {}


SYSTEM_RETRIES = 3  # attempts after a lost worker or node, before the job is recorded failed
# Joining a cluster: how long before we say it does not answer. A head that answers at all
# accepts a driver well within it; longer only delays the message that tells the fix.
CONNECT_TIMEOUT_S = 6.0
JOIN_STUCK = False  # set when ray.init is still trying after CONNECT_TIMEOUT_S
_SYSTEM_FAILURES = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError",
                    "ObjectLostError", "OwnerDiedError", "TaskUnschedulableError")
_ADDRESS = re.compile(r"^(?:(?P<scheme>ray)://)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])"
                      r"(?::(?P<port>[0-9]+))?$")


def _token_available() -> bool:
    """Whether this process can present a Ray auth token (where Ray looks for one)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return os.path.isfile(path)


def auth_help(address: str) -> str:
    """How to pass a cluster's token to `bench run` (and to each `ray start` of a node)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        why = "RAY_AUTH_MODE is not `token` here, so Ray sent no token"
    elif not _token_available():
        why = "this process has none"
    else:
        why = "the token given is not the cluster's"
    return (f"the Ray cluster at {address} uses token authentication and refused this "
            f"driver ({why}). Copy the cluster's "
            "token (on the head: `ray get-auth-token`) and run `RAY_AUTH_MODE=token "
            "RAY_AUTH_TOKEN=<token> bench run ... --address ...` (or put it in a file and set "
            "RAY_AUTH_TOKEN_PATH=<file>); every `ray start --address` of a worker node needs the "
            "same two variables. See README, 'Running on a Ray cluster'.")


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, with the fix, when nothing answers at a cluster address."""
    if address == "auto":
        return
    m = _ADDRESS.match(address.strip())
    if not m:
        raise ConfigError(f"--address {address!r} is not a Ray address: give HOST:PORT as printed "
                          "by `ray start --head` (e.g. --address 10.0.0.5:6379), ray://HOST:10001 "
                          "for Ray Client, or auto for the cluster started on this machine")
    host = m["host"].strip("[]")
    port = int(m["port"] or (10001 if m["scheme"] else 6379))
    if not 0 < port < 65536:
        raise ConfigError(f"--address {address!r}: port {port} is out of range (1-65535)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise ConfigError(
            f"no Ray cluster answers at {host}:{port} ({why}). Check the address that `ray start "
            "--head` printed on the head node (`ray start --address='HOST:PORT'`), that the head "
            "is still running (`ray status` there) and that this machine can reach that port; or "
            "drop --address to run on a local Ray instance.") from e


RAY_TOKEN_BANNER = "Token authentication is enabled for this Ray cluster"


class _DropTokenBanner(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RAY_TOKEN_BANNER)


def plain_output_when_redirected() -> bool:
    """When stdout or stderr is not a terminal (a log file, a pipe), turn off what only a
    terminal renders: the colour codes Ray puts around each worker line's prefix, and the
    notice Ray prints on every local start that it turned token authentication on (Ray's
    warning when authentication is *off* is kept). Returns whether it did."""
    if sys.stdout.isatty() and sys.stderr.isatty():
        return False
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by the driver's log printer
    banner = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenBanner) for f in banner.filters):
        banner.addFilter(_DropTokenBanner())
    return True


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
            plain_output_when_redirected()
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
                if address:
                    check_address(address)
                    _join(ray, address, kwargs)
                else:
                    ray.init(**kwargs)
                self._started_here = True
        try:  # a job the cluster can never place would wait forever: refuse it now
            check_fits(self.resources, _alive_nodes(ray), address)
        except ConfigError:
            if self._started_here:
                ray.shutdown()
            raise
        # max_retries: Ray re-runs a task whose worker or node died (a system failure); a job's
        # own error is a returned ``failed`` result, never an exception, so it is not retried.
        opts: dict[str, Any] = {"num_cpus": self.resources.cpus, "max_retries": SYSTEM_RETRIES,
                                "retry_exceptions": False}
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
        self._slots: tuple[float, int] = (0.0, 1)

    def submit(self, payload: Mapping[str, Any]) -> None:
        ref = self._remote.remote(dict(payload))
        self._refs.append(ref)
        self._job_of[ref] = payload["job_id"]

    def pending(self) -> int:
        return len(self._refs)

    def slots(self) -> int:
        """Jobs to keep submitted: twice what the cluster can run at once now (alive nodes'
        resources / one job's ask), so that a worker never waits for the driver between jobs,
        while another driver on the same results folder still finds jobs left to take."""
        when, n = self._slots
        if time.monotonic() - when < 2.0:  # asking the cluster is a round trip: not per job
            return n
        total = self._ray.cluster_resources()
        asks = {"CPU": self.resources.cpus, "GPU": self.resources.gpus, "TPU": self.resources.tpus}
        fits = [int(total.get(k, 0) // v) for k, v in asks.items() if v > 0]
        n = 2 * max(1, min(fits) if fits else 1)
        self._slots = (time.monotonic(), n)
        return n

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        done, self._refs = self._ray.wait(self._refs, num_returns=1, timeout=timeout)
        if not done:
            return None
        job_id = self._job_of.pop(done[0])
        try:
            return self._ray.get(done[0])
        except self._ray.exceptions.RayError as e:
            kind = type(e).__name__
            what = ("system failure (a lost worker or node), retried "
                    f"{SYSTEM_RETRIES} times" if kind in _SYSTEM_FAILURES else "Ray task failed")
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            return {"state": "failed", "job_id": job_id, "timings": {}, "system_failure": True,
                    "error": f"{what}: {kind}: {first}; the next `bench run` runs it again"}

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs = []
        self._job_of = {}
        if self._started_here:
            self._ray.shutdown()


def _alive_nodes(ray) -> list[dict[str, float]]:
    """The resources of each live node of the cluster this process is connected to."""
    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def _amount(value: float) -> str:
    return f"{value:g}"


def check_fits(resources: Resources, nodes: list[Mapping[str, float]], address: str | None) -> None:
    """Refuse a per-job ask that no live node can supply (Ray would keep such a task pending,
    and its autoscaler would repeat that no node type fits, for as long as one waits).

    A task runs on one node, so each resource is compared with the largest node's amount; the
    message names what the cluster has and the flag to change."""
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    asks = (("GPU", "--gpus-per-job", resources.gpus), ("TPU", "--tpus-per-job", resources.tpus),
            ("CPU", "--cpus-per-job", resources.cpus))
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU", "TPU")}
    has = ", ".join(f"{k} {_amount(v)}" for k, v in total.items() if v or k == "CPU")
    many = f" over {len(nodes)} nodes" if len(nodes) > 1 else ""
    for kind, flag, ask in asks:
        if ask <= 0:
            continue
        best = max((n.get(kind, 0.0) for n in nodes), default=0.0)
        if ask <= best + 1e-9:
            continue
        if best == 0:
            fix = ("drop the flag or join a cluster with GPUs (--address)" if kind == "GPU" else
                   "drop the flag or join a cluster with TPUs (--address)" if kind == "TPU" else
                   "lower it")
            raise ConfigError(f"{flag} {_amount(ask)} but {where} has 0 {kind}s ({has}{many}); "
                              f"{fix}")
        raise ConfigError(f"{flag} {_amount(ask)} but the largest node of {where} has "
                          f"{_amount(best)} {kind}s ({has}{many}), and a job runs on one node; "
                          f"ask for at most {_amount(best)}")


def _join(ray, address: str, kwargs: dict[str, Any]) -> None:
    """``ray.init(address=...)`` that ends in seconds with the fix when the cluster refuses us.

    Ray's C++ core keeps retrying a refused connection, well past the point where the user
    should be told, and logs each retry to stderr; we give it CONNECT_TIMEOUT_S, keep its log
    out of sight while it tries, and tell a missing or wrong token (the common case since Ray
    turned token authentication on) from the rest."""
    log = tempfile.TemporaryFile(mode="w+b")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as e:  # noqa: BLE001 - SystemExit too: Ray exits on a lost GCS
            outcome["error"] = e

    global JOIN_STUCK
    t = threading.Thread(target=connect, daemon=True, name="ray-join")
    t.start()
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while t.is_alive() and time.monotonic() < deadline:  # a refused token shows in Ray's log
        t.join(0.2)
        if any(w in os.pread(log.fileno(), 1 << 20, 0) for w in (b"Unauthenticated", b"InvalidAuthToken")):
            break
    os.dup2(saved, 2)
    os.close(saved)
    log.seek(0)
    text = log.read().decode(errors="replace")
    if "error" in outcome and outcome["error"] is None:
        sys.stderr.write(text)  # the usual Ray start-up lines
        return
    err = outcome.get("error")
    if t.is_alive():  # still trying: the CLI exits without waiting for Ray's own shutdown
        JOIN_STUCK = True
    if ("Unauthenticated" in text or "InvalidAuthToken" in text
            or type(err).__name__ == "AuthenticationError"):
        raise ConfigError(auth_help(address)) from err
    if err is None:
        raise ConfigError(
            f"the Ray cluster at {address} did not accept this driver within "
            f"{CONNECT_TIMEOUT_S:.0f} s (its port answers, but not as a Ray head that lets us "
            "in). Check that the address is the head's GCS address (`ray start --address='HOST:"
            "PORT'` as printed by `ray start --head`), that this machine runs the same Ray "
            f"version as the cluster ({ray.__version__} here), and, if the cluster uses token "
            "authentication, pass its token: RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token>.")
    raise ConfigError(f"cannot join the Ray cluster at {address}: {type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}. Check the address and that "
                      f"the cluster runs Ray {ray.__version__}.") from err


def make_executor(name: str, address: str | None, resources: Resources):
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, resources=resources)
    raise ConfigError(f"unknown executor {name!r}; use 'ray' or 'local'")
