"""Job semantics of the real dispatcher and OSA backend, through the unmodified oda_api client.

- ScWs the backend cannot analyse do not fail a multi-ScW job: each one is
  reported in the job monitor with its analysis exception and the products
  come from the other ScWs (the OSA backend's mosaic skips ScWs without an
  image); only a job with nothing to analyse fails.
- A job that failed for a reason in the data stays failed: an identical
  request answers ``failed`` at once, and so does any request whose ScWs were
  all found unanalysable before.
- The backend's own selection (no ``scw_list``) follows ``TimeDirectionScWList``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from oda_api.api import FailedToFindAnyUsefulResults, RemoteException

from .test_server import CRAB_SCWS, dispatcher, isgri_query


def belt_scws(archive, count: int, *, near: str) -> list[str]:
    """Radiation-belt pointings of the revolution of ``near`` (they precede or follow its ScWs)."""
    table = archive.table
    revolution = int(near[:4])
    rows = np.flatnonzero((np.asarray(table["REVOL"]) == revolution) & np.asarray(table["IN_BELT"]))
    return [f"{table['SWID'][row]}.001" for row in rows[:count]]


def analysis_exceptions(response_json: dict) -> dict[str, str]:
    """ScW id → exception text of the job monitor's analysis-exception entries."""
    entries = response_json["job_monitor"].get("full_report_dict_list", [])
    return {
        entry["scwid"]: entry["exception"]
        for entry in entries
        if entry.get("message") == "analysis exception" and entry.get("scwid") != "inapplicable"
    }


def test_a_belt_scw_is_reported_and_skipped_while_the_job_returns_products(server):
    belt = belt_scws(server.backend.analysis.archive, 2, near=CRAB_SCWS[0])
    assert len(belt) == 2
    disp = dispatcher(server.url)
    data = disp.get_product(silent=True, **isgri_query("isgri_lc", CRAB_SCWS + belt, time_bin=1000))
    exceptions = analysis_exceptions(disp.response_json)
    assert set(exceptions) == set(belt) and all("radiation belt" in text for text in exceptions.values())
    assert disp.response_json["products"]["input_prod_list"] == CRAB_SCWS + belt
    curve = data.isgri_lc_0_Crab.data_unit[1].data
    starts = {
        row["SWID"]: row["TSTART"]
        for row in server.backend.analysis.archive.table
        if f"{row['SWID']}.001" in CRAB_SCWS + belt
    }
    # the light curve covers the analysed ScWs only
    assert np.min(curve["TIME"]) >= min(starts[s[:12]] for s in CRAB_SCWS) - 0.01
    assert len(curve) > 0


def test_fail_job_policy_fails_the_whole_job_naming_the_scws(server_factory):
    server = server_factory(scw_failure_policy="fail-job")
    belt = belt_scws(server.backend.analysis.archive, 1, near=CRAB_SCWS[0])
    with pytest.raises(FailedToFindAnyUsefulResults) as failure:
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image", CRAB_SCWS + belt))
    assert belt[0] in failure.value.debug_message and "radiation belt" in failure.value.debug_message


def test_an_identical_request_after_a_failure_answers_failed_at_once_without_recomputing(server):
    belt = belt_scws(server.backend.analysis.archive, 1, near=CRAB_SCWS[0])
    query = isgri_query("isgri_image", belt)
    disp = dispatcher(server.url, wait=False)
    disp.get_product(silent=True, **query)
    while not disp.is_complete:
        time.sleep(0.05)
        disp.poll()
    assert disp.is_failed
    before = server.stats()
    # the same client asks again (as oda-integral-wrapper does after a failure): failed at once
    with pytest.raises(FailedToFindAnyUsefulResults):
        disp.get_product(silent=True, **query)
    # another session: the query is run again, the backend answers from its cache: submitted, then failed
    other = dispatcher(server.url, wait=False)
    assert other.get_product(silent=True, **query) is None and other.query_status == "submitted"
    other.poll()
    assert other.is_failed
    after = server.stats()
    assert after.get("jobs_submitted", 0) == before.get("jobs_submitted", 0), "nothing was computed again"
    assert after["requests_answered_failed_at_once"] >= before.get("requests_answered_failed_at_once", 0) + 2


