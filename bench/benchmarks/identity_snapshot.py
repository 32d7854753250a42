"""Print every job's identity under every table and preset: a refactor must leave it unchanged.

Each line is ``table preset job_id method dataset settings_json``, where settings_json is what
a record must hold to be reused (``bench.job_settings.expected_settings``). Two snapshots taken
before and after a change that should move nothing (``diff``) prove that no finished record
went stale.

    python -m bench.benchmarks.identity_snapshot > before.txt
"""

from __future__ import annotations

import sys

from bench.jobs import canonical_json, plan
from bench.presets import PRESETS
from bench.job_settings import expected_settings, job_settings
from bench.specs import all_tables


def main() -> int:
    for spec in all_tables():
        for preset in sorted(PRESETS):
            try:
                jobs = plan(spec, preset)
                settings = job_settings(spec, preset)
            except Exception as exc:  # a table a preset drops says so on its own line
                print(f"{spec.name} {preset} ERROR {type(exc).__name__}: {exc}")
                continue
            for job in sorted(jobs, key=lambda j: j.id):
                expected = canonical_json(expected_settings(settings, job.dataset))
                print(f"{spec.name} {preset} {job.id} {job.method} {job.dataset} {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
