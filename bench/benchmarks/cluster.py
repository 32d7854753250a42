"""A two-node Ray cluster on this machine, a driver that joins it, and a node lost mid-run.

    python -m bench.benchmarks.cluster                     # synthetic table, smoke preset
    python -m bench.benchmarks.cluster --table table1      # another smoke grid

What it does, printing each figure:

1. starts a Ray head and a second Ray node as separate processes (`ray start`, each with its
   own temp dir and one CPU) with token authentication on, as the pinned Ray expects;
2. `bench run --address` at a port where nothing listens, then at the head without the token:
   how fast and with which message each is refused;
3. `bench run --address` with the token: wall time, and how many jobs each node ran (from the
   records' ``provenance.node``); the reference tables;
4. a fresh results folder: `bench run --address` again, and SIGKILL of the second node (its
   raylet and its workers) once a third of the jobs are recorded. The driver must keep going:
   the jobs the node held are retried by Ray on the head (system failures) or recorded failed,
   and the next `bench run` runs the failed ones. The final Markdown/LaTeX/CSV must be
   byte-identical to step 3's.

Everything it starts is stopped by process id at the end (never `ray stop`, which would stop
every Ray instance of this user). Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.benchmarks.chaos import ROOT, descendants

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(temp_dir: Path) -> list[int]:
    """Processes a `ray start --temp-dir` left running (they name the dir), and their children."""
    roots = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(entry.name) != os.getpid() and \
                        str(temp_dir) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    roots.append(int(entry.name))
            except OSError:
                pass
    out = list(roots)
    for r in roots:
        out += [p for p in descendants(r) if p not in out]
    return out


def kill_all(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def node_counts(records: Path) -> Counter:
    counts: Counter = Counter()
    for p in records.glob("[!.]*.json"):
        rec = json.loads(p.read_text())
        node = (rec.get("provenance") or {}).get("node") or {}
        counts[node.get("ray_node_id", "?")[:8]] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.cluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default="synthetic")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--kill-at", type=float, default=1 / 3,
                    help="kill the second node when this share of the jobs is recorded")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must stay short
    head_dir, node_dir, home = base / "h", base / "n", base / "home"
    home.mkdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    token = secrets.token_hex(16)
    jobs_log = base / "jobs.log"
    base_env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
                "JAX_PLATFORMS": "cpu",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        base_env.pop(k, None)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    node_env = {**base_env, **auth, "BENCH_JOB_LOG": str(jobs_log)}
    log = open(base / "cluster.log", "ab")
    ok = True

    def start_node(temp_dir: Path, head: bool) -> None:
        cmd = [RAY, "start", "--num-cpus", "1", "--temp-dir", str(temp_dir),
               "--disable-usage-stats", "--object-store-memory", str(200 * 2**20)]
        cmd += (["--head", "--port", str(port), "--include-dashboard=false"] if head
                else ["--address", address])
        subprocess.run(cmd, env=node_env, check=True, stdout=log, stderr=log, timeout=120)

    def bench(*more: str, env: dict | None = None, results: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "bench.cli", "run", args.table, "--preset", args.preset,
               "--results-dir", str(results), *more]
        return subprocess.run(cmd, env=env or {**base_env, **auth}, cwd=ROOT, capture_output=True,
                              text=True)

    def report(results: Path, tables: Path) -> dict[str, bytes]:
        subprocess.run([sys.executable, "-m", "bench.cli", "report", args.table, "--preset",
                        args.preset, "--results-dir", str(results), "--tables-dir", str(tables)],
                       env=base_env, cwd=ROOT, check=True, stdout=log, stderr=log)
        return {p.name: p.read_bytes() for p in sorted((tables / args.preset).glob(f"{args.table}.*"))
                if p.suffix in (".md", ".tex", ".csv")}

    try:
        t0 = time.perf_counter()
        start_node(head_dir, head=True)
        start_node(node_dir, head=False)
        print(f"cluster: head and a second node at {address}, 1 CPU each, token auth on "
              f"({time.perf_counter() - t0:.1f} s to start)", flush=True)

        # 2. a wrong address, then the right one without the token
        t0 = time.perf_counter()
        p = bench("--address", f"127.0.0.1:{free_port()}", env=base_env, results=base / "refused")
        took = time.perf_counter() - t0
        ok &= p.returncode == 2 and "no Ray cluster answers" in p.stderr and took < 10
        print(f"an address where nothing listens: exit {p.returncode} after {took:.1f} s", flush=True)
        t0 = time.perf_counter()
        p = bench("--address", address, env=base_env, results=base / "refused")
        took = time.perf_counter() - t0
        msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        refused_ok = (p.returncode == 2 and "RAY_AUTH_TOKEN" in p.stderr and took < 10
                      and "Traceback" not in p.stderr)
        ok &= refused_ok
        print(f"without the token: exit {p.returncode} after {took:.1f} s: {msg[:160]}...", flush=True)

        # 3. with the token, uninterrupted
        t0 = time.perf_counter()
        p = bench("--address", address, results=base / "ref")
        took = time.perf_counter() - t0
        counts = node_counts(base / "ref" / args.preset / "records")
        both = len([c for c in counts.values() if c > 0]) >= 2
        ok &= p.returncode == 0 and both
        print(f"with the token: exit {p.returncode}, {sum(counts.values())} jobs in {took:.0f} s; "
              f"jobs per node: {dict(counts)}" + ("" if both else "  <- expected both nodes"),
              flush=True)
        if p.returncode != 0:
            print(p.stderr[-2000:])
        ref_tables = report(base / "ref", base / "ref-tables")
        n_jobs = sum(counts.values())

        # 4. lose the second node mid-run
        res = base / "lost"
        records = res / args.preset / "records"
        cmd = [sys.executable, "-m", "bench.cli", "run", args.table, "--preset", args.preset,
               "--results-dir", str(res), "--address", address]
        driver_log = open(base / "lost-driver.log", "w")
        phase_start = len(jobs_log.read_text().splitlines()) if jobs_log.exists() else 0
        t0 = time.perf_counter()
        driver = subprocess.Popen(cmd, env={**base_env, **auth}, cwd=ROOT, stdout=driver_log,
                                  stderr=subprocess.STDOUT)
        while driver.poll() is None and (not records.is_dir() or
                                         len(list(records.glob("*.json"))) < n_jobs * args.kill_at):
            time.sleep(0.1)
        n_before = len(list(records.glob("*.json"))) if records.is_dir() else 0
        victims = processes_of(node_dir)
        kill_all(victims)
        print(f"killed the second node ({len(victims)} processes) with {n_before} of {n_jobs} "
              f"jobs recorded, {time.perf_counter() - t0:.0f} s into the run", flush=True)
        rc1 = driver.wait(timeout=1800)
        took = time.perf_counter() - t0
        driver_log.close()
        after = {}
        for path in records.glob("[!.]*.json"):
            rec = json.loads(path.read_text())
            after[rec["job_id"]] = rec
        failed = [r for r in after.values() if r["state"] == "failed"]
        starts = [line.split()[0] for line in jobs_log.read_text().splitlines()[phase_start:]
                  if line.strip()]
        retried = sum(1 for n in Counter(starts).values() if n > 1)
        print(f"driver kept going: exit {rc1} after {took:.0f} s; {len(after)} records, "
              f"{len(failed)} failed (system failures after retries); {retried} jobs started "
              f"twice (the lost node's, re-run by Ray on the head)", flush=True)
        for r in failed[:3]:
            print(f"  failed: {r['job']['method']} {r['job']['dataset']}: {r.get('error', '')[:160]}")
        p = bench("--address", address, results=res)
        print(f"next bench run: exit {p.returncode}; "
              f"{p.stderr.strip().splitlines()[-2] if p.stderr.strip() else ''}", flush=True)
        final_counts = node_counts(records)
        lost_tables = report(res, base / "lost-tables")
        same = {n: lost_tables.get(n) == data for n, data in ref_tables.items()}
        ok &= p.returncode == 0 and all(same.values()) and bool(same)
        print(f"jobs per node in the interrupted run: {dict(final_counts)}")
        print("tables byte-identical to the uninterrupted run: "
              + ", ".join(f"{n} {'yes' if v else 'NO'}" for n, v in same.items()))
    finally:
        kill_all(processes_of(head_dir) + processes_of(node_dir))
        log.close()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"logs kept in {base}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
