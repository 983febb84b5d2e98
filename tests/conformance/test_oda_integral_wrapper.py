"""oda-integral-wrapper 1.5.19 (the MMODA team's library behind the gallery notebooks) driving the local MMODA.

The wrapper needs Python >= 3.13 and runs in its own environment, ``.venv-wrapper/``
(``tests/conformance/wrapper_env.py`` builds it; when the machine has no Python >= 3.13 these tests FAIL saying
so). Each test starts one script of ``wrapper_scripts/`` with that interpreter, bounded by
:data:`CALL_BOUND_S`, against a local MMODA served over HTTP on 127.0.0.1 by this process; the scripts use the
wrapper unmodified (only its module constant ``oda_public_host`` is pointed at the local server), refuse any
other network connection, and write a JSON summary of what every wrapper call returned, or the exact error with
the wrapper's code line. The tests then check the values, not only that nothing raised.

The ScW list is what a gallery user gets for the Crab field from the ScW-list service (the local one): all
pointings within 10° of the Crab between :data:`SCW_WINDOW`, more than ``s_max`` of them, including pointings in
the radiation belts (and one without ISGRI good time) that the backend cannot analyse. Those are reported in the
job monitor as analysis exceptions and the products come from the other ScWs of each job.

Logs and summaries are kept in the module's temporary folder (``wrapper-calls/``), with ``calls.md``: the table
of calls, bounds, results and times.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conformance.wrapper_env import WrapperEnvError, ensure_wrapper_env

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).resolve().parent / "wrapper_scripts"
CRAB = {"name": "Crab", "ra": 83.6331, "dec": 22.0145}
#: The other bright source of the Crab field (ISDC reference catalogue position).
A0535 = {"name": "1A 0535+262", "ra": 84.7270, "dec": 26.3160}
#: Crab-field request: a belt pointing of rev 308, then the start of rev 352 (three belt pointings).
SCW_WINDOW = ("2005-04-21T00:00:00", "2005-09-01T12:00:00")
SCW_RADIUS_DEG = 10.0
S_MAX = 10
#: Seconds between the wrapper's polls (its default, 10 s, only slows the test down).
SLEEP_TIME_S = 1
#: Bound of one script (interpreter start, imports and every wrapper call in it) on a loaded 2-core machine.
CALL_BOUND_S = 120
DETECTION_THRESHOLD = 7.0
#: Selected catalogue of the light-curve and spectrum requests, as a ds9 region (what gallery notebooks keep).
SELECTED_REGION = "fk5\n" + "".join(
    f'circle({s["ra"]},{s["dec"]},240") # text={{{s["name"]}}}\n' for s in (CRAB, A0535)
)
OSA = {"osa_version": "OSA11.2", "product_type": "Real", "RA": CRAB["ra"], "DEC": CRAB["dec"], "src_name": CRAB["name"]}
#: oda_api arguments per instrument; JEM-X1 was the unit in operation in 2005.
INSTRUMENTS = {
    "isgri": {"instrument": "isgri", "E1_keV": 28.0, "E2_keV": 40.0},
    "jemx": {"instrument": "jemx", "jemx_num": 1, "E1_keV": 3.0, "E2_keV": 20.0},
}


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def wrapper_python() -> Path:
    """The Python >= 3.13 of ``.venv-wrapper/`` (built on first use); fails, never skips, without one."""
    try:
        return ensure_wrapper_env()
    except WrapperEnvError as exc:
        pytest.fail(f"cannot run oda-integral-wrapper 1.5.19: {exc}", pytrace=False)


class CallTable:
    """The table of wrapper calls: bound, what the call did, time, error, and whether the test checked the values.

    Parameters
    ----------
    folder : Path
        Where the scripts' calls, logs and summaries go, and ``calls.md`` at the end.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: list[dict] = []

    def add(self, label: str, step: str | None, *, result: str, seconds, error: str = "") -> None:
        """One call; its verdict stays "not checked" until :meth:`verdict` is called for its label."""
        name = label if step in (None, label) else f"{label}: {step}"
        self.rows.append(
            {
                "label": label,
                "step": step,
                "call": name,
                "bound": CALL_BOUND_S,
                "result": result,
                "seconds": seconds,
                "error": error,
                "verdict": "values not checked (test failed)",
            }
        )

    def verdict(self, label: str, text: str = "values checked", *, step: str | None = None) -> None:
        """Record that the test checked what the calls of ``label`` (or only ``step``) returned."""
        for row in self.rows:
            if row["label"] == label and (step is None or row["step"] == step):
                row["verdict"] = text

    def markdown(self) -> str:
        """The table in Markdown."""
        lines = [
            "| call | bound (s) | returned | time (s) | test verdict | error |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['call']} | {r['bound']} | {r['result']} | {r['seconds']} | {r['verdict']} | {r['error']} |"
            for r in self.rows
        ]
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The table of calls, in a folder that also keeps their requests, logs and summaries (``calls.md`` at the end)."""
    table = CallTable(tmp_path_factory.mktemp("wrapper-calls"))
    yield table
    (table.folder / "calls.md").write_text(table.markdown())
    log.info("oda-integral-wrapper calls (%s):\n%s", table.folder, table.markdown())


@pytest.fixture(scope="module")
def local_mmoda(tmp_path_factory, archive_cache):
    """A local MMODA on 127.0.0.1 with no added latency, shared by the module's tests."""
    from mmoda_local.config import ServerConfig
    from mmoda_local.server import ServerThread

    config = ServerConfig(
        data_dir=tmp_path_factory.mktemp("wrapper-mmoda"),
        archive_cache_dir=archive_cache,
        latency_per_scw_s=0.0,
        workers=2,
    )
    server = ServerThread(config).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_file(local_mmoda, outputs) -> Path:
    """A token of the local server with the ``general`` role (jobs of at most 50 ScWs need no other)."""
    path = outputs.folder / "token"
    path.write_text(local_mmoda.token(roles="general"))
    return path


