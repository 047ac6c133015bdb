"""Background jobs for long work (publish, fetch, validate), with progress a page polls.

A job runs in a small thread pool, so a 200 MB fetch never blocks other requests. The function
receives a `progress(step, done=None, total=None)` callback; its return value (a dict) becomes
the job's result. A `ModexError` becomes the job's `error` sentence; any other exception is
logged with its traceback and reported as a generic sentence. Jobs belong to the browser session
that started them: another session cannot read them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import current_app

from node.errors import ModexError

log = logging.getLogger(__name__)


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


class JobRunner:
    def __init__(self, max_workers: int = 2, keep: int = 200):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="modex-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, kind: str, owner: str, fn, *args, **kwargs) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind, owner=owner)
        with self._lock:
            self._jobs[job.id] = job
            self._trim()

        def progress(step: str, done: int | None = None, total: int | None = None) -> None:
            job.step, job.done, job.total = step, done, total

        def run():
            job.state = "running"
            try:
                job.result = fn(*args, progress=progress, **kwargs) or {}
                job.state, job.step = "done", "finished"
            except ModexError as exc:
                job.state, job.error = "failed", str(exc)
                log.info("job %s (%s) failed: %s", job.id, kind, exc)
            except Exception:  # a bug: log it, show a sentence, keep the pool alive
                log.exception("job %s (%s) crashed", job.id, kind)
                job.state = "failed"
                job.error = (
                    "The job stopped on an unexpected error; the details are in the server log."
                )
            finally:
                job.finished = time.time()

        self._pool.submit(run)
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job and job.owner == owner else None

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """For tests and the CLI: block until the job ends."""
        deadline = time.monotonic() + timeout
        job = self._jobs[job_id]
        while job.state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _trim(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished)
        for job in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job.id]


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
    app.extensions["modex.jobs"] = JobRunner(int(app.config.get("MODEX_JOB_WORKERS", 2)))
