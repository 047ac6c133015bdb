"""Background jobs for long work (publish, fetch, validate), with progress a page polls.

A job runs in a small thread pool of the process that started it, so a 200 MB fetch never
blocks other requests. The function receives a `progress(step, done=None, total=None)`
callback; its return value (a dict) becomes the job's result. A `ModexError` becomes the job's
`error` sentence; any other exception is logged with its traceback and reported as a generic
sentence. Jobs belong to the browser session that started them: another session cannot read
them.

Each job's record lives in the UI's shared state (app.ui_state), so that any process serving
the UI answers its page's polls; a job whose process has ended reads as failed, with a sentence
saying so. The process is known by its pid and its start time: a pid is reused, and a restarted
exchange's new process must not keep an old job "running". Progress is written at most every
PROGRESS_EVERY seconds (and at each new step).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from flask import current_app

from app.resources import get_ui_state
from app.ui_state import UiState
from node.errors import ModexError
from node.procs import process_started

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.25  # seconds between writes of a running job's progress
ENDED_WITH_ITS_PROCESS = (
    "The server process running this job stopped before the job finished; start it again."
)
CRASHED = "The job stopped on an unexpected error; the details are in the server log."


@dataclass
class Job:
    id: str
    kind: str
    owner: str
    state: str = "queued"  # queued | running | done | failed
    step: str = "waiting to start"
    done: int | None = None
    total: int | None = None
    result: dict = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        percent = None
        if self.total:
            percent = round(100.0 * (self.done or 0) / self.total, 1)
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "step": self.step,
            "done": self.done,
            "total": self.total,
            "percent": percent,
            "result": self.result,
            "error": self.error,
        }


# A job's record: the Job's fields, and the process running it (its pid and start time).
_FIELDS = ("pid", "pid_started", *(f.name for f in fields(Job)))
_COLUMNS = ", ".join(_FIELDS)


class JobRunner:
    """Runs jobs in this process's pool; their records live in ``state`` (a UiState, or a
    function giving the app's, called when a job is submitted or read)."""

    def __init__(
        self,
        max_workers: int = 2,
        keep: int = 200,
        state: UiState | Callable[[], UiState] | None = None,
    ):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="modex-job")
        self._keep = keep
        self._state = state if state is not None else UiState(":memory:")

    def _board(self) -> UiState:
        return self._state() if callable(self._state) else self._state

    def submit(self, kind: str, owner: str, fn, *args, **kwargs) -> Job:
        """Start ``fn`` in the pool; the returned Job is this process's own, kept up to date."""
        board, pid = self._board(), os.getpid()
        job = Job(id=uuid.uuid4().hex, kind=kind, owner=owner)
        record = {**vars(job), "result": "{}", "pid": pid, "pid_started": process_started(pid)}
        board.rows(
            f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})",
            tuple(record[name] for name in _FIELDS),
        )
        self._trim(board)
        written = [0.0, job.step]  # when the progress was last written, and its step

        def save() -> None:
            board.rows(
                "UPDATE jobs SET state = ?, step = ?, done = ?, total = ?, result = ?, error = ?,"
                " finished = ? WHERE id = ?",
                (
                    job.state,
                    job.step,
                    job.done,
                    job.total,
                    json.dumps(job.result, default=str),
                    job.error,
                    job.finished,
                    job.id,
                ),
            )

        def progress(step: str, done: int | None = None, total: int | None = None) -> None:
            job.step, job.done, job.total = step, done, total
            now = time.monotonic()
            if step != written[1] or now - written[0] >= PROGRESS_EVERY:
                written[:] = [now, step]
                save()

        def run():
            job.state = "running"
            save()
            try:
                job.result = fn(*args, progress=progress, **kwargs) or {}
                job.state, job.step = "done", "finished"
            except ModexError as exc:
                job.state, job.error = "failed", str(exc)
                log.info("job %s (%s) failed: %s", job.id, kind, exc)
            except Exception:  # a bug: log it, show a sentence, keep the pool alive
                log.exception("job %s (%s) crashed", job.id, kind)
                job.state, job.error = "failed", CRASHED
            finally:
                job.finished = time.time()
                save()

        self._pool.submit(run)
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job's record as it stands, whichever process runs it (None: not this owner's)."""
        job = self._read(job_id)
        return job if job and job.owner == owner else None

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """For tests and the CLI: block until the job ends."""
        deadline = time.monotonic() + timeout
        job = self._read(job_id)
        while job is not None and job.state in ("queued", "running"):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
            job = self._read(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _read(self, job_id: str) -> Job | None:
        found = self._board().rows(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not found:
            return None
        row = dict(zip(_FIELDS, found[0], strict=True))
        pid, pid_started = row.pop("pid"), row.pop("pid_started")
        job = Job(**{**row, "result": json.loads(row["result"])})
        if job.state in ("queued", "running") and not _alive(pid, pid_started):
            job.state, job.error = "failed", ENDED_WITH_ITS_PROCESS
        return job

    def _trim(self, board: UiState) -> None:
        """Forget the finished jobs past the newest ``keep``."""
        board.rows(
            "DELETE FROM jobs WHERE finished IS NOT NULL AND id NOT IN"
            " (SELECT id FROM jobs WHERE finished IS NOT NULL ORDER BY finished DESC LIMIT ?)",
            (self._keep,),
        )


def _alive(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not another one that
    was given its pid since)."""
    if started is not None:
        return process_started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


STAGE_LABELS = {
    "hash": "Hashing the model files",
    "seal": "Sealing (AES-256-GCM)",
    "pin": "Pinning to IPFS",
    "fetch": "Fetching, decrypting and verifying",
}


def byte_progress(progress):
    """Adapt node/'s `progress(stage, delta, stage_total)` (byte deltas, as tqdm takes them) to a
    job's `progress(step, done, total)`: running totals per stage, named for a person."""
    done: dict[str, int] = {}

    def callback(stage: str, delta: int = 0, total: int | None = None) -> None:
        done[stage] = done.get(stage, 0) + int(delta or 0)
        label = STAGE_LABELS.get(stage, stage)
        progress(f"{label}: {done[stage] / 1e6:.1f} MB", done[stage], total)

    return callback


def get_jobs() -> JobRunner:
    return current_app.extensions["modex.jobs"]


def init_app(app) -> None:
    app.extensions["modex.jobs"] = JobRunner(
        int(app.config.get("MODEX_JOB_WORKERS", 2)), state=get_ui_state
    )
