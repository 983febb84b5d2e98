"""Runs a job: from a request's parameters and ScWs to encoded products.

This is the local stand-in for the OSA data server behind the dispatcher.
It resolves the ScWs of a request (its ``scw_list``, or the backend's own
selection), analyses each ScW, spending the configured compute time and
reporting it as the real backend's callbacks do, then asks the simulation
(:mod:`.imaging`, :mod:`.lightcurves`, :mod:`.spectra`) for the products of
the ScWs it could analyse and encodes them with oda_api's own classes.

A ScW the backend cannot analyse (radiation belts, no good time, unknown)
does not fail the job: as in the real OSA backend, its per-ScW analysis ends
in an analysis exception that the job monitor reports (``node``,
``message: "analysis exception"``, ``scwid``, ``exception``), and the mosaic,
light curves and spectra are made from the other ScWs. Only a job none of
whose ScWs can be analysed fails (the "no useful data" answer). The
evidence and the alternative behaviour (``scw_failure_policy="fail-job"``)
are in ``docs/fidelity.md``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from pathlib import Path

import numpy as np

from . import protocol, queries
from .config import ServerConfig
from .jobs import Job, JobFailure, JobSpec

log = logging.getLogger(__name__)

#: Name of the backend analysis step reported per ScW, per instrument and product kind (ddosa node names).
NODES = {
    ("isgri", "image"): "ii_skyimage",
    ("isgri", "lc"): "ii_lc_extract",
    ("isgri", "spectrum"): "ii_spectra_extract",
    ("jemx", "image"): "jemx_image",
    ("jemx", "lc"): "jemx_lcr",
    ("jemx", "spectrum"): "jemx_spe",
}
#: The step that combines the ScWs of a job, reported with ``scwid: "inapplicable"`` when it has nothing to combine.
COMBINING_NODES = {
    ("isgri", "image"): "mosaic_ii_skyimage",
    ("isgri", "lc"): "ISGRILCSum",
    ("isgri", "spectrum"): "ISGRISpectraSum",
    ("jemx", "image"): "mosaic_jemx",
    ("jemx", "lc"): "lc_pick",
    ("jemx", "spectrum"): "spe_pick",
}
#: What the backend's own selection (``scw_list`` not given) analyses when a query is a Dummy one.
DUMMY_SCWS = ("066500220010.001",)
#: What happens to a job holding ScWs that cannot be analysed: ``skip-scw`` (the real backend) or ``fail-job``.
SCW_FAILURE_POLICIES = ("skip-scw", "fail-job")


class ScwVerdicts:
    """What the backend learnt about ScWs it could not analyse, per instrument.

    The real backend caches the analysis exception of a ScW's analysis steps
    like any other result, so a later request involving the same ScW (even
    with other energies) meets the cached exception at once. Kept on disk
    beside the job results.

    Parameters
    ----------
    path : Path
        JSON file holding ``{"<instrument>/<scw id>": reason}``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._verdicts: dict[str, str] = {}
        if self.path.exists():
            try:
                self._verdicts = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError):
                log.warning("unreadable ScW verdicts %s, starting afresh", self.path)

    def known(self, instrument: str, scw_ids) -> dict[str, str]:
        """Reasons already known for the given ScWs (those never found bad are absent)."""
        with self._lock:
            return {
                scw: self._verdicts[f"{instrument}/{scw}"] for scw in scw_ids if f"{instrument}/{scw}" in self._verdicts
            }

    def record(self, instrument: str, reasons: dict[str, str]) -> None:
        """Remember the ScWs found unanalysable (written to disk when something new was learnt)."""
        with self._lock:
            new = {
                f"{instrument}/{scw}": reason
                for scw, reason in reasons.items()
                if self._verdicts.get(f"{instrument}/{scw}") != reason
            }
            if not new:
                return
            self._verdicts.update(new)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(self._verdicts, sort_keys=True))
            tmp.replace(self.path)


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
        self.verdicts = ScwVerdicts(config.jobs_dir / "scw_verdicts.json")

    @property
    def archive(self):
        """The simulated ScW archive (built or loaded from the cache on first use)."""
        with self._lock:
            if self._archive is None:
                from .archive import ScwArchive

                started = time.time()
                self._archive = ScwArchive.load(cache_dir=self.config.cache_dir)
                log.info("ScW archive ready (%d pointings) in %.1f s", len(self._archive.table), time.time() - started)
            return self._archive

    @property
    def sky(self):
        """The simulated sky."""
        with self._lock:
            if self._sky is None:
                from .sky import Sky

                self._sky = Sky.default(
                    body_fluxes_mcrab=dict(self.config.body_fluxes_mcrab),
                    seed=self.config.seed,
                    injected_sources=list(self.config.injected_sources),
                )
            return self._sky

    # -- ScW selection -------------------------------------------------------------------------------------
    def scw_ids_for(self, instrument: queries.InstrumentSpec, parameters: dict) -> list[str]:
        """ScWs a request analyses: its ``scw_list``, or the backend's own selection.

        Without ``scw_list`` the real backend (``rangequery.TimeDirectionScWList``)
        takes the pointings within ``radius`` of (RA, DEC) lying entirely inside
        [T1, T2], draws ``max_pointings`` of them at random with the fixed seed 0,
        and drops those without ISGRI events (here: no ISGRI good time). Dummy
        queries analyse fixed test ScWs whatever they ask for.
        """
        if parameters.get("query_type") == "Dummy":
            return list(DUMMY_SCWS)
        if parameters.get("scw_list"):
            return list(parameters["scw_list"])
        t1, t2 = queries.times_ijd(parameters)
        table = self.archive.table
        rows = self.archive.select(t1, t2, ra=parameters["RA"], dec=parameters["DEC"], radius=parameters["radius"])
        inside = (np.asarray(table["TSTART"])[rows] > t1) & (np.asarray(table["TSTOP"])[rows] < t2)
        rows = rows[inside]
        ids = [str(swid) for swid in table["SWID"][rows]]
        picked = sorted(random.Random(0).sample(ids, min(int(parameters["max_pointings"]), len(ids))))
        with_events = self.archive.find(picked)
        good = np.asarray(table["GOOD_ISGRI"])[with_events] > 0
        return [f"{swid}.001" for swid, ok in zip(picked, good) if ok]

    def known_failure(self, spec: JobSpec) -> tuple[JobFailure, list[dict]] | None:
        """The failure of a job whose ScWs were all found unanalysable by earlier jobs, with its reports.

        Returns None when at least one ScW may still be analysed (or was never seen).
        """
        if spec.parameters.get("query_type") == "Dummy" or not spec.scw_ids:
            return None
        known = self.verdicts.known(spec.instrument, spec.scw_ids)
        if len(known) < len(spec.scw_ids):
            return None
        reports = [
            _exception_report(spec, NODES[(spec.instrument, spec.kind)], scw, reason) for scw, reason in known.items()
        ]
        reports.append(
            _exception_report(
                spec, COMBINING_NODES[(spec.instrument, spec.kind)], "inapplicable", "no ScW could be analysed"
            )
        )
        return no_data_failure(
            "AnalysisException",
            {"node": COMBINING_NODES[(spec.instrument, spec.kind)], "scws": sorted(known), "reasons": known},
        ), reports

    def inspect(self, spec: JobSpec) -> dict[str, str]:
        """Find, without computing products, which ScWs of a job cannot be analysed; remember them.

        Cheap (archive look-ups): the server calls it when a job arrives, so a
        second request meets what the first one found, as with the real
        backend's cached analysis exceptions.
        """
        if spec.parameters.get("query_type") == "Dummy" or spec.kind not in ("image", "lc", "spectrum"):
            return {}
        reasons, _ = self._scw_problems(spec)
        self.verdicts.record(spec.instrument, reasons)
        return reasons

    def _scw_problems(self, spec: JobSpec):
        """Reasons why ScWs of a job cannot be analysed, and the archive rows of all of them (-1 if unknown)."""
        from .instrument import instrument_for, problem_with_scw

        instrument = instrument_for(spec.instrument, jemx_unit=spec.parameters.get("jemx_num"))
        rows = self.archive.find(spec.scw_ids)
        table = self.archive.table
        reasons = {}
        for scw_id, row in zip(spec.scw_ids, rows):
            if row < 0:
                reasons[scw_id] = "ScW not found in the archive (no such pointing or not yet processed)"
                continue
            reason = problem_with_scw(table[int(row)], instrument)
            if reason:
                reasons[scw_id] = reason
        return reasons, rows

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
            raise JobFailure(
                "Error when getting query products",
                error_message="spectral_fit runs XSPEC in the MMODA web front end; the local backend "
                "does not provide it: fit the spectrum products instead",
                debug_message="NotImplementedError('spectral_fit')",
            )
        wrong = queries.check_scw_ids(spec.scw_ids)
        if wrong:
            raise JobFailure(
                "Error when getting query products",
                error_message=f"DDAException: the following scws have a wrong format: {wrong}",
                debug_message=f"DDAException('the following scws have a wrong format {wrong}')",
            )
        if not spec.scw_ids:
            raise no_data_failure("scwlist empty", {})
        from .instrument import instrument_for

        instrument = instrument_for(spec.instrument, jemx_unit=spec.parameters.get("jemx_num"))
        node = NODES[(spec.instrument, spec.kind)]
        problems, rows = self._scw_problems(spec)
        self.verdicts.record(spec.instrument, problems)
        for scw_id in spec.scw_ids:
            if latency_per_scw_s:
                time.sleep(latency_per_scw_s)
            if scw_id in problems:
                job.reports.append(_exception_report(spec, node, scw_id, problems[scw_id]))
            else:
                job.report(message="main done", node=node, scwid=scw_id)
        good = [int(row) for scw_id, row in zip(spec.scw_ids, rows) if scw_id not in problems]
        combining = COMBINING_NODES[(spec.instrument, spec.kind)]
        if problems and self.config.scw_failure_policy == "fail-job":
            raise no_data_failure("AnalysisException", {"node": node, "scws": sorted(problems), "reasons": problems})
        if not good:
            job.reports.append(_exception_report(spec, combining, "inapplicable", "no ScW could be analysed"))
            raise no_data_failure(
                "AnalysisException", {"node": combining, "scws": sorted(problems), "reasons": problems}
            )
        products, comment = self._products(spec, self.archive.table[good], instrument)
        job.report(message="main done", node=combining, scwid="inapplicable")
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
            unit = NumpyDataUnit(
                np.array(scws, dtype=float) if not scws else np.zeros(len(scws)),
                name="table",
                meta_data={"scw_list": scws},
            )
            return json.dumps({"input_param_scw_list": NumpyDataProduct([unit]).encode()})
        return "{}"


