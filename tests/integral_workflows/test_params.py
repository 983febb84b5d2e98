"""The parameter schema: types, ranges, defaults per instrument, YAML, tokens."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle

import pytest

from integral_workflows import params
from integral_workflows.params import ParameterError

# A syntactically valid JWT (header {"alg":"HS256","typ":"JWT"}, payload {"sub":"x"}), never a real one.
FAKE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def error_for(values) -> ParameterError:
    with pytest.raises(ParameterError) as caught:
        params.resolve(values)
    return caught.value


# -- defaults ------------------------------------------------------------------------------------------------------

def test_defaults_are_complete_and_valid():
    p = params.resolve({})
    assert set(p) == set(params.PARAMETERS)
    assert p.osa_version == "OSA11.2"
    assert p.s_max == 50
    assert p.detection_threshold == 7.0
    assert p.min_good_time_s == 1000
    assert p.exclude_radiation_belts is True
    assert p.bad_revolutions == ()
    assert isinstance(p.T1, str) and isinstance(p.T2, str)


@pytest.mark.parametrize("instrument, e1, e2, radius, systematic", [
    ("isgri", 28.0, 40.0, 10.5, 0.0015),
    ("jemx", 3.0, 20.0, 3.5, 0.05),
])
def test_instrument_defaults(instrument, e1, e2, radius, systematic):
    for values in ({"instrument": instrument},
                   {"instrument": instrument, "E1_keV": None, "E2_keV": None, "radius": None,
                    "systematic_fraction": None}):
        p = params.resolve(values)
        assert (p.E1_keV, p.E2_keV, p.radius, p.systematic_fraction) == (e1, e2, radius, systematic)


def test_explicit_values_override_instrument_defaults():
    p = params.resolve({"instrument": "jemx", "E1_keV": 5, "radius": 4.0})
    assert p.E1_keV == 5.0 and isinstance(p.E1_keV, float)
    assert p.radius == 4.0 and p.E2_keV == 20.0


def test_replace_resolves_defaults_again():
    isgri = params.resolve({"src_name": "Cyg X-1"})
    jemx = isgri.replace(instrument="jemx")
    assert (jemx.E1_keV, jemx.E2_keV, jemx.radius) == (3.0, 20.0, 3.5)
    assert jemx.src_name == "Cyg X-1"
    assert jemx.explicit_names == {"src_name", "instrument"}


def test_parameters_are_frozen():
    p = params.resolve({})
    with pytest.raises(AttributeError, match="frozen"):
        p.E1_keV = 30.0
    with pytest.raises(TypeError):
        p["E1_keV"] = 30.0
    assert pickle.loads(pickle.dumps(p)) == p


def test_enum_values_are_case_insensitive_and_canonical():
    p = params.resolve({"instrument": "ISGRI", "data_version": "nrt", "host_type": "Local"})
    assert (p.instrument, p.data_version, p.host_type) == ("isgri", "NRT", "local")


# -- wrong types -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("E1_keV", "28 keV", "a number"),
    ("radius", "10", "a number"),
    ("s_max", 2.5, "an integer"),
    ("upload_to_gallery", "yes", "a boolean"),
    ("make_image", 1, "a boolean"),
    ("T1", 2003, "ISOT"),
    ("src_name", 42, "a string"),
    ("instrument", 1, "a string"),
    ("bad_revolutions", {"a": 1}, "4-digit"),
])
def test_wrong_type_names_parameter_value_and_expected_type(name, value, expected):
    error = error_for({name: value})
    assert error.name == name
    message = str(error)
    assert message.startswith(f"{name} = {value!r}")
    assert expected in message


def test_none_is_refused_where_it_has_no_meaning():
    error = error_for({"s_max": None})
    assert error.name == "s_max" and "None" in str(error)


def test_nan_is_refused():
    error = error_for({"detection_threshold": float("nan")})
    assert error.name == "detection_threshold" and "finite" in str(error)


# -- ranges ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, name, allowed", [
    ({"T1": "2004-01-01T00:00:00", "T2": "2003-01-01T00:00:00"}, "T1", "earlier than T2"),
    ({"T1": "2003-01-01T00:00:00", "T2": "2003-01-01T00:00:00"}, "T1", "earlier than T2"),
    ({"E1_keV": 50.0, "E2_keV": 40.0}, "E1_keV", "below E2_keV"),
    ({"E1_keV": 10.0}, "E1_keV", "15.0 ≤ E1_keV ≤ 800.0"),
    ({"E2_keV": 900.0}, "E2_keV", "15.0 ≤ E2_keV ≤ 800.0"),
    ({"instrument": "jemx", "E2_keV": 40.0}, "E2_keV", "3.0 ≤ E2_keV ≤ 35.0"),
    ({"instrument": "jemx", "E1_keV": 2.0}, "E1_keV", "3.0 ≤ E1_keV ≤ 35.0"),
    ({"radius": 0.0}, "radius", "0.0 < radius"),
    ({"radius": -3}, "radius", "0.0 < radius"),
    ({"s_max": 0}, "s_max", "-1: one job per revolution"),
    ({"n_scw_image": 0}, "n_scw_image", "-1: all"),
    ({"n_scw_image": -2}, "n_scw_image", "-1: all"),
    ({"n_scw_image": 2.5}, "n_scw_image", "whole"),
    ({"host_type": "prod"}, "host_type", "'production', 'staging', 'esa', 'local'"),
    ({"instrument": "spi"}, "instrument", "'isgri', 'jemx'"),
    ({"jemx_unit": 3}, "jemx_unit", "one of 1, 2"),
    ({"osa_version": "OSA11.0"}, "osa_version", "obsolete"),
    ({"osa_version": "OSA11.1"}, "osa_version", "obsolete"),
    ({"osa_version": "OSA9.0"}, "osa_version", "OSA11.2"),
    ({"osa_version": "OSA11.2--rmfoffsetv1--fullbkg"}, "osa_version", "sorted"),
    ({"data_version": "FAST"}, "data_version", "'CONS', 'NRT'"),
    ({"integral_data_rights": "private"}, "integral_data_rights", "'public', 'all-private'"),
    ({"systematic_fraction": 1.0}, "systematic_fraction", "< 1.0"),
    ({"systematic_fraction": -0.1}, "systematic_fraction", "0.0 ≤"),
    ({"lc_time_bin": 0}, "lc_time_bin", "lc_time_bin > 0.0 s"),
    ({"detection_threshold": -1}, "detection_threshold", "> 0.0"),
    ({"RA": 360.0}, "RA", "< 360.0"),
    ({"DEC": 91.0}, "DEC", "≤ 90.0"),
    ({"isgri_grouping_min_energy": 300.0, "isgri_grouping_max_energy": 100.0}, "isgri_grouping_min_energy",
     "below isgri_grouping_max_energy"),
    ({"T1": "2003-02-30T00:00:00"}, "T1", "ISOT"),
    ({"T1": "2003-03-15 23:27:40"}, "T1", "ISOT"),
    ({"src_name": "  "}, "src_name", "empty"),
    ({"api_catalog_file": "{not json"}, "api_catalog_file", "does not parse"),
    ({"random_seed": -1}, "random_seed", "≥ 0"),
])
def test_out_of_range_names_parameter_and_what_is_allowed(values, name, allowed):
    error = error_for(values)
    assert error.name == name
    assert allowed in str(error)


def test_several_problems_are_reported_together():
    error = error_for({"E1_keV": "x", "s_max": 0})
    assert error.names == ("E1_keV", "s_max")
    assert "E1_keV" in str(error) and "s_max" in str(error)


@pytest.mark.parametrize("values", [
    {"s_max": -1}, {"s_max": -3}, {"s_max": 300},
    {"n_scw_image": -1}, {"n_scw_image": -0.2}, {"n_scw_image": 10},
    {"osa_version": "OSA10.2"}, {"osa_version": "OSA11.2-beta--fullbkg--jemxnrt"},
    {"isgri_grouping_factor": -20}, {"isgri_grouping_factor": 10},
    {"api_catalog_file": '{"cat_column_list": []}'}, {"api_catalog_file": "catalog.json"},
    {"instrument": "jemx", "jemx_unit": 2, "E1_keV": 3, "E2_keV": 35},
    {"T1": "2003-02-22T00:00:00.5", "T2": "2003-02-22T00:00:01"},
])
def test_valid_edge_values_pass(values):
    params.resolve(values)


def test_numbers_keep_their_meaning():
    assert params.resolve({"n_scw_image": -0.2}).n_scw_image == -0.2
    assert params.resolve({"n_scw_image": 10.0}).n_scw_image == 10
    assert params.resolve({"s_max": 50.0}).s_max == 50


def test_time_outside_the_mission_only_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="integral_workflows.params"):
        params.resolve({"T1": "2000-01-01T00:00:00", "T2": "2000-02-01T00:00:00"})
    assert "outside INTEGRAL" in caplog.text


def test_datetime_values_become_isot_strings():
    p = params.resolve({"T1": dt.datetime(2003, 3, 15, 23, 27, 40), "T2": "2003-03-20T00:00:00"})
    assert p.T1 == "2003-03-15T23:27:40"


# -- names -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong, right", [("E1_kev", "E1_keV"), ("e1_kev", "E1_keV"), ("smax", "s_max"),
                                          ("jemx_units", "jemx_unit"), ("src", "src_name"), ("Ra", "RA")])
def test_unknown_name_suggests_closest(wrong, right):
    error = error_for({wrong: 1})
    assert error.name == wrong
    assert f"did you mean {right!r}" in str(error)


def test_unknown_name_without_close_match_points_at_the_help():
    error = error_for({"completely_unrelated_thing": 1})
    assert "describe_parameters" in str(error)


@pytest.mark.parametrize("name", ["token", "TOKEN", "oda_token", "jwt"])
def test_token_is_never_a_parameter(name):
    error = error_for({name: "anything"})
    assert error.name == name
    assert "ODA_TOKEN" in str(error) and ".oda-token" in str(error)


def test_a_jwt_value_is_rejected_without_being_shown():
    error = error_for({"src_name": FAKE_JWT})
    assert error.name == "src_name"
    assert "ODA_TOKEN" in str(error)
    assert FAKE_JWT not in str(error)
    error = error_for({"bad_revolutions": [FAKE_JWT]})
    assert FAKE_JWT not in str(error)


# -- notebooks ---------------------------------------------------------------------------------------------------------

def test_from_namespace_picks_declared_parameters():
    namespace = {"__name__": "__main__", "np": object(), "In": [], "instrument": "jemx", "E1_keV": None,
                 "src_name": "Crab", "some_local": 3}
    p = params.from_namespace(namespace)
    assert p.instrument == "jemx" and p.E1_keV == 3.0 and p.src_name == "Crab"


def test_from_namespace_with_declared_names_ignores_the_rest():
    p = params.from_namespace({"src_name": "Crab", "s_max": 10}, names=["src_name"])
    assert p.s_max == 50


def test_from_namespace_warns_about_near_miss_variables(caplog):
    with caplog.at_level(logging.WARNING, logger="integral_workflows.params"):
        params.from_namespace({"E1_kev": 30.0})
    assert "'E1_kev' looks like the parameter 'E1_keV'" in caplog.text


def test_from_namespace_rejects_a_token_variable():
    with pytest.raises(ParameterError, match="ODA_TOKEN") as caught:
        params.from_namespace({"token": FAKE_JWT, "src_name": "Crab"})
    assert caught.value.name == "token"


def test_from_namespace_errors_name_the_parameter():
    with pytest.raises(ParameterError) as caught:
        params.from_namespace({"E1_keV": "28 keV"})
    assert caught.value.name == "E1_keV"


# -- JSON and YAML ---------------------------------------------------------------------------------------------------

def test_json_dict_is_json_safe_and_round_trips():
    p = params.resolve({"bad_revolutions": ["0044", "1234"], "instrument": "jemx"})
    values = params.to_json_dict(p)
    assert values["bad_revolutions"] == ["0044", "1234"]
    assert json.loads(json.dumps(values)) == values
    assert params.resolve(values) == p


def test_json_dict_subset_and_unknown_subset_name():
    p = params.resolve({})
    assert params.to_json_dict(p, names=["T1", "T2"]) == {"T1": p.T1, "T2": p.T2}
    with pytest.raises(ParameterError, match="did you mean 'T1'"):
        p.to_json_dict(names=["t1x"])


YAML_TEXT = """
T1: 2003-03-15T23:27:40
T2: 2003-03-20T00:00:00.500
src_name: 1A 0535+262
instrument: isgri
bad_revolutions: [0044, 0045, 1234]
upload_to_gallery: false
E1_keV: 30
radius: null
"""


def test_yaml_keeps_times_and_zero_padded_numbers_as_strings():
    values = params.parse_yaml(YAML_TEXT)
    assert values["T1"] == "2003-03-15T23:27:40"
    assert values["T2"] == "2003-03-20T00:00:00.500"
    assert values["bad_revolutions"] == ["0044", "0045", 1234]
    assert values["E1_keV"] == 30 and values["radius"] is None and values["upload_to_gallery"] is False
    p = params.resolve(values)
    assert p.bad_revolutions == ("0044", "0045", "1234")
    assert p.radius == 10.5


@pytest.mark.parametrize("text, expected", [
    ("rev_num: 0044", "0044"), ("x: 05:34:31", "05:34:31"), ("x: NO", "NO"), ("x: yes", "yes"),
    ("x: 0x1F", "0x1F"), ("x: 1e3", 1000.0), ("x: -2.5", -2.5), ("x: 12", 12), ("x: TRUE", True),
    ("x: 2003-03-15", "2003-03-15"), ("x: 007.5", "007.5"),
])
def test_yaml_scalars(text, expected):
    value = next(iter(params.parse_yaml(text).values()))
    assert value == expected and type(value) is type(expected)


def test_yaml_errors():
    with pytest.raises(ParameterError, match="twice"):
        params.parse_yaml("E1_keV: 20\nE1_keV: 30\n")
    with pytest.raises(ParameterError, match="mapping"):
        params.parse_yaml("- a\n- b\n")
    with pytest.raises(ParameterError, match="not a valid parameter file"):
        params.parse_yaml("a: [unclosed\n")
    assert params.parse_yaml("") == {}


def test_load_parameters_names_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(YAML_TEXT)
    p = params.load_parameters(good, overrides={"instrument": "jemx", "E1_keV": None})
    assert p.instrument == "jemx" and p.E1_keV == 3.0 and p.T1 == "2003-03-15T23:27:40"
    bad = tmp_path / "bad.yaml"
    bad.write_text("E1_keV: 28 keV\n")
    with pytest.raises(ParameterError) as caught:
        params.load_parameters(bad)
    assert caught.value.name == "E1_keV" and str(bad) in str(caught.value)


def test_to_yaml_round_trips_through_the_loader():
    p = params.resolve({"T1": "2003-03-15T23:27:40", "T2": "2003-03-20T00:00:00", "bad_revolutions": ["0044"],
                        "src_name": "NO"})
    text = params.to_yaml(p)
    assert "'2003-03-15T23:27:40'" in text and "'0044'" in text
    assert params.resolve(params.parse_yaml(text)) == p


# -- help ----------------------------------------------------------------------------------------------------------

def test_help_covers_every_parameter():
    text = params.describe_parameters()
    for name in params.PARAMETERS:
        assert f"\n{name} : " in f"\n{text}"
    assert "28.0 for ISGRI, 3.0 for JEM-X" in text
    table = params.describe_parameters(markdown=True)
    assert table.count("\n") == len(params.PARAMETERS) + 1


def test_table_entries_are_consistent():
    for spec in params.PARAMETER_TABLE:
        assert spec.meaning.strip(), spec.name
        if spec.instrument_dependent:
            for instrument in params.INSTRUMENTS:
                params.resolve({"instrument": instrument, spec.name: spec.default.for_instrument(instrument)})
        else:
            params.resolve({spec.name: spec.default})
