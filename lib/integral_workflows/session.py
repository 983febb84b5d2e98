"""A working session with MMODA: which dispatcher, which user, which cache.

A :class:`Session` is what a notebook creates once, from its ``host_type``:

>>> session = Session("local")                  # doctest: +SKIP
>>> record = session.fetch(request, scw_ids, s_max=50)   # doctest: +SKIP

It resolves the dispatcher URL (starting the local MMODA when
``host_type`` is ``local``), reads the token from ``ODA_TOKEN`` or
``.oda-token`` (never a parameter), identifies the backend for the chunk
cache (a real MMODA by its URL, the local one by the fingerprint of its
simulation) and runs chunked jobs with :class:`~integral_workflows.jobs.JobRunner`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import requests

from . import hosts
from .jobs import ChunkCache, JobRunner, ProductRequest, RetryPolicy, RunRecord, split_into_chunks

log = logging.getLogger(__name__)

#: Environment variable naming the chunk cache folder.
CACHE_ENV = "INTEGRAL_WORKFLOWS_CACHE"


def default_cache_dir() -> Path:
    """``$INTEGRAL_WORKFLOWS_CACHE`` or ``~/.cache/integral_workflows/chunks``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "integral_workflows" / "chunks"


class Session:
    """Where and as whom a workflow talks to MMODA.

    Parameters
    ----------
    host_type : str
        ``production``, ``staging``, ``esa`` or ``local``.
    cache_dir : path, optional
        Chunk cache; :func:`default_cache_dir` by default. ``False`` disables it.
    max_concurrent : int, optional
        Jobs in flight at once (default 4; the real service queues the rest).
    retry : RetryPolicy, optional
        Retry and polling settings.
    progress : bool, optional
        Show progress bars.
    """

    def __init__(self, host_type: str, *, cache_dir: Path | str | None | bool = None, max_concurrent: int = 4,
                 retry: RetryPolicy | None = None, progress: bool = True):
        self.host_type = host_type
        self.url = hosts.dispatcher_url(host_type)
        if host_type != "local":
            hosts.check_reachable(self.url, host_type=host_type)
        self._token = hosts.discover_token()
        self.backend_id, self.simulated = self._identify()
        if cache_dir is False:
            self.cache = None
        else:
            self.cache = ChunkCache(Path(cache_dir) if cache_dir else default_cache_dir())
        self.max_concurrent = max_concurrent
        if retry is None and host_type == "local":
            # the local backend reports every ScW within a second: a job silent for 30 s has stalled
            retry = RetryPolicy(budget_s=900.0, poll_interval_s=0.5, max_poll_interval_s=2.0, backoff_s=0.5,
                                max_backoff_s=5.0, poll_failure_budget_s=30.0, stall_timeout_s=30.0,
                                queue_timeout_s=120.0)
        self.retry = retry or RetryPolicy(poll_interval_s=5.0, max_poll_interval_s=30.0)
        self.progress = progress

    def __repr__(self) -> str:
        who = "with a token" if self._token else "anonymous"
        return f"Session({self.host_type!r}, url={self.url!r}, {who}, simulated={self.simulated})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def _identify(self) -> tuple[str, bool]:
        if self.host_type != "local":
            return self.url, False
        health = requests.get(f"{self.url}/local/health", timeout=10).json()
        return str(health.get("fingerprint", self.url)), bool(health.get("simulated", True))

    def runner(self) -> JobRunner:
        """A :class:`JobRunner` bound to this session."""
        return JobRunner(self.url, backend_id=self.backend_id, token=self._token, cache=self.cache,
                         max_concurrent=self.max_concurrent, retry=self.retry, progress=self.progress)

    def fetch(self, request: ProductRequest, scw_ids: Sequence[str], *, s_max: int,
              description: str = "") -> RunRecord:
        """Run ``request`` over ``scw_ids`` in chunks of ``s_max`` and return the record.

        Every ScW ends as done, skipped (with the reason) or failed (with the
        error) in the record; the finished pieces hold the products.
        """
        chunks = split_into_chunks(scw_ids, s_max=s_max)
        log.info("%s: %d ScWs in %d jobs (s_max=%d) on %s", request.product, len(scw_ids), len(chunks), s_max,
                 self.url)
        return self.runner().run(request, chunks, description=description)

    def simulated_banner(self) -> str:
        """Markdown warning shown by notebooks when the products are simulated."""
        if not self.simulated:
            return ""
        return ("> **SIMULATED DATA.** These products come from the local MMODA (`host_type: local`), which "
                "simulates the INTEGRAL sky. They show how the workflow works; they are not INTEGRAL archive "
                "data. Set `host_type` to `production` to analyse real data.")
