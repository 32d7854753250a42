"""Chaos: SIGKILL `bench run` (the driver, or a Ray worker running a job) at random moments of a
grid, rerun until it completes, and count what a user must never see.

    python -m bench.benchmarks.chaos                                   # 20 kills, synthetic, smoke, Ray
    python -m bench.benchmarks.chaos --executor local --kills 20       # driver kills only (no workers)

It first runs the grid once uninterrupted (the reference), then again under kills in a fresh
results folder; each kill hits either the driver (then the whole local Ray instance it started
goes too, as when its machine dies, and `bench run` is started again) or one Ray worker in the
middle of a job (Ray retries it; the driver keeps going). After the last kill the grid is run to
completion and both folders are reported. It prints:

  - finished records lost or rewritten (a record seen done/diverged after any kill must still
    be there, byte for byte, at the end): must be 0;
  - finished jobs run again (a job started, per the workers' BENCH_JOB_LOG, after its record
    was seen finished): must be 0;
  - whether the Markdown, LaTeX and CSV tables are byte-identical to the reference.

Exit status 0 when every figure holds, 1 otherwise. Nothing here is asserted by a test: it
takes minutes (the reference run alone is a full grid).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ledger import FINISHED

ROOT = Path(__file__).resolve().parents[2]  # the repository (bench/benchmarks/chaos.py)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Grid:
    """`bench run` / `bench report` of one table into one results folder."""

    def __init__(self, args, results: Path, env: dict[str, str]) -> None:
        self.args, self.results, self.env = args, results, env

    def run_cmd(self) -> list[str]:
        return [sys.executable, "-m", "bench.cli", "run", self.args.table, "--preset",
                self.args.preset, "--executor", self.args.executor, "--results-dir",
                str(self.results)]

    def start(self, log) -> subprocess.Popen:
        return subprocess.Popen(self.run_cmd(), env=self.env, cwd=ROOT, stdout=log, stderr=log,
                                start_new_session=True)

    def complete(self, log, tries: int = 4) -> int:
        """Run until nothing fails (a job whose system retries were spent fails once)."""
        rc = 1
        for _ in range(tries):
            rc = subprocess.run(self.run_cmd(), env=self.env, cwd=ROOT, stdout=log,
                                stderr=log).returncode
            if rc == 0:
                break
        return rc

    def report(self, tables: Path, log) -> dict[str, bytes]:
        subprocess.run([sys.executable, "-m", "bench.cli", "report", self.args.table, "--preset",
                        self.args.preset, "--results-dir", str(self.results), "--tables-dir",
                        str(tables)], env=self.env, cwd=ROOT, stdout=log, stderr=log, check=True)
        folder = tables / self.args.preset
        return {p.name: p.read_bytes() for p in sorted(folder.glob(f"{self.args.table}.*"))
                if p.suffix in (".md", ".tex", ".csv")}

    def finished(self) -> dict[str, str]:
        """job_id -> sha256 of the record file, for every finished record."""
        out = {}
        folder = self.results / self.args.preset / "records"
        for p in folder.glob("[!.]*.json"):
            try:
                data = p.read_bytes()
                if json.loads(data).get("state") in FINISHED:
                    out[p.stem] = hashlib.sha256(data).hexdigest()
            except (OSError, ValueError):
                pass
        return out


def job_log(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default="synthetic")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--executor", default="ray", choices=["ray", "local"])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--max-wait", type=float, default=4.0,
                    help="a kill comes uniformly 0.3..MAX_WAIT s after the grid is at work")
    ap.add_argument("--worker-share", type=float, default=0.5,
                    help="with Ray: the share of kills that hit a worker instead of the driver")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, default=None, help="default: a new temp folder")
    ap.add_argument("--reference", type=Path, default=None,
                    help="a results folder that already holds the uninterrupted run")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    ray_tmp = tempfile.mkdtemp(prefix="chr", dir="/tmp")  # Ray's socket paths must stay short
    jobs_log = work / "jobs.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0", "JAX_PLATFORMS": "cpu"}
    log = open(work / "driver.log", "ab")
    print(f"chaos: {args.table} [{args.preset}] on {args.executor}, {args.kills} SIGKILLs, "
          f"work folder {work}", flush=True)

    ref = Grid(args, args.reference or work / "ref", env)
    t0 = time.perf_counter()
    if args.reference is None:
        if ref.complete(log) != 0:
            print("the reference run did not complete; see", work / "driver.log")
            return 1
    t_ref = time.perf_counter() - t0
    ref_tables = ref.report(work / "ref-tables", log)
    print(f"reference: {len(ref.finished())} finished jobs in {t_ref:.0f} s", flush=True)

    grid = Grid(args, work / "chaos", {**env, "BENCH_JOB_LOG": str(jobs_log)})
    seen: dict[str, tuple[str, int]] = {}  # job -> (record hash, job-log length when first seen)
    kills = {"driver": 0, "worker": 0}
    restarts = 0
    t0 = time.perf_counter()
    proc = grid.start(log)

    def checkpoint() -> None:
        finished = grid.finished()  # records first, then the log: see the module docstring
        n_log = len(job_log(jobs_log))
        for job, digest in finished.items():
            seen.setdefault(job, (digest, n_log))

    def at_work(since: int) -> None:
        """Most kills should hit a grid at work, not a driver still importing and starting
        Ray: wait until it has recorded a job (or 60 s); one kill in six lands in start-up."""
        if rng.random() < 1 / 6:
            return
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline \
                and len(grid.finished()) <= since:
            time.sleep(0.05)

    started_at = 0
    while sum(kills.values()) < args.kills:
        at_work(started_at)
        time.sleep(rng.uniform(0.3, args.max_wait))
        if proc.poll() is not None:  # the grid finished between kills: nothing left to hit
            checkpoint()
            if len(seen) >= len(ref.finished()):
                print(f"the grid completed after {sum(kills.values())} kills; stopping there")
                break
            started_at = len(grid.finished())
            proc = grid.start(log)
            restarts += 1
            continue
        tree = descendants(proc.pid)
        workers = [p for p in tree if cmdline(p).startswith("ray::execute")]
        if workers and rng.random() < args.worker_share:
            kill([rng.choice(workers)])
            kills["worker"] += 1
            time.sleep(0.2)
            checkpoint()
            continue
        kill([proc.pid])  # the driver: the chaos event
        proc.wait()
        kill(descendants(proc.pid) + tree)  # its local Ray instance goes with it
        kills["driver"] += 1
        checkpoint()
        started_at = len(grid.finished())
        proc = grid.start(log)
        restarts += 1
    if proc.poll() is None:
        proc.wait()
    checkpoint()
    rc = grid.complete(log)
    t_chaos = time.perf_counter() - t0
    final = grid.finished()
    chaos_tables = grid.report(work / "chaos-tables", log)

    lost = [j for j in seen if j not in final]
    rewritten = [j for j, (h, _) in seen.items() if j in final and final[j] != h]
    starts = job_log(jobs_log)
    run_again = sorted({j for i, j in enumerate(starts) if j in seen and i >= seen[j][1]})
    restarted = sum(1 for j in set(starts) if starts.count(j) > 1)
    identical = {name: chaos_tables.get(name) == data for name, data in ref_tables.items()}
    print(f"kills: {sum(kills.values())} SIGKILL ({kills['driver']} driver, {kills['worker']} "
          f"worker), {restarts} restarts of bench run; final run exit status {rc}")
    print(f"jobs: {len(final)} finished of {len(ref.finished())} in the reference; "
          f"{len(seen)} seen finished at a kill or at the end")
    print(f"finished records lost: {len(lost)}")
    print(f"finished records rewritten: {len(rewritten)}")
    print(f"finished jobs run again: {len(run_again)}")
    print(f"jobs started more than once (killed while running, allowed): {restarted}")
    print("tables byte-identical to the uninterrupted run: "
          + ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in identical.items()))
    print(f"time: reference {t_ref:.0f} s, under chaos {t_chaos:.0f} s (kills, restarts and reruns)")
    for name, items in (("lost", lost), ("rewritten", rewritten), ("run again", run_again)):
        if items:
            print(f"  {name}: {' '.join(items[:10])}")
    ok = (not lost and not rewritten and not run_again and all(identical.values()) and identical
          and len(final) == len(ref.finished()))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
