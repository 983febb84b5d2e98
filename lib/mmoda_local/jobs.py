"""Jobs: ids, queue, worker pool, life cycle, result cache and counters.

A job is identified, as by the real dispatcher, by the md5 hash of its
normalised parameters (without session, job id, token and the client's
bookkeeping keys) and of the token's user. Identical requests therefore share
one job: while it runs, a new identical request is attached to it; once it is
done, the answer comes from the cache at once (the finished products are kept
on disk under ``<data_dir>/jobs/``, so they survive a restart). A job that
failed for a reason in the data (an analysis exception) stays failed: the
backend caches the exception as it caches products, so an identical request
answers ``failed`` at once. A failure of the machinery (a lost worker, a
crash) is not cached: the next identical request runs the job again.

Jobs run in a pool of ``workers`` threads; the others wait in the queue, as on
the real service. The counters (:class:`Counters`) tell tests how many jobs
were computed and how many answers came from the cache.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .queries import NOT_HASHED

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, STALLED = "submitted", "progress", "done", "failed", "stalled"


def job_id_of(parameters: dict, *, user: str | None) -> str:
    """Return the job id: first 16 hex digits of the md5 of the normalised parameters and user."""
    hashed = {k: v for k, v in parameters.items() if k not in NOT_HASHED}
    if user:
        hashed["sub"] = user
    text = json.dumps(sorted(hashed.items()), sort_keys=True, default=str)
    return hashlib.md5(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class JobSpec:
    """What a job computes.

    Attributes
    ----------
    job_id : str
        Hash of the parameters.
    instrument, product, kind : str
        Instrument, product name and product kind (``image``, ``lc``, ``spectrum``...).
    parameters : dict
        Normalised parameters (``analysis_parameters``).
    scw_ids : list of str
        ScWs to analyse (``RRRRPPPPSSSF.VVV``).
    """

    job_id: str
    instrument: str
    product: str
    kind: str
    parameters: dict
    scw_ids: list


class JobFailure(Exception):
    """A job that ends in ``failed``; carries the ``exit_status`` fields."""

    def __init__(
        self,
        message: str,
        *,
        error_message: str = "",
        debug_message: str = "",
        job_status: str = "failed",
        exit_code: int = 1,
        with_products: bool = True,
        sticky: bool = True,
    ):
        super().__init__(message)
        self.message = message
        self.error_message = error_message
        self.debug_message = debug_message
        self.job_status = job_status
        # A failure reported by a backend callback has exit status 0 and no products (as captured).
        self.exit_code = exit_code
        self.with_products = with_products
        # Sticky failures come from the data and are remembered; the others are re-run on the next request.
        self.sticky = sticky

    def as_record(self) -> dict:
        """JSON-ready form, for the result store."""
        return {
            "message": self.message,
            "error_message": self.error_message,
            "debug_message": self.debug_message,
            "job_status": self.job_status,
            "exit_code": self.exit_code,
            "with_products": self.with_products,
        }

    @classmethod
    def from_record(cls, record: dict) -> JobFailure:
        """Inverse of :meth:`as_record` (a stored failure is sticky by construction)."""
        return cls(
            record.get("message", ""),
            error_message=record.get("error_message", ""),
            debug_message=record.get("debug_message", ""),
            job_status=record.get("job_status", "failed"),
            exit_code=record.get("exit_code", 1),
            with_products=record.get("with_products", True),
        )


@dataclasses.dataclass
class Job:
    """A job and its state."""

    spec: JobSpec
    status: str = QUEUED
    attempt: int = 1
    reports: list = dataclasses.field(default_factory=list)
    failure: JobFailure | None = None
    comment: str = ""
    submitted_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None
    from_cache: bool = False
    #: failed when it arrived, from what earlier jobs found about its ScWs
    failed_at_submission: bool = False
    #: sessions already answered ``failed`` for this job
    sessions_told_failed: set = dataclasses.field(default_factory=set)

    @property
    def job_id(self) -> str:
        """The job's id, that of its spec."""
        return self.spec.job_id

    def report(self, *, message: str, node: str, scwid: str | None = None, **extra) -> None:
        """Append a progress entry (as the real backend's callbacks do)."""
        entry = {
            "session_id": "",
            "job_id": self.job_id,
            "node": node,
            "message": message,
            "action": "progress",
            **extra,
        }
        if scwid is not None:
            entry["scwid"] = scwid
        self.reports.append(entry)
        if self.status == QUEUED:
            self.status = RUNNING