@pytest.fixture(scope="module")
def crab_scws(local_mmoda) -> dict:
    """The Crab-field ScW list from the local ScW-list service, and which of its ScWs cannot be analysed.

    The service is the one gallery notebooks call (``get_pointings``); which pointings are in the radiation belts
    is read from the simulated archive, so that the test knows what the job monitor must report.
    """
    url = (
        f"{local_mmoda.url}/gw/timesystem/api/v1.0/scwlist/cons/{SCW_WINDOW[0]}/{SCW_WINDOW[1]}"
        f"?ra={CRAB['ra']}&dec={CRAB['dec']}&radius={SCW_RADIUS_DEG}"
    )
    answer = requests.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    swids = answer.json()
    archive = local_mmoda.backend.analysis.archive
    rows = archive.find(swids)
    table = archive.table
    belt = sorted(f"{s}.001" for s, row in zip(swids, rows) if bool(table["IN_BELT"][row]))
    no_isgri_time = sorted(
        f"{s}.001"
        for s, row in zip(swids, rows)
        if not bool(table["IN_BELT"][row]) and float(table["GOOD_ISGRI"][row]) < 1.0
    )
    scws = [f"{s}.001" for s in swids]
    chunks = [scws[i : i + S_MAX] for i in range(0, len(scws), S_MAX)]
    # preconditions of what the tests mean to exercise: fail loudly if the archive stops providing them
    assert len(scws) > 2 * S_MAX, f"only {len(scws)} ScWs in {SCW_WINDOW}: not more than 2 x s_max={S_MAX}"
    assert belt, f"no radiation-belt pointing among the {len(scws)} ScWs of {SCW_WINDOW}"
    assert all(set(chunk) - set(belt) - set(no_isgri_time) for chunk in chunks), (
        "a job of the wrapper would hold only unanalysable ScWs (the wrapper raises on a failed job)"
    )
    return {"scws": scws, "belt": belt, "no_isgri_time": no_isgri_time, "n_jobs": len(chunks)}


