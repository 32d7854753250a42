"""The ``bench`` command line: run, report, status, ls, data describe, speed, plan.

Flags live here only; everything below takes plain arguments. A user mistake (unknown table,
method, preset or flag; unreadable data; a results folder that is not a writable folder; a Ray
address that does not answer or refuses us) ends with one ``error:`` message and exit status 2,
never a traceback. An unexpected exception (a bug) prints one line too, exit status 3, and its
traceback with BENCH_TRACEBACK=1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from levi_core.errors import UserError  # noqa: E402

from bench.presets import DEFAULT_PRESET, PRESETS  # noqa: E402

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def _add_subset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", default=None, metavar="D[,D]",
                   help="only these datasets of the table (e.g. movielens)")
    p.add_argument("--methods", default=None, metavar="M[,M]",
                   help="only these methods (their dependencies come along), e.g. lp,levi")
    p.add_argument("--seeds", default=None, metavar="S[,S]", help="only these seeds, e.g. 0")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help=f"size preset (default: {DEFAULT_PRESET})")
    p.add_argument("--results-dir", default="results", type=Path,
                   help="root of the run records and artifacts (default: ./results)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Reproduce the tables of LEVI (ICML 2024): run grids, report tables.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run every job a table needs (skips finished jobs)")
    run.add_argument("table", help="table name (see `bench ls`)")
    _add_common(run)
    _add_subset(run)
    run.add_argument("--executor", default="ray", choices=["ray", "local"],
                     help="ray (default: a local instance, or --address) or local (in-process)")
    run.add_argument("--address", default=None, help="address of a running Ray cluster to join")
    run.add_argument("--cpus-per-job", type=_number, default=1.0, help="Ray CPUs per job (default 1)")
    run.add_argument("--gpus-per-job", type=_number, default=0.0,
                     help="Ray GPUs per job; a fraction shares a GPU and caps JAX's memory share")
    run.add_argument("--tpus-per-job", type=_number, default=0.0, help="Ray TPU chips per job")
    run.add_argument("--data-dir", action="append", default=[], metavar="[DATASET=]DIR",
                     help="local files of the datasets: DIR for all, or DATASET=DIR (repeatable), "
                          "e.g. --data-dir movielens=../shared/data/movielens_100k")

    rep = sub.add_parser("report", help="write LaTeX/Markdown/CSV tables and figures")
    rep.add_argument("tables", nargs="*", help="tables to report (default: every table with records)")
    _add_common(rep)
    _add_subset(rep)
    rep.add_argument("--tables-dir", default="tables", type=Path,
                     help="where to write tables/<preset>/ (default: ./tables)")
    rep.add_argument("--latex", action="store_true", help="print LaTeX instead of Markdown")

    st = sub.add_parser("status", help="done / failed / diverged / pending counts")
    st.add_argument("table", nargs="?", help="one table (default: all)")
    st.add_argument("--timings", action="store_true",
                    help="also minutes per phase and method from the finished records")
    _add_common(st)
    _add_subset(st)

    chk = sub.add_parser("check", help="compare tables with committed baselines (CI regression)")
    chk.add_argument("tables", nargs="*", help="tables to check (default: every table with a baseline)")
    _add_common(chk)
    chk.add_argument("--baselines-dir", default=Path("results") / "baselines", type=Path,
                     help="where baselines live (default: ./results/baselines)")
    chk.add_argument("--update", action="store_true",
                     help="write the current numbers as the new baselines (a deliberate change)")

    sub.add_parser("ls", help="list tables, methods, datasets and presets")

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    desc = data_sub.add_parser("describe", help="split sizes, label distributions, fingerprint, shift")
    desc.add_argument("dataset", help="dataset id, e.g. movielens or synthetic:rho=0.7")
    desc.add_argument("--data-dir", default=None, help="folder with the dataset's local files")

    speed = sub.add_parser("speed", help="backbone throughput benchmark (see bench/benchmarks/speed.py)",
                           add_help=False)
    speed.add_argument("speed_args", nargs=argparse.REMAINDER)

    from bench import plan as _plan  # `bench plan`: its flags are defined beside its code

    _plan.add_arguments(sub.add_parser(
        "plan", help="FLOPs, peak memory, batch split and device-hours of tables on an accelerator"))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["speed"]:  # its flags belong to bench/benchmarks/speed.py, --help included
        argv = ["speed", "--", *argv[1:]]
    try:  # plugins first: their presets are --preset choices, their tables listed everywhere
        from levi_core.plugins import load_plugins

        load_plugins()
    except UserError as e:
        return _fail(f"error: {e}", EXIT_USER_ERROR)
    args = build_parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
    except UserError as e:
        code = _fail(f"error: {e}", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("\ninterrupted: finished jobs are recorded; run the same command again to resume",
              file=sys.stderr)
        return 130
    except OSError as e:  # a file or folder the command needs (tables folder, data, disk full)
        where = f" {e.filename}" if e.filename else ""
        code = _fail(f"error: cannot use{where}: {e.strerror or e}. Check that the path exists, is "
                     "a folder where one is expected, is writable and its disk is not full; or "
                     "pass another --results-dir / --tables-dir. Finished records are kept.",
                     EXIT_USER_ERROR)
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("BENCH_TRACEBACK"):
            raise
        code = _fail(f"internal error: {type(e).__name__}: {e}. This is a bug in levi-bench; "
                     "run again with BENCH_TRACEBACK=1 for the traceback and report it. Finished "
                     "records are kept.", EXIT_INTERNAL_ERROR)
    return code


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    from bench import executors

    if executors.JOIN_STUCK:  # Ray is still retrying a refused connection: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# ------------------------------------------------------------------ commands
def cmd_run(args) -> int:
    from bench.executors import Resources, make_executor
    from bench.ledger import Ledger
    from bench.runner import run_jobs, seed0_context
    from bench.jobs import plan
    from bench.specs import get_table

    resources = Resources(cpus=args.cpus_per_job, gpus=args.gpus_per_job, tpus=args.tpus_per_job)
    resources.validate()
    from bench.jobs import Subset

    spec = get_table(args.table)
    jobs = plan(spec, args.preset)
    if not jobs:
        raise UserError(f"{spec.name} has no dataset in preset {args.preset!r} (its data is not "
                        f"available at that scale); use --preset paper or --preset smoke")
    args.subset = Subset.parse(args.datasets, args.methods, args.seeds)
    every_job = jobs  # the whole plan: a subset may read seed 0's runs from it
    jobs = args.subset.keep(every_job)
    if not jobs:
        raise UserError(f"{spec.name} [{args.preset}]: no job matches {args.subset.flags()} "
                        f"(see `bench ls` for datasets and methods)")
    ledger = Ledger(args.results_dir / args.preset)
    from bench.preflight import check_inputs, data_dir_flags, parse_data_dirs

    args.data_dirs = parse_data_dirs(args.data_dir)
    check_inputs(spec, jobs, args.preset, args.data_dirs, args.subset,
               flags=_flags(_results_flag(args), data_dir_flags(args.data_dirs)))
    ledger.check_usable()  # a file, read-only or full disk: say so before any job starts
    if args.address and args.executor != "ray":
        raise UserError("--address joins a Ray cluster: use it with --executor ray (the default)")
    executor = make_executor(args.executor, args.address, resources)
    try:
        summary = run_jobs(jobs, spec, args.preset, executor, ledger, data_dir=args.data_dirs,
                           context=seed0_context(jobs, every_job))
    finally:
        executor.close()
    states = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items())) or "nothing new"
    print(f"{spec.name} [{args.preset}]: {summary.ran} ran ({states}), {summary.skipped} already "
          f"finished, {summary.stale} stale re-run, {len(summary.blocked)} blocked"
          + (f", {summary.elsewhere} run by another bench run" if summary.elsewhere else ""),
          file=sys.stderr)
    for line in summary.blocked:
        print(f"  blocked: {line}", file=sys.stderr)
    print(f"next: bench report {spec.name} --preset {args.preset}"
          + _flags(_results_flag(args), args.subset.flags(), lead=" "), file=sys.stderr)
    return 1 if summary.states.get("failed") or summary.blocked else 0


def cmd_report(args) -> int:
    """Print each table and write it under ``tables/<preset>/``, but only when every cell comes
    from a record: a partial table (jobs not run yet, a failed job, an unreadable record) goes
    to ``tables/<preset>/partial/`` (ignored by git) so that it never replaces a complete one;
    a ``--datasets/--methods/--seeds`` part is printed only. Exit 1 when a table has no records
    or an unreadable one (its cells say ``corrupt``)."""
    from bench.claims import verdicts
    from bench.collect import collect
    from bench.ledger import Ledger
    from bench.jobs import Subset
    from bench.render import latex, markdown, write_all
    from bench.specs import TABLES, get_table, subset_spec

    ledger = Ledger(args.results_dir / args.preset)
    subset = Subset.parse(args.datasets, args.methods, args.seeds)
    if args.tables:
        specs = [get_table(name) for name in args.tables]
    else:
        specs = [s for s in TABLES.values() if _has_records(collect(s, args.preset, ledger))]
        if not specs:
            raise UserError(f"no records under {ledger.root}: run `bench run TABLE --preset "
                            f"{args.preset}{_flags(_results_flag(args), lead=' ')}` first "
                            f"(tables: {', '.join(TABLES)})")
    hint = _flags(_results_flag(args), subset.flags())
    code = 0
    for spec in specs:
        part = spec if subset.empty else subset_spec(spec, subset)
        result = collect(part, args.preset, ledger, hint_flags=hint)
        if not _has_records(result):
            print(f"{spec.name} [{args.preset}]: no records under {ledger.records_dir}, nothing "
                  f"written; run `{result.run_command}` first", file=sys.stderr)
            code = 1
            continue
        # drawn once for the printed and the written Markdown; a printed-only LaTeX part needs none
        vs = verdicts(result) if subset.empty or not args.latex else []
        print(latex(result) if args.latex else markdown(result, vs))
        corrupt = result.records.corrupt_records
        for path, why in corrupt:
            print(f"error: corrupt record {path} ({why}); its cells show `corrupt`; "
                  f"`{result.run_command}` runs its job again", file=sys.stderr)
        code = 1 if corrupt else code
        if not subset.empty:  # a part of a table is printed; tables/ keep whole tables only
            print(f"({spec.name}: {subset.flags()} printed only; without filters `bench report` "
                  f"writes the whole table to {args.tables_dir / args.preset})", file=sys.stderr)
            continue
        why = _partial_reason(result)
        if why:
            paths = write_all(result, vs, args.tables_dir, partial=True)
            print(f"{spec.name} [{args.preset}]: partial ({why}): wrote "
                  f"{paths[0].parent}/{spec.name}.*, {args.tables_dir / args.preset} left as it "
                  f"was; `{result.run_command}` completes it", file=sys.stderr)
            continue
        paths = write_all(result, vs, args.tables_dir)
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    _warn_outdated(ledger)
    return code


def _has_records(result) -> bool:
    """Whether a table has anything to show: a record of its plan, readable or not."""
    return bool(result.n_records or result.records.corrupt_records)


def _partial_reason(result) -> str:
    """Why a table is not complete (every planned job recorded, every cell filled); '' if it is."""
    from bench.render import missing_lines

    recs = result.records
    parts = []
    if recs.corrupt_records:
        parts.append(f"{len(recs.corrupt_records)} corrupt record(s)")
    pending = recs.pending - len(recs.corrupt_records)
    if pending > 0:
        parts.append(f"{pending} of {recs.planned} jobs without a record")
    missing = len([line for line in missing_lines(result) if "corrupt record" not in line])
    if missing:
        parts.append(f"{missing} row(s) missing seeds")
    return ", ".join(parts)


def _results_flag(args) -> str:
    """``--results-dir`` as the user gave it, for the commands we suggest (none if default)."""
    if args.results_dir == Path("results"):
        return ""
    return f"--results-dir {shlex.quote(str(args.results_dir))}"


def _flags(*parts: str, lead: str = "") -> str:
    """The non-empty flag groups joined by spaces; ``lead`` in front when there are any."""
    text = " ".join(p for p in parts if p)
    return lead + text if text else ""


def cmd_status(args) -> int:
    from bench.ledger import NOT_A_FILE, Ledger
    from bench.jobs import plan
    from bench.specs import TABLES, get_table

    from bench.jobs import Subset

    ledger = Ledger(args.results_dir / args.preset)
    specs = [get_table(args.table)] if args.table else list(TABLES.values())
    subset = Subset.parse(args.datasets, args.methods, args.seeds)
    print(f"{'table':<12} {'jobs':>5} {'done':>5} {'failed':>6} {'diverged':>8} {'pending':>7}")
    for spec in specs:
        counts = {"done": 0, "failed": 0, "diverged": 0, "pending": 0}
        jobs = subset.keep(plan(spec, args.preset))
        for j in jobs:
            r = ledger.read(j.id)
            counts[r["state"] if r and r["state"] in counts else "pending"] += 1
        print(f"{spec.name:<12} {len(jobs):>5} {counts['done']:>5} {counts['failed']:>6} "
              f"{counts['diverged']:>8} {counts['pending']:>7}")
        if args.timings:
            from bench.timings import report

            recs = [r for j in jobs if (r := ledger.read(j.id)) is not None]
            print(report(recs) + "\n")
    _print_running(ledger, specs, subset, args.preset, everything=not args.table and subset.empty)
    for path, why in ledger.corrupt:
        aside = ", renaming the folder aside (kept)" if why == NOT_A_FILE else ""
        rerun = (f"bench run {args.table or 'TABLE'} --preset {args.preset}"
                 + _flags(_results_flag(args), lead=" "))
        print(f"corrupt record (counted as pending): {path} ({why}); `{rerun}` runs its job "
              f"again{aside}")
    _warn_outdated(ledger, file=sys.stdout)
    return 0


def _print_running(ledger, specs, subset, preset: str, everything: bool) -> None:
    """The jobs running now (counted as pending above), as their workers' heartbeats tell, with
    their phase; heartbeats left by a worker that is gone are told apart."""
    from bench.heartbeats import describe, running
    from bench.jobs import plan

    beats = running(ledger.root)
    if not everything:  # only the asked table's (or subset's) jobs
        ids = {j.id for spec in specs for j in subset.keep(plan(spec, preset))}
        beats = [info for info in beats if info["job_id"] in ids]
    if not beats:
        return
    live = [i for i in beats if not i["stale"]]
    print(f"running now: {len(live)} job(s)"
          + (f"; {len(beats) - len(live)} stale heartbeat(s)" if len(live) < len(beats) else ""))
    for info in live + [i for i in beats if i["stale"]]:
        print(f"  {describe(info)}")


def _warn_outdated(ledger, file=None) -> None:
    """Records of another schema version: left out of every table, re-run by `bench run`."""
    from bench.ledger import SCHEMA_VERSION

    versions = sorted({v for _, v in ledger.outdated})
    if versions:
        print(f"warning: {len(ledger.outdated)} record(s) under {ledger.records_dir} have schema "
              f"version {', '.join(map(str, versions))}, not {SCHEMA_VERSION}: they are left out of "
              f"tables and counted as pending; `bench run` re-runs their jobs",
              file=file or sys.stderr)
    other = sorted(set(ledger.other_settings))
    if other:
        print(f"warning: {len(other)} record(s) were computed under other settings than the "
              f"preset's (an edited preset): they are left out of tables; `bench run` re-runs them",
              file=file or sys.stderr)


def cmd_check(args) -> int:
    from bench.check import baseline_path, compare, snapshot, write_baseline
    import json

    from bench.collect import collect
    from bench.ledger import Ledger
    from bench.specs import TABLES, get_table

    ledger = Ledger(args.results_dir / args.preset)
    if args.tables:
        specs = [get_table(t) for t in args.tables]
    elif args.update:
        specs = [s for s in TABLES.values() if collect(s, args.preset, ledger).n_records]
    else:
        specs = [s for s in TABLES.values()
                 if baseline_path(args.baselines_dir, args.preset, s.name).is_file()]
    if not specs:
        raise UserError(f"no baselines under {args.baselines_dir / args.preset}: run the tables "
                        f"(`bench run TABLE --preset {args.preset}`) then `bench check --update`")
    results = {spec.name: collect(spec, args.preset, ledger) for spec in specs}
    if not args.update and not any(r.n_records for r in results.values()):
        raise UserError(f"no records under {ledger.root} for {', '.join(results)}: run the tables "
                        f"first (`bench run TABLE --preset {args.preset}` for each), then check")
    failed = 0
    for spec in specs:
        result = results[spec.name]
        path = baseline_path(args.baselines_dir, args.preset, spec.name)
        if not args.update and not result.n_records:
            failed += 1
            print(f"{spec.name}: FAILED, no records under {ledger.root}; run `bench run {spec.name} "
                  f"--preset {args.preset}` first")
            continue
        snap = snapshot(result)
        if args.update:
            if not snap["values"]:
                raise UserError(f"{spec.name}: no numbers to pin; run `bench run {spec.name} "
                                f"--preset {args.preset}` first")
            write_baseline(path, snap)
            print(f"{spec.name}: wrote {len(snap['values'])} values to {path}")
            continue
        if not path.is_file():
            raise UserError(f"{spec.name}: no baseline at {path}; create it with "
                            f"`bench check {spec.name} --preset {args.preset} --update`")
        try:
            baseline = json.loads(path.read_text())
        except ValueError as e:
            raise UserError(f"{path} is not valid JSON ({e}); restore it from git") from e
        problems = compare(snap, baseline)
        if problems:
            failed += 1
            print(f"{spec.name}: FAILED, {len(problems)} of {len(baseline['values'])} values differ")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{spec.name}: ok ({len(baseline['values'])} values within tolerance)")
    return 1 if failed else 0


def cmd_ls(args) -> int:
    from levi_core.data import dataset_names
    from levi_core.methods import get_method, method_names

    from bench.specs import TABLES

    from levi_core.methods.catalog import label

    print("tables:")
    for t in TABLES.values():
        ext = "".join(f" [+ extension {n!r}: {', '.join(r)}]" for n, r in
                      (t.grid.extensions if t.grid is not None else ()))
        print(f"  {t.name:<16} {t.title}{ext}")
    print("methods:")
    for name in method_names():
        m = get_method(name)
        grid = ", ".join(f"{k} in {list(v)}" for k, v in m.grid.items()) or "no grid"
        deps = f"; needs {', '.join(m.depends_on)}" if m.depends_on else ""
        shown = f" \"{label(name)}\"" if m.label else ""
        version = f" [version {m.version}]" if m.version else ""
        print(f"  {name:<16} {m.description}{shown}{version} ({grid}{deps})")
    print("datasets:")
    for name in dataset_names():
        print(f"  {name}")
    print("presets:")
    for p in PRESETS.values():
        print(f"  {p.name:<16} {p.description}")
    return 0


def cmd_data(args) -> int:
    try:
        from levi_core.data.describe import describe
    except ImportError as e:
        raise UserError(f"`bench data describe` is not available in this build ({e})") from e
    print(describe(args.dataset, args.data_dir))
    return 0


def cmd_speed(args) -> int:
    try:
        from bench.benchmarks import speed
    except ImportError as e:
        raise UserError(f"`bench speed` is not available in this build ({e})") from e
    forwarded = args.speed_args[1:] if args.speed_args[:1] == ["--"] else args.speed_args
    return int(speed.main(forwarded) or 0)


COMMANDS = {"run": cmd_run, "report": cmd_report, "status": cmd_status, "check": cmd_check, "ls": cmd_ls,
            "data": cmd_data, "speed": cmd_speed}


def cmd_plan(args) -> int:
    from bench import plan

    return plan.command(args)


COMMANDS["plan"] = cmd_plan


if __name__ == "__main__":
    sys.exit(main())
