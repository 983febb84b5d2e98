"""The local MMODA through the unmodified oda_api client: INTEGRAL products, auth, faults, cache, CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from oda_api.api import (
    DispatcherAPI,
    DispatcherException,
    FailedToFindAnyUsefulResults,
    RemoteException,
    RequestNotUnderstood,
    Unauthorized,
)

from mmoda_local.protocol import strings_containing_null

from .test_conformance import Recorder, captured, compare

CRAB = dict(RA=83.633, DEC=22.0145)
#: Real Crab-field ScWs of revolution 665 (2008), in the archive with their real ids.
CRAB_SCWS = ["066500220010.001", "066500230010.001", "066500240010.001", "066500250010.001"]


def dispatcher(url: str, **kwargs) -> DispatcherAPI:
    disp = DispatcherAPI(url=url, instrument="mock", **kwargs)
    disp.n_max_tries = 1
    return disp


def isgri_query(product: str, scws=CRAB_SCWS[:1], **extra) -> dict:
    query = dict(
        instrument="isgri",
        product=product,
        product_type="Real",
        osa_version="OSA11.2",
        E1_keV=20.0,
        E2_keV=40.0,
        scw_list=list(scws),
        **CRAB,
    )
    query.update(extra)
    return query


def test_s4_isgri_image_light_curve_and_spectrum_have_the_real_names_and_shapes(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    results = {}
    for product, extra in [
        ("isgri_image", dict(detection_threshold=5.0)),
        ("isgri_lc", dict(time_bin=70)),
        ("isgri_spectrum", {}),
    ]:
        results[product] = dispatcher(server.url).get_product(
            instrument="isgri",
            product=product,
            product_type="Dummy",
            osa_version="OSA11.2",
            E1_keV=20.0,
            E2_keV=40.0,
            scw_list="066500220010.001",
            RA=83.63,
            DEC=22.01,
            radius=8,
            silent=True,
            **extra,
        )
    compare(recorder.exchanges, captured("s4"), product_keys_only=True)
    wire = json.loads(recorder.exchanges[1]["body"])["products"]["numpy_data_product_list"][0]["data_unit_list"]
    real = json.loads(captured("s4")[1]["resp_body"])["products"]["numpy_data_product_list"][0]["data_unit_list"]
    assert [(u["name"], u["hdu_type"], u["dt"]) for u in wire if u["hdu_type"] != "bintable"] == [
        (u["name"], u["hdu_type"], u["dt"]) for u in real if u["hdu_type"] != "bintable"
    ]

    image = results["isgri_image"]
    assert [p["prod_name"] for p in image.as_list()] == ["mosaic_image_0_mosaic", "dispatcher_catalog_1"]
    units = image.mosaic_image_0_mosaic.data_unit
    assert [u.name for u in units] == ["PRIMARY", "GROUPING"] + ["ISGR-MOSA-IMA"] * 4
    assert [u.header.get("IMATYPE") for u in units[2:]] == ["INTENSITY", "VARIANCE", "SIGNIFICANCE", "EXPOSURE"]
    assert units[2].data.dtype == np.float32
    assert "Crab" in list(image.dispatcher_catalog_1.table["src_names"])
    assert list(image.dispatcher_catalog_1.table.colnames) == [
        "meta_ID",
        "src_names",
        "significance",
        "ra",
        "dec",
        "NEW_SOURCE",
        "ISGRI_FLAG",
        "FLAG",
        "ERR_RAD",
    ]
    assert "mmoda_local" in units[2].header["ORIGIN"] and units[2].header["SIMULATD"]

    curve = results["isgri_lc"].isgri_lc_0_Crab
    assert curve.data_unit[1].name == "ISGR-SRC.-LCR"
    assert set(curve.data_unit[1].data.dtype.names) >= {
        "TIME",
        "RATE",
        "ERROR",
        "FRACEXP",
        "XAX_E",
        "TOT_COUNTS",
        "BACKV",
        "BACKE",
    }
    assert len(curve.data_unit[1].data) > 10  # 70-s bins inside a ~2 ks ScW

    spectrum = results["isgri_spectrum"]
    names = [p["prod_name"] for p in spectrum.as_list()]
    assert names[:3] == [
        "isgri_spectrum_0_Crab_isgri_spectrum",
        "isgri_spectrum_1_Crab_isgri_arf",
        "isgri_spectrum_2_Crab_isgri_rmf",
    ]
    assert spectrum.isgri_spectrum_0_Crab_isgri_spectrum.data_unit[1].name == "ISGR-EVTS-SPE"
    assert [u.name for u in spectrum.isgri_spectrum_2_Crab_isgri_rmf.data_unit][-2:] == ["SPECRESP MATRIX", "EBOUNDS"]


def test_s6_forty_scws_and_a_selected_catalog_go_by_post(server, monkeypatch):
    recorder = Recorder(monkeypatch)
    scws = [f"{600 + i:04d}00220010.001" for i in range(40) if i != 3] + ["060300210010.001"]
    catalog = {
        "cat_frame": "fk5",
        "cat_coord_units": "deg",
        "cat_column_list": [[0], ["Crab"], [100.0], [83.63], [22.01], [-32768], [2], [0], [0.00028]],
        "cat_column_names": [
            "meta_ID",
            "src_names",
            "significance",
            "ra",
            "dec",
            "NEW_SOURCE",
            "ISGRI_FLAG",
            "FLAG",
            "ERR_RAD",
        ],
        "cat_column_descr": [
            ["meta_ID", "<i8"],
            ["src_names", "<U4"],
            ["significance", "<f8"],
            ["ra", "<f8"],
            ["dec", "<f8"],
            ["NEW_SOURCE", "<i8"],
            ["ISGRI_FLAG", "<i8"],
            ["FLAG", "<i8"],
            ["ERR_RAD", "<f8"],
        ],
        "cat_lat_name": "dec",
        "cat_lon_name": "ra",
    }
    try:
        result = dispatcher(server.url).get_product(
            instrument="isgri",
            product="isgri_image",
            product_type="Dummy",
            osa_version="OSA11.2",
            scw_list=scws,
            selected_catalog=json.dumps(catalog),
            silent=True,
        )
    except FailedToFindAnyUsefulResults as exc:
        # some of these ids are radiation-belt pointings in the simulated archive: the real shape of that failure
        assert "AnalysisException" in exc.debug_message
        return
    assert list(result.dispatcher_catalog_1.table["src_names"]) == ["Crab"]
    assert recorder.exchanges[-1]["method"] == "POST"
    compare(recorder.exchanges[:1], captured("s6")[:1])


def test_wait_false_returns_none_then_polls_to_done(server):
    disp = dispatcher(server.url, wait=False)
    first = disp.get_product(silent=True, **isgri_query("isgri_image", CRAB_SCWS))
    assert first is None and disp.query_status in ("submitted", "progress")
    states = [disp.query_status]
    while not disp.is_complete:
        time.sleep(0.2)
        result = disp.poll()
        states.append(disp.query_status)
    assert states[-1] == "done" and "ready" in states
    assert result.mosaic_image_0_mosaic is not None
    reports = disp.response_json["job_monitor"]
    assert reports["job_id"] == disp.job_id


def test_progress_reports_each_scw_as_the_real_backend(server_factory):
    server = server_factory(latency_per_scw_s=0.2)
    disp = dispatcher(server.url, wait=False)
    disp.get_product(silent=True, **isgri_query("isgri_image", CRAB_SCWS))
    seen = []
    while not disp.is_complete:
        time.sleep(0.1)
        disp.poll()
        seen.append(disp.response_json["job_monitor"].get("full_report_dict_list", []))
    running = [entries for entries in seen if entries]
    assert running, "no progress was reported while the job ran"
    last = running[-1]
    assert all("message" in entry for entry in last)
    per_scw = {entry["scwid"] for entry in last if entry.get("message") == "main done"} - {"inapplicable"}
    assert per_scw == set(CRAB_SCWS)


def test_identical_request_after_done_is_served_from_cache(server):
    query = isgri_query("isgri_lc", time_bin=1000)
    dispatcher(server.url).get_product(silent=True, **query)
    before = server.stats()
    disp = dispatcher(server.url)
    again = disp.get_product(silent=True, **query)
    after = server.stats()
    assert after["jobs_computed"] == before["jobs_computed"] == 1
    assert after["answers_served_from_cache"] == before.get("answers_served_from_cache", 0) + 1
    assert again.isgri_lc_0_Crab is not None


def test_results_survive_a_server_restart(server_factory, tmp_path):
    first = server_factory(data_dir=tmp_path / "persistent")
    query = isgri_query("isgri_spectrum")
    dispatcher(first.url).get_product(silent=True, **query)
    first.stop()
    second = server_factory(data_dir=tmp_path / "persistent")
    dispatcher(second.url).get_product(silent=True, **query)
    assert second.stats().get("jobs_computed", 0) == 0


def test_same_request_same_bytes_and_seed_changes_noise(server_factory, tmp_path):
    answers = []
    for seed, folder in ((0, "a"), (0, "b"), (1, "c")):
        server = server_factory(data_dir=tmp_path / folder, seed=seed)
        disp = dispatcher(server.url)
        disp.get_product(silent=True, **isgri_query("isgri_image"))
        answers.append(json.dumps(disp.response_json["products"]["numpy_data_product_list"]))
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


def test_more_than_fifty_scws_need_the_hpc_role(server):
    from mmoda_local.archive import ScwArchive

    archive = server.backend.analysis.archive
    rows = archive.select(2000.0, 2300.0, ra=83.633, dec=22.0145, radius=15.0)
    table = archive.table[rows]
    scws = [
        f"{s}.001"
        for s, belt, good in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"])
        if not belt and good > 0
    ][:51]
    assert len(scws) == 51
    with pytest.raises(Unauthorized, match="unige-hpc-full: it is needed to request > 50 ScW"):
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_spectrum", scws))
    token = server.token("general, unige-hpc-full")
    result = dispatcher(server.url).get_product(silent=True, token=token, **isgri_query("isgri_spectrum", scws))
    assert result is not None
    assert isinstance(archive, ScwArchive)


def test_private_data_and_nrt_need_their_roles(server):
    with pytest.raises(Unauthorized, match="integral-private-qla"):
        dispatcher(server.url).get_product(
            silent=True, **isgri_query("isgri_image", integral_data_rights="all-private")
        )
    with pytest.raises(Unauthorized, match="integral-public-nrt"):
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image", ["066500220010.000"]))
    token = server.token("general, integral-private-qla")
    assert (
        dispatcher(server.url).get_product(
            silent=True, token=token, **isgri_query("isgri_image", integral_data_rights="all-private")
        )
        is not None
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(E1_keV=10.0), "ISGRI energy range is restricted to 15 - 800 keV"),
        (dict(E2_keV=900.0), "ISGRI energy range is restricted to 15 - 800 keV"),
        (dict(E1_keV=40.0, E2_keV=30.0), "must be lower than E2_keV"),
        (dict(osa_version="OSA11.0"), "OSA11.0 is being phased out"),
        (dict(radius=-1), "radius"),
        (dict(T1="2010-01-02T00:00:00", T2="2010-01-01T00:00:00"), "must be earlier"),
        (dict(scw_list="066500220010.001 066500230010.001"), "space separated"),
        (dict(E1_keV="twenty"), "can't be parsed as Float"),
    ],
)
def test_bad_isgri_parameters_give_the_real_400(server, change, message):
    with pytest.raises(RequestNotUnderstood, match=message):
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image", **change))


def test_jemx_energy_range_and_unit(server):
    query = dict(
        instrument="jemx",
        product="jemx_image",
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=["150000200010.001"],
        jemx_num=1,
        E1_keV=3.0,
        E2_keV=50.0,
        **CRAB,
    )
    with pytest.raises(RequestNotUnderstood, match="JEM-X energy range is restricted to 3 - 35 keV"):
        dispatcher(server.url).get_product(silent=True, **query)
    query.update(E2_keV=20.0, jemx_num=3)
    with pytest.raises(RequestNotUnderstood, match="jemx_num"):
        dispatcher(server.url).get_product(silent=True, **query)


def test_jemx_products_have_the_jemx_names(server):
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(4000.0, 4400.0, ra=83.633, dec=22.0145, radius=3.0)]
    usable = [
        f"{s}.001"
        for s, belt, good in zip(table["SWID"], table["IN_BELT"], table["GOOD_JEMX1"])
        if not belt and good > 0
    ]
    assert usable, "the archive should hold JEM-X1 Crab pointings in 2011"
    query = dict(
        instrument="jemx",
        product_type="Real",
        osa_version="OSA11.2",
        scw_list=usable[:2],
        jemx_num=1,
        E1_keV=3.0,
        E2_keV=20.0,
        **CRAB,
    )
    image = dispatcher(server.url).get_product(product="jemx_image", silent=True, **query)
    assert [u.name for u in image.mosaic_image_0_mosaic.data_unit][2:] == ["JMX1-MOSA-IMA"] * 4
    assert image.mosaic_image_0_mosaic.data_unit[2].header["IMATYPE"] == "RECONSTRUCTED"
    spectra = dispatcher(server.url).get_product(product="jemx_spectrum", silent=True, **query)
    assert spectra.as_list()[0]["prod_name"] == "jemx_spectrum_0_Crab_jemx_spectrum"
    assert spectra.jemx_spectrum_0_Crab_jemx_spectrum.data_unit[1].name == "JMX1-PHA1-SPE"
    curves = dispatcher(server.url).get_product(product="jemx_lc", time_bin=1000, silent=True, **query)
    assert curves.jemx_lc_0_Crab.data_unit[1].name == "JMX1-SRC.-LCR"


def test_radiation_belt_scw_fails_like_an_analysis_exception(server):
    archive = server.backend.analysis.archive
    belt = archive.table[np.flatnonzero(np.asarray(archive.table["IN_BELT"]))[100]]
    scw = f"{belt['SWID']}.001"
    with pytest.raises(FailedToFindAnyUsefulResults) as failure:
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image", [scw]))
    assert scw in failure.value.debug_message and "radiation belt" in failure.value.debug_message


def test_unknown_scw_fails_with_no_data(server):
    with pytest.raises(FailedToFindAnyUsefulResults, match="failed: get dataserver products"):
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image", ["999900010010.001"]))


def test_injected_http_500_and_dropped_connections(server_factory):
    failing = server_factory(faults={"http_500": 1.0})
    with pytest.raises(DispatcherException):
        dispatcher(failing.url).get_product(silent=True, **isgri_query("isgri_image"))
    dropping = server_factory(faults={"drop_connection": 1.0})
    with pytest.raises(RemoteException, match="connection error"):
        dispatcher(dropping.url).get_product(silent=True, **isgri_query("isgri_image"))
    assert dropping.stats()["faults_dropped_connections"] >= 1


def test_injected_stalls_hang_until_resubmitted(server_factory):
    server = server_factory(faults={"stall_job": 1.0})
    disp = dispatcher(server.url, wait=False)
    disp.get_product(silent=True, **isgri_query("isgri_image"))
    for _ in range(5):
        time.sleep(0.2)
        disp.poll()
    assert disp.query_status == "progress"
    job_id = disp.job_id
    again = dispatcher(server.url, wait=False)
    again.get_product(silent=True, **isgri_query("isgri_image"))
    assert again.job_id == job_id
    stats = server.stats()
    assert stats["jobs_resubmitted"] == 1 and stats["faults_stalled_jobs"] == 2


def test_injected_job_failures_are_remote_exceptions(server_factory):
    server = server_factory(faults={"fail_job": 1.0})
    with pytest.raises(RemoteException, match="Error when getting query products"):
        dispatcher(server.url).get_product(silent=True, **isgri_query("isgri_image"))


def test_gateway_services_over_http(server):
    scws = requests.get(
        f"{server.url}/gw/timesystem/api/v1.0/scwlist/cons/2008-03-20T00:00:00/2008-03-30T00:00:00",
        params=dict(ra=83.63, dec=22.01, radius=10),
    ).json()
    assert "066500220010" in scws
    state = requests.get(f"{server.url}/gw/scsystem/api/v1.0/sc/2008-03-24T23:40:00/83.63/22.01").json()
    assert set(state) >= {"ephs", "scx", "scy", "scz", "barytime"}


def test_no_answer_holds_null_inside_a_string(server):
    disp = dispatcher(server.url)
    disp.get_product(silent=True, **isgri_query("isgri_spectrum", CRAB_SCWS))
    assert strings_containing_null(disp.response_json) == []


def test_cli_serves_on_loopback_writes_its_state_file_and_mints_tokens(tmp_path):
    data_dir = tmp_path / "cli"
    refused = subprocess.run(
        [sys.executable, "-m", "mmoda_local", "serve", "--host", "0.0.0.0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmoda_local",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--debug-instruments",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state_file = data_dir / "server.json"
        deadline = time.time() + 60
        while not state_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        state = json.loads(state_file.read_text())
        assert state["pid"] == process.pid and state["url"].startswith("http://127.0.0.1:")
        assert requests.get(state["url"] + "/local/health").json()["simulated"] is True
        token = subprocess.run(
            [sys.executable, "-m", "mmoda_local", "token", "--roles", "general", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        result = dispatcher(state["url"]).get_product(
            instrument="empty", product="numerical", product_type="Dummy", p=5, token=token, silent=True
        )
        assert result is not None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert not (data_dir / "server.json").exists()