# ----------------------------------------------------------------------------------------------- helpers


def run_script(
    script: str, call: dict, *, label: str, python: Path, server, token: Path | None, outputs: CallTable
) -> dict:
    """Run one wrapper script under :data:`CALL_BOUND_S`; return its summary, or fail with the log's tail."""
    stem = label.replace(" ", "_").replace("/", "_")
    call_path, summary_path, log_path = (
        outputs.folder / f"{stem}.{ext}" for ext in ("call.json", "summary.json", "log")
    )
    call_path.write_text(json.dumps(call, indent=1))
    command = [
        str(python),
        str(SCRIPTS / script),
        "--url",
        server.url,
        "--call",
        str(call_path),
        "--summary",
        str(summary_path),
        "--log-level",
        "INFO",
    ]
    if token is not None:
        command += ["--token-file", str(token)]
    # the 3.13 process must not see the 3.11 environment's paths; a fixed hash seed fixes the order in which the
    # wrapper walks its sets of source names, so that two runs log alike
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ODA_TOKEN")
    }
    env.update(MPLBACKEND="Agg", PYTHONHASHSEED="0", PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(log_path, "w") as log_file:
        try:
            subprocess.run(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=outputs.folder,
                timeout=CALL_BOUND_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            outputs.add(
                label, None, result="TIMEOUT", seconds=CALL_BOUND_S, error=f"did not return within {CALL_BOUND_S} s"
            )
            pytest.fail(
                f"{label}: the wrapper did not return within {CALL_BOUND_S} s (log {log_path}):\n" + _tail(log_path),
                pytrace=False,
            )
    if not summary_path.exists():
        outputs.add(label, None, result="CRASH", seconds=round(time.monotonic() - started, 1), error="no summary")
        pytest.fail(f"{label}: the script left no summary (log {log_path}):\n" + _tail(log_path), pytrace=False)
    summary = json.loads(summary_path.read_text())
    summary["log_path"] = str(log_path)
    for step in summary["steps"]:
        error = step.get("error")
        text = "" if error is None else f"{error['type']}: {error['message'][:200]} [{error['wrapper_line']}]"
        outputs.add(
            label,
            step["name"],
            result="returned" if step["ok"] else "raised",
            seconds=step["seconds"],
            error=text.replace("|", "/").replace("\n", " "),
        )
    assert summary["versions"]["oda_integral_wrapper"] == "1.5.19", summary["versions"]
    assert summary["versions"]["oda_api"] == "1.3.5", summary["versions"]
    assert not summary["blocked_connections"], (
        f"{label}: the wrapper tried to reach the network: {summary['blocked_connections']}"
    )
    return summary


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def step_of(summary: dict, name: str) -> dict:
    """The step ``name`` of a summary; fails with the exact error (and the wrapper's line) when it failed."""
    steps = [step for step in summary["steps"] if step["name"] == name]
    assert steps, f"step {name} did not run; steps: {[s['name'] for s in summary['steps']]} (log {summary['log_path']})"
    step = steps[0]
    if not step["ok"]:
        error = step["error"]
        pytest.fail(
            f"{name} failed after {step['seconds']} s: {error['type']}: {error['message']}\n"
            f"  wrapper line: {error['wrapper_line']}\n  innermost: "
            + "\n    ".join(error["innermost"])
            + f"\n  log: {summary['log_path']}",
            pytrace=False,
        )
    return step


def check_jobs(summary: dict, crab_scws: dict, *, unanalysable: list[str]) -> None:
    """Every job done; together they hold the whole list; each unanalysable ScW is reported as an analysis exception."""
    jobs = summary["transport"]["jobs"]
    assert len(jobs) == crab_scws["n_jobs"], f"{len(jobs)} jobs for {crab_scws['n_jobs']} groups of <= {S_MAX} ScWs"
    assert [job["final_status"] for job in jobs] == ["done"] * len(jobs), jobs
    submitted = sorted(scw for job in jobs for scw in job["scws"])
    assert submitted == sorted(crab_scws["scws"])
    reported = {scw: job["analysis_exceptions"][scw] for job in jobs for scw in job["analysis_exceptions"]}
    assert sorted(reported) == sorted(unanalysable), f"analysis exceptions reported for {sorted(reported)}"
    for scw in crab_scws["belt"]:
        assert "radiation belt" in reported[scw], reported[scw]


def _distance_deg(ra1, dec1, ra2, dec2) -> float:
    ra1, dec1, ra2, dec2 = (math.radians(v) for v in (ra1, dec1, ra2, dec2))
    cos_d = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos_d))))


