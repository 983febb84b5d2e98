"""Runs a job: from a request's parameters and ScWs to encoded products.

This is the local stand-in for the OSA data server behind the dispatcher.
It resolves the ScWs of a request, fails like the real backend on ScWs it
cannot analyse (radiation belts, no good time: the AnalysisException shape),
spends the configured compute time per ScW (reporting each one as the real
backend's callbacks do), then asks the simulation (:mod:`.imaging`,
:mod:`.lightcurves`, :mod:`.spectra`) for the products and encodes them with
oda_api's own classes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import numpy as np

from . import protocol, queries
from .config import ServerConfig
from .jobs import Job, JobFailure, JobSpec

log = logging.getLogger(__name__)

#: Name of the backend analysis step reported per ScW, per instrument and product kind.
NODES = {
    ("isgri", "image"): "ii_skyimage", ("isgri", "lc"): "ii_light", ("isgri", "spectrum"): "ii_spectra_extract",
    ("jemx", "image"): "j_ima_iros", ("jemx", "lc"): "j_src_lc", ("jemx", "spectrum"): "j_src_spectra",
}


class Analysis:
    """The simulated data server.

    Parameters
    ----------
    config : ServerConfig
        Server configuration (seed, injected bodies, cache folder).
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self._archive = None
        self._sky = None
        self._lock = threading.Lock()

    @property
    def archive(self):
        """The simulated ScW archive (built or loaded from the cache on first use)."""
        with self._lock:
            if self._archive is None:
                from .archive import ScwArchive
                started = time.time()
                self._archive = ScwArchive.load(cache_dir=self.config.cache_dir)
                log.info("ScW archive ready (%d pointings) in %.1f s", len(self._archive.table),
                         time.time() - started)
            return self._archive

    @property
    def sky(self):
        """The simulated sky."""
        with self._lock:
            if self._sky is None:
                from .sky import Sky
                self._sky = Sky.default(body_fluxes_mcrab=dict(self.config.body_fluxes_mcrab),
                                        seed=self.config.seed)
            return self._sky

    # -- ScW selection -------------------------------------------------------------------------------------
    def scw_ids_for(self, instrument: queries.InstrumentSpec, parameters: dict) -> list[str]:
        """ScWs a request analyses: its ``scw_list``, or a selection around RA/DEC in [T1, T2].

        Without ``scw_list`` the real backend selects pointings within
        ``radius`` of (RA, DEC) in [T1, T2] and keeps at most ``max_pointings``
        of them, drawn at random with a fixed seed.
        """
        if parameters.get("scw_list"):
            return list(parameters["scw_list"])
        t1, t2 = queries.times_ijd(parameters)
        rows = self.archive.select(t1, t2, ra=parameters["RA"], dec=parameters["DEC"],
                                   radius=parameters["radius"])
        ids = [f"{swid}.001" for swid in self.archive.table["SWID"][rows]]
        if len(ids) > parameters["max_pointings"]:
            ids = sorted(random.Random(0).sample(ids, parameters["max_pointings"]))
        return ids

    # -- computing -----------------------------------------------------------------------------------------
    def compute(self, job: Job, *, latency_per_scw_s: float = 0.0) -> tuple[str, str]:
        """Compute a job's products.

        Returns
        -------
        products_json : str
            JSON text of the product keys of ``products`` (``numpy_data_product_list``, ``catalog``).
        comment : str
            Text for ``exit_status.comment``.

        Raises
        ------
        JobFailure
            In the shapes of the real backend's failures.
        """
        spec = job.spec
        if spec.kind == "spectral_fit":
            raise JobFailure("Error when getting query products",
                             error_message="spectral_fit runs XSPEC in the MMODA web front end; the local backend "
                                           "does not provide it: fit the spectrum products instead",
                             debug_message="NotImplementedError('spectral_fit')")
        wrong = queries.check_scw_ids(spec.scw_ids)
        if wrong:
            raise JobFailure("Error when getting query products",
                             error_message=f"DDAException: the following scws have a wrong format: {wrong}",
                             debug_message=f"DDAException('the following scws have a wrong format {wrong}')")
        if not spec.scw_ids:
            raise no_data_failure("scwlist empty", {})
        try:
            rows = self.archive.index_of(spec.scw_ids)
        except KeyError as exc:
            raise no_data_failure("ScWs not in the archive", {"scws": _ids_in(str(exc))}) from None
        table = self.archive.table[rows]
        from .instrument import instrument_for, problem_with_scw
        instrument = instrument_for(spec.instrument, jemx_unit=spec.parameters.get("jemx_num"))
        node = NODES[(spec.instrument, spec.kind)]
        problems = {}
        for scw_id, row in zip(spec.scw_ids, table):
            reason = problem_with_scw(row, instrument)
            if latency_per_scw_s:
                time.sleep(latency_per_scw_s)
            if reason:
                problems[scw_id] = reason
                job.report(message="analysis exception : inapplicable", node=node, scwid=scw_id, reason=reason)
            else:
                job.report(message="main done", node=node, scwid=scw_id)
        if problems:
            raise no_data_failure("AnalysisException", {"node": node, "scws": sorted(problems),
                                                        "reasons": problems})
        products, comment = self._products(spec, table, instrument)
        return json.dumps(products, allow_nan=False), comment

    def _products(self, spec: JobSpec, table, instrument) -> tuple[dict, str]:
        from .products import build_products
        return build_products(spec, table, instrument, self.sky, seed=self.config.seed)

    def debug_products(self, spec: JobSpec) -> str:
        """Products of the dispatcher's test instruments (``empty``, ``empty-async``)."""
        from oda_api.data_products import NumpyDataProduct, NumpyDataUnit
        if spec.kind == "numerical":
            unit = NumpyDataUnit(np.zeros((100, 100)), hdu_type="image", name="table")
            return json.dumps({"numpy_data_product_list": [NumpyDataProduct([unit]).encode()]})
        if spec.kind == "callback":
            scws = list(spec.parameters.get("scw_list") or [])
            unit = NumpyDataUnit(np.array(scws, dtype=float) if not scws else np.zeros(len(scws)),
                                 name="table", meta_data={"scw_list": scws})
            return json.dumps({"input_param_scw_list": NumpyDataProduct([unit]).encode()})
        return "{}"


def no_data_failure(exception: str, details: dict) -> JobFailure:
    """The backend's "no useful data" failure (the client raises FailedToFindAnyUsefulResults).

    ``details`` lands in ``error_message`` as JSON, so the ScW ids concerned
    are readable by the client.
    """
    detail_json = json.dumps(details, sort_keys=True)
    return JobFailure(protocol.NO_DATA_MESSAGE,
                      error_message=f"{exception}:{detail_json}",
                      debug_message=json.dumps({"node": "dataanalysis.core.AnalysisException",
                                                "exception": detail_json, "exception_kind": "handled"}))


def _ids_in(text: str) -> list[str]:
    import re
    return re.findall(r"\d{12}(?:\.\d{3})?", text)
