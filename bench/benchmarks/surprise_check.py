"""An independent check of the reference rows: scikit-surprise's models on the same split.

The bias references and ``ref/mf`` are our code; this script scores Surprise's own
``BaselineOnly`` (user + item biases fitted by ALS) and ``SVD`` (biased matrix factorisation
fitted by SGD, its default sizes) on exactly the rows of a dataset id, so the two can be compared
figure by figure. Surprise is not a dependency of levi-bench (it needs numpy < 2): run it from a
separate environment on a CSV this script writes.

    python -m bench.benchmarks.surprise_check --export /tmp/ml_split.csv          # levi-bench venv
    python -m venv /tmp/sv && /tmp/sv/bin/pip install "numpy<2" scikit-surprise pandas
    /tmp/sv/bin/python bench/benchmarks/surprise_check.py --score /tmp/ml_split.csv

``--dataset`` defaults to the cpu preset's MovieLens id, and the training rows to the draw the
cpu preset gives seed ``--seed`` (every method and reference of that seed learns from it), so
the figures compare with the seed's reference rows in ``tables/cpu/table1.csv``;
``--train-examples 0`` exports the whole training split. Every OOD movie is unseen in training:
Surprise, like our references, then predicts the global mean plus the user's bias.
"""

from __future__ import annotations

import argparse
import csv


def export(dataset_id: str, path: str, seed: int, train_examples: int) -> int:
    from levi_core.data.base import load_dataset, with_train_draw

    ds = load_dataset(dataset_id)
    if train_examples:
        ds = with_train_draw(ds, seed, train_examples)
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for role, split in ds.splits.items():
            for eid, y in zip(split.example_ids, split.labels):
                user, movie = str(eid)[1:].split("_m")  # ids are u<user>_m<movie>
                w.writerow((role, user, movie, float(y)))
                n += 1
    draw = (f", training rows: seed {seed}'s draw of {train_examples}" if train_examples
            else ", training rows: the whole split")
    print(f"wrote {n} rows of {dataset_id} to {path}{draw}")
    return 0


def score(path: str) -> int:
    import numpy as np
    import pandas as pd
    from surprise import SVD, BaselineOnly, Dataset, Reader

    df = pd.read_csv(path, names=["role", "u", "m", "y"], dtype={"u": str, "m": str})
    train = df[df.role == "train"]
    data = Dataset.load_from_df(train[["u", "m", "y"]], Reader(rating_scale=(1, 5)))
    full = data.build_full_trainset()

    def rmse(algo) -> str:
        out = {}
        for role, g in df.groupby("role"):
            p = np.array([algo.predict(u, m).est for u, m in zip(g.u, g.m)])
            out[role] = float(np.sqrt(np.mean((p - g.y.values) ** 2)))
        ood = [v for k, v in out.items() if k.startswith("ood/")]
        return f"id_val {out['id_val']:.4f}  id_test {out['id_test']:.4f}  ood mean {np.mean(ood):.4f}"

    print("Surprise BaselineOnly (user + item biases, ALS):", rmse(BaselineOnly(verbose=False).fit(full)))
    for factors in (20, 50, 100):
        algo = SVD(n_factors=factors, n_epochs=20, random_state=0).fit(full)
        print(f"Surprise SVD (biased MF, SGD) factors={factors:<3} epochs=20:", rmse(algo))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="a dataset id (default: the cpu preset's MovieLens)")
    ap.add_argument("--seed", type=int, default=0, help="whose training draw to export")
    ap.add_argument("--train-examples", type=int, default=None,
                    help="rows in the draw (default: the cpu preset's; 0: the whole split)")
    ap.add_argument("--export", metavar="CSV", help="write the dataset's rows (levi-bench venv)")
    ap.add_argument("--score", metavar="CSV", help="score Surprise's models on them (Surprise venv)")
    args = ap.parse_args(argv)
    if args.export:
        from bench.job_settings import job_settings
        from bench.presets import get_preset
        from bench.specs import TABLE1

        dataset = args.dataset or get_preset("cpu").dataset_id("movielens")
        n = args.train_examples
        if n is None:
            n = job_settings(TABLE1, "cpu").text.train_examples or 0
        return export(dataset, args.export, args.seed, n)
    if args.score:
        return score(args.score)
    ap.error("give --export CSV or --score CSV")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
