"""SPI-ACS (``instrument=spi_acs``): the real plugin's product and failures over simulated counts.

References: protocol notes §4.4 and §2.6, dispatcher-plugin-integral-all-sky @b453bf0, integralhk, and the
real 2003-03-15 product shown in oda_api's TestAPI notes (docs/spi_acs.md).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from oda_api.api import DataCollection
from oda_api.data_products import NumpyDataProduct

from mmoda_local import protocol, queries, spiacs
from mmoda_local.archive import spacecraft_axes, unit_to_radec
from mmoda_local.config import ServerConfig
from mmoda_local.jobs import JobFailure

#: The real request of oda_api's TestAPI notes and what the real MMODA answered (2 s bins).
REAL_2003 = {"T1": "2003-03-15T23:27:40.0", "T2": "2003-03-15T23:57:12.0", "time_bin": 2.0}
REAL_2003_FIRST_RATES = (75779.0, 75484.0, 76190.0, 75694.5, 75322.0, 76017.5, 75529.0, 75815.0, 76324.0, 75448.5)
REAL_2003_TSTART = 101086060.00700004
#: A quiet hour of 2010 (far from the belts, no catalogue burst).
QUIET = {"T1": "2010-03-01T12:00:00", "T2": "2010-03-01T13:00:00"}
HEADER_KEYWORDS = (
    "EXTNAME",
    "TIMESYS",
    "TIMEREF",
    "ONTIME",
    "TASSIGN",
    "TSTART",
    "TSTOP",
    "DATE-OBS",
    "DATE-END",
    "TIMEDEL",
    "MJDREF",
    "TELESCOP",
    "INSTRUME",
    "TIMEZERO",
    "TIMEUNIT",
    "PROPHECY",
    "EPHS",
)


def parameters(**overrides) -> dict:
    """Normalised spi_acs_lc parameters, as the dispatcher's normalisation makes them."""
    values = {"instrument": "spi_acs", "product_type": "spi_acs_lc", **{k: str(v) for k, v in overrides.items()}}
    normalised, _ = queries.instruments()["spi_acs"].normalise(values, "spi_acs_lc")
    return normalised


@pytest.fixture
def config(tmp_path):
    return ServerConfig(data_dir=tmp_path / "server", seed=0)


def product(scw_archive, config, **overrides) -> NumpyDataProduct:
    products = spiacs.spiacs_products(parameters(**overrides), archive=scw_archive, config=config)
    return NumpyDataProduct.decode(products["numpy_data_product_list"][0])


def failure(scw_archive, config, **overrides) -> JobFailure:
    with pytest.raises(JobFailure) as caught:
        spiacs.spiacs_products(parameters(**overrides), archive=scw_archive, config=config)
    return caught.value