def no_data_failure(exception: str, details: dict) -> JobFailure:
    """The backend's "no useful data" failure (the client raises FailedToFindAnyUsefulResults).

    ``details`` lands in ``error_message`` as JSON, so the ScW ids concerned
    are readable by the client.
    """
    detail_json = json.dumps(details, sort_keys=True)
    return JobFailure(
        protocol.NO_DATA_MESSAGE,
        error_message=f"{exception}:{detail_json}",
        debug_message=json.dumps(
            {"node": "dataanalysis.core.AnalysisException", "exception": detail_json, "exception_kind": "handled"}
        ),
    )


def _exception_report(spec: JobSpec, node: str, scwid: str, reason: str) -> dict:
    """A job-monitor entry for an analysis step that ended in an analysis exception.

    The shape of the real backend's callback (dataanalysis ``Callback``:
    ``node``, ``message``, ``scwid``, ``exception``, ``state``); the dispatcher
    stores the unknown action ``node_analysis_exception`` as ``progress``.
    """
    return {
        "session_id": "",
        "job_id": spec.job_id,
        "level": "top",
        "node": node,
        "message": "analysis exception",
        "scwid": scwid,
        "exception": f"AnalysisException({reason!r})",
        "state": "node_analysis_exception",
        "action": "progress",
    }