def test_a_failure_stays_failed_after_a_restart(server_factory, tmp_path):
    first = server_factory(data_dir=tmp_path / "kept")
    belt = belt_scws(first.backend.analysis.archive, 1, near=CRAB_SCWS[0])
    with pytest.raises(FailedToFindAnyUsefulResults):
        dispatcher(first.url).get_product(silent=True, **isgri_query("isgri_image", belt))
    first.stop()
    second = server_factory(data_dir=tmp_path / "kept")
    disp = dispatcher(second.url, wait=False)
    disp.get_product(silent=True, **isgri_query("isgri_image", belt))
    disp.poll()
    assert disp.is_failed
    assert second.stats().get("jobs_submitted", 0) == 0


def test_a_scw_found_unanalysable_fails_other_requests_at_once(server_factory):
    """oda_api's live test ``test_not_waiting[failing]``: the second request, other energies, fails at once."""
    server = server_factory(latency_per_scw_s=0.5)
    belt = belt_scws(server.backend.analysis.archive, 1, near=CRAB_SCWS[0])
    disp = dispatcher(server.url, wait=False)
    assert disp.get_product(silent=True, **isgri_query("isgri_image", belt, E1_keV=25.0, E2_keV=80.0)) is None
    assert disp.is_submitted and not disp.is_complete
    other = dispatcher(server.url, wait=False)
    with pytest.raises(FailedToFindAnyUsefulResults):
        other.get_product(silent=True, **isgri_query("isgri_image", belt, E1_keV=40.0, E2_keV=200.0))
    while not disp.is_complete:
        time.sleep(0.1)
        disp.poll()
    assert disp.is_failed


def test_machinery_failures_are_not_remembered(server_factory):
    server = server_factory(faults={"fail_job": 1.0})
    for _ in range(2):
        with pytest.raises(RemoteException, match="Error when getting query products"):
            dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image"))
    stats = server.stats()
    assert stats["jobs_resubmitted"] == 1 and stats["faults_failed_jobs"] == 2


def test_dummy_queries_accept_any_scw_id(server):
    disp = dispatcher(server.url)
    data = disp.get_product(
        silent=True, **{**isgri_query("isgri_image"), "product_type": "Dummy", "scw_list": "066500550010.001" * 300}
    )
    assert data.mosaic_image_0_mosaic is not None
    assert disp.response_json["products"]["input_prod_list"] == []
    assert disp.selected_request_method == "POST"


@pytest.mark.parametrize(
    "target, ra, dec, year",
    [
        ("GX 1+4", 263.01, -24.746, 2019),
        ("Crab", 83.633, 22.0145, 2005),
        ("Crab", 83.633, 22.0145, 2010),
        ("Cyg X-1", 299.59, 35.2016, 2010),
        ("1E 1740.7-2942", 265.978, -29.745, 2017),
        ("Vela X-1", 135.529, -40.555, 2012),
    ],
)
def test_the_backend_selection_gives_products_for_a_year_of_a_target(server, target, ra, dec, year):
    disp = dispatcher(server.url)
    data = disp.get_product(
        instrument="isgri",
        product="isgri_image",
        product_type="Real",
        osa_version="OSA11.2",
        E1_keV=28.0,
        E2_keV=40.0,
        RA=ra,
        DEC=dec,
        T1=f"{year}-01-01T00:00:00",
        T2=f"{year + 1}-01-01T00:00:00",
        silent=True,
    )
    selected = disp.response_json["products"]["input_prod_list"]
    table = server.backend.analysis.archive.table
    rows = server.backend.analysis.archive.find(selected)
    assert 0 < len(selected) <= 50 and np.all(rows >= 0)
    # pointings entirely inside the period, with ISGRI events
    assert np.all(np.asarray(table["GOOD_ISGRI"])[rows] > 0)
    assert data.mosaic_image_0_mosaic.data_unit[0] is not None
    skipped = analysis_exceptions(disp.response_json)
    assert set(skipped) <= set(selected) and len(skipped) < len(selected), target
