"""``describe(dataset_id, data_dir=None) -> str``: what ``bench data describe`` prints.

Per split role: the number of examples, the date range of its examples (when the loader records
one in ``info["date_ranges"]``: Amazon, MovieLens), the label distribution (counts per value for ratings and
classes; for more than 10 distinct labels: mean, std, min, max and the number of classes), and the
split's own fingerprint; then the dataset's fingerprint and its shift in words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from levi_core.data.base import Dataset, fingerprint_splits, load_dataset


def _label_summary(labels: np.ndarray) -> str:
    labels = np.asarray(labels)
    if len(labels) == 0:
        return "empty"
    values, counts = np.unique(labels, return_counts=True)
    if len(values) <= 10:
        return " ".join(f"{v:g}:{c}" for v, c in zip(values.tolist(), counts.tolist()))
    return (
        f"{len(values)} distinct; mean {labels.mean():.3f} std {labels.std():.3f} "
        f"min {labels.min():g} max {labels.max():g}"
    )


def describe_dataset(ds: Dataset) -> str:
    lines = [
        f"dataset {ds.name}: task {ds.task}, metric {ds.metric}"
        + (f", {ds.num_classes} classes" if ds.num_classes else ""),
        f"fingerprint {ds.fingerprint}",
        "",
    ]
    roles = [r for r in ("train", "id_val", "id_test") if r in ds.splits]
    roles += [r for r in ds.splits if r not in roles and not r.startswith("ood/")] + ds.ood_roles
    width = max(len(r) for r in roles)
    dates = ds.info.get("date_ranges") or {}
    dwidth = max((len(f"{a}..{b}") for a, b in dates.values()), default=0)
    dhead = f"{'dates':<{dwidth}}  " if dates else ""
    lines.append(f"{'role':<{width}}  {'examples':>8}  {'fingerprint':<16}  {dhead}labels")
    for role in roles:
        s = ds.splits[role]
        fp = fingerprint_splits({role: s})
        span = ""
        if dates:
            span = f"{'..'.join(dates[role]) if role in dates else '-':<{dwidth}}  "
        lines.append(f"{role:<{width}}  {len(s):>8}  {fp:<16}  {span}{_label_summary(s.labels)}")
    n_id = sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test") if r in ds.splits)
    lines.append(f"ID total {n_id}; {len(ds.ood_roles)} OOD sets")
    if ds.vocab_sizes:
        lines.append("vocab sizes: " + ", ".join(f"{k}={v}" for k, v in ds.vocab_sizes.items()))
    lines += ["", "shift: " + ds.shift]
    return "\n".join(lines)


def data_dir_for(dataset_id: str, data_dir: str | None) -> str | None:
    """``--data-dir`` as ``bench run`` takes it: ``DIR`` or ``NAME=DIR`` (the folder of dataset
    NAME), so the same flag works for ``bench data describe``. A ``NAME=DIR`` for another dataset
    gives no folder; a path that exists is taken as it is, even with an ``=`` in it."""
    from levi_core.data.base import dataset_names, parse_dataset_id

    if not data_dir or "=" not in data_dir or Path(data_dir).exists():
        return data_dir
    name, _, folder = data_dir.partition("=")
    if name.strip() not in dataset_names():
        return data_dir
    return folder if name.strip() == parse_dataset_id(dataset_id)[0] else None


def describe(dataset_id: str, data_dir: str | None = None) -> str:
    """Load ``dataset_id`` (e.g. ``movielens`` or ``movielens:val_frac=0.2``) and describe it.
    ``data_dir`` is ``DIR`` or ``NAME=DIR`` (see `data_dir_for`)."""
    return describe_dataset(load_dataset(dataset_id, data_dir_for(dataset_id, data_dir)))
