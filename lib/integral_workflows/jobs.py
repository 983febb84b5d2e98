"""Many MMODA jobs that lose nothing: split, submit, poll, retry, cache, account.

MMODA accepts at most ``s_max`` ScWs per job (50 for ordinary users), so a
long period becomes many asynchronous jobs. This module

- splits a ScW list into chunks (:func:`split_into_chunks`): at most
  ``s_max > 0`` ScWs per job on a fixed grid of aligned revolution blocks (so
  a longer period or a lost ScW changes only the chunks whose content
  changed), ``-1`` one job per revolution, ``< -1`` aligned groups of
  ``|s_max|`` revolutions;
- submits the chunks with bounded concurrency and polls them through the
  network seam (:class:`JobRunner` with a
  :class:`~integral_workflows.session.Session`), retrying transient faults
  (connection errors, HTTP 500, failed jobs, jobs silent for longer than a
  bound derived from their size) with backoff until a time budget is spent
  (:class:`RetryPolicy`); a backend that is gone stops the run
  (:class:`BackendUnavailable`);
- accounts for the ScWs the backend cannot analyse (radiation belts, no
  data), whichever way it reports them: the real backend finishes the job
  with the other ScWs and reports each such ScW in the job monitor with its
  analysis exception (recorded *skipped* with that reason); a backend that
  fails the whole job naming them (the AnalysisException answer) has them
  removed from their chunk, retried once alone, then recorded *skipped*,
  while the rest of the chunk goes on;
- caches every finished chunk on disk (:class:`ChunkCache`), keyed by its
  normalised parameters, so an interrupted run resumes and a repeated run
  sends no job;
- records the outcome of every ScW (*done*, *skipped* with the reason, or
  *failed* with the error) in :class:`RunRecord`, which the run's manifest
  stores, and refuses failed ScWs beyond an allowed fraction
  (:meth:`RunRecord.raise_if_failed`). Nothing is dropped silently.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import requests
from oda_api.api import (
    DataCollection,
    DispatcherException,
    FailedToFindAnyUsefulResults,
    RemoteException,
    RequestNotUnderstood,
    Unauthorized,
    UserError,
)

# the text bar works in terminals and notebooks alike, without ipywidgets
from tqdm import tqdm

log = logging.getLogger(__name__)

#: Bump when the cached content or key changes meaning.
CACHE_VERSION = 1

SCW_ID = re.compile(r"\d{12}\.\d{3}")

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


class FatalRequestError(RuntimeError):
    """The backend refuses the request itself (bad parameters, missing rights): retrying cannot help."""


class BackendUnavailable(ConnectionError):
    """The MMODA backend stopped answering and could not be brought back: the step must fail.

    Raised by the network seam (:class:`integral_workflows.session.Session`)
    once its liveness probe says the backend is gone; every later call of
    that session raises it at once.

    Attributes
    ----------
    url : str
        The dispatcher that stopped answering.
    record : RunRecord or None
        The run it interrupted (every ScW not done is recorded *failed*), when
        raised by :meth:`JobRunner.run`.
    """

    def __init__(self, message: str, *, url: str = "", record: RunRecord | None = None):
        super().__init__(message)
        self.url = url
        self.record = record


class TooManyFailures(RuntimeError):
    """More ScWs failed than the user allowed (:meth:`RunRecord.raise_if_failed`).

    Attributes
    ----------
    failed : list of str
        The ScWs that failed.
    total : int
        The ScWs of the run.
    allowed_fraction : float
        The fraction of failed ScWs that was allowed.
    record : RunRecord
        The run.
    """

    def __init__(self, message: str, *, failed: Sequence[str], total: int, allowed_fraction: float, record: RunRecord):
        super().__init__(message)
        self.failed = list(failed)
        self.total = total
        self.allowed_fraction = allowed_fraction
        self.record = record


@dataclasses.dataclass(frozen=True)
class Chunk:
    """ScWs analysed by one MMODA job.

    Attributes
    ----------
    index : int
        Position in the run.
    scw_ids : tuple of str
        ``RRRRPPPPSSSF.VVV`` ids, in time order.
    label : str
        Human-readable name (``chunk007`` or ``rev0665``).
    """

    index: int
    scw_ids: tuple
    label: str

    @property
    def revolutions(self) -> list[str]:
        """The revolutions (``RRRR``) the chunk's ScWs belong to, sorted."""
        return sorted({scw[:4] for scw in self.scw_ids})


#: Revolutions covered by the top-level blocks of the chunk grid (INTEGRAL ended at revolution 2874).
_REVOLUTION_GRID = 4096
#: Range of the 8 digits after the revolution (``PPPPSSSF``), as a power of two above 10**8.
_POINTING_GRID = 2**27


