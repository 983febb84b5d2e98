"""The state of one local MMODA server, and how a request reaches it (:func:`current_backend`)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
from flask import current_app

from . import __version__, gateway, queries
from .config import ServerConfig
from .gallery_store import GalleryStore
from .jobs import Counters, Job, JobManager, ResultStore, fault_drawer
from .lifetime import code_digest

#: Key of the backend in ``app.extensions``.
EXTENSION = "mmoda_local"
#: Key of the gallery store in ``app.extensions`` (also ``Backend.gallery``).
GALLERY_EXTENSION = "mmoda_local_gallery"


class Backend:
    """State of one server: configuration, instruments, jobs, counters, analysis and product gallery.

    Parameters
    ----------
    config : ServerConfig
        The server configuration.
    analysis : object, optional
        Computes INTEGRAL products; defaults to :class:`mmoda_local.analysis.Analysis`.
    """

    def __init__(self, config: ServerConfig, *, analysis=None):
        self.config = config
        self.instruments = queries.instruments(debug=config.debug_instruments)
        self.counters = Counters()
        self.secret = config.secret()
        if analysis is None:
            from .analysis import Analysis

            analysis = Analysis(config)
        self.analysis = analysis
        self.results = ResultStore(config.jobs_dir)
        self.jobs = JobManager(
            self._compute,
            self.results,
            self.counters,
            workers=config.workers,
            fault_draw=fault_drawer(config.seed, stall=config.faults.stall_job, fail=config.faults.fail_job),
        )
        self._fault_rng = np.random.default_rng([config.seed, 4242])
        # what makes this server's products differ from another's: clients key their caches with it
        identity = {
            "version": __version__,
            "seed": config.seed,
            "bodies": sorted(config.body_fluxes_mcrab.items()),
            "grbs": config.injected_grbs,
        }
        if config.injected_sources:  # only when set, so that other servers keep their fingerprint
            identity["sources"] = config.injected_sources
        self.fingerprint = "mmoda_local-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        #: which code serves: clients reuse only a server of their own checkout and version
        self.code_digest = code_digest()
        self._fault_lock = threading.Lock()
        self.started_at = time.time()
        self.gallery = GalleryStore(Path(config.data_dir) / "gallery", revnum=self.revnum)

    # -- faults -----------------------------------------------------------------------------------------------
    def draw_http_fault(self) -> str | None:
        """Decide whether this request is dropped or answered with HTTP 500.

        Returns
        -------
        str or None
            ``"drop"``, ``"500"`` or None (answer normally).
        """
        faults = self.config.faults
        if faults.http_500 <= 0 and faults.drop_connection <= 0:
            return None
        with self._fault_lock:
            u = self._fault_rng.random()
        if u < faults.drop_connection:
            return "drop"
        if u < faults.drop_connection + faults.http_500:
            return "500"
        return None

    # -- computing --------------------------------------------------------------------------------------------
    def _compute(self, job: Job) -> tuple[str, str]:
        return self.analysis.compute(job, latency_per_scw_s=self.config.latency_per_scw_s)

    @property
    def installed(self) -> list[str]:
        """Names of the instruments this server offers."""
        return list(self.instruments)

    def revnum(self, utc: str) -> int | None:
        """The INTEGRAL revolution at a UTC time (``YYYY-MM-DDTHH:MM:SS``), None outside the mission.

        Parameters
        ----------
        utc : str
            The time.

        Returns
        -------
        int or None
        """
        status, value = gateway.converttime(self.analysis.archive, "UTC", utc, "REVNUM")
        return int(value) if status == 200 else None


def current_backend() -> Backend:
    """The backend of the application serving the current request.

    Returns
    -------
    Backend
    """
    return current_app.extensions[EXTENSION]