def long_call(crab_scws: dict, product: str, instrument: str, **extra) -> dict:
    """The request of one ``long_scw_list_call`` script."""
    return {
        "scw_list": crab_scws["scws"],
        "s_max": S_MAX,
        "sleep_time": SLEEP_TIME_S,
        "source": CRAB,
        "parameters": {**OSA, **INSTRUMENTS[instrument], "product": product},
        **extra,
    }


def unanalysable_for(instrument: str, crab_scws: dict) -> list[str]:
    """ScWs the backend cannot analyse for an instrument: the belt ones, and for ISGRI those without ISGRI time."""
    return sorted(crab_scws["belt"] + (crab_scws["no_isgri_time"] if instrument == "isgri" else []))


# ----------------------------------------------------------------------------------------------- images


def _unit(image: dict, imatype: str) -> dict:
    units = [unit for unit in image["units"] if unit.get("IMATYPE") == imatype]
    assert units, f"no {imatype} image among {[u.get('IMATYPE') for u in image['units']]}"
    return units[0]


def test_isgri_image_long_scw_list_call_then_combine_mosaics(
    wrapper_python, local_mmoda, token_file, crab_scws, outputs
):
    """ISGRI mosaics of three jobs (belt ScWs inside) are combined by the wrapper into one with the Crab detected."""
    call = long_call(crab_scws, "isgri_image", "isgri", detection_threshold=DETECTION_THRESHOLD)
    summary = run_script(
        "image_mosaics.py",
        call,
        label="isgri_image",
        python=wrapper_python,
        server=local_mmoda,
        token=token_file,
        outputs=outputs,
    )
    check_jobs(summary, crab_scws, unanalysable=unanalysable_for("isgri", crab_scws))

    long_result = step_of(summary, "long_scw_list_call")["result"]
    assert long_result["n_jobs"] == crab_scws["n_jobs"]
    assert long_result["returned"] == "combined", "long_scw_list_call fell back to the list of mosaics"
    combined = step_of(summary, "combine_mosaics")["result"]
    for per_job in long_result["per_job"]:
        assert [m["name"] for m in per_job["source_matches"]] == ["Crab"], per_job["source_matches"]
    intensity, exposure = _unit(combined, "INTENSITY"), _unit(combined, "EXPOSURE")
    assert len(intensity["shape"]) == 2 and min(intensity["shape"]) > 100, intensity
    assert intensity["finite_fraction"] > 0.5
    # the combined exposure map adds the jobs' maps where they overlap (all point at the Crab)
    job_exposures = [_unit(job, "EXPOSURE")["max"] for job in long_result["per_job"]]
    assert exposure["max"] > max(job_exposures), (exposure["max"], job_exposures)
    crab = [m for m in combined["source_matches"] if m["name"] == "Crab"]
    assert crab and crab[0]["significance"] >= DETECTION_THRESHOLD, combined["source_matches"]
    assert combined["n_sources"] == len(set(combined["sources"])), "duplicate sources in the combined catalogue"
    assert long_result["combined"]["sources"] == combined["sources"]
    outputs.verdict("isgri_image")


