"""The ledger: one JSON record per job, written atomically, under a results root.

Layout under ``<results>/<preset>/``:
  ``records/<job_id>.json``  the job's record (state done / failed / diverged, metrics, provenance)
  ``artifacts/<job_id>/``     what later jobs may need (predictions, checkpoints)

A record is written with a temporary file and ``os.replace``, so a reader sees either no
record or a whole one: a run killed at any point leaves finished jobs recorded and the rest
pending. A record that cannot be parsed (a truncated or edited file) is reported and its job
counts as pending, so it is re-run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DONE, FAILED, DIVERGED = "done", "failed", "diverged"
FINISHED = (DONE, DIVERGED)  # terminal states that a rerun skips; failed jobs are retried
RECORD_FIELDS = ("job_id", "job", "state", "metrics")


@dataclass
class Ledger:
    root: Path  # <results>/<preset>
    corrupt: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def artifacts_dir(self, job_id: str) -> Path:
        return self.root / "artifacts" / job_id

    def record_path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id}.json"

    def read(self, job_id: str) -> dict[str, Any] | None:
        """The job's record, or None when missing or unreadable (noted in ``self.corrupt``)."""
        path = self.record_path(job_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
            missing = [f for f in RECORD_FIELDS if f not in record]
            if missing:
                raise ValueError(f"missing fields {missing}")
            if record["job_id"] != job_id:
                raise ValueError(f"it holds job {record['job_id']!r}")
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            self.corrupt.append((path, str(e)))
            return None
        return record

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every readable record under this root, job_id -> record."""
        out: dict[str, dict[str, Any]] = {}
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.glob("[!.]*.json")):
            record = self.read(path.stem)
            if record is not None:
                out[path.stem] = record
        return out

    def write(self, record: dict[str, Any]) -> Path:
        """Write a record atomically (temp file in the same folder, fsync, rename)."""
        self.records_dir.mkdir(parents=True, exist_ok=True)
        path = self.record_path(record["job_id"])
        fd, tmp = tempfile.mkstemp(dir=self.records_dir, prefix=".tmp-", suffix=".partial")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remove_partial_writes(self) -> int:
        """Delete temp files left by a writer killed before its rename; return how many."""
        if not self.records_dir.is_dir():
            return 0
        leftovers = list(self.records_dir.glob(".tmp-*.partial"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def fresh_workdir(self, job_id: str) -> Path:
        """An empty artifact folder for a job about to run (drops a killed run's leftovers)."""
        path = self.artifacts_dir(job_id)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path
