"""A ``src_name`` whose known position is far from non-zero RA/DEC stops before any job (issue 12).

``papermill notebooks/scw_selection.ipynb o.ipynb -p src_name Saturn`` used to select the parameters cell's
default field (the Crab) and label it Saturn. The truths here do not come from the code under test: the
Crab's and Cyg X-1's positions are Simbad's, separations are astropy's, and Saturn's passage by the Crab in
January 2003 is the one of Titan's occultation of the Crab nebula (2003-01-05, observed by Chandra and INTEGRAL).
"""

from __future__ import annotations

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from integral_workflows import notebook, parameters, targets
from integral_workflows.parameters import ParameterError
from integral_workflows.parameters import docs as parameter_docs

from ..test_notebooks import parameters_namespace, run_papermill

CRAB = SkyCoord(83.63308 * u.deg, 22.0145 * u.deg)  # Simbad, J2000
CYG_X1 = SkyCoord(299.5903 * u.deg, 35.2016 * u.deg)  # Simbad, J2000
A0535 = SkyCoord(84.7274 * u.deg, 26.3158 * u.deg)  # 1A 0535+262 (Simbad)
SPRING_2005 = {"T1": "2005-03-01T00:00:00", "T2": "2005-04-15T00:00:00"}
TITAN_OCCULTATION = {"T1": "2003-01-01T00:00:00", "T2": "2003-01-10T00:00:00"}


def crab_field(**values):
    return {"RA": CRAB.ra.deg, "DEC": CRAB.dec.deg, **values}


def problems(notebook_name="scw_selection", **values):
    return targets.position_problems(parameters.validate(notebook_name, values))


def test_a_moving_body_far_from_ra_dec_says_which_to_change():
    [(names, text)] = problems(**crab_field(src_name="Saturn", **SPRING_2005))
    assert names == ("src_name", "RA", "DEC")
    assert "'Saturn' is a solar-system body" in text and "radius = 10.5°" in text
    assert "set RA = 0 and DEC = 0" in text and "change src_name" in text


def test_a_moving_body_that_passes_through_the_field_is_accepted():
    assert problems(**crab_field(src_name="Saturn", **TITAN_OCCULTATION)) == []
    # Any case, as names are matched elsewhere.
    assert problems(**crab_field(src_name="SATURN", **TITAN_OCCULTATION)) == []


def test_a_catalogue_source_with_another_sources_position_is_stopped():
    [(names, text)] = problems(**crab_field(src_name="Cyg X-1"))
    assert names == ("src_name", "RA", "DEC")
    truth = CRAB.separation(CYG_X1).deg
    assert f"{truth:.1f}° from RA = {CRAB.ra.deg}, DEC = {CRAB.dec.deg}" in text
    assert "'Cyg X-1' is at RA = 299.59" in text and "built-in ISDC catalogue" in text


def test_the_radius_decides_for_a_neighbour():
    # 1A 0535+262 is 4.4° from the Crab: inside ISGRI's default radius (10.5°), outside JEM-X's (3.5°).
    separation = CRAB.separation(A0535).deg
    assert 3.5 < separation < 10.5
    near = {"src_name": "Crab", "RA": A0535.ra.deg, "DEC": A0535.dec.deg}
    assert problems(**near) == []
    [(_, text)] = problems(**near, instrument="jemx")
    assert "radius = 3.5°" in text
    assert problems(**near, instrument="jemx", radius=5.0) == []


@pytest.mark.parametrize(
    "values",
    [
        {"src_name": "Saturn", "RA": 0.0, "DEC": 0.0},  # 0/0: the name's position (here: its track)
        {"src_name": "Cyg X-1", "RA": 0.0, "DEC": 0.0},
        {"src_name": "Crab"},  # the parameters cell's defaults: 0/0
        {"src_name": "My favourite field", "RA": 10.0, "DEC": -30.0},  # a name nobody knows is a free label
        {"src_name": "crab", "RA": 83.6, "DEC": 22.0},
    ],
)
def test_what_is_accepted(values):
    assert problems(**values) == []


def test_the_notebooks_default_position_means_look_the_name_up():
    for name in ("scw_selection", "mosaic", "lightcurve", "spectrum"):
        model = parameters.validate(name, {"src_name": "Saturn"})
        assert (model.RA, model.DEC) == (0.0, 0.0)
        assert "RA = 0.0  #" in parameter_docs.parameters_cell(name)
    assert targets.coordinates_for(parameters.validate("scw_selection", {"src_name": "Saturn"}), online=False).is_moving


def test_the_notebook_setup_reports_it_with_every_other_problem():
    namespace = parameters_namespace(
        "mosaic", src_name="Saturn", RA=CRAB.ra.deg, DEC=CRAB.dec.deg, s_max=0, **SPRING_2005
    )
    with pytest.raises(ParameterError) as caught:
        notebook.parameters_from(namespace, "mosaic")
    assert len(caught.value.problems) == 2
    assert {"s_max", "src_name", "RA", "DEC"} == set(caught.value.names)
    assert "solar-system body" in str(caught.value)


def test_papermill_with_a_body_and_the_crabs_position_stops_before_any_job(tmp_path):
    values = {"src_name": "Saturn", "RA": CRAB.ra.deg, "DEC": CRAB.dec.deg}
    result, errors = run_papermill("scw_selection", tmp_path, values)
    assert result.returncode != 0
    assert "set RA = 0 and DEC = 0" in result.stdout + result.stderr
    assert errors == ["ParameterError"]
    # Stopped in the setup cell: no local MMODA was started, no ScW list asked for.
    assert not (tmp_path / "home" / ".cache" / "mmoda_local").exists()
