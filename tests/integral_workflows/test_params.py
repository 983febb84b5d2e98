"""The parameter models (integral_workflows.parameters): types, ranges, instrument defaults, all errors together,
closest names, runs of several notebooks, YAML files and overrides, the generated docs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from integral_workflows import parameters
from integral_workflows.parameters import ParameterError, docs
from integral_workflows.parameters.files import parse_yaml
from integral_workflows.parameters.validation import replace

ROOT = Path(__file__).resolve().parents[2]

# A syntactically valid JWT (header {"alg":"HS256","typ":"JWT"}, payload {"sub":"x"}), never a real one.
FAKE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def error_for(values, notebook="lightcurve") -> ParameterError:
    with pytest.raises(ParameterError) as caught:
        parameters.validate(notebook, values)
    return caught.value


# -- the interface --------------------------------------------------------------------------------------------------


def test_every_notebook_has_a_closed_model():
    names = parameters.notebook_names()
    assert set(names) == {path.stem for path in (ROOT / "notebooks").glob("*.ipynb")}
    for notebook in names:
        model = parameters.model_for(notebook)
        assert issubclass(model, pydantic.BaseModel)
        assert model.model_config["extra"] == "forbid"
        assert parameters.declared_names(notebook) == list(model.model_fields)


def test_unknown_notebook_names_the_closest():
    with pytest.raises(ParameterError, match="did you mean 'mosaic'"):
        parameters.model_for("mosiac")


def test_defaults_validate_to_the_model_defaults():
    for notebook in parameters.notebook_names():
        if notebook == "gallery_upload":
            continue  # run_folder has no meaningful default
        p = parameters.validate(notebook, {})
        assert p.model_fields_set == set()
        values = parameters.to_papermill(p)
        assert json.loads(json.dumps(values)) == values
        assert parameters.validate(notebook, values) == p


def test_a_parameter_shared_by_notebooks_means_the_same_everywhere():
    # One block, one help text, one ontology term, one type: a name never changes meaning between notebooks.
    seen = {}
    for notebook in parameters.notebook_names():
        for name, field in parameters.model_for(notebook).model_fields.items():
            key = (field.annotation, field.json_schema_extra["ontology"], field.json_schema_extra.get("unit"))
            seen.setdefault(name, {}).setdefault(key, []).append(notebook)
    differing = {name: kinds for name, kinds in seen.items() if len(kinds) > 1}
    # E1_keV/E2_keV of revolution mosaics are ISGRI's band (no instrument parameter there); output_dir of the
    # gallery upload may be empty (the run folder).
    assert set(differing) <= {"E1_keV", "E2_keV"}, differing


# -- defaults ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instrument, e1, e2, radius, systematic",
    [
        ("isgri", 28.0, 40.0, 10.5, 0.0015),
        ("jemx", 3.0, 20.0, 3.5, 0.05),
    ],
)
def test_instrument_defaults(instrument, e1, e2, radius, systematic):
    for values in (
        {"instrument": instrument},
        {"instrument": instrument, "E1_keV": None, "E2_keV": None, "radius": None, "systematic_fraction": None},
    ):
        p = parameters.validate("lightcurve", values)
        assert (p.E1_keV, p.E2_keV, p.radius, p.systematic_fraction) == (e1, e2, radius, systematic)
        assert p.model_fields_set == set(values) - {"E1_keV", "E2_keV", "radius", "systematic_fraction"}


def test_explicit_values_override_instrument_defaults():
    p = parameters.validate("mosaic", {"instrument": "jemx", "E1_keV": 5, "radius": 4.0})
    assert p.E1_keV == 5.0 and isinstance(p.E1_keV, float)
    assert p.radius == 4.0 and p.E2_keV == 20.0


def test_replace_resolves_defaults_again():
    isgri = parameters.validate("mosaic", {"src_name": "Cyg X-1"})
    jemx = replace(isgri, instrument="jemx")
    assert (jemx.E1_keV, jemx.E2_keV, jemx.radius) == (3.0, 20.0, 3.5)
    assert jemx.src_name == "Cyg X-1"
    assert jemx.model_fields_set == {"src_name", "instrument"}
    with pytest.raises(ParameterError, match="radius"):
        replace(isgri, radius=-1)


def test_models_are_frozen_picklable_and_readable_as_items():
    p = parameters.validate("mosaic", {})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        p.E1_keV = 30.0
    assert pickle.loads(pickle.dumps(p)) == p
    assert p["E1_keV"] == p.E1_keV == p.get("E1_keV") and p.get("lc_time_bin", 1) == 1
    assert "E1_keV" in p and "lc_time_bin" not in p
    with pytest.raises(KeyError):
        p["lc_time_bin"]


def test_choices_are_case_insensitive_and_canonical():
    p = parameters.validate("mosaic", {"instrument": "ISGRI", "data_version": "nrt", "host_type": "Local"})
    assert (p.instrument, p.data_version, p.host_type) == ("isgri", "NRT", "local")


def test_revolution_numbers_stay_strings():
    for given, expected in [("0300", "0300"), (1234, "1234"), ("0", 0), (-2, -2), ("-1", -1)]:
        assert parameters.validate("revolution_mosaics", {"rev_num": given}).rev_num == expected
    assert parameters.validate("revolution_mosaics", {}).rev_num == 0
    assert "ambiguous" in str(error_for({"rev_num": 300}, "revolution_mosaics"))
    assert "no revolution 0000" in str(error_for({"rev_num": "0000"}, "revolution_mosaics"))


# -- wrong types and ranges -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("E1_keV", "28 keV", "a number"),
        ("radius", "10", "a number"),
        ("s_max", 2.5, "an integer"),
        ("upload_to_gallery", "yes", "a boolean"),
        ("make_image", 1, "a boolean"),
        ("T1", 2003, "a string"),
        ("src_name", 42, "a string"),
        ("instrument", 1, "'isgri', 'jemx'"),
        ("s_max", None, "an integer"),
    ],
)
def test_wrong_type_names_parameter_value_and_expected_type(name, value, expected):
    error = error_for({name: value})
    assert error.names == (name,)
    assert str(error).startswith(f"{name} = {value!r}")
    assert expected in str(error)


def test_bad_revolutions_items_are_checked():
    error = error_for({"bad_revolutions": {"a": 1}}, "scw_selection")
    assert error.names == ("bad_revolutions",) and "4-digit" in str(error)
    error = error_for({"bad_revolutions": ["0044", 44]}, "scw_selection")
    assert "ambiguous" in str(error)
    assert parameters.validate("scw_selection", {"bad_revolutions": "0045, 0044 0045"}).bad_revolutions == (
        "0044",
        "0045",
    )


@pytest.mark.parametrize(
    "values, name, allowed",
    [
        ({"T1": "2004-01-01T00:00:00", "T2": "2003-01-01T00:00:00"}, "T1", "earlier than T2"),
        ({"T1": "2003-01-01T00:00:00", "T2": "2003-01-01T00:00:00"}, "T1", "earlier than T2"),
        ({"E1_keV": 50.0, "E2_keV": 40.0}, "E1_keV", "below E2_keV"),
        ({"E1_keV": 10.0}, "E1_keV", "15 ≤ E1_keV ≤ 800 keV"),
        ({"E2_keV": 900.0}, "E2_keV", "15 ≤ E2_keV ≤ 800 keV"),
        ({"instrument": "jemx", "E2_keV": 40.0}, "E2_keV", "3 ≤ E2_keV ≤ 35 keV"),
        ({"instrument": "jemx", "E1_keV": 2.0}, "E1_keV", "3 ≤ E1_keV ≤ 35 keV"),
        ({"radius": 0.0}, "radius", "0 < radius ≤ 180 deg"),
        ({"radius": -3}, "radius", "0 < radius"),
        ({"s_max": 0}, "s_max", "-1: one job per revolution"),
        ({"n_scw_image": 0}, "n_scw_image", "-1: all"),
        ({"n_scw_image": -2}, "n_scw_image", "-1: all"),
        ({"n_scw_image": 2.5}, "n_scw_image", "whole"),
        ({"host_type": "prod"}, "host_type", "did you mean 'production'"),
        ({"instrument": "spi"}, "instrument", "'isgri', 'jemx'"),
        ({"jemx_unit": 3}, "jemx_unit", "1 or 2"),
        ({"osa_version": "OSA11.0"}, "osa_version", "obsolete"),
        ({"osa_version": "OSA11.1"}, "osa_version", "obsolete"),
        ({"osa_version": "OSA9.0"}, "osa_version", "OSA11.2"),
        ({"osa_version": "OSA11.2--rmfoffsetv1--fullbkg"}, "osa_version", "sorted"),
        ({"data_version": "FAST"}, "data_version", "'CONS', 'NRT'"),
        ({"integral_data_rights": "private"}, "integral_data_rights", "'public', 'all-private'"),
        ({"systematic_fraction": 1.0}, "systematic_fraction", "< 1"),
        ({"systematic_fraction": -0.1}, "systematic_fraction", "0 ≤"),
        ({"lc_time_bin": 0}, "lc_time_bin", "0 < lc_time_bin s"),
        ({"detection_threshold": -1}, "detection_threshold", "0 < detection_threshold sigma"),
        ({"detection_threshold": float("nan")}, "detection_threshold", "finite"),
        ({"RA": 360.0}, "RA", "< 360"),
        ({"DEC": 91.0}, "DEC", "≤ 90"),
        ({"T1": "2003-02-30T00:00:00"}, "T1", "ISOT"),
        ({"T1": "2003-03-15 23:27:40"}, "T1", "ISOT"),
        ({"src_name": "  "}, "src_name", "empty"),
        ({"api_catalog_file": "{not json"}, "api_catalog_file", "does not parse"),
        ({"random_seed": -1}, "random_seed", "0 ≤ random_seed"),
    ],
)
def test_out_of_range_names_parameter_and_what_is_allowed(values, name, allowed):
    error = error_for(values)
    assert error.name == name
    assert allowed in str(error)


@pytest.mark.parametrize(
    "notebook, values, names, allowed",
    [
        (
            "spectrum",
            {"isgri_grouping_min_energy": 300.0, "isgri_grouping_max_energy": 100.0},
            ("isgri_grouping_min_energy", "isgri_grouping_max_energy"),
            "must be below isgri_grouping_max_energy",
        ),
        (
            "revolution_mosaics",
            {"J_E1_keV": 20.0, "J_E2_keV": 10.0},
            ("J_E1_keV", "J_E2_keV"),
            "must be below J_E2_keV",
        ),
        (
            "revolution_mosaics",
            {"use_isgri": False, "use_jemx1": False, "use_jemx2": False},
            ("use_isgri", "use_jemx1", "use_jemx2"),
            "at least one instrument",
        ),
        (
            "moving_target",
            {"control_offset_deg": 3.0},
            ("control_offset_deg", "stack_half_size_deg"),
            "measured in the body-frame stack",
        ),
        ("gallery_upload", {}, ("run_folder",), "run_folder is empty"),
    ],
)
def test_cross_field_rules_of_each_block(notebook, values, names, allowed):
    error = error_for(values, notebook)
    assert error.names == names and allowed in str(error)


def test_every_problem_of_one_input_is_reported_together():
    error = error_for(
        {
            "E1_keV": "x",
            "s_max": 0,
            "detection_treshold": 5,
            "token": "t",
            "T1": "2006-01-01T00:00:00",
            "T2": "2005-01-01T00:00:00",
            "radius": -1,
        }
    )
    assert set(error.names) == {"E1_keV", "s_max", "detection_treshold", "token", "T1", "T2", "radius"}
    assert len(error.problems) == 6
    text = str(error)
    assert text.startswith("6 problems with the parameters:\n- ")
    assert "did you mean 'detection_threshold'" in text and "earlier than T2" in text


def test_cross_field_problems_of_valid_fields_come_with_field_problems():
    # E1_keV above E2_keV is reported even though s_max, another field, is wrong.
    error = error_for({"s_max": "many", "E1_keV": 35.0, "E2_keV": 30.0})
    assert error.names == ("s_max", "E1_keV", "E2_keV")


@pytest.mark.parametrize(
    "values",
    [
        {"s_max": -1},
        {"s_max": -3},
        {"s_max": 300},
        {"n_scw_image": -1},
        {"n_scw_image": -0.2},
        {"n_scw_image": 10},
        {"osa_version": "OSA10.2"},
        {"osa_version": "OSA11.2-beta--fullbkg--jemxnrt"},
        {"api_catalog_file": '{"cat_column_list": []}'},
        {"api_catalog_file": "catalog.json"},
        {"instrument": "jemx", "jemx_unit": 2, "E1_keV": 3, "E2_keV": 35},
        {"T1": "2003-02-22T00:00:00.5", "T2": "2003-02-22T00:00:01"},
    ],
)
def test_valid_edge_values_pass(values):
    parameters.validate("lightcurve", values)


def test_numbers_keep_their_meaning():
    assert parameters.validate("lightcurve", {"n_scw_image": -0.2}).n_scw_image == -0.2
    assert parameters.validate("lightcurve", {"n_scw_image": 10.0}).n_scw_image == 10
    assert parameters.validate("lightcurve", {"s_max": 50.0}).s_max == 50


def test_time_outside_the_mission_only_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="integral_workflows.parameters.types"):
        parameters.validate("mosaic", {"T1": "2000-01-01T00:00:00", "T2": "2000-02-01T00:00:00"})
    assert "outside INTEGRAL" in caplog.text


def test_datetime_values_become_isot_strings():
    p = parameters.validate("mosaic", {"T1": dt.datetime(2003, 3, 15, 23, 27, 40), "T2": "2003-03-20T00:00:00"})
    assert p.T1 == "2003-03-15T23:27:40"


# -- names and tokens -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong, right",
    [
        ("E1_kev", "E1_keV"),
        ("e1_kev", "E1_keV"),
        ("smax", "s_max"),
        ("jemx_units", "jemx_unit"),
        ("src", "src_name"),
        ("Ra", "RA"),
        ("detection_treshold", "detection_threshold"),
    ],
)
def test_unknown_name_suggests_closest(wrong, right):
    error = error_for({wrong: 1})
    assert error.names == (wrong,)
    assert f"did you mean {right!r}" in str(error)


def test_unknown_name_without_close_match_lists_the_parameters():
    error = error_for({"completely_unrelated_thing": 1}, "scw_selection")
    assert "the parameters are src_name, RA, DEC" in str(error)


@pytest.mark.parametrize("name", ["token", "TOKEN", "oda_token", "jwt"])
def test_token_is_never_a_parameter(name):
    assert name.casefold() in parameters.TOKEN_PARAMETER_NAMES or name.casefold() == "token"
    error = error_for({name: "anything"})
    assert error.names == (name,)
    assert "ODA_TOKEN" in str(error) and ".oda-token" in str(error)


def test_a_jwt_value_is_rejected_without_being_shown():
    error = error_for({"src_name": FAKE_JWT})
    assert error.names == ("src_name",) and "ODA_TOKEN" in str(error) and FAKE_JWT not in str(error)
    error = error_for({"bad_revolutions": [FAKE_JWT]}, "scw_selection")
    assert FAKE_JWT not in str(error)
    # The model itself refuses them too, for code that skips validate().
    with pytest.raises(pydantic.ValidationError) as caught:
        parameters.model_for("mosaic").model_validate({"src_name": FAKE_JWT})
    assert FAKE_JWT not in str(caught.value).replace(f"input_value='{FAKE_JWT}'", "")


def test_parameter_error_survives_pickling():
    error = error_for({"s_max": 0, "E1_keV": "x"})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.problems, copy.names, str(copy)) == (error.problems, error.names, str(error))


# -- runs of several notebooks --------------------------------------------------------------------------------------

LONG_TERM = ["scw_selection", "mosaic", "lightcurve", "spectrum"]


def test_validate_run_gives_each_notebook_the_values_it_declares():
    models = parameters.validate_run(
        LONG_TERM, {"src_name": "GX 5-1", "lc_time_bin": 1000.0, "scw_source": "heasarc", "instrument": "jemx"}
    )
    assert list(models) == LONG_TERM
    assert models["lightcurve"].lc_time_bin == 1000.0 and "lc_time_bin" not in models["spectrum"]
    assert models["scw_selection"].scw_source == "heasarc"
    assert {model.src_name for model in models.values()} == {"GX 5-1"}
    assert models["mosaic"].E1_keV == 3.0


def test_validate_run_refuses_a_name_no_notebook_declares():
    # scw_source is the ScW selection's: a revolution run must not accept it silently.
    with pytest.raises(ParameterError) as caught:
        parameters.validate_run(["revolution_mosaics"], {"scw_source": "heasarc", "rev_num": "0300"})
    assert caught.value.names == ("scw_source",)
    assert "unknown parameter 'scw_source' for the notebooks revolution_mosaics" in str(caught.value)
    with pytest.raises(ParameterError, match="did you mean 'detection_threshold'"):
        parameters.validate_run(LONG_TERM, {"detection_treshold": 5})


def test_validate_run_reports_all_notebooks_problems_once():
    with pytest.raises(ParameterError) as caught:
        parameters.validate_run(
            LONG_TERM, {"T1": "yesterday", "lc_time_bin": -1, "isgri_grouping_factor": "x", "radius_deg": 5}
        )
    error = caught.value
    assert len(error.problems) == 4  # T1 is wrong for four notebooks, reported once
    assert set(error.names) == {"T1", "lc_time_bin", "isgri_grouping_factor", "radius_deg"}
    assert "did you mean 'radius'" in str(error)


def test_validate_run_asks_for_a_shared_parameter_whose_defaults_differ():
    steps = ["scw_selection", "crab_calibration", "moving_target"]
    with pytest.raises(ParameterError) as caught:
        parameters.validate_run(steps, {"T1": "2019-01-01T00:00:00", "T2": "2020-01-01T00:00:00"})
    assert caught.value.names == ("src_name",)
    assert "give src_name explicitly" in str(caught.value)
    models = parameters.validate_run(
        steps, {"src_name": "Jupiter", "RA": 0.0, "DEC": 0.0, "T1": "2019-01-01T00:00:00", "T2": "2020-01-01T00:00:00"}
    )
    assert models["moving_target"].src_name == models["scw_selection"].src_name == "Jupiter"


def test_every_parameter_file_validates():
    from integral_workflows.parameters.files import read_parameter_file

    workflows = {
        "long_term": LONG_TERM,
        "crab_calibration": ["crab_calibration"],
        "moving_target": ["scw_selection", "crab_calibration", "moving_target"],
        "revolution": ["revolution_mosaics"],
        "transient": ["transient_followup"],
    }
    for path in sorted((ROOT / "parameters").glob("*.yaml")):
        content = read_parameter_file(path)
        values = dict(content.get("parameters") or {})
        for axis, entries in (content.get("matrix") or {}).items():
            entry = entries[0]
            values.update(entry if isinstance(entry, dict) else {axis: entry})
        parameters.validate_run(workflows[content["workflow"]], values)


# -- JSON, YAML and overrides ---------------------------------------------------------------------------------------


def test_to_papermill_is_json_safe_and_round_trips():
    p = parameters.validate("scw_selection", {"bad_revolutions": ["1234", "0044"], "instrument": "jemx"})
    values = parameters.to_papermill(p)
    assert values["bad_revolutions"] == ["0044", "1234"]
    assert list(values) == parameters.declared_names("scw_selection")
    assert json.loads(json.dumps(values)) == values
    assert parameters.validate("scw_selection", values) == p
    assert parameters.to_papermill(parameters.validate("revolution_mosaics", {"rev_num": "0044"}))["rev_num"] == "0044"


YAML_TEXT = """
workflow: long_term
description: a test
parameters:
  T1: 2003-03-15T23:27:40
  T2: 2003-03-20T00:00:00.500
  src_name: 1A 0535+262
  instrument: isgri
  bad_revolutions: [0044, 0045, 1234]
  upload_to_gallery: false
  E1_keV: 30
  radius: null