def bin_counts(npd: NumpyDataProduct) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the 50 ms bins and their counts, from a light curve at 50 ms."""
    unit = npd.data_unit[1]
    tags = unit.data["TIME"] + unit.header["TIMEZERO"]
    k = np.rint((tags - spiacs.BIN_PHASE_S) / spiacs.NATIVE_BIN_S).astype(np.int64)
    return k, np.rint(unit.data["RATE"] * spiacs.NATIVE_BIN_S)


def mean_rate(scw_archive, config, t1: str, t2: str) -> float:
    return float(product(scw_archive, config, T1=t1, T2=t2, time_bin=60.0).data_unit[1].data["RATE"].mean())


# -- parameters ---------------------------------------------------------------------------------------------------
def test_instrument_parameters_are_the_plugins():
    spec = queries.instruments()["spi_acs"]
    assert not spec.asynchronous
    assert spec.par_names("spi_acs_lc") == [
        "src_name",
        "RA",
        "DEC",
        "T1",
        "T_format",
        "T2",
        "token",
        "selected_catalog",
        "data_level",
        "time_bin",
        "time_bin_format",
    ]
    meta = spec.meta_data("spi_acs_lc")[0]
    assert meta[1] == {"prod_dict": {"spi_acs_lc": "spi_acs_lc_query"}}
    assert meta[3][0] == {"query_name": "spiacs_parameters"}
    data_level = next(p for p in meta[4] if p.get("name") == "data_level")
    assert data_level["value"] == "ordinary"
    assert data_level["restrictions"]["allowed_values"] == ["ordinary", "realtime"]
    assert parameters()["time_bin"] == 1000.0
    with pytest.raises(queries.QueryError):
        parameters(data_level="archived")


def test_realtime_needs_its_role():
    assert spiacs.required_roles(parameters(data_level="realtime")) == {
        "integral-realtime": "access to real time data requires special role"
    }
    assert spiacs.required_roles(parameters()) == {}


# -- the product --------------------------------------------------------------------------------------------------
def test_product_has_the_shape_of_the_protocol_notes(scw_archive, config):
    products = spiacs.spiacs_products(parameters(**REAL_2003), archive=scw_archive, config=config)
    assert set(products) == {"numpy_data_product_list", "binary_data_product_list"}
    assert products["binary_data_product_list"] == []
    encoded = products["numpy_data_product_list"][0]
    assert encoded["name"] is None
    assert list(json.loads(encoded["meta_data"]).items()) == [
        ("src_name", "query"),
        ("time_bin", 2.0),
        ("time", "TIME"),
        ("rate", "RATE"),
        ("rate_err", "ERROR"),
    ]
    assert [(u["name"], u["hdu_type"]) for u in encoded["data_unit_list"]] == [
        ("Primary", "primary"),
        ("RATE", "bintable"),
    ]
    assert encoded["data_unit_list"][0]["binarys"] is None
    assert encoded["data_unit_list"][1]["units_dict"] == {"RATE": "count/s", "ERROR": "count/s", "TIME": "s"}
    assert protocol.strings_containing_null(products) == []
    json.dumps(products, allow_nan=False)

    npd = NumpyDataProduct.decode(encoded)
    unit = npd.data_unit[1]
    assert unit.data.dtype == np.dtype([("TIME", "<f8"), ("RATE", "<f8"), ("ERROR", "<f8")])
    header = unit.header
    assert set(HEADER_KEYWORDS) <= set(header)
    assert (header["EXTNAME"], header["TIMESYS"], header["TIMEREF"], header["TASSIGN"]) == (
        "RATE",
        "TT",
        "LOCAL",
        "SATELLITE",
    )
    assert (header["TELESCOP"], header["INSTRUME"], header["MJDREF"], header["TIMEUNIT"]) == (
        "INTEGRAL",
        "SPI-ACS",
        51544.0,
        "s",
    )
    assert header["PROPHECY"] == "" and len(header["EPHS"].split()) == 6
    assert header["TTYPE1"] == "TIME" and "TUNIT1" not in header  # as oda_api 1.3.5 leaves the real header
    assert header["SIMULATD"] is True and npd.data_unit[0].header["SIMULATD"] is True

    collection = DataCollection.from_response_json(
        {"products": products, "job_monitor": {"job_id": "x"}}, "spi_acs", "spi_acs_lc"
    )
    assert collection.spi_acs_lc_0_query.data_unit[1].header["INSTRUME"] == "SPI-ACS"


def test_request_of_the_real_2003_product_gives_its_structure_and_level(scw_archive, config):
    unit = product(scw_archive, config, **REAL_2003).data_unit[1]
    header, data = unit.header, unit.data
    # as the real product: 886 bins of 2 s, first 50 ms bin at T1 + 7 ms of the UTC day count
    assert header["NAXIS2"] == len(data) == 886
    assert header["ONTIME"] == pytest.approx(1772.0, abs=1e-6)
    assert header["TSTART"] == pytest.approx(REAL_2003_TSTART, abs=1e-4)
    assert header["DATE-OBS"] == header["DATE-END"] == "2003-03-15T23:27:40.007"
    assert header["TIMEDEL"] == 2.0
    assert header["TSTART"] == pytest.approx(header["TIMEZERO"] + data["TIME"][0] - 0.975, abs=1e-6)
    assert np.allclose(np.diff(data["TIME"]), 2.0, atol=1e-6)
    assert np.allclose(data["ERROR"], np.sqrt(data["RATE"] * 2.0) / 2.0)
    # the level the real shield had then: 75,760 counts/s on average in the first 20 s
    assert data["RATE"].mean() == pytest.approx(np.mean(REAL_2003_FIRST_RATES), rel=0.02)


def test_time_bin_is_truncated_to_native_bins_as_by_the_plugin(scw_archive, config):
    coarse = product(scw_archive, config, **QUIET, time_bin=0.3)
    assert coarse.meta_data["time_bin"] == coarse.data_unit[1].header["TIMEDEL"] == 0.25
    assert len(coarse.data_unit[1].data) == 3600 / 0.25
    native = product(scw_archive, config, **QUIET, time_bin=0.01)
    assert native.meta_data["time_bin"] == 0.0
    assert len(native.data_unit[1].data) == 72000
    # rebinning keeps every count
    k, counts = bin_counts(native)
    rebinned = product(scw_archive, config, **QUIET, time_bin=10.0).data_unit[1].data
    assert np.sum(rebinned["RATE"] * 10.0) == pytest.approx(counts.sum(), rel=1e-12)


# -- counts -------------------------------------------------------------------------------------------------------
def test_quiet_stretch_has_poisson_plus_the_models_excess_variance(scw_archive, config):
    npd = product(scw_archive, config, **QUIET, time_bin=0.05)
    k, counts = bin_counts(npd)
    model = spiacs.model_for(scw_archive, seed=config.seed)
    k_model, counts_model, expected = model.counts(int(k[0]), int(k[-1]))
    assert np.array_equal(k, k_model) and np.array_equal(counts, counts_model)
    factor = model.excess_variance(spiacs.utc_seconds("2010-03-01T12:30:00"))
    assert factor >= 1.1
    for group in (1, 20, 400):  # 50 ms, 1 s, 20 s: a white excess keeps the same ratio
        n = len(counts) // group
        c = counts[: n * group].reshape(n, group).sum(1)
        mu = expected[: n * group].reshape(n, group).sum(1)
        ratio = np.mean((c - mu) ** 2 / mu)
        # the sample variance of n Gaussian-like values has a relative standard deviation √(2/n)
        assert ratio / factor == pytest.approx(1.0, abs=5 * math.sqrt(2.0 / n)), group
    # the ERROR column is Poisson only, as in the real plugin: the pulls show the excess
    data = npd.data_unit[1].data
    pulls = (data["RATE"] - expected / spiacs.NATIVE_BIN_S) / data["ERROR"]
    assert np.var(pulls) == pytest.approx(factor, rel=5 * math.sqrt(2.0 / len(pulls)))


def test_background_level_solar_cycle_and_orbit(scw_archive, config):
    model = spiacs.model_for(scw_archive, seed=config.seed)

    def apogee(date: str) -> tuple[str, str]:
        rev = int(scw_archive.revolutions.revolution_of(float(spiacs._ijd_tt(spiacs.utc_seconds(date)))))
        on, off = model.revolution_data_interval(rev)
        middle = 0.5 * (on + off)
        return spiacs._utc_isot(middle - 1800), spiacs._utc_isot(middle + 1800)

    at_minimum = mean_rate(scw_archive, config, *apogee("2009-06-01T00:00:00"))
    at_maximum = mean_rate(scw_archive, config, *apogee("2014-04-01T00:00:00"))
    for rate in (at_minimum, at_maximum):
        assert 6e4 < rate < 1.3e5  # of order 10^4-10^5 counts/s, i.e. ~3,000-6,500 per 50 ms
    assert at_minimum / at_maximum > 1.1  # more cosmic rays at solar minimum

    # within one revolution: higher close to the belts than at apogee, by the model's factor
    on, off = model.revolution_data_interval(1000)
    near = mean_rate(scw_archive, config, spiacs._utc_isot(on), spiacs._utc_isot(on + 1200))
    far_start, far_stop = spiacs._utc_isot(0.5 * (on + off) - 600), spiacs._utc_isot(0.5 * (on + off) + 600)
    far = mean_rate(scw_archive, config, far_start, far_stop)
    expected_near = model.background_rate(np.linspace(on, on + 1200, 201)).mean()
    expected_far = model.background_rate(np.linspace(0.5 * (on + off) - 600, 0.5 * (on + off) + 600, 201)).mean()
    assert near / far > 1.3
    assert near / far == pytest.approx(expected_near / expected_far, rel=0.01)


# -- failures -----------------------------------------------------------------------------------------------------
def check_dispatcher_shape(caught: JobFailure):
    """How the real dispatcher wraps a plugin exception (dispatcher-app Instrument.run_query, §2.6)."""
    assert caught.message == "Error when getting query products"
    assert caught.error_message == "Instrument: spi_acs, product: spi_acs_lc" + protocol.SUPPORT_TEXT
    assert caught.job_status == "unknown" and caught.exit_code == 1


def test_gap_answers_the_real_no_data_error(scw_archive, config):
    model = spiacs.model_for(scw_archive, seed=config.seed)
    end_of_data = model.revolution_data_interval(1000)[1]
    start_of_next = model.revolution_data_interval(1001)[0]
    middle = 0.5 * (end_of_data + start_of_next)
    assert start_of_next - end_of_data > 4 * 3600  # the perigee passage: several hours without data
    caught = failure(
        scw_archive, config, T1=spiacs._utc_isot(middle - 600), T2=spiacs._utc_isot(middle + 600), time_bin=1.0
    )
    check_dispatcher_shape(caught)
    assert caught.debug_message.startswith(
        'SpiacsAnalysisException("no usable data found for this time interval: server reports NoData (status 400). '
        "Raw response: rbp as "
    )
    assert "NoData('No Data (at this time?) requested: " in caught.debug_message

    after_mission = failure(scw_archive, config, T1="2025-06-01T00:00:00", T2="2025-06-01T01:00:00")
    assert "server reports NoData (status 400)" in after_mission.debug_message
    before_service = failure(scw_archive, config, T1="2002-10-20T00:00:00", T2="2002-10-20T01:00:00")
    assert before_service.debug_message == "SpiacsAnalysisException('spiacs light curve failed: AssertionError()')"
    too_short = failure(scw_archive, config, T1="2010-03-01T12:00:00", T2="2010-03-01T12:00:04")  # 80 bins
    assert too_short.debug_message == "SpiacsAnalysisException('spiacs light curve failed: AssertionError()')"

    # a window half in the gap: only the bins with data, rising towards the belts
    unit = product(
        scw_archive,
        config,
        T1=spiacs._utc_isot(end_of_data - 1800),
        T2=spiacs._utc_isot(end_of_data + 1800),
        time_bin=100.0,
    ).data_unit[1]
    assert len(unit.data) == 18
    expected = model.background_rate(unit.data["TIME"] + unit.header["TIMEZERO"])
    assert np.all(np.diff(expected) > 0)
    assert unit.data["RATE"][-1] / unit.data["RATE"][0] == pytest.approx(expected[-1] / expected[0], rel=0.01)


def test_span_limit_of_the_data_server(scw_archive, config):
    caught = failure(scw_archive, config, T1="2010-03-01T00:00:00", T2="2010-03-10T06:40:01", time_bin=1000.0)
    check_dispatcher_shape(caught)
    assert caught.debug_message.startswith(
        'SpiacsException("Spiacs AnalysisException in run_query: SPI-ACS backend refuses to process this request, '
        "due to resource constrain: "
    )
    assert "requests to this service are limited to +-5000 span" in caught.debug_message


def test_realtime_level(scw_archive, config):
    npd = product(scw_archive, config, **QUIET, time_bin=100.0, data_level="realtime")
    assert npd.data_unit[1].header["PROPHECY"].startswith("next break in data in ")
    assert "'expected_data_status': 'ONLINE'" in npd.data_unit[1].header["PROPHECY"]
    ordinary = product(scw_archive, config, **QUIET, time_bin=100.0)
    assert np.array_equal(npd.data_unit[1].data, ordinary.data_unit[1].data)
    after_mission = failure(
        scw_archive, config, T1="2025-06-01T00:00:00", T2="2025-06-01T01:00:00", data_level="realtime"
    )
    assert after_mission.debug_message.startswith("SpiacsAnalysisException('spiacs light curve failed: ValueError(")


# -- bursts -------------------------------------------------------------------------------------------------------
def direction_at(scw_archive, t0: str, theta_deg: float) -> tuple[float, float]:
    """A direction at ``theta_deg`` from the spacecraft X axis (towards Z) at ``t0``."""
    row = scw_archive.nearest_pointing(float(spiacs._ijd_tt(spiacs.utc_seconds(t0))))
    x, _, z = spacecraft_axes(
        float(scw_archive.table["RA_SCX"][row]),
        float(scw_archive.table["DEC_SCX"][row]),
        float(scw_archive.table["POSANGLE"][row]),
    )
    ra, dec = unit_to_radec(np.cos(np.radians(theta_deg)) * x + np.sin(np.radians(theta_deg)) * z)
    return float(ra), float(dec)


@pytest.mark.parametrize("theta_deg, response", [(70.0, 1.0), (0.0, 0.1)])
def test_injected_burst_appears_at_t0_with_the_expected_counts(scw_archive, tmp_path, theta_deg, response):
    t0, fluence, duration = "2010-03-01T12:30:00.000", 1e-5, 1.0
    ra, dec = direction_at(scw_archive, t0, theta_deg)
    config = ServerConfig(
        data_dir=tmp_path / "server",
        seed=3,
        injected_grbs=[spiacs.parse_grb_injection(f"{t0},{fluence},{duration},short,{ra},{dec}")],
    )
    model = spiacs.model_for(scw_archive, seed=3, injections=config.injected_grbs)
    burst = model.bursts[-1]
    assert model.burst_geometry(burst)["theta_deg"] == pytest.approx(theta_deg, abs=1e-3)
    expected = model.expected_burst_counts(burst)
    assert expected == pytest.approx(fluence * spiacs.photons_per_erg("short") * spiacs.PEAK_AREA_CM2 * response)

    npd = product(scw_archive, config, T1="2010-03-01T12:29:00", T2="2010-03-01T12:31:00", time_bin=0.05)
    k, counts = bin_counts(npd)
    _, _, background = model.counts(int(k[0]), int(k[-1]))
    start = (k * spiacs.NATIVE_BIN_S + spiacs.BIN_PHASE_S) - burst.t0_s
    during = (start > -spiacs.NATIVE_BIN_S) & (start < duration)
    before = start <= -spiacs.NATIVE_BIN_S
    factor = model.excess_variance(burst.t0_s)
    excess = counts[during].sum() - background[during].sum()
    assert abs(excess - expected) < 5 * math.sqrt(factor * background[during].sum() + expected)
    assert abs(counts[before].sum() - background[before].sum()) < 5 * math.sqrt(factor * background[before].sum())
    # the rise starts in the bin holding T0
    first = np.argmax(during)
    assert counts[first - 1] - background[first - 1] < 5 * math.sqrt(factor * background[first - 1])
    assert counts[first + 2] - background[first + 2] > 0.3 * expected * spiacs.NATIVE_BIN_S / duration


def test_catalogue_bursts_are_in_the_data(scw_archive, config):
    model = spiacs.model_for(scw_archive, seed=config.seed)
    for burst in spiacs.BURST_CATALOGUE:
        assert model.has_data(burst.t0_s)[0], burst.name
    burst = next(b for b in spiacs.BURST_CATALOGUE if b.name == "GRB 080319B")
    npd = product(scw_archive, config, T1="2008-03-19T06:10:49", T2="2008-03-19T06:16:49", time_bin=1.0)
    data = npd.data_unit[1].data
    times = data["TIME"] + npd.data_unit[1].header["TIMEZERO"] - burst.t0_s
    during = (times > 0) & (times < burst.duration_s)
    quiet = times < -10
    excess = np.sum(data["RATE"][during]) - during.sum() * np.median(data["RATE"][quiet])
    assert excess == pytest.approx(model.expected_burst_counts(burst), rel=0.02)


# -- determinism, configuration -------------------------------------------------------------------------------------
def test_same_seed_same_bytes_and_counts_independent_of_the_window(scw_archive, tmp_path):
    first = ServerConfig(data_dir=tmp_path / "a", seed=5)
    again = ServerConfig(data_dir=tmp_path / "b", seed=5)
    other = ServerConfig(data_dir=tmp_path / "c", seed=6)
    request = parameters(T1="2010-03-01T12:00:00", T2="2010-03-01T12:10:00", time_bin=0.05)
    a = spiacs.spiacs_products(request, archive=scw_archive, config=first)
    b = spiacs.spiacs_products(request, archive=scw_archive, config=again)
    c = spiacs.spiacs_products(request, archive=scw_archive, config=other)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)
    shifted = product(scw_archive, first, T1="2010-03-01T12:05:00", T2="2010-03-01T12:20:00", time_bin=0.05)
    k_a, counts_a = bin_counts(NumpyDataProduct.decode(a["numpy_data_product_list"][0]))
    k_s, counts_s = bin_counts(shifted)
    common, in_a, in_s = np.intersect1d(k_a, k_s, return_indices=True)
    assert len(common) == 6000
    assert np.array_equal(counts_a[in_a], counts_s[in_s])


def test_inject_grb_option(tmp_path):
    from mmoda_local.cli import _config_from_args, build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--inject-grb",
            "2010-03-01T12:30:00,1e-5,1.0",
            "--inject-grb",
            "2010-03-02T00:00:00,2e-6,20,long,83.6,22.0",
        ]
    )
    config = _config_from_args(args)
    assert config.injected_grbs == [
        {"t0": "2010-03-01T12:30:00", "fluence": 1e-5, "duration": 1.0, "spectrum": "short", "ra": None, "dec": None},
        {"t0": "2010-03-02T00:00:00", "fluence": 2e-6, "duration": 20.0, "spectrum": "long", "ra": 83.6, "dec": 22.0},
    ]
    assert config.describe()["injected_grbs"] == config.injected_grbs
    bursts = spiacs.injected_bursts(config.injected_grbs, seed=0)
    assert bursts == spiacs.injected_bursts(config.injected_grbs, seed=0)  # the drawn direction is reproducible
    assert (bursts[1].ra, bursts[1].dec) == (83.6, 22.0)
    for wrong in ("2010-03-01T12:30:00,1e-5", "2010-03-01T12:30:00,-1,1", "2010-03-01T12:30:00,1e-5,1,hard"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--inject-grb", wrong])


def test_oda_api_gets_spi_acs_lc_through_the_server(server):
    """The whole HTTP path: oda_api names the product as from the real service, and a gap fails as the real one."""
    from oda_api.api import DispatcherAPI, RemoteException

    disp = DispatcherAPI(url=server.url, instrument="mock")
    data = disp.get_product(
        instrument="spi_acs",
        product="spi_acs_lc",
        product_type="Real",
        T1="2003-03-15T23:27:40",
        T2="2003-03-15T23:57:12",
        time_bin=2.0,
        silent=True,
    )
    assert disp.response_json["query_status"] == "done"
    assert disp.response_json["products"]["input_prod_list"] == list(spiacs.INPUT_PROD_LIST)
    unit = data.spi_acs_lc_0_query.data_unit[1]
    assert unit.name == "RATE" and len(unit.data) > 100

    model = spiacs.model_for(server.backend.analysis.archive, seed=0)
    middle = 0.5 * (model.revolution_data_interval(1000)[1] + model.revolution_data_interval(1001)[0])
    gap = DispatcherAPI(url=server.url, instrument="mock")
    with pytest.raises(RemoteException, match="Error when getting query products"):
        gap.get_product(
            instrument="spi_acs",
            product="spi_acs_lc",
            product_type="Real",
            T1=spiacs._utc_isot(middle - 600),
            T2=spiacs._utc_isot(middle + 600),
            time_bin=1.0,
            silent=True,
        )
    assert "no usable data found for this time interval" in gap.response_json["exit_status"]["debug_message"]
