"""Revolution products: rev_num, revolution <-> time, a revolution's ScWs and observations, the workflow's folders.

The services are those of a local MMODA running in a thread (``server`` fixture); the mosaics themselves are
made in ``test_revolution_end_to_end.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
import yaml
from astropy.table import Table

from integral_workflows import gallery, parameters, revolution
from integral_workflows.parameters import ParameterError
from integral_workflows.products import Product


def converttime(url: str, informat: str, value, outformat: str):
    """The service's plain-text answer: a number, or the words of a revolution's "Boundary <start> <end>"."""
    text = requests.get(f"{url}/gw/timesystem/api/v1.0/converttime/{informat}/{value}/{outformat}", timeout=30).text
    words = text.split()
    return [float(w) for w in words[1:]] if words[0] == "Boundary" else float(text)


# -- the parameters -------------------------------------------------------------------------------------------------


def revolution_parameters(**values):
    return parameters.validate("revolution_mosaics", values)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("0300", "0300"),
        (" 0044 ", "0044"),
        (2885, "2885"),
        (0, 0),
        (-3, -3),
        ("0", 0),
        ("-1", -1),
    ],
)
def test_rev_num_is_a_four_digit_string_or_a_count_back(given, expected):
    assert revolution_parameters(rev_num=given).rev_num == expected


@pytest.mark.parametrize(
    "given, message",
    [
        (300, "4-digit strings"),
        ("300", "4 digits"),
        ("0000", "no revolution 0000"),
        (True, "wrong type"),
        (2.5, "wrong type"),
    ],
)
def test_rev_num_refuses_what_it_cannot_read_unambiguously(given, message):
    with pytest.raises(ParameterError) as caught:
        revolution_parameters(rev_num=given)
    assert caught.value.name == "rev_num" and message in str(caught.value)


def test_revolution_parameters_keep_their_form_through_yaml(tmp_path):
    p = revolution_parameters(rev_num="0044", J_E1_keV=5, J_E2_keV=25, use_jemx2=False, to_exclude_from_title="Cen A")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"workflow": "revolution", "parameters": parameters.to_papermill(p)}))
    assert "rev_num: '0044'" in path.read_text()
    assert revolution_parameters(**parameters.read_parameter_file(path)["parameters"]) == p
    path.write_text("workflow: revolution\nparameters:\n  rev_num: 0044\n")
    assert revolution_parameters(**parameters.read_parameter_file(path)["parameters"]).rev_num == "0044"


def test_jemx_band_and_instrument_choice_are_checked():
    with pytest.raises(ParameterError) as caught:
        revolution_parameters(J_E1_keV=20, J_E2_keV=10)
    assert caught.value.name == "J_E1_keV"
    with pytest.raises(ParameterError, match="J_E2_keV"):
        revolution_parameters(J_E2_keV=40)
    with pytest.raises(ParameterError, match="at least one instrument"):
        revolution_parameters(use_isgri=False, use_jemx1=False, use_jemx2=False)


def test_instrument_parameters_take_each_instruments_band_and_defaults():
    p = revolution_parameters(E1_keV=30, E2_keV=60, J_E1_keV=4, J_E2_keV=15, use_jemx1=False)
    assert revolution.instruments_in_use(p) == ["isgri", "jemx2"]
    isgri = revolution.instrument_parameters(p, "isgri", src_name="Crab")
    assert (isgri.instrument, isgri.E1_keV, isgri.E2_keV, isgri.radius, isgri.src_name) == (
        "isgri",
        30,
        60,
        10.5,
        "Crab",
    )
    assert isgri.integral_data_rights == "public" and isgri.s_max == p.s_max
    jemx2 = revolution.instrument_parameters(p, "jemx2")
    assert (jemx2.instrument, jemx2.jemx_unit, jemx2.E1_keV, jemx2.E2_keV, jemx2.radius) == ("jemx", 2, 4, 15, 3.5)
    with pytest.raises(ValueError):
        revolution.instrument_parameters(p, "spi")
    with pytest.raises(ParameterError, match="outside the JEM-X range"):
        revolution.instrument_parameters(p, "jemx1", E2_keV=40.0)


# -- revolutions and time ------------------------------------------------------------------------------------------


def test_a_revolution_spans_perigee_to_perigee(server):
    start, end = revolution.revolution_span("0300", url=server.url)
    assert [start, end] == pytest.approx(converttime(server.url, "REVNUM", 300, "IJD"))
    assert end == pytest.approx(converttime(server.url, "REVNUM", 301, "IJD")[0])
    assert 2.9 < end - start < 3.05  # the orbit lasted 2.99 d before 2015
    last_start, last_end = revolution.revolution_span(2885, url=server.url)
    assert 2.6 < last_end - last_start < revolution.LONGEST_REVOLUTION_DAYS + 0.01  # to the next perigee
    with pytest.raises(revolution.RevolutionError, match="outside"):
        revolution.revolution_span("9999", url=server.url)


def test_the_current_revolution_is_the_last_of_the_archive_once_the_mission_has_ended(server):
    assert revolution.current_revolution(url=server.url) == "2885"
    assert revolution.resolve_revolution(0, url=server.url) == "2885"
    assert revolution.resolve_revolution(-2, url=server.url) == "2883"
    # during the mission, the revolution in progress (whose ScWs were in the archive)
    moment = "2010-06-01T12:00:00"
    in_progress = int(converttime(server.url, "UTC", moment, "REVNUM"))
    assert int(revolution.current_revolution(url=server.url, now=moment)) in (in_progress, in_progress - 1)
    assert revolution.resolve_revolution("0044", url="http://127.0.0.1:9") == "0044"  # no service asked
    with pytest.raises(ValueError):
        revolution.resolve_revolution(5, url=server.url)


def test_a_revolution_lists_every_scw_with_its_observation(server):
    table = revolution.revolution_scws("0300", url=server.url)
    assert set(table["revolution"]) == {"0300"}
    assert np.all(np.diff(np.asarray(table["tstart"])) >= 0)
    assert "offaxis_deg" not in table.colnames and "obs_id" in table.colnames
    span = table.meta["revolution"]
    everything = requests.get(
        f"{server.url}/gw/timesystem/api/v1.0/scwlist/cons/{span['ijd_start']}/{span['ijd_end']}", timeout=30
    ).json()
    assert sorted(s[:12] for s in table["scw_id"]) == sorted(s for s in everything if s.startswith("0300"))
    assert table.meta["revolution"]["utc_start"].startswith("2005-03-28")

    observations = revolution.group_observations(table, revolution="0300")
    assert sum(obs.n_scw for obs in observations) == len(table)
    assert len({obs.obs_id for obs in observations}) == len(observations) == len(set(table["obs_id"]))
    by_id = {obs.obs_id: obs for obs in observations}
    crab = by_id["07700030001"]
    assert crab.title == "Crab" and crab.proposal_id == "0770003"
    assert "Galactic Center" in {obs.title for obs in observations}
    assert crab.t1 < crab.t2 and len(crab.t1) == 19  # whole seconds, as the gallery wants them
    kept, excluded = revolution.exclude_by_title(observations, "Crab")
    assert [obs.obs_id for obs in excluded] == ["07700030001"] and crab not in kept
    summary = revolution.observations_table(kept, excluded=excluded)
    assert list(summary["excluded"]).count(True) == 1 and len(summary) == len(observations)


def test_each_instrument_keeps_the_scws_it_can_use(server):
    table = revolution.revolution_scws("0300", url=server.url)
    p = revolution_parameters()
    isgri, report = revolution.select_for_instrument(table, "isgri", p)
    highest = int(np.max(table["pointing"]))
    assert np.all((isgri["pointing"] > 5) & (isgri["pointing"] <= highest - 10))
    assert report.removed_by_cut["radiation belts"] > 0
    assert np.all(
        np.asarray(isgri["good_time_s"]) > parameters.model_for("scw_selection").model_fields["min_good_time_s"].default
    )
    jemx2, _ = revolution.select_for_instrument(table, "jemx2", p)
    assert len(jemx2) == 0  # JEM-X2 was off in 2005
    jemx1, _ = revolution.select_for_instrument(table, "jemx1", p)
    observation = revolution.group_observations(table, revolution="0300")[1]
    part = observation.restricted_to(jemx1)
    assert set(part.scws["obs_id"]) <= {observation.obs_id} and part.title == observation.title


@pytest.mark.parametrize(
    "ra, dec, title",
    [
        (83.63, 22.01, "Crab"),
        (266.5, -29.1, "Galactic Center"),
        (150.0, 70.0, "RA 150.0 Dec +70.0"),
    ],
)
def test_observation_titles_name_where_the_observation_points(ra, dec, title):
    assert revolution.observation_title(ra, dec) == title


def test_observation_titles_in_an_empty_part_of_the_plane():
    empty = Table({"NAME": ["far away"], "RA": [0.0], "DEC": [89.0]})
    assert revolution.observation_title(300.0, 30.0, reference=empty).startswith("Gal. Plane, l=")


# -- gallery descriptions -------------------------------------------------------------------------------------------


class _Record:
    def counts(self):
        return {"done": 3, "skipped": 0, "failed": 0}


def _written_mosaic(tmp_path, parameters, instrument="isgri"):
    """An ObservationMosaic whose files exist (empty placeholders): enough to describe gallery products."""
    scws = Table(
        {
            "scw_id": ["030000210010.001"],
            "revolution": ["0300"],
            "tstart": [1914.5],
            "tstop": [1914.52],
            "obs_id": ["07700030001"],
            "good_time_s": [1800.0],
        }
    )
    observation = revolution.Observation("07700030001", "0300", "Crab", 83.7, 22.1, scws)
    sources = Table(
        {
            "name": ["Crab", "NEW_1"],
            "ra": [83.63, 84.0],
            "dec": [22.01, 21.0],
            "significance": [300.0, 7.5],
            "rate": [60.0, 0.4],
            "rate_error": [0.2, 0.05],
            "new_source": [False, True],
        }
    )
    result = revolution.ObservationMosaic(
        observation, instrument, revolution.instrument_parameters(parameters, instrument), _Record(), None, sources
    )
    result.files = {
        kind: f"{result.stem}_{name}"
        for kind, name in (
            ("fits", "mosaic.fits"),
            ("png", "mosaic.png"),
            ("sources", "sources.ecsv"),
            ("region", "sources.reg"),
        )
    }
    for name in result.files.values():
        (tmp_path / name).write_text("placeholder")
    return result


def _gallery_view(products, parameters_used):
    return [
        gallery.gallery_product(
            product, parameters=parameters.to_papermill(parameters_used), produced_by="revolution_mosaics.ipynb"
        )
        for product in products
    ]


def test_consolidated_products_replace_near_real_time_ones_in_the_gallery(tmp_path):
    nrt = revolution_parameters(rev_num="0300", data_version="NRT")
    cons = revolution_parameters(rev_num="0300", data_version="CONS")
    first = _gallery_view(
        revolution.describe_products("0300", [_written_mosaic(tmp_path, nrt)], output_dir=tmp_path), nrt
    )[0]
    described = revolution.describe_products("0300", [_written_mosaic(tmp_path, cons)], output_dir=tmp_path)
    second = _gallery_view(described, cons)[0]
    assert first.product_id == second.product_id
    # titles name the observation and band (distinct cards per observation); only the data level differs
    assert (first.title, second.title) == (
        "Crab Rev. 0300 (NRT), ISGRI 28-40 keV, obs. 07700030001",
        "Crab Rev. 0300, ISGRI 28-40 keV, obs. 07700030001",
    )
    assert second.src_names == ("Crab",)  # the unnamed excess is not a gallery source
    assert second.product_type == "isgri_image" and second.obsids == ("07700030001",)
    assert second.proposal_ids == ("0770003",)
    assert second.t1 == "2005-03-29T11:58:55" and second.region_file.name == "07700030001_isgri_sources.reg"
    wider = revolution_parameters(rev_num="0300", E2_keV=80.0)
    other_band = _gallery_view(
        revolution.describe_products("0300", [_written_mosaic(tmp_path, wider)], output_dir=tmp_path), wider
    )[0]
    jemx = _gallery_view(
        revolution.describe_products("0300", [_written_mosaic(tmp_path, cons, "jemx1")], output_dir=tmp_path), cons
    )[0]
    assert len({second.product_id, other_band.product_id, jemx.product_id}) == 3
    assert jemx.product_type == "jemx1_image" and jemx.e1_kev == 3.0

    summary = revolution.summary_table([_written_mosaic(tmp_path, cons)])
    assert summary["brightest"][0] == "Crab" and summary["n_done"][0] == 3
    assert summary["exposure_ks"][0] == pytest.approx(1.8)
    # The descriptor survives its record: relative paths, the same product id.
    recorded = described[0].as_dict(relative_to=tmp_path)
    assert recorded["plot"] == "07700030001_isgri_mosaic.png" and recorded["kind"] == "image"
    again = Product.from_dict(recorded, base=tmp_path)
    assert again.plot == tmp_path / "07700030001_isgri_mosaic.png"
    assert _gallery_view([again], cons)[0].product_id == second.product_id