class Counters:
    """Thread-safe counters the tests read through ``/local/stats``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` (created at 0)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def snapshot(self) -> dict:
        """A copy of every counter, sorted by name."""
        with self._lock:
            return dict(sorted(self._values.items()))

    def reset(self) -> None:
        """Remove every counter."""
        with self._lock:
            self._values.clear()


ComputeFunction = Callable[[Job], tuple[str, str]]
"""Computes a job: returns (products JSON text, exit_status comment); raises JobFailure."""


class ResultStore:
    """Finished products on disk (JSON text), with a small in-memory LRU."""

    def __init__(self, folder: Path, *, memory_items: int = 8):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def put(self, job_id: str, record: dict) -> None:
        """Store ``{"products_json", "comment", "reports"}`` (or ``{"failure", "reports"}``) atomically."""
        path = self._path(job_id)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)
        self._remember(job_id, record)

    def get(self, job_id: str) -> dict | None:
        """The record stored for ``job_id`` (from memory, else from disk), or None if none can be read."""
        with self._lock:
            if job_id in self._memory:
                self._memory.move_to_end(job_id)
                return self._memory[job_id]
        path = self._path(job_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("unreadable cached result %s, ignoring it", path)
            return None
        self._remember(job_id, record)
        return record

    def _remember(self, job_id: str, record: dict) -> None:
        with self._lock:
            self._memory[job_id] = record
            self._memory.move_to_end(job_id)
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)


class JobManager:
    """Runs jobs in a worker pool and remembers their state.

    Parameters
    ----------
    compute : callable
        ``compute(job) -> (products_json, comment)``; raises :class:`JobFailure`.
    results : ResultStore
        Where finished products go.
    counters : Counters
        Shared counters.
    workers : int, optional
        Jobs computed concurrently.
    fault_draw : callable, optional
        ``fault_draw(job) -> None | "stall" | "fail"`` decides injected faults.
    """

    def __init__(
        self,
        compute: ComputeFunction,
        results: ResultStore,
        counters: Counters,
        *,
        workers: int = 2,
        fault_draw: Callable[[Job], str | None] | None = None,
    ):
        self._compute = compute
        self._results = results
        self._counters = counters
        self._fault_draw = fault_draw or (lambda job: None)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmoda-job")

    def submit(self, spec: JobSpec, *, known_failure: JobFailure | None = None, reports: list | None = None) -> Job:
        """Submit a job, or attach to the identical one already known.

        A running job is returned as it is; a finished one (in memory or on
        disk) is returned done; one that failed for a reason in the data is
        returned failed, at once and without computing anything; one that
        failed for another reason or stalled is started again.

        Parameters
        ----------
        spec : JobSpec
            What to compute.
        known_failure : JobFailure, optional
            The backend already knows, from earlier jobs, that this one cannot
            succeed (every ScW was found unanalysable before): the job is
            recorded failed at once, as the real backend answers from its
            cached analysis exceptions.
        reports : list of dict, optional
            Progress entries to attach to a job failed at once.
        """
        with self._lock:
            job = self._jobs.get(spec.job_id)
            if job is not None and job.status in (QUEUED, RUNNING):
                self._counters.add("requests_attached_to_running_job")
                return job
            if job is not None and job.status == DONE:
                return job
            if job is not None and job.status == FAILED and job.failure is not None and job.failure.sticky:
                self._counters.add("requests_answered_failed_at_once")
                return job
            if job is None:
                stored = self._results.get(spec.job_id)
                if stored is not None:
                    job = Job(
                        spec=spec, from_cache=True, finished_at=time.time(), reports=list(stored.get("reports", []))
                    )
                    if "failure" in stored:
                        job.status, job.failure = FAILED, JobFailure.from_record(stored["failure"])
                        self._counters.add("requests_answered_failed_at_once")
                    else:
                        job.status = DONE
                    self._jobs[spec.job_id] = job
                    return job
                if known_failure is not None:
                    job = Job(
                        spec=spec,
                        status=FAILED,
                        failure=known_failure,
                        finished_at=time.time(),
                        reports=list(reports or []),
                        failed_at_submission=True,
                    )
                    self._jobs[spec.job_id] = job
                    self._remember_failure(job)
                    self._counters.add("requests_answered_failed_at_once")
                    return job
            attempt = job.attempt + 1 if job is not None else 1
            job = Job(spec=spec, attempt=attempt)
            self._jobs[spec.job_id] = job
            self._counters.add("jobs_submitted")
            if attempt > 1:
                self._counters.add("jobs_resubmitted")
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        """Return the job with that id, if known to this server (or cached on disk)."""
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, *, timeout_s: float = 600.0) -> Job | None:
        """Wait until a job is done or failed (or stalled, or the timeout passes); return it."""
        deadline = time.time() + timeout_s
        job = self.get(job_id)
        while job is not None and job.status in (QUEUED, RUNNING) and time.time() < deadline:
            time.sleep(0.01)
        return job

    def result(self, job_id: str) -> dict | None:
        """Return the stored result of a finished job."""
        return self._results.get(job_id)

    def fail(self, job_id: str, failure: JobFailure) -> None:
        """Mark a job failed from outside (backend callback)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.failure = failure
            job.status = FAILED
            job.finished_at = time.time()
            self._remember_failure(job)

    def _remember_failure(self, job: Job) -> None:
        """Keep a sticky failure on disk, as the backend keeps analysis exceptions in its cache."""
        if job.failure is not None and job.failure.sticky:
            self._results.put(job.job_id, {"failure": job.failure.as_record(), "reports": job.reports})

    def finish(self, job_id: str, products_json: str, *, comment: str = "") -> None:
        """Mark a job done from outside (backend callback) with its products."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return
        self._results.put(job_id, {"products_json": products_json, "comment": comment, "reports": job.reports})
        job.comment = comment
        job.status = DONE
        job.finished_at = time.time()

    def jobs(self) -> list[Job]:
        """All jobs known in memory."""
        with self._lock:
            return list(self._jobs.values())

    def busy(self) -> bool:
        """Whether a job is queued or running."""
        with self._lock:
            return any(job.status in (QUEUED, RUNNING) for job in self._jobs.values())

    def _run(self, job: Job) -> None:
        fault = self._fault_draw(job)
        if fault == "stall":
            self._counters.add("faults_stalled_jobs")
            job.report(message="started", node="dispatcher")
            job.status = STALLED
            log.info("job %s attempt %d stalls (injected fault)", job.job_id, job.attempt)
            return
        if job.spec.kind == "callback":
            # completed by the backend calling /call_back, as the dispatcher's empty-async instrument
            return
        job.status = RUNNING
        started = time.time()
        try:
            if fault == "fail":
                self._counters.add("faults_failed_jobs")
                raise JobFailure(
                    "Error when getting query products",
                    error_message=f"Instrument: {job.spec.instrument}, product: {job.spec.product}"
                    "\n\nThe backend worker was lost (injected fault)",
                    debug_message="InternalError('worker lost')",
                    job_status="unknown",
                    sticky=False,
                )
            products_json, comment = self._compute(job)
        except JobFailure as failure:
            job.failure = failure
            job.status = FAILED
            job.finished_at = time.time()
            self._remember_failure(job)
            self._counters.add("jobs_failed")
            log.info("job %s failed: %s", job.job_id, failure.message)
            return
        except Exception as exc:  # noqa: BLE001 - any bug must become a failed job, not a hung one
            log.exception("job %s crashed", job.job_id)
            job.failure = JobFailure(
                "Error when getting query products",
                error_message=f"Instrument: {job.spec.instrument}, product: {job.spec.product}",
                debug_message=repr(exc),
                job_status="unknown",
                sticky=False,
            )
            job.status = FAILED
            job.finished_at = time.time()
            self._counters.add("jobs_failed")
            return
        self._results.put(job.job_id, {"products_json": products_json, "comment": comment, "reports": job.reports})
        job.comment = comment
        job.finished_at = time.time()
        job.status = DONE
        self._counters.add("jobs_computed")
        self._counters.add("scws_computed", len(job.spec.scw_ids))
        log.info(
            "job %s (%s, %d ScWs) computed in %.2f s",
            job.job_id,
            job.spec.product,
            len(job.spec.scw_ids),
            time.time() - started,
        )

    def shutdown(self) -> None:
        """Stop accepting work (running jobs finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def fault_drawer(seed: int, *, stall: float, fail: float) -> Callable[[Job], str | None]:
    """Return a deterministic fault decision per (job id, attempt)."""

    def draw(job: Job) -> str | None:
        if stall <= 0 and fail <= 0:
            return None
        rng = np.random.default_rng([seed, int(job.job_id, 16) % (2**63), job.attempt, 17])
        u = rng.random()
        if u < stall:
            return "stall"
        if u < stall + fail:
            return "fail"
        return None

    return draw