"""


def test_parameter_file_keeps_times_and_zero_padded_numbers_as_strings(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    values = parameters.read_parameter_file(path)["parameters"]
    assert values["T1"] == "2003-03-15T23:27:40" and values["T2"] == "2003-03-20T00:00:00.500"
    assert values["bad_revolutions"] == ["0044", "0045", 1234]
    assert values["E1_keV"] == 30 and values["radius"] is None and values["upload_to_gallery"] is False
    p = parameters.validate(
        "scw_selection", {k: v for k, v in values.items() if k in parameters.declared_names("scw_selection")}
    )
    assert p.bad_revolutions == ("0044", "0045", "1234") and p.radius == 10.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rev_num: 0044", "0044"),
        ("x: 05:34:31", "05:34:31"),
        ("x: NO", "NO"),
        ("x: yes", "yes"),
        ("x: 0x1F", "0x1F"),
        ("x: 1e3", 1000.0),
        ("x: -2.5", -2.5),
        ("x: 12", 12),
        ("x: TRUE", True),
        ("x: 2003-03-15", "2003-03-15"),
        ("x: 007.5", "007.5"),
    ],
)
def test_yaml_scalars(text, expected):
    value = next(iter(parse_yaml(text).values()))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"workflow: long_term\nparameters:\n  E1_keV: 20\n  E1_keV: 30\n", "given twice"),
        (b"- a\n- b\n", "mapping"),
        (b"workflow: [unclosed\n", "not valid YAML"),
        (b"workflow: long_term\nsrc_name: Crab\nparamters: {}\n", "unknown top-level key(s) ['src_name', 'paramters']"),
        (b"parameters: {}\n", "'workflow:' must name a workflow"),
        (b"workflow: long_term\nparameters: [1, 2]\n", "'parameters:' must be a mapping"),
        (b"workflow: long_term\nmatrix: {src_name: []}\n", "non-empty list"),
        (b"workflow: long_term\nparameters:\n  src_name: G\xe9minga\n", "not UTF-8 text (byte 0xe9 on line 3)"),
    ],
)
def test_parameter_file_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ParameterError) as caught:
        parameters.read_parameter_file(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_missing_parameter_file():
    with pytest.raises(ParameterError, match="cannot read"):
        parameters.read_parameter_file("/nonexistent/run.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("28", 28),
        ("2004-01-01T00:00:00", "2004-01-01T00:00:00"),
        ("0044", "0044"),
        ("[0044, 0045]", ["0044", "0045"]),
        ("1A 0535+262", "1A 0535+262"),
        ("null", None),
        ("", ""),
        ("true", True),
        ("yes", "yes"),
    ],
)
def test_overrides_follow_the_file_rules(text, expected):
    assert parameters.parse_override("x", text) == ("x", expected)


@pytest.mark.parametrize("text", ["{a: 1}", "[unclosed"])
def test_bad_overrides(text):
    with pytest.raises(ParameterError, match="-p x"):
        parameters.parse_override("x", text)


# -- docs -------------------------------------------------------------------------------------------------------------


def test_docs_are_generated_from_the_current_models():
    assert (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8") == docs.render(), (
        "docs/parameters.md is stale: run python -m integral_workflows.parameters.docs"
    )


def test_json_schema_carries_help_ontology_and_constraints():
    schema = docs.json_schemas()["mosaic"]
    radius = schema["properties"]["radius"]
    assert radius["description"].startswith("Selection radius") and radius["unit"] == "deg"
    assert radius["ontology"] == "http://odahub.io/ontology#AngleDegrees"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["instrument"]["enum"] == ["isgri", "jemx"]


def test_docs_script_writes_the_file(tmp_path):
    target = tmp_path / "parameters.md"
    subprocess.run(
        [sys.executable, "-m", "integral_workflows.parameters.docs", "--output", str(target)], check=True, timeout=120
    )
    assert target.read_text(encoding="utf-8") == docs.render()


def test_lists_are_accepted_as_lists():
    p = parameters.validate("gallery_upload", {"run_folder": "outputs/x", "steps": ["mosaic", "lightcurve"]})
    assert p.steps == ("mosaic", "lightcurve") and parameters.to_papermill(p)["steps"] == ["mosaic", "lightcurve"]
    error = error_for({"run_folder": "x", "steps": "mosaic"}, "gallery_upload")
    assert error.names == ("steps",) and "a list" in str(error)
