"""How often the project's verdict code decides a difference that is not there.

A claim's test "A beats B on a column" counts only beyond ``t(0.975, df) x se``
(``bench.uncertainty``). This check simulates pairs of methods whose *true* difference is zero,
with noise shaped like the ``cpu`` MovieLens tables, runs them through the same functions the
reports use (``union_bootstrap`` for the examples, ``make_gap`` for the seed spread and the
degrees of freedom, ``verdicts.Test`` for the decision) and prints the share of decided tests
with its 95% Monte Carlo interval. It must be at most 5%. It then repeats with a true
difference of two standard errors of the difference (``--power``) and prints how often that is
decided in the right direction.

The simulated world, per replication (all of it drawn anew, so the estimate covers the choice of
evaluation examples as well as the seeds):

* an evaluation population: ``--id`` examples for an ID column, or ``--ood-sets`` OOD sets of
  ``--ood-size`` examples each drawn from a pool of ``--ood-pool`` distinct ones (the MovieLens
  genres overlap: a rating belongs to every genre of its movie), the column being the mean of
  the sets' RMSE, as in the tables;
* each example has a difficulty shared by every model (its error when predicted well);
* each (method, seed) scales the shared errors by ``1 + g`` (``g`` normal with sd
  ``--seed-sd``: the seed-to-seed spread of a cell) and adds its own per-example noise (sd
  ``--model-sd``: what two models disagree on).

Run: ``python -m bench.benchmarks.calibration [--sims 1000] [--column ood|id]``.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from bench.uncertainty import DF_RULE, N_BOOT, critical_for, make_gap, paired_boot_se, union_bootstrap
from bench.verdicts import HOLDS, FAILS, OPEN, Test

RULES = ("seeds", "parts", "welch")


def simulate_column(rng, args, delta: float):
    """(per-seed RMSE of A and B [2, seeds], bootstrap replicates [2 * seeds, n_boot]) of one
    replication; ``delta`` is added to A's scale of the shared errors (0: no true difference)."""
    if args.column == "id":
        pool, sets = args.id, [np.arange(args.id)]
    else:
        pool = args.ood_pool
        sets = [np.sort(rng.choice(pool, size=args.ood_size, replace=False)) for _ in range(args.ood_sets)]
    difficulty = rng.normal(0.0, args.example_sd, size=pool)
    records = []  # per-example squared errors over the pool, A's seeds then B's
    for shift in (delta, 0.0):
        for _ in range(args.seeds):
            scale = 1.0 + shift + rng.normal(0.0, args.seed_sd)
            err = scale * difficulty + rng.normal(0.0, args.model_sd, size=pool)
            records.append(err ** 2)
    records = np.stack(records)
    roles = {f"ood/{i}": (idx, records[:, idx]) for i, idx in enumerate(sets)}
    per_seed = np.mean([np.sqrt(v.mean(axis=1)) for _, v in roles.values()], axis=0)
    stats = union_bootstrap("rmse", roles, args.boot, f"calibration|{rng.integers(1 << 30)}")
    return per_seed, stats


def decide(per_seed: np.ndarray, stats: np.ndarray, seeds: int) -> dict[str, str]:
    """The state of "A beats B" on one simulated column: under the verdict code itself
    (``DF_RULE``, through ``verdicts.Test``) and under each df rule."""
    diffs = list(per_seed[:seeds] - per_seed[seeds:])
    gap = make_gap("a", "b", "sim", "rmse", diffs, paired_boot_se(stats, seeds), "simulated examples")
    out = {"verdict code": Test("a", "b", "sim", gap).state}
    for rule in RULES:
        bound = critical_for(gap.se_seed, gap.n_seeds, gap.se_boot, rule) * gap.se
        out[rule] = HOLDS if gap.advantage > bound else FAILS if gap.advantage < -bound else OPEN
    return out


def rate(hits: int, n: int) -> tuple[float, float, float]:
    """A proportion with its 95% Wilson interval."""
    p, z = hits / n, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    null_states, null_diffs = [], []
    for _ in range(args.sims):
        per_seed, stats = simulate_column(rng, args, 0.0)
        null_states.append(decide(per_seed, stats, args.seeds))
        null_diffs.append(float(np.mean(per_seed[:args.seeds] - per_seed[args.seeds:])))
    out = {"null": {k: rate(sum(s[k] in (HOLDS, FAILS) for s in null_states), args.sims)
                    for k in null_states[0]},
           "sd_of_difference": float(np.std(null_diffs, ddof=1))}
    if args.power:
        # a true gap of two standard errors of the difference (its sd under the null), A worse
        sd = out["sd_of_difference"]
        # A's RMSE is about sqrt(((1 + delta) * example_sd)**2 + model_sd**2): solve for delta
        rmse0 = math.hypot(args.example_sd, args.model_sd)
        delta = math.sqrt((rmse0 + 2.0 * sd) ** 2 - args.model_sd ** 2) / args.example_sd - 1.0
        states = [decide(*simulate_column(rng, args, delta), args.seeds) for _ in range(args.power_sims)]
        # A is worse: "A beats B" fails
        out["power"] = {k: rate(sum(s[k] == FAILS for s in states), args.power_sims) for k in states[0]}
        out["true_gap"] = 2.0 * sd
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("--sims", type=int, default=1000, help="replications under the null (default 1000)")
    p.add_argument("--power-sims", type=int, default=500, help="replications with a true gap (default 500)")
    p.add_argument("--no-power", dest="power", action="store_false", help="skip the power run")
    p.add_argument("--column", choices=["ood", "id"], default="ood", help="the OOD mean or an ID column")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--id", type=int, default=9114, help="ID evaluation examples (cpu: every id_test rating)")
    p.add_argument("--ood-sets", type=int, default=12)
    p.add_argument("--ood-size", type=int, default=1224, help="examples per OOD set (cpu: 14,686 in 12 sets)")
    p.add_argument("--ood-pool", type=int, default=8847, help="distinct OOD examples the sets draw from")
    p.add_argument("--example-sd", type=float, default=1.05, help="RMSE of a typical model")
    p.add_argument("--seed-sd", type=float, default=0.012, help="relative seed-to-seed spread of a cell")
    p.add_argument("--model-sd", type=float, default=0.35, help="per-example disagreement of two models")
    p.add_argument("--boot", type=int, default=N_BOOT, help=f"bootstrap resamples (the reports': {N_BOOT})")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = run(args)
    print(f"column: {args.column}, {args.seeds} seeds, {args.sims} replications with no true "
          f"difference; the verdict code uses df rule {DF_RULE!r}")
    for k, (p0, lo, hi) in out["null"].items():
        print(f"false decisions, {k:>12}: {100 * p0:4.1f}% (95% Monte Carlo interval "
              f"{100 * lo:.1f}-{100 * hi:.1f}%); target at most 5%")
    if "power" in out:
        print(f"true gap of 2 standard errors ({out['true_gap']:.4f} RMSE), decided correctly in "
              f"{args.power_sims} replications:")
        for k, (pw, plo, phi) in out["power"].items():
            print(f"  {k:>12}: {100 * pw:4.1f}% ({100 * plo:.1f}-{100 * phi:.1f}%)")
    return 0 if out["null"]["verdict code"][1] <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