def split_into_chunks(scw_ids: Sequence[str], *, s_max: int) -> list[Chunk]:
    """Split ScWs into the chunks MMODA will analyse, one job each.

    Chunk boundaries depend only on the ScWs themselves, never on where a
    list starts or how many ScWs precede a chunk: with ``s_max > 0`` the
    revolutions are cut on a fixed grid of aligned blocks (1, 2, 4, ... 4096
    revolutions), each block split in halves while it holds more than
    ``s_max`` ScWs (a revolution holding more is cut the same way along its
    pointing numbers). Extending a period or losing a ScW therefore changes
    only the chunks whose content changed, and two requests over overlapping
    periods share their inner chunks (and the backend's cache of them).

    Parameters
    ----------
    scw_ids : sequence of str
        ScW ids with version (``RRRRPPPPSSSF.VVV``); sorted and deduplicated here.
    s_max : int
        ``> 0``: at most ``s_max`` ScWs per job, on the aligned grid; ``-1``:
        one job per revolution; ``< -1``: one job per aligned group of
        ``|s_max|`` revolutions (revolutions ``k|s_max|`` to ``(k+1)|s_max| - 1``).

    Returns
    -------
    list of Chunk
        In time order.
    """
    if s_max == 0:
        raise ValueError(
            "s_max=0 is not allowed: use > 0 (ScWs per job), -1 (per revolution) "
            "or < -1 (groups of |s_max| revolutions)"
        )
    ordered = sorted(set(scw_ids))
    bad = [scw for scw in ordered if not SCW_ID.fullmatch(scw)]
    if bad:
        raise ValueError(f"ScW ids must look like RRRRPPPPSSSF.VVV, got {bad[:5]}")
    if s_max > 0:
        groups = _aligned_blocks(ordered, s_max)
    else:
        per_group = 1 if s_max == -1 else -s_max
        by_group: dict[int, list[str]] = {}
        for scw in ordered:
            by_group.setdefault(int(scw[:4]) // per_group, []).append(scw)
        groups = []
        for key in sorted(by_group):
            first, last = key * per_group, key * per_group + per_group - 1
            label = f"rev{first:04d}" if per_group == 1 else f"rev{first:04d}-{last:04d}"
            groups.append((label, by_group[key]))
    return [Chunk(i, tuple(scws), label) for i, (label, scws) in enumerate(groups)]


def _aligned_blocks(ordered: list[str], s_max: int) -> list[tuple[str, list[str]]]:
    """ScWs (sorted) cut on the aligned grid: (label, ScWs) per block holding at most ``s_max``."""
    import bisect

    revolutions = [int(scw[:4]) for scw in ordered]
    blocks: list[tuple[str, list[str]]] = []

    def by_revolution(first: int, size: int) -> None:
        lo, hi = bisect.bisect_left(revolutions, first), bisect.bisect_left(revolutions, first + size)
        if lo == hi:
            return
        if hi - lo <= s_max:
            label = f"rev{first:04d}" if size == 1 else f"rev{first:04d}-{first + size - 1:04d}"
            blocks.append((label, ordered[lo:hi]))
        elif size == 1:
            by_pointing(first, ordered[lo:hi], 0, _POINTING_GRID)
        else:
            by_revolution(first, size // 2)
            by_revolution(first + size // 2, size // 2)

    def by_pointing(revolution: int, scws: list[str], first: int, size: int) -> None:
        keys = [int(scw[4:12]) for scw in scws]
        lo, hi = bisect.bisect_left(keys, first), bisect.bisect_left(keys, first + size)
        if lo == hi:
            return
        label = f"rev{revolution:04d}.{first:08d}"
        if hi - lo <= s_max:
            blocks.append((label, scws[lo:hi]))
        elif size == 1:
            # several versions of one ScW: plain slices (nothing else can share this block)
            for i in range(lo, hi, s_max):
                blocks.append((f"{label}.{(i - lo) // s_max}", scws[i : min(hi, i + s_max)]))
        else:
            by_pointing(revolution, scws, first, size // 2)
            by_pointing(revolution, scws, first + size // 2, size // 2)

    by_revolution(0, _REVOLUTION_GRID)
    return blocks


@dataclasses.dataclass(frozen=True)
class ProductRequest:
    """An MMODA product query, without its ScW list.

    Attributes
    ----------
    instrument : str
        ``isgri`` or ``jemx``.
    product : str
        ``isgri_image``, ``isgri_lc``, ``isgri_spectrum``, ``jemx_image``...
    parameters : Mapping
        Query parameters (``E1_keV``, ``E2_keV``, ``osa_version``,
        ``integral_data_rights``, ``detection_threshold``, ``time_bin``,
        ``jemx_num``, ``selected_catalog``, ``RA``, ``DEC``, ``T1``, ``T2``...).
    """

    instrument: str
    product: str
    parameters: Mapping

    def query(self, scw_ids: Sequence[str]) -> dict:
        """Keyword arguments for ``DispatcherAPI.get_product``."""
        return dict(
            self.parameters,
            instrument=self.instrument,
            product=self.product,
            product_type="Real",
            scw_list=list(scw_ids),
        )

    def cache_key(self, scw_ids: Sequence[str], *, backend: str) -> str:
        """Key of a chunk's result: the normalised query, its ScWs and the backend's identity."""
        normalised = {
            "version": CACHE_VERSION,
            "backend": backend,
            "instrument": self.instrument,
            "product": self.product,
            "scws": sorted(scw_ids),
            "parameters": {k: _normalise(v) for k, v in sorted(self.parameters.items())},
        }
        return hashlib.sha256(json.dumps(normalised, sort_keys=True).encode()).hexdigest()[:32]


def _normalise(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return str(value)


@dataclasses.dataclass
class Piece:
    """A finished job's products, covering some of a chunk's ScWs.

    With a cache, the answer stays on disk and is read when needed, so a
    full-mission run does not hold hundreds of answers in memory.

    Attributes
    ----------
    scw_ids : tuple of str
        The ScWs the products were made from.
    skipped : dict
        ScWs of the job the backend reported as not analysed → its reason.
    """

    chunk: Chunk
    scw_ids: tuple
    job_id: str
    from_cache: bool
    cache: ChunkCache | None = None
    cache_key: str = ""
    answer: dict | None = None
    elapsed_s: float = 0.0
    skipped: dict = dataclasses.field(default_factory=dict)

    @property
    def response_json(self) -> dict:
        """The dispatcher's answer (read from the cache when it was left there)."""
        if self.answer is not None:
            return self.answer
        answer = self.cache.get(self.cache_key) if self.cache is not None else None
        if answer is None:
            raise RuntimeError(f"the cached answer of {self.chunk.label} ({self.cache_key}) has disappeared")
        return answer

    def data_collection(self) -> DataCollection:
        """Decode the products with oda_api (as ``get_product`` returns them)."""
        answer = self.response_json
        return DataCollection.from_response_json(answer, answer.get("_instrument", ""), answer.get("_product", ""))


def unanalysed_scws(reports: Iterable[Mapping], scw_ids: Sequence[str]) -> dict[str, str]:
    """ScWs a job monitor reports as not analysed, with the backend's reason.

    The OSA backend reports each analysis step through callbacks that the
    dispatcher shows in ``job_monitor.full_report_dict_list``; a step that
    ends in an analysis exception has ``message: "analysis exception"``, the
    ``scwid`` and the ``exception`` text.

    Parameters
    ----------
    reports : iterable of mapping
        Job-monitor entries, as seen over the job's polls.
    scw_ids : sequence of str
        The job's ScWs (entries about other ScWs or about no ScW are ignored).

    Returns
    -------
    dict
        ScW id → reason (``"<step>: <exception>"``).
    """
    wanted = set(scw_ids)
    found: dict[str, str] = {}
    for entry in reports:
        if "exception" not in str(entry.get("message", "")).lower():
            continue
        scw = str(entry.get("scwid", ""))
        if scw not in wanted:
            continue
        detail = str(entry.get("exception") or entry.get("message"))
        found[scw] = f"{entry.get('node', 'analysis')}: {detail}"
    return found


def product_meta_data(product) -> dict:
    """``meta_data`` of a decoded oda_api product as a dict (older servers sent a JSON string).

    Parameters
    ----------
    product : oda_api.data_products.NumpyDataProduct or similar

    Returns
    -------
    dict
        Empty when the product has none or it cannot be read.
    """
    meta = getattr(product, "meta_data", None) or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = {}
    return meta if isinstance(meta, dict) else {}


def product_hdus(product) -> list:
    """The FITS HDUs of a decoded oda_api product (``NumpyDataUnit.to_fits_hdu`` of each unit).

    oda_api formats ``repr`` of every table for a debug message, logged or not; for the spectra of a long
    period (variable-length RMF rows) that took ~9 s per notebook. A summarised repr is as good and instant.

    Parameters
    ----------
    product : oda_api.data_products.NumpyDataProduct

    Returns
    -------
    list of astropy.io.fits HDUs
    """
    with np.printoptions(threshold=8, edgeitems=1):
        return [unit.to_fits_hdu() for unit in product.data_unit]


def product_instrument(header) -> str:
    """``ISGRI``, ``JMX1`` or ``JMX2`` from a product's FITS header (``DETNAM``, ``INSTRUME``, ``EXTNAME``).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping

    Returns
    -------
    str
        The ``INSTRUME`` value when none of them says.
    """
    detnam = str(header.get("DETNAM", "")).strip().upper()
    instrume = str(header.get("INSTRUME", "")).strip().upper()
    extname = str(header.get("EXTNAME", "")).strip().upper()
    if detnam == "ISGRI" or instrume in ("ISGRI", "IBIS") or extname.startswith("ISGR"):
        return "ISGRI"
    for unit in ("JMX1", "JMX2"):
        if unit in (instrume, detnam) or extname.startswith(unit):
            return unit
    return instrume


class ChunkCache:
    """Finished chunk answers on disk, gzip-compressed JSON, one file per key.

    Parameters
    ----------
    folder : Path
        Cache folder (created if needed).
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json.gz"

    def get(self, key: str) -> dict | None:
        """The answer stored under ``key``, or None if there is none or its file cannot be read."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            # One decompression of the whole file and one parse of its bytes: a third less CPU than
            # parsing from a text stream over the gzip file (answers of mosaics are ~10 MB of JSON).
            return json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError, EOFError, zlib.error):  # ValueError: JSON or UTF-8
            log.warning("ignoring an unreadable cache entry %s", path)
            return None

    def put(self, key: str, record: dict) -> None:
        """Store ``record`` under ``key``, atomically (written to a temporary file, then renamed)."""
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with gzip.open(tmp, "wt", compresslevel=1) as handle:
            json.dump(record, handle)
        tmp.replace(path)


@dataclasses.dataclass
class ScwOutcome:
    """What became of one ScW."""

    scw_id: str
    status: str
    chunk: str
    reason: str = ""
    job_id: str = ""
    attempts: int = 0

    def as_dict(self) -> dict:
        """The outcome as a plain dict of its fields."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RunRecord:
    """Outcomes of a chunked run: every ScW, every job, the timings."""

    outcomes: dict = dataclasses.field(default_factory=dict)
    jobs: list = dataclasses.field(default_factory=list)
    pieces: list = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None
    submissions: int = 0
    cache_hits: int = 0
    retries: int = 0

    def counts(self) -> dict:
        """Number of ScWs per status (done, skipped, failed)."""
        counts = {DONE: 0, SKIPPED: 0, FAILED: 0}
        for outcome in self.outcomes.values():
            counts[outcome.status] += 1
        return counts

    def scws(self, status: str) -> list[str]:
        """The ids of the ScWs whose outcome has ``status``, sorted."""
        return sorted(scw for scw, outcome in self.outcomes.items() if outcome.status == status)

    def outcome_table(self, *, statuses: Sequence[str] = (DONE, SKIPPED, FAILED)):
        """The ScW outcomes as an astropy Table (scw_id, status, reason, chunk, job_id, attempts)."""
        from astropy.table import Table

        rows = [o for _, o in sorted(self.outcomes.items()) if o.status in statuses]
        return Table(
            {
                "scw_id": [o.scw_id for o in rows],
                "status": [o.status for o in rows],
                "reason": [o.reason for o in rows],
                "chunk": [o.chunk for o in rows],
                "job_id": [o.job_id for o in rows],
                "attempts": [o.attempts for o in rows],
            },
            dtype=[str, str, str, str, str, int],
        )

    def summary(self) -> str:
        """One line: ScWs done/skipped/failed, jobs sent, cache hits, retries, elapsed time."""
        counts = self.counts()
        elapsed = (self.finished or time.time()) - self.started
        return (
            f"{counts[DONE]} ScWs done, {counts[SKIPPED]} skipped, {counts[FAILED]} failed; "
            f"{self.submissions} jobs sent, {self.cache_hits} chunks from the cache, {self.retries} retries, "
            f"{elapsed:.1f} s"
        )

    def raise_if_failed(self, *, allowed_fraction: float = 0.0, what: str = "") -> None:
        """Raise :class:`TooManyFailures` if more than ``allowed_fraction`` of the ScWs failed.

        ScWs the backend *skipped* (no data, radiation belts) are facts about
        the data, not failures; *failed* ones are those the backend could not
        deliver (faults that outlasted the retry budget, a refused request).

        Parameters
        ----------
        allowed_fraction : float
            Largest tolerated fraction of failed ScWs among all ScWs of the
            run, in [0, 1]; 0 (default) tolerates none.
        what : str, optional
            What the run made (named in the message), e.g. ``"isgri_image"``.

        Raises
        ------
        TooManyFailures
            With the count, the fraction allowed and the first reasons.
        """
        if not 0.0 <= allowed_fraction <= 1.0:
            raise ValueError(f"allowed_fraction = {allowed_fraction}: must be within [0, 1]")
        failed = self.scws(FAILED)
        total = len(self.outcomes)
        if not failed or len(failed) <= allowed_fraction * total:
            return
        reasons = "; ".join(f"{scw}: {self.outcomes[scw].reason}" for scw in failed[:3])
        raise TooManyFailures(
            f"{len(failed)} of {total} ScWs{f' of {what}' if what else ''} failed ({len(failed) / total:.1%}; "
            f"allowed: {allowed_fraction:.1%}), e.g. {reasons}. Run again to retry them (finished chunks come from "
            "the cache), or allow a fraction of failed ScWs explicitly (allowed_failed_fraction).",
            failed=failed,
            total=total,
            allowed_fraction=allowed_fraction,
            record=self,
        )

    def as_dict(self) -> dict:
        """JSON-safe summary for the manifest."""
        return {
            "counts": self.counts(),
            "submissions": self.submissions,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "elapsed_s": (self.finished or time.time()) - self.started,
            "jobs": self.jobs,
            "scws": {scw: outcome.as_dict() for scw, outcome in sorted(self.outcomes.items())},
        }


class _TransientError(Exception):
    """A fault worth retrying: the request itself is fine."""


class _ScwsRejected(Exception):
    """The backend could not analyse some ScWs (AnalysisException / no data)."""

    def __init__(self, reasons: dict[str, str], message: str, *, job_id: str = ""):
        super().__init__(message)
        self.reasons = reasons
        self.message = message
        self.job_id = job_id


@dataclasses.dataclass
class RetryPolicy:
    """How hard to try, and how long to wait for what.

    Transient faults (connection errors, HTTP 500, jobs failed by the
    machinery, stalls) are retried until a time budget per chunk is spent, not
    a fixed number of times, so every good ScW is delivered whatever the fault
    rate below 1, as long as the budget allows. :meth:`for_local` and
    :meth:`for_remote` are the settings the session uses for each kind of
    backend.

    Attributes
    ----------
    budget_s : float
        Time a chunk may spend retrying transient faults before its ScWs are
        recorded as failed.
    max_attempts : int or None
        Optional cap on the submissions of one chunk (None: the budget alone).
    backoff_s : float
        First wait after a transient fault; doubles each time, up to ``max_backoff_s``.
    poll_interval_s : float
        Time between polls of a running job (grows slowly to ``max_poll_interval_s``).
    poll_failure_budget_s : float
        Polls failing in transit for this long in a row make the job be resubmitted.
    stall_timeout_s : float
        A running job whose progress (status, job-monitor entries) does not
        change for :meth:`stall_bound` seconds is resubmitted; this is the
        bound's fixed part.
    stall_per_scw_s : float
        The bound's part per ScW of the job (the backend's last step combines
        every ScW of the job, and takes longer for more).
    max_stall_timeout_s : float or None
        Upper limit of the bound.
    queue_timeout_s : float or None
        A job left waiting in the backend's queue longer than this is resubmitted.
    request_timeout_s : float
        Timeout of one HTTP request (connect and read), seconds.
    request_budget_s : float
        Time one gateway request (ScW list, time conversion, spacecraft) may
        spend retrying connection errors and 5xx answers.
    dead_after_s : float
        A remote backend that answers nothing (connection errors, 502-504)
        for this long in a row, and then not its root URL either, is declared
        unavailable. A local one is probed at once on its health URL, for up
        to this long while it is merely slow (a local one whose process has
        exited, or whose port refuses connections, is declared gone at once).
    """

    budget_s: float = 3600.0
    max_attempts: int | None = None
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    poll_interval_s: float = 1.0
    max_poll_interval_s: float = 10.0
    poll_failure_budget_s: float = 120.0
    stall_timeout_s: float = 900.0
    stall_per_scw_s: float = 0.0
    max_stall_timeout_s: float | None = None
    queue_timeout_s: float | None = None
    request_timeout_s: float = 120.0
    request_budget_s: float = 600.0
    dead_after_s: float = 300.0

    @classmethod
    def for_local(cls, **changes) -> RetryPolicy:
        """Settings for the local MMODA: it reports every ScW as it goes, so silence means a stall.

        A job of ``n`` ScWs that shows no progress for ``1 + 0.05 n`` s (at
        most 60 s) is resubmitted: the local MMODA reports each ScW as it
        goes, and its silent last step, which combines the ScWs, takes at
        most ~10 ms per ScW (a 40-ScW ISGRI mosaic 0.38 s; a whole 50-ScW
        light-curve or spectrum job 0.06-0.10 s, ``bench/bench_local_backend.py``);
        the bound leaves a factor 5 for a loaded machine. A
        resubmitted job that is in fact running is only attached to again,
        never computed twice, so a false alarm costs one request.

        Parameters
        ----------
        **changes
            Fields to set differently.

        Returns
        -------
        RetryPolicy
        """
        # a local server is not relieved by waiting: short backoff, frequent polls
        settings = {
            "budget_s": 900.0,
            "poll_interval_s": 0.1,
            "max_poll_interval_s": 1.0,
            "backoff_s": 0.1,
            "max_backoff_s": 0.5,
            "poll_failure_budget_s": 30.0,
            "stall_timeout_s": 1.0,
            "stall_per_scw_s": 0.05,
            "max_stall_timeout_s": 60.0,
            "queue_timeout_s": 60.0,
            "request_timeout_s": 60.0,
            "request_budget_s": 120.0,
            "dead_after_s": 30.0,
        }
        return cls(**{**settings, **changes})

    @classmethod
    def for_remote(cls, **changes) -> RetryPolicy:
        """Settings for a real MMODA, whose OSA jobs take minutes per ScW and may queue.

        A job of ``n`` ScWs that shows no progress for ``900 + 30 n`` s (at
        most an hour) is resubmitted.

        Parameters
        ----------
        **changes
            Fields to set differently.

        Returns
        -------
        RetryPolicy
        """
        settings = {
            "budget_s": 3 * 3600.0,
            "poll_interval_s": 5.0,
            "max_poll_interval_s": 30.0,
            "backoff_s": 2.0,
            "max_backoff_s": 60.0,
            "poll_failure_budget_s": 300.0,
            "stall_timeout_s": 900.0,
            "stall_per_scw_s": 30.0,
            "max_stall_timeout_s": 3600.0,
            "queue_timeout_s": None,
            "request_timeout_s": 120.0,
            "request_budget_s": 600.0,
            "dead_after_s": 300.0,
        }
        return cls(**{**settings, **changes})

    def backoff(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1``, seconds."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1))

    def stall_bound(self, n_scws: int) -> float:
        """Longest silence of a running job of ``n_scws`` ScWs before it counts as stalled, seconds."""
        bound = self.stall_timeout_s + self.stall_per_scw_s * max(0, int(n_scws))
        return bound if self.max_stall_timeout_s is None else min(bound, self.max_stall_timeout_s)

    def exhausted(self, attempts: int, started: float) -> bool:
        """Whether a chunk that has failed ``attempts`` times since ``started`` must give up."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return time.time() - started >= self.budget_s


class JobRunner:
    """Runs the chunks of a product request against an MMODA dispatcher.

    Every exchange with the dispatcher goes through ``session``, the network
    seam, which builds the ``DispatcherAPI`` clients, adds the token, and
    decides whether a connection failure is transient or the backend is gone.

    Parameters
    ----------
    session : integral_workflows.session.Session
        The network seam (anything with ``backend_id``, ``retry``,
        ``dispatcher()``, ``submit(disp, query)``, ``poll(disp)`` and
        ``is_dead``).
    cache : ChunkCache or None, optional
        Where finished chunks are kept.
    max_concurrent : int, optional
        Jobs in flight at once.
    retry : RetryPolicy, optional
        Retry and polling settings; the session's by default.
    progress : bool, optional
        Show a progress bar (terminal or notebook).
    """

    def __init__(
        self,
        session,
        *,
        cache: ChunkCache | None = None,
        max_concurrent: int = 4,
        retry: RetryPolicy | None = None,
        progress: bool = True,
    ):
        self.session = session
        self.backend_id = session.backend_id
        self.cache = cache
        self.max_concurrent = max(1, int(max_concurrent))
        self.retry = retry or getattr(session, "retry", None) or RetryPolicy()
        self.progress = progress
        self._lock = threading.Lock()
        # set when the backend is gone: waiting threads wake up and stop at once
        self._stop = threading.Event()

    # -- public ------------------------------------------------------------------------------------------------
    def run(
        self,
        request: ProductRequest,
        chunks: Iterable[Chunk],
        *,
        record: RunRecord | None = None,
        description: str = "",
    ) -> RunRecord:
        """Run every chunk; return the record of pieces and ScW outcomes.

        Raises
        ------
        FatalRequestError
            If the backend refuses the request itself (after recording every
            ScW not yet done as failed).
        BackendUnavailable
            If the backend stops answering for good (every ScW not done is
            recorded failed; the record is the exception's ``record``).
        """
        chunks = list(chunks)
        record = record or RunRecord()
        total = sum(len(c.scw_ids) for c in chunks)
        state = {"running": 0, "done": 0, "failed": 0, "skipped": 0}
        bar = tqdm(
            total=total,
            unit="ScW",
            desc=description or request.product,
            disable=not self.progress,
            dynamic_ncols=True,
            leave=True,
        )

        def update(**changes):
            with self._lock:
                for key, delta in changes.items():
                    state[key] += delta
                bar.set_postfix(
                    chunks_running=state["running"],
                    done=state["done"],
                    skipped=state["skipped"],
                    failed=state["failed"],
                    refresh=False,
                )

        fatal: list[BaseException] = []
        gone: list[BackendUnavailable] = []

        def work(chunk: Chunk):
            update(running=1)
            try:
                self._run_chunk(request, chunk, record, bar, update)
            except FatalRequestError as exc:
                fatal.append(exc)
                self._record(record, chunk.scw_ids, FAILED, chunk, reason=str(exc))
                update(failed=len(chunk.scw_ids))
                bar.update(len(chunk.scw_ids))
            except BackendUnavailable as exc:
                gone.append(exc)
                self._stop.set()
                with self._lock:
                    unfinished = [scw for scw in chunk.scw_ids if scw not in record.outcomes]
                self._record(record, unfinished, FAILED, chunk, reason=f"backend unavailable: {exc}")
                update(failed=len(unfinished))
                bar.update(len(unfinished))
            finally:
                update(running=-1)

        try:
            with concurrent.futures.ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="mmoda-chunk") as pool:
                futures = [pool.submit(work, chunk) for chunk in chunks]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
        finally:
            bar.close()
            record.finished = time.time()
        # in chunk order, not in the order jobs happened to finish: products combined from the pieces are then
        # the same numbers whatever the timing (retries, stalls, concurrency)
        record.pieces.sort(key=lambda piece: (piece.chunk.index, piece.scw_ids[:1]))
        for scw in (s for c in chunks for s in c.scw_ids):
            if scw not in record.outcomes:
                # every ScW must end somewhere: this would be a bug, make it visible
                self._record(record, [scw], FAILED, None, reason="no outcome recorded (internal error)")
        if gone:
            counts = record.counts()
            raise BackendUnavailable(
                f"{gone[0]} -- {counts[FAILED]} of {total} ScWs of "
                f"{description or request.product} were not analysed ({counts[DONE]} done, "
                f"{counts[SKIPPED]} skipped)",
                url=gone[0].url,
                record=record,
            ) from gone[0]
        if fatal:
            raise FatalRequestError(str(fatal[0])) from fatal[0]
        return record

    # -- one chunk ---------------------------------------------------------------------------------------------
    def _run_chunk(self, request: ProductRequest, chunk: Chunk, record: RunRecord, bar, update) -> None:
        pending = list(chunk.scw_ids)
        alone_tried: set[str] = set()
        attempts = 0
        started = time.time()
        while pending:
            try:
                piece = self._obtain(request, chunk, pending, record)
            except _ScwsRejected as rejected:
                rejected_scws = [s for s in pending if s in rejected.reasons] or (
                    [pending[0]] if len(pending) == 1 else []
                )
                if not rejected_scws:
                    # the backend named no ScW: isolate by halves
                    half = len(pending) // 2
                    self._run_subchunk(request, chunk, pending[:half], record, bar, update)
                    pending = pending[half:]
                    continue
                for scw in rejected_scws:
                    pending.remove(scw)
                    reason = rejected.reasons.get(scw, rejected.message)
                    if len(chunk.scw_ids) > 1 and scw not in alone_tried and len(rejected_scws) < len(chunk.scw_ids):
                        alone_tried.add(scw)
                        self._retry_alone(request, chunk, scw, reason, record, bar, update)
                    else:
                        self._record(record, [scw], SKIPPED, chunk, reason=reason, job_id=rejected.job_id)
                        update(skipped=1)
                        bar.update(1)
                continue
            except _TransientError as exc:
                attempts += 1
                with self._lock:
                    record.retries += 1
                if self.retry.exhausted(attempts, started):
                    log.error(
                        "%s: giving up after %d attempts in %.0f s: %s",
                        chunk.label,
                        attempts,
                        time.time() - started,
                        exc,
                    )
                    self._record(
                        record, pending, FAILED, chunk, reason=f"{exc} (after {attempts} attempts)", attempts=attempts
                    )
                    update(failed=len(pending))
                    bar.update(len(pending))
                    return
                wait = self.retry.backoff(attempts)
                log.warning("%s: %s; retrying in %.1f s (attempt %d)", chunk.label, exc, wait, attempts + 1)
                self._stop.wait(wait)
                continue
            self._accept(record, piece, attempts + 1)
            update(done=len(piece.scw_ids), skipped=len(piece.skipped))
            bar.update(len(piece.scw_ids) + len(piece.skipped))
            return

    def _run_subchunk(self, request, chunk, scws, record, bar, update) -> None:
        sub = Chunk(chunk.index, tuple(scws), f"{chunk.label}/part")
        self._run_chunk(request, sub, record, bar, update)

    def _retry_alone(self, request, chunk, scw, first_reason, record, bar, update) -> None:
        """Give a rejected ScW one more chance alone, so one bad ScW never hides a good one."""
        alone = Chunk(chunk.index, (scw,), f"{chunk.label}/{scw}")
        started, attempt = time.time(), 0
        while True:
            attempt += 1
            try:
                piece = self._obtain(request, alone, [scw], record)
            except _ScwsRejected as rejected:
                reason = rejected.reasons.get(scw, rejected.message) or first_reason
                self._record(record, [scw], SKIPPED, chunk, reason=reason, job_id=rejected.job_id, attempts=attempt + 1)
                update(skipped=1)
                bar.update(1)
                return
            except _TransientError as exc:
                with self._lock:
                    record.retries += 1
                if self.retry.exhausted(attempt, started):
                    self._record(record, [scw], FAILED, chunk, reason=str(exc), attempts=attempt + 1)
                    update(failed=1)
                    bar.update(1)
                    return
                self._stop.wait(self.retry.backoff(attempt))
                continue
            self._accept(record, piece, attempt + 1)
            update(done=len(piece.scw_ids), skipped=len(piece.skipped))
            bar.update(1)
            return

    def _accept(self, record: RunRecord, piece: Piece, attempts: int) -> None:
        with self._lock:
            if piece.scw_ids:
                record.pieces.append(piece)
            record.jobs.append(
                {
                    "chunk": piece.chunk.label,
                    "job_id": piece.job_id,
                    "scws": len(piece.scw_ids),
                    "skipped": len(piece.skipped),
                    "from_cache": piece.from_cache,
                    "elapsed_s": piece.elapsed_s,
                }
            )
        self._record(record, piece.scw_ids, DONE, piece.chunk, job_id=piece.job_id, attempts=attempts)
        for scw, reason in piece.skipped.items():
            self._record(record, [scw], SKIPPED, piece.chunk, reason=reason, job_id=piece.job_id, attempts=attempts)

    def _record(self, record: RunRecord, scws, status, chunk, *, reason="", job_id="", attempts=0) -> None:
        with self._lock:
            for scw in scws:
                record.outcomes[scw] = ScwOutcome(scw, status, chunk.label if chunk else "", reason, job_id, attempts)

    # -- one job -----------------------------------------------------------------------------------------------
    def _obtain(self, request: ProductRequest, chunk: Chunk, scws: Sequence[str], record: RunRecord) -> Piece:
        """Return the products of ``scws``, from the cache or from one MMODA job."""
        key = request.cache_key(scws, backend=self.backend_id)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                with self._lock:
                    record.cache_hits += 1
                log.info("%s: %d ScWs from the cache", chunk.label, len(scws))
                if "_rejected" in cached:
                    # a "no useful data" verdict is a fact about the data: the backend keeps it, so do we
                    raise _ScwsRejected(
                        cached["_rejected"]["reasons"],
                        cached["_rejected"]["message"],
                        job_id=cached["_rejected"].get("job_id", ""),
                    )
                return self._piece(chunk, scws, cached, from_cache=True, key=key)
        with self._lock:
            record.submissions += 1
        started = time.time()
        try:
            response_json = self._submit_and_wait(request, chunk, scws)
        except _ScwsRejected as rejected:
            if self.cache is not None and rejected.reasons:
                self.cache.put(
                    key,
                    {
                        "_rejected": {
                            "reasons": rejected.reasons,
                            "message": rejected.message,
                            "job_id": rejected.job_id,
                        }
                    },
                )
            raise
        response_json["_elapsed_s"] = time.time() - started
        response_json["_instrument"], response_json["_product"] = request.instrument, request.product
        if self.cache is not None:
            self.cache.put(key, response_json)
        return self._piece(chunk, scws, response_json, from_cache=False, key=key)

    def _piece(self, chunk: Chunk, scws: Sequence[str], answer: dict, *, from_cache: bool, key: str) -> Piece:
        """A piece from a finished job's answer: the ScWs analysed, and those reported as not analysed."""
        skipped = unanalysed_scws(answer.get("_reports", []), scws)
        if skipped:
            log.info(
                "%s: the backend did not analyse %d of %d ScWs (%s)",
                chunk.label,
                len(skipped),
                len(scws),
                "; ".join(f"{scw} {why}" for scw, why in list(skipped.items())[:3]),
            )
        analysed = tuple(scw for scw in scws if scw not in skipped)
        job_id = answer.get("job_monitor", {}).get("job_id", "")
        kept = {"answer": None, "cache": self.cache, "cache_key": key} if self.cache is not None else {"answer": answer}
        return Piece(
            chunk, analysed, job_id, from_cache, elapsed_s=answer.get("_elapsed_s", 0.0), skipped=skipped, **kept
        )

    def _submit_and_wait(self, request: ProductRequest, chunk: Chunk, scws: Sequence[str]) -> dict:
        session = self.session
        disp = session.dispatcher()
        query = request.query(scws)
        started = time.time()
        # the job monitor's entries over all polls (a backend may send only the newest ones)
        reports: dict[str, dict] = {}
        stall_bound = self.retry.stall_bound(len(scws))

        def collect() -> None:
            answer = disp.response_json if isinstance(getattr(disp, "response_json", None), dict) else {}
            for entry in (answer.get("job_monitor") or {}).get("full_report_dict_list") or []:
                if isinstance(entry, dict):
                    reports[json.dumps(entry, sort_keys=True, default=str)] = entry

        try:
            session.submit(disp, query)
            collect()
            last_change, last_seen = time.time(), None
            interval = self.retry.poll_interval_s
            failed_polls, failing_since = 0, None
            while not disp.is_complete:
                time.sleep(interval)
                interval = min(self.retry.max_poll_interval_s, interval * 1.25)
                try:
                    session.poll(disp)
                    collect()
                    failed_polls, failing_since = 0, None
                except BackendUnavailable:
                    raise
                except (RemoteException, DispatcherException, requests.RequestException, RuntimeError) as exc:
                    if isinstance(exc, FailedToFindAnyUsefulResults) or disp.is_complete:
                        raise
                    failed_polls += 1
                    failing_since = failing_since or time.time()
                    if time.time() - failing_since >= self.retry.poll_failure_budget_s:
                        raise _TransientError(
                            f"{failed_polls} polls of job {disp.job_id} failed in a row over "
                            f"{time.time() - failing_since:.0f} s ({type(exc).__name__})"
                        ) from exc
                    # a poll that failed in transit: the job itself may be fine, poll again
                    log.debug("%s: poll failed (%s), polling again", chunk.label, type(exc).__name__)
                    continue
                seen = (disp.query_status, len(disp.response_json["job_monitor"].get("full_report_dict_list", [])))
                if seen != last_seen:
                    last_seen, last_change = seen, time.time()
                # "submitted": waiting in the backend's queue; anything else: running, and reporting as it goes
                limit = self.retry.queue_timeout_s if disp.query_status == "submitted" else stall_bound
                if limit is not None and time.time() - last_change > limit:
                    raise _TransientError(
                        f"job {disp.job_id} ({len(scws)} ScWs) made no progress for {limit:g} s "
                        f"(status {disp.query_status}): resubmitting"
                    )
            if disp.is_failed:
                disp.process_failure()
        except BackendUnavailable:
            raise
        except (Unauthorized, RequestNotUnderstood, UserError) as exc:
            raise FatalRequestError(f"{chunk.label}: MMODA refused the request: {session.scrub(str(exc))}") from exc
        except FailedToFindAnyUsefulResults as exc:
            collect()
            reasons = _rejected_scws(exc, scws) or unanalysed_scws(reports.values(), scws)
            raise _ScwsRejected(reasons, _failure_text(exc), job_id=disp.job_id or "") from exc
        except RemoteException as exc:
            collect()
            text = _failure_text(exc)
            reasons = (
                (_rejected_scws(exc, scws) or unanalysed_scws(reports.values(), scws))
                if "AnalysisException" in text
                else {}
            )
            if reasons:
                raise _ScwsRejected(reasons, text, job_id=disp.job_id or "") from exc
            # oda_api's message of a failed call quotes the call's arguments, token included: scrubbed
            message = session.scrub(exc.message.strip())[:200] or "no message"
            raise _TransientError(f"job failed: {message}") from exc
        except DispatcherException as exc:
            raise _TransientError(f"dispatcher error: {session.scrub(str(exc))[:200]}") from exc
        except (requests.RequestException, ConnectionError) as exc:
            raise _TransientError(f"connection problem: {type(exc).__name__}") from exc
        except RuntimeError as exc:
            raise _TransientError(f"unexpected answer: {session.scrub(str(exc))[:200]}") from exc
        collect()
        log.info("%s: job %s done (%d ScWs) in %.1f s", chunk.label, disp.job_id, len(scws), time.time() - started)
        answer = dict(disp.response_json)
        answer["_reports"] = list(reports.values())
        return answer


def _failure_text(exc: RemoteException) -> str:
    return " ".join(part for part in (getattr(exc, "message", ""), getattr(exc, "debug_message", "")) if part)


def _rejected_scws(exc: RemoteException, scws: Sequence[str]) -> dict[str, str]:
    """Which ScWs the backend rejected, and why, from its failure message.

    The local backend writes ``AnalysisException:{"scws": [...], "reasons": {...}}``;
    otherwise any ScW id quoted in the message is taken as rejected.
    """
    text = getattr(exc, "debug_message", "") or ""
    reasons: dict[str, str] = {}
    payload = text.split(":", 1)[1] if ":" in text else ""
    try:
        details = json.loads(payload)
    except (json.JSONDecodeError, ValueError):
        details = None
    if isinstance(details, dict) and isinstance(details.get("reasons"), dict):
        reasons = {scw: str(reason) for scw, reason in details["reasons"].items()}
    if not reasons:
        quoted = set(SCW_ID.findall(text))
        reasons = {scw: text.strip() for scw in scws if scw in quoted}
    if not reasons and len(scws) == 1:
        reasons = {scws[0]: text.strip() or "no useful data (FailedToFindAnyUsefulResults)"}
    if not reasons and "scwlist empty" in text:
        reasons = {scw: "the backend found no data" for scw in scws}
    return reasons