def test_jemx_image_long_scw_list_call_returns_the_mosaics_of_each_job(
    wrapper_python, local_mmoda, token_file, crab_scws, outputs
):
    """JEM-X1 mosaics of three jobs come back; combining them fails in pymosaic, as with real JEM-X mosaics.

    The real JEM-X mosaic (OSA ``j_ima_mosaic`` output, passed through unchanged by the dispatcher plugin) names
    its intensity image ``IMATYPE = 'RECONSTRUCTED'``; pymosaic 0.4.5, which ``combine_mosaics`` calls, only reads
    ``INTENSITY`` (``img_parser_osa``), so the wrapper's ``long_scw_list_call`` catches the failure and returns
    the list of per-job mosaics ("did not manage to combine mosaics").
    """
    call = long_call(crab_scws, "jemx_image", "jemx", detection_threshold=DETECTION_THRESHOLD)
    summary = run_script(
        "image_mosaics.py",
        call,
        label="jemx_image",
        python=wrapper_python,
        server=local_mmoda,
        token=token_file,
        outputs=outputs,
    )
    check_jobs(summary, crab_scws, unanalysable=unanalysable_for("jemx", crab_scws))

    long_result = step_of(summary, "long_scw_list_call")["result"]
    assert long_result["returned"] == "list" and long_result["n_jobs"] == crab_scws["n_jobs"], long_result["returned"]
    for per_job in long_result["per_job"]:
        reconstructed = _unit(per_job, "RECONSTRUCTED")
        assert not [u for u in per_job["units"] if u.get("IMATYPE") == "INTENSITY"]
        assert reconstructed["INSTRUME"] == "JMX1" and min(reconstructed["shape"]) > 100, reconstructed
        crab = [m for m in per_job["source_matches"] if m["name"] == "Crab"]
        assert crab and crab[0]["significance"] >= DETECTION_THRESHOLD, per_job["source_matches"]
    combine = [step for step in summary["steps"] if step["name"] == "combine_mosaics"][0]
    assert not combine["ok"], "combine_mosaics combined JEM-X mosaics that have no INTENSITY image"
    # pymosaic's img_parser_osa fails, and its parse_in then raises while reporting that failure
    assert any(" in parse_in: " in line for line in combine["error"]["innermost"]), combine["error"]
    outputs.verdict("jemx_image")
    outputs.verdict(
        "jemx_image", "values checked: the per-job mosaics (the wrapper's fallback)", step="long_scw_list_call"
    )
    outputs.verdict(
        "jemx_image", "raises as expected: no INTENSITY image in JEM-X mosaics (as real)", step="combine_mosaics"
    )


def test_long_scw_list_call_with_a_job_of_only_belt_scws_raises_at_once(
    wrapper_python, local_mmoda, token_file, crab_scws, outputs
):
    """A job none of whose ScWs can be analysed fails and stays failed: the wrapper raises instead of polling forever.

    oda_api counts a failed job as complete; the wrapper then asks for its products and oda_api raises
    ``FailedToFindAnyUsefulResults`` ("failed: get dataserver products"), which ends ``long_scw_list_call``.
    """
    call = long_call(crab_scws, "isgri_image", "isgri", detection_threshold=DETECTION_THRESHOLD)
    call.update(scw_list=crab_scws["belt"], s_max=2)
    summary = run_script(
        "image_mosaics.py",
        call,
        label="isgri_image of belt ScWs only",
        python=wrapper_python,
        server=local_mmoda,
        token=token_file,
        outputs=outputs,
    )
    failed = [step for step in summary["steps"] if step["name"] == "long_scw_list_call"][0]
    assert not failed["ok"], "long_scw_list_call returned products for ScWs that cannot be analysed"
    assert failed["error"]["type"] == "FailedToFindAnyUsefulResults", failed["error"]
    assert "in long_scw_list_call" in failed["error"]["wrapper_line"], failed["error"]
    jobs = summary["transport"]["jobs"]
    assert jobs and all(job["final_status"] == "failed" for job in jobs), jobs
    assert all(set(job["scws"]) <= set(crab_scws["belt"]) for job in jobs), jobs
    outputs.verdict("isgri_image of belt ScWs only", "raises as expected: the job of belt ScWs failed")


