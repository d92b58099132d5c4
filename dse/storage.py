"""Study storage from a URL: SQLite or PostgreSQL (RDB, with heartbeats so that a killed
worker's trial is failed and retried), or a journal file for several processes on one machine.

    sqlite:///runs/study.db        one file, the default
    postgresql://user@host/db      many machines
    journal:///abs/path/study.log  or  journal:runs/study.log   (a journal file, one machine)
"""
from __future__ import annotations

import datetime
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError

from workloads.errors import UserError

__all__ = ["CONNECT_TIMEOUT_S", "GRACE_S", "HEARTBEAT_S", "MAX_RETRY", "SQLITE_BUSY_S",
           "WORKER_ATTR", "fail_dead_workers", "open_storage", "worker_id"]

# A worker proves it lives every HEARTBEAT_S seconds; its RUNNING trial is failed (and retried)
# after GRACE_S seconds of silence. The environment may shorten both (the fault tests do).
HEARTBEAT_S = int(os.environ.get("EDGELLM_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("EDGELLM_GRACE_S", "30"))
MAX_RETRY = 3
CONNECT_TIMEOUT_S = 10  # seconds to reach a database server before giving up
SQLITE_BUSY_S = 60  # seconds a SQLite writer waits for another process's lock (Python's default: 5)
WORKER_ATTR = "worker"  # "host:pid" of the process running a trial (for dead-worker checks)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL or unreachable database is one ``UserError``."""
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
        if not path.name or path.is_dir():
            raise UserError(f"storage '{url}' names no journal file: use journal:FILE.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise UserError(f"cannot open storage '{url}': {exc.strerror or exc}") from None
        except ValueError:  # JSON or UTF-8 decoding: some other file
            raise UserError(f"storage '{url}': {path} is not an Optuna journal file") from None
    if url.startswith("sqlite:///"):
        if not url[len("sqlite:///"):]:
            raise UserError(f"storage '{url}' names no database file: use sqlite:///FILE.db")
        try:
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot open storage '{url}': {exc.strerror or exc}") from None
    elif not url.startswith(("postgresql", "mysql")):
        raise UserError(
            f"storage '{url}' is not supported: use sqlite:///FILE.db, postgresql://USER@HOST/DB or journal:FILE.log"
        )
    return _open_rdb(url)


def _open_rdb(url: str, attempts: int = 3) -> RDBStorage:
    """An RDB storage with heartbeats. Processes opening a fresh database together (workers, or
    a reader such as a notebook while the search starts) race to create its tables, and the
    loser gets a unique-key error (PostgreSQL "duplicate key", SQLite "UNIQUE constraint
    failed"): it retries and finds them made."""
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                    engine_kwargs={"pool_pre_ping": True, **_connect_timeout(url)},
                )
        except ImportError as exc:
            raise UserError(f"storage '{url}' needs a database driver: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "cannot open this URL"
            if attempt + 1 < attempts and isinstance(exc, IntegrityError):  # lost the race: tables exist now
                time.sleep(1.0)
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot open storage '{url}': {first}") from None
    raise AssertionError("unreachable")


def _connect_timeout(url: str) -> dict[str, Any]:
    """A mistyped PostgreSQL host should fail in seconds, not hang for the TCP timeout. A SQLite
    file is locked while any process writes it (workers, a notebook reading the study): on a busy
    machine 5 s is not enough, and "database is locked" would end the search."""
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_S}}
    return {}


def worker_id() -> str:
    """This process's worker name, ``HOST:PID``: stored on its trials so that other workers can tell
    whether the process that runs a trial is still alive.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_workers(study: optuna.Study) -> int:
    """Fail RUNNING trials whose process on this host is gone (journal storage has no heartbeat),
    or whose worker died before naming itself, and enqueue their parameters again. Returns how
    many were failed by these checks (the heartbeat's own are not counted)."""
    if isinstance(study._storage, RDBStorage):
        # Heartbeat-based, re-queues via the callback; but a worker killed before its first
        # heartbeat leaves a trial no heartbeat will ever mark stale: the pid check below does.
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    now = datetime.datetime.now()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _dead_owner(trial, host, now)
        if reason is None:
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            if trial.params:
                study.enqueue_trial(trial.params, skip_if_exists=False)
            failed += 1
    return failed


def _dead_owner(trial: optuna.trial.FrozenTrial, host: str, now: datetime.datetime) -> str | None:
    """Why the RUNNING ``trial``'s worker is known to be gone, or None if it may be alive."""
    owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
    if not owner:
        # The objective names its worker first thing, but the sampler runs before it (TPE for a
        # while) and before the first heartbeat: a trial still unnamed after the grace period
        # lost its worker there, and neither the heartbeat nor the pid check would ever see it.
        started = trial.datetime_start
        if started is not None and (now - started).total_seconds() > GRACE_S:
            return "worker died before the trial began (while sampling)"
        return None
    owner_host, _, pid = owner.rpartition(":")
    if owner_host == host and pid.isdigit() and not _alive(int(pid)):
        return f"worker {owner} died"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
