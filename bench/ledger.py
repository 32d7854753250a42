"""The ledger: one JSON record per job, written atomically, under a results root.

Layout under ``<results>/<preset>/``:
  ``records/<job_id>.json``  the job's record (state done / failed / diverged, metrics, provenance)
  ``artifacts/<job_id>/``     what later jobs may need (predictions, checkpoints)
  ``claims/<job_id>.json``    the job's lease: which ``bench run`` is running it right now
  ``claims/drivers/<id>.lock`` one per running ``bench run``, locked for as long as it lives

(``claims/`` is the folder's legacy name, from when a lease was called a claim. It stays: a
results folder that an older harness is still running, or that it left behind, is resumed
as it is, and two drivers of either version on one folder honour each other's leases.)

A record is written with a temporary file and ``os.replace``, so a reader sees either no
record or a whole one: a run killed at any point leaves finished jobs recorded and the rest
pending. A record that cannot be parsed (a truncated or edited file, or a folder in its place)
is reported and its job counts as pending, so it is re-run (a folder is renamed aside first,
never deleted). So is a record written under another ``SCHEMA_VERSION``: it is never mixed with
current records.

Two ``bench run`` on one results folder share the work: a driver takes a job's *lease*
before it starts it. A lease is a file created with ``os.link`` (atomic, fails if the file
exists) that names the driver; a driver holds an exclusive ``flock`` on its own driver lock
file for its whole life, so the kernel (or the NFS server) drops that lock the moment the
driver dies, however it dies. A lease whose driver's lock is free is dead and is taken over,
under a short global lock so that two drivers never both take over one lease.

(``bench.heartbeats`` is another thing: what a worker reports about its running job, for
``bench status``; it never decides who runs a job.)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levi_core.errors import UserError

DONE, FAILED, DIVERGED = "done", "failed", "diverged"
FINISHED = (DONE, DIVERGED)  # terminal states that a rerun skips; failed jobs are retried
RECORD_FIELDS = ("job_id", "job", "state", "metrics")
# The layout and meaning of a record. Bump it when a field's meaning changes: records of any
# other version (records without the field are version 1) are reported and re-run, never mixed.
SCHEMA_VERSION = 3  # 3: records hold the resolved settings of their modality


NOT_A_FILE = "a folder where a record file belongs"

# On-disk names of the job leases. They keep the names of the time a lease was called a claim,
# so that a results folder written (or still being written) by an older harness resumes as it
# is: renaming them would let two drivers of different versions run one job twice.
LEASES_DIR = "claims"
LEASE_TMP_PREFIX = ".tmp-claim-"


class ResultsDirError(UserError):
    """The results folder cannot be created, read or written (not a folder, read-only, full)."""


def results_dir_error(path: Path, e: OSError) -> ResultsDirError:
    """One message naming the problem with the results folder and the fix."""
    full = (errno.ENOSPC, errno.EDQUOT)
    denied = (errno.EROFS, errno.EACCES, errno.EPERM)
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENOTDIR: "a path component is a file, not a folder",
           errno.EEXIST: "a file is in the way of a folder"}.get(e.errno, e.strerror or str(e))
    if e.errno in full:
        fix = "free space on that disk, or pass --results-dir on another disk"
    elif e.errno in denied:
        fix = "make it writable, or pass --results-dir with a writable folder"
    else:
        fix = "pass --results-dir with a folder (or a path where one can be created)"
    return ResultsDirError(
        f"cannot use the results folder {path}: {why} ({e.filename or path}). Nothing was "
        f"half-written: finished records are kept. To fix: {fix}, then run the same command "
        f"again.")


def record_schema(record: dict[str, Any]) -> int:
    """The schema version of a record (records written before versioning are version 1)."""
    v = record.get("schema", 1)
    return v if isinstance(v, int) else -1


@dataclass
class Ledger:
    root: Path  # <results>/<preset>
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    outdated: list[tuple[Path, int]] = field(default_factory=list)  # (record, its schema version)
    other_settings: list[str] = field(default_factory=list)  # job ids whose record has other settings
    moved_aside: list[tuple[Path, Path]] = field(default_factory=list)  # (record path, new name)
    _driver_fd: int | None = field(default=None, repr=False)  # holds this driver's lock
    _token: str | None = field(default=None, repr=False)
    _leased: set[str] = field(default_factory=set, repr=False)  # the job leases we hold

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def leases_dir(self) -> Path:
        """Where the job leases live (``LEASES_DIR``, a legacy name kept on disk)."""
        return self.root / LEASES_DIR

    @property
    def drivers_dir(self) -> Path:
        """One lock file per live ``bench run`` on this results folder."""
        return self.leases_dir / "drivers"

    def artifacts_dir(self, job_id: str) -> Path:
        return self.root / "artifacts" / job_id

    def resume_dir(self, job_id: str) -> Path:
        """Where a job keeps what a killed attempt of it should not redo (a training run's
        state, finished evaluation chunks): unlike its artifact folder, it outlives the attempt,
        and it goes once the job's record is written (``drop_resume_state``)."""
        return self.root / "cache" / "resume" / job_id

    def drop_resume_state(self, job_id: str) -> None:
        shutil.rmtree(self.resume_dir(job_id), ignore_errors=True)

    def record_path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id}.json"

    def lease_path(self, job_id: str) -> Path:
        return self.leases_dir / f"{job_id}.json"

    # ------------------------------------------------------------------ records
    def read(self, job_id: str) -> dict[str, Any] | None:
        """The job's record, or None when missing, unreadable (noted in ``self.corrupt``) or of
        another schema version (noted in ``self.outdated``): in each case the job is pending."""
        path = self.record_path(job_id)
        try:
            if not path.is_file() and path.exists():  # a folder (or a pipe) where a record belongs
                self._note_corrupt(path, NOT_A_FILE)
                return None
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as e:
            self._note_corrupt(path, f"not UTF-8 text: {e.reason}")
            return None
        except OSError as e:
            raise results_dir_error(self.root, e) from e
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            missing = [f for f in RECORD_FIELDS if f not in record]
            if missing:
                raise ValueError(f"missing fields {missing}")
            if record["job_id"] != job_id:
                raise ValueError(f"it holds job {record['job_id']!r}")
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            self._note_corrupt(path, str(e))
            return None
        version = record_schema(record)
        if version != SCHEMA_VERSION:
            if (path, version) not in self.outdated:
                self.outdated.append((path, version))
            return None
        return record

    def _note_corrupt(self, path: Path, why: str) -> None:
        if (path, why) not in self.corrupt:
            self.corrupt.append((path, why))

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every readable record of this schema version under this root, job_id -> record."""
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
        record = {**record, "schema": record.get("schema", SCHEMA_VERSION)}
        path = self.record_path(record["job_id"])
        tmp = None
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            if path.exists() and not path.is_file():
                self._move_aside(path)
            fd, tmp = tempfile.mkstemp(dir=self.records_dir, prefix=".tmp-", suffix=".partial")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            raise results_dir_error(self.root, e) from e
        except BaseException:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def _move_aside(self, path: Path) -> Path:
        """Rename what is in a record's place (a folder) so that the record can be written; it
        is kept, never deleted: it may hold something its owner wants."""
        for k in range(1000):
            aside = path.with_name(f"{path.name}.not-a-record{'' if k == 0 else f'-{k}'}")
            if not aside.exists():
                os.replace(path, aside)
                self.moved_aside.append((path, aside))
                return aside
        raise FileExistsError(errno.EEXIST, "no free name beside it", str(path))

    def remove_partial_writes(self) -> int:
        """Delete temp files left by a writer killed before its rename; return how many.

        A temp file younger than a minute may be another live driver's write in progress, so
        it is left alone (a write is far shorter than that: an older one is a leftover)."""
        if not self.records_dir.is_dir():
            return 0
        n = 0
        now = time.time()
        leftovers = list(self.records_dir.glob(".tmp-*.partial"))
        if self.leases_dir.is_dir():
            leftovers += list(self.leases_dir.glob(f"{LEASE_TMP_PREFIX}*"))
        for path in leftovers:
            try:
                if now - path.stat().st_mtime > 60 or not self._others_alive():
                    path.unlink(missing_ok=True)
                    n += 1
            except FileNotFoundError:
                pass
        return n

    def fresh_workdir(self, job_id: str) -> Path:
        """An empty artifact folder for a job about to run (drops a killed run's leftovers)."""
        path = self.artifacts_dir(job_id)
        try:
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True)
        except OSError as e:
            raise results_dir_error(self.root, e) from e
        return path

    # ------------------------------------------------------------------ the results folder
    def check_usable(self) -> None:
        """Fail now, with one clear message, when the results folder cannot hold records."""
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            self.leases_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.records_dir, prefix=".tmp-probe-", suffix=".partial")
            try:
                os.write(fd, b"{}\n" * 64)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as e:
            raise results_dir_error(self.root, e) from e

    # ------------------------------------------------------------------ job leases
    @property
    def session(self) -> str | None:
        """This driver's token (the name its leases carry) while a session is open."""
        return self._token

    def open_session(self) -> str:
        """Start holding leases: create and lock this driver's lock file."""
        if self._token is not None:
            return self._token
        drivers = self.drivers_dir
        try:
            drivers.mkdir(parents=True, exist_ok=True)
            token = f"{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            path = drivers / f"{token}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps(self._holder_info(token)).encode())
        except OSError as e:
            raise results_dir_error(self.root, e) from e
        self._driver_fd, self._token = fd, token
        return token

    def close_session(self) -> None:
        """Release every lease this driver still holds, then its driver lock."""
        for job_id in list(self._leased):
            self.release_lease(job_id)
        if self._driver_fd is not None:
            (self.drivers_dir / f"{self._token}.lock").unlink(missing_ok=True)
            os.close(self._driver_fd)
        self._driver_fd = self._token = None

    def _holder_info(self, token: str) -> dict[str, Any]:
        return {"driver": token, "host": platform.node(), "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _driver_alive(self, token: str) -> bool:
        """Whether the driver behind a lease still lives (its driver lock file is locked)."""
        if token == self._token:
            return True
        path = self.drivers_dir / f"{token}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the lock if we got it
        path.unlink(missing_ok=True)  # its driver is gone
        return False

    def _others_alive(self) -> bool:
        drivers = self.drivers_dir
        if not drivers.is_dir():
            return False
        return any(self._driver_alive(p.stem) for p in drivers.glob("*.lock")
                   if p.stem != self._token)

    def lease_holder(self, job_id: str) -> dict[str, Any] | None:
        """Who holds the job's lease, if a live driver does (None: free, dead holder, or us)."""
        info = self._read_lease(job_id)
        if info is None or info.get("driver") == self._token:
            return None
        return info if self._driver_alive(str(info.get("driver"))) else None

    def _read_lease(self, job_id: str) -> dict[str, Any] | None:
        try:
            info = json.loads(self.lease_path(job_id).read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {"driver": "?"}
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return {"driver": "?"}  # unreadable: no live driver writes such a lease

    def take_lease(self, job_id: str) -> dict[str, Any] | None:
        """Take a job's lease for this driver. None: it is ours now; else the live holder's info.

        After a lease is taken, re-read the record: another driver may have finished the job
        between our last look and our lease."""
        self.open_session()
        path = self.lease_path(job_id)
        mine = self._holder_info(self._token)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.leases_dir, prefix=LEASE_TMP_PREFIX)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(mine, f)
            try:
                while True:
                    try:
                        os.link(tmp, path)  # atomic: fails when a lease exists
                        self._leased.add(job_id)
                        return None
                    except FileExistsError:
                        pass
                    current = self._read_lease(job_id)
                    if current is None:
                        continue  # released in between: try again
                    if current.get("driver") == self._token:
                        self._leased.add(job_id)
                        return None
                    if self._driver_alive(str(current.get("driver"))):
                        return current
                    if self._take_over(job_id, current, tmp):
                        self._leased.add(job_id)
                        return None
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise results_dir_error(self.root, e) from e

    def _take_over(self, job_id: str, dead: dict[str, Any], tmp: str) -> bool:
        """Replace a dead driver's lease with ours, under a global lock (one taker wins)."""
        with open(self.leases_dir / ".takeover.lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if self._read_lease(job_id) != dead:
                return False  # someone else took it over (or it was released): look again
            spare = tmp + ".replace"
            os.link(tmp, spare)
            os.replace(spare, self.lease_path(job_id))
            return True

    def release_lease(self, job_id: str) -> None:
        """Drop our lease on a job (after its record is written, or when giving it up)."""
        self._leased.discard(job_id)
        info = self._read_lease(job_id)
        if info is not None and info.get("driver") == self._token:
            self.lease_path(job_id).unlink(missing_ok=True)