# ----------------------------------------------------------------------------------------------- light curves


@pytest.mark.parametrize("instrument", ["isgri", "jemx"])
def test_light_curves_long_scw_list_call_then_stitch_lc(
    instrument, wrapper_python, local_mmoda, token_file, crab_scws, outputs
):
    """Per-job light curves of the selected sources are stitched: rows, ONTIME and time span add up."""
    product = f"{instrument}_lc"
    call = long_call(crab_scws, product, instrument, selected_catalog_region=SELECTED_REGION)
    call["parameters"].update(time_bin=1000, time_bin_format="sec")
    summary = run_script(
        "light_curves.py",
        call,
        label=product,
        python=wrapper_python,
        server=local_mmoda,
        token=token_file,
        outputs=outputs,
    )
    check_jobs(summary, crab_scws, unanalysable=unanalysable_for(instrument, crab_scws))
    per_job = summary["per_job"]
    assert len(per_job) == crab_scws["n_jobs"]
    # stitch_lc takes the sources of the first job; a source missing from it would be stitched into another's curve
    assert all(job["sources"] == per_job[0]["sources"] for job in per_job), [job["sources"] for job in per_job]
    assert CRAB["name"] in per_job[0]["sources"]

    step_of(summary, "long_scw_list_call")
    stitched = step_of(summary, "stitch_lc")["result"]
    assert stitched["sources"] == per_job[0]["sources"]
    for name in stitched["sources"]:
        parts = [next(c for c in job["curves"] if c["src_name"] == name) for job in per_job]
        whole = next(c for c in stitched["curves"] if c["src_name"] == name)
        assert whole["rows"] == sum(part["rows"] for part in parts), name
        assert whole["ONTIME"] == pytest.approx(sum(part["ONTIME"] for part in parts), rel=1e-9), name
        assert whole["TSTART"] == min(part["TSTART"] for part in parts)
        assert whole["TSTOP"] == max(part["TSTOP"] for part in parts)
    crab = stitched["source_curve"]
    assert crab["time_sorted"], "stitched Crab light curve is not in time order"
    assert crab["rate_finite_fraction"] == 1.0 and crab["rate_mean"] > 0, crab
    assert crab["TIMEDEL"] * 86400 == pytest.approx(1000, rel=1e-6)
    assert crab["rows"] >= len(crab_scws["scws"]) - len(unanalysable_for(instrument, crab_scws))
    outputs.verdict(product)


# ----------------------------------------------------------------------------------------------- spectra


def _spectra_of_each_job(instrument: str, *, python, server, token, crab_scws, outputs) -> tuple[dict, list[dict]]:
    """Run the spectrum script; check the jobs and return the summary and the per-job Crab products by kind."""
    product = f"{instrument}_spectrum"
    call = long_call(crab_scws, product, instrument, selected_catalog_region=SELECTED_REGION)
    summary = run_script("spectra.py", call, label=product, python=python, server=server, token=token, outputs=outputs)
    check_jobs(summary, crab_scws, unanalysable=unanalysable_for(instrument, crab_scws))
    per_job = summary["per_job"]
    assert len(per_job) == crab_scws["n_jobs"]
    assert all(job["sources"] == per_job[0]["sources"] for job in per_job), [job["sources"] for job in per_job]
    parts = [{p["kind"]: p for p in job["source_products"]} for job in per_job]
    for part in parts:
        assert sorted(part) == ["arf", "rmf", "spectrum"], sorted(part)
        spectrum = part["spectrum"]
        assert spectrum["channels"] == spectrum["DETCHANS"] and spectrum["rate_finite_fraction"] == 1.0, spectrum
        assert spectrum["EXPOSURE"] > 0 and spectrum["rate_sum"] > 0, spectrum
        assert part["rmf"]["matrix_rows"] == part["arf"]["rows"], part["rmf"]
    return summary, parts


