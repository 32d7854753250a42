"""Before a table's jobs start: where each dataset's files are, and what would make every job fail.

``bench run`` stops here, before any job (missing data, missing or malformed weights), instead
of failing job by job, and names the ``--datasets`` filter that runs what can run.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from levi_core.errors import UserError


# The presets that need no download; the message never suggests the preset that just failed.
OFFLINE_PRESETS = ("cpu", "smoke")


def data_dir_flags(data_dirs: dict[str, str]) -> str:
    """The ``--data-dir`` flags that give ``data_dirs`` back (for a command we suggest)."""
    return " ".join(f"--data-dir {shlex.quote(d if name == '*' else f'{name}={d}')}"
                    for name, d in data_dirs.items())


def parse_data_dirs(values: list[str]) -> dict[str, str]:
    """``["DIR"]`` -> {"*": DIR}; ``["movielens=DIR", ...]`` -> {"movielens": DIR, ...}."""
    from levi_core.data import dataset_names

    out: dict[str, str] = {}
    for v in values:
        name, eq, folder = v.partition("=")
        if eq and name in dataset_names():
            out[name] = folder
        elif eq and not Path(v).exists():
            raise UserError(f"--data-dir {v!r}: {name!r} is not a dataset "
                            f"({', '.join(dataset_names())})")
        else:
            if "*" in out:
                raise UserError("--data-dir DIR given twice; use DATASET=DIR for several datasets")
            out["*"] = v
    return out


def check_inputs(spec, jobs, preset: str, data_dirs, subset, flags: str = "") -> None:
    """Fail before any job when data or weights are missing (never once jobs have run).

    ``flags``: the user's other flags (``--results-dir``, ``--data-dir``), repeated in the
    command the message suggests so that it runs where the user's run would have."""
    from levi_core.api import preflight

    from bench.job_settings import data_dir_for, job_settings

    settings = job_settings(spec, preset)
    problems, ready = [], []
    for dataset in sorted({j.dataset for j in jobs}):
        found = preflight([dataset], settings, data_dir_for(dataset, data_dirs))
        problems += found
        if not found:
            ready.append(dataset.partition(":")[0])
    if problems:
        lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))  # a weights problem once
        rest = ""
        if ready:
            more = " ".join(f for f in (subset.flags(without_datasets=True), flags) if f)
            rest = (f" To run what can run now: `bench run {spec.name} --preset {preset} "
                    f"--datasets {','.join(sorted(set(ready)))}{(' ' + more) if more else ''}`.")
        others = " / ".join(f"`--preset {p}`" for p in OFFLINE_PRESETS if p != preset)
        runs = "runs" if len([p for p in OFFLINE_PRESETS if p != preset]) == 1 else "run"
        offline = f" (or try {others}, which {runs} offline)" if others else ""
        raise UserError(f"{spec.name} [{preset}] cannot start:\n{lines}\n"
                        f"Nothing was run. Provide the files above{offline}.{rest}")