def test_isgri_spectra_long_scw_list_call_then_sum_spectra(wrapper_python, local_mmoda, token_file, crab_scws, outputs):
    """Per-job ISGRI spectra, ARFs and RMFs of the selected sources are summed: exposure adds up, shapes are kept."""
    summary, parts = _spectra_of_each_job(
        "isgri", python=wrapper_python, server=local_mmoda, token=token_file, crab_scws=crab_scws, outputs=outputs
    )
    step_of(summary, "long_scw_list_call")
    summed = step_of(summary, "sum_spectra")["result"]
    whole = {p["kind"]: p for p in summed["source_products"]}
    assert sorted(whole) == ["arf", "rmf", "spectrum"], sorted(whole)
    spectrum = whole["spectrum"]
    assert spectrum["EXPOSURE"] == pytest.approx(sum(p["spectrum"]["EXPOSURE"] for p in parts), rel=1e-9)
    assert spectrum["ONTIME"] == pytest.approx(sum(p["spectrum"]["ONTIME"] for p in parts), rel=1e-9)
    assert spectrum["TSTART"] == min(p["spectrum"]["TSTART"] for p in parts)
    assert spectrum["TSTOP"] == max(p["spectrum"]["TSTOP"] for p in parts)
    assert spectrum["channels"] == parts[0]["spectrum"]["channels"] == spectrum["DETCHANS"]
    assert spectrum["rate_finite_fraction"] == 1.0 and spectrum["rate_sum"] > 0, spectrum
    # the variance-weighted mean of similar spectra stays within the jobs' range
    rates = [p["spectrum"]["rate_sum"] for p in parts]
    assert min(rates) * 0.9 <= spectrum["rate_sum"] <= max(rates) * 1.1, (spectrum["rate_sum"], rates)
    assert whole["rmf"]["matrix_rows"] == parts[0]["rmf"]["matrix_rows"] == whole["arf"]["rows"]
    outputs.verdict("isgri_spectrum")


def test_jemx_spectra_long_scw_list_call_reaches_the_wrappers_index_rmf_error(
    wrapper_python, local_mmoda, token_file, crab_scws, outputs
):
    """Per-job JEM-X1 spectra come back; ``sum_spectra`` of wrapper 1.5.19 cannot sum JEM-X spectra, as on the real one.

    ``sum_spectral_products`` (wrapper.py:1543-1547) gives the RMF's ``MATRIX`` the ``element_dtype`` that
    arithmetic on a variable-length column needs only for IBIS ("This is necessary for ISGRI, but gives an error
    with JEM-X"): the real JEM-X RMF's MATRIX is a fixed-length column. ``sum_spectra`` then writes the summed
    matrix into ``data_unit[index_rmf]`` (wrapper.py:1707), a name it only defines for IBIS (wrapper.py:1695-1701),
    so JEM-X raises ``UnboundLocalError`` whatever the service answers.
    """
    summary, parts = _spectra_of_each_job(
        "jemx", python=wrapper_python, server=local_mmoda, token=token_file, crab_scws=crab_scws, outputs=outputs
    )
    for part in parts:
        assert part["spectrum"]["INSTRUME"] == "JMX1", part["spectrum"]
        assert part["rmf"]["matrix_column_class"] != "_VLF", (
            "the JEM-X RMF's MATRIX is a variable-length column; wrapper.py:1543-1547 computes rmf['MATRIX'] * 0. "
            "and only gives a variable-length MATRIX the element_dtype it needs for IBIS, because the real JEM-X "
            "MATRIX is fixed-length"
        )
    for name in ("long_scw_list_call", "sum_spectra"):
        step = [s for s in summary["steps"] if s["name"] == name][0]
        assert not step["ok"], f"{name} summed JEM-X spectra: wrapper 1.5.19 cannot (index_rmf is IBIS-only)"
        assert step["error"]["type"] == "UnboundLocalError" and "index_rmf" in step["error"]["message"], step["error"]
        assert step["error"]["wrapper_line"].startswith("wrapper.py:1707 in sum_spectra"), step["error"]
    outputs.verdict("jemx_spectrum")
    for name in ("long_scw_list_call", "sum_spectra"):
        outputs.verdict("jemx_spectrum", "raises as expected: wrapper's index_rmf is defined for IBIS only", step=name)


# ----------------------------------------------------------------------------------------------- time system


def test_get_pointings_answers_the_crab_field_list(wrapper_python, local_mmoda, crab_scws, outputs):
    """``get_pointings`` returns SWID, RA_SCX and DEC_SCX of the pointings in the cone, slews removed."""
    keywords = {
        "ra": CRAB["ra"],
        "dec": CRAB["dec"],
        "radius": SCW_RADIUS_DEG,
        "tstart": SCW_WINDOW[0],
        "tstop": SCW_WINDOW[1],
    }
    call = {"pointings": [keywords, {**keywords, "min_good_isgri": 0}]}
    summary = run_script(
        "timesystem.py",
        call,
        label="get_pointings",
        python=wrapper_python,
        server=local_mmoda,
        token=None,
        outputs=outputs,
    )
    expected = [scw[:12] for scw in crab_scws["scws"]]
    for name in (f"get_pointings({keywords})", f"get_pointings({ {**keywords, 'min_good_isgri': 0} })"):
        answer = step_of(summary, name)["result"]
        assert answer["columns"] == ["DEC_SCX", "RA_SCX", "SWID"], answer["columns"]
        assert answer["SWID"] == expected
        for ra, dec in zip(answer["RA_SCX"], answer["DEC_SCX"]):
            assert _distance_deg(ra, dec, CRAB["ra"], CRAB["dec"]) < SCW_RADIUS_DEG
    outputs.verdict("get_pointings")


@pytest.mark.parametrize("revolution", [300, 1000])
def test_get_utc_from_revnum(revolution, wrapper_python, local_mmoda, outputs):
    """``get_utc_from_revnum`` gives the UTC start and end of a revolution, as the archive has them."""
    from mmoda_local.archive import ijd_to_utc_isot

    call = {"revolutions": [revolution]}
    summary = run_script(
        "timesystem.py",
        call,
        label=f"get_utc_from_revnum({revolution})",
        python=wrapper_python,
        server=local_mmoda,
        token=None,
        outputs=outputs,
    )
    answer = step_of(summary, f"get_utc_from_revnum({revolution})")["result"]
    assert answer["type"] == "tuple" and len(answer["items"]) == 2, answer
    values = [item["value"] for item in answer["items"]]
    if not all(isinstance(value, str) for value in values):
        raw = requests.get(
            f"{local_mmoda.url}/gw/timesystem/api/v1.0/converttime/REVNUM/{revolution:04d}/IJD", timeout=60
        )
        pytest.fail(
            f"get_utc_from_revnum({revolution}) returned {values!r} instead of two UTC strings.\n"
            "The wrapper (wrapper.py:2084-2093) reads converttime/REVNUM/<rev>/IJD with `requests.get(url).json()` and "
            "takes items [1] and [2]; when the body is not JSON it splits `.text` and takes words [1] and [2] "
            "('Boundary <start> <stop>'). Then (wrapper.py:2094-2102) it asks converttime/IJD/<t>/UTC for each "
            "(`.json()`, else `.text`).\n"
            f"The local answer to REVNUM/{revolution:04d}/IJD: HTTP {raw.status_code}, "
            f"Content-Type {raw.headers.get('Content-Type')!r}, body {raw.text[:200]!r}",
            pytrace=False,
        )
    archive = local_mmoda.backend.analysis.archive
    expected = [str(ijd_to_utc_isot(archive.revolution_start(rev))) for rev in (revolution, revolution + 1)]
    assert [value[:19] for value in values] == [text[:19] for text in expected], (values, expected)
    outputs.verdict(f"get_utc_from_revnum({revolution})")
