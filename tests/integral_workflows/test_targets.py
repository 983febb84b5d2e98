"""Name → coordinates: built-in catalogue offline, Simbad (mocked) online, solar-system bodies."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from astropy.table import Table

from integral_workflows import parameters, targets
from integral_workflows.targets import Target, TargetNotFoundError

#: The ISDC reference-catalogue subset the built-in catalogue is made from (shared/data's file, byte for byte;
#: the repository carries it as the local MMODA's sky data, so a fresh clone has it)
ISDC_CATALOGUE = Path(__file__).resolve().parents[2] / "lib" / "mmoda_local" / "data" / "isdc_ref_cat_0043_subset.ecsv"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to probe the network fails the test: lookups here must be offline or mocked."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(targets, "_probe_network", refuse)


@pytest.mark.parametrize(
    "name, catalogue_name, ra, dec",
    [
        ("Crab", "Crab", 83.63321, 22.014471),
        ("crab", "Crab", 83.63321, 22.014471),
        ("CRAB", "Crab", 83.63321, 22.014471),
        ("  Crab ", "Crab", 83.63321, 22.014471),
        ("Cyg X-1", "Cyg X-1", 299.59033, 35.20161),
        ("cyg_x-1", "Cyg X-1", 299.59033, 35.20161),
        ("CygX-1", "Cyg X-1", 299.59033, 35.20161),
        ("1A_0535+262", "1A 0535+262", 84.72737, 26.315779),
    ],
)
def test_builtin_lookup_is_case_space_and_underscore_insensitive(name, catalogue_name, ra, dec):
    target = targets.resolve_name(name, online=False)
    assert target == Target(name=catalogue_name, ra=ra, dec=dec, source="builtin")
    assert not target.is_moving and target.position() == (ra, dec)


def test_unknown_name_lists_close_names():
    with pytest.raises(TargetNotFoundError) as caught:
        targets.resolve_name("Cyg X1", online=False)
    assert caught.value.name == "Cyg X1"
    assert "Cyg X-1" in caught.value.suggestions
    assert "Cyg X-1" in str(caught.value) and "RA and DEC" in str(caught.value)


def test_unknown_name_without_close_names():
    with pytest.raises(TargetNotFoundError, match="unknown source name 'Qwertyuiop'"):
        targets.resolve_name("Qwertyuiop", online=False)


@pytest.mark.parametrize("name", ["Sun", "moon", "MERCURY", "Venus", "Mars", "jupiter", "Saturn", "Uranus", "Neptune"])
def test_solar_system_bodies_are_moving_targets(name):
    assert targets.is_solar_system_body(name)
    target = targets.resolve_name(name, online=False)
    assert target.is_moving and target.source == "solar_system"
    assert target.ra is None and target.dec is None
    assert target.name == name.capitalize()
    with pytest.raises(targets.MovingTargetError, match="no fixed position"):
        target.position()


@pytest.mark.parametrize("name", ["Crab", "Pluto", "Earth", "Jupiter X-1", ""])
def test_other_names_are_not_bodies(name):
    assert not targets.is_solar_system_body(name)


def test_coordinates_for_applies_the_mmoda_rule():
    looked_up = targets.coordinates_for(
        parameters.validate("mosaic", {"src_name": "Cyg X-1", "RA": 0, "DEC": 0}), online=False
    )
    assert looked_up.source == "builtin" and looked_up.ra == 299.59033
    given = targets.coordinates_for({"src_name": "My field", "RA": 10.5, "DEC": 0.0}, online=False)
    assert given == Target(name="My field", ra=10.5, dec=0.0, source="parameters")
    body = targets.coordinates_for({"src_name": "Jupiter", "RA": 0.0, "DEC": 0.0}, online=False)
    assert body.is_moving


def test_default_online_check_is_used_and_offline_env_short_circuits(monkeypatch):
    monkeypatch.setattr(targets, "_probe_network", lambda address, timeout_s: False)
    assert targets.resolve_name("Crab").source == "builtin"
    monkeypatch.setenv(targets.OFFLINE_ENV, "1")
    monkeypatch.setattr(targets, "_probe_network", lambda address, timeout_s: pytest.fail("probed while offline"))
    assert targets.is_online() is False


def fake_simbad(monkeypatch, answer):
    """Install a stand-in astroquery.simbad whose Simbad.query_object returns ``answer`` (or raises it)."""
    calls = []

    class FakeSimbad:
        @staticmethod
        def query_object(name):
            calls.append(name)
            if isinstance(answer, Exception):
                raise answer
            return answer

    module = types.ModuleType("astroquery.simbad")
    module.Simbad = FakeSimbad
    monkeypatch.setitem(sys.modules, "astroquery.simbad", module)
    return calls


def test_online_lookup_asks_simbad(monkeypatch):
    calls = fake_simbad(monkeypatch, Table({"main_id": ["M 1"], "ra": [83.6324], "dec": [22.0174]}))
    target = targets.resolve_name("Crab", online=True)
    assert calls == ["Crab"]
    assert target == Target(name="Crab", ra=83.6324, dec=22.0174, source="simbad")


def test_online_lookup_understands_old_sexagesimal_columns(monkeypatch):
    fake_simbad(monkeypatch, Table({"MAIN_ID": ["M 1"], "RA": ["05 34 31.94"], "DEC": ["+22 00 52.2"]}))
    target = targets.resolve_name("Crab", online=True)
    assert target.ra == pytest.approx(83.63308, abs=1e-4) and target.dec == pytest.approx(22.01450, abs=1e-4)


def test_simbad_failure_falls_back_to_the_builtin_catalogue(monkeypatch, caplog):
    fake_simbad(monkeypatch, ConnectionError("no route to host"))
    assert targets.resolve_name("Crab", online=True).source == "builtin"
    assert "Simbad lookup of 'Crab' failed" in caplog.text


def test_name_unknown_to_simbad_and_catalogue(monkeypatch):
    fake_simbad(monkeypatch, Table({"main_id": [], "ra": [], "dec": []}))
    with pytest.raises(TargetNotFoundError, match="neither Simbad nor the built-in catalogue"):
        targets.resolve_name("Qwertyuiop", online=True)


def test_shipped_catalogue_records_its_provenance():
    table = Table.read(targets.builtin_catalogue_path(), format="ascii.ecsv")
    assert table.colnames == ["NAME", "RA", "DEC"]
    assert len(table) == 947
    assert "ISDC INTEGRAL reference catalogue" in table.meta["source"]
    assert len(table.meta["source_sha256"]) == 64


def test_shipped_catalogue_is_what_the_builder_makes(tmp_path):
    rebuilt = Table.read(targets.write_builtin_catalogue(ISDC_CATALOGUE, destination=tmp_path / "rebuilt.ecsv"))
    shipped = Table.read(targets.builtin_catalogue_path())
    assert list(rebuilt["NAME"]) == list(shipped["NAME"])
    assert list(rebuilt["RA"]) == list(shipped["RA"]) and list(rebuilt["DEC"]) == list(shipped["DEC"])
    assert rebuilt.meta == shipped.meta


def test_simbad_row_without_position_falls_back(monkeypatch):
    table = Table({"main_id": ["Crab"], "ra": [0.0], "dec": [0.0]}, masked=True)
    table["ra"].mask = [True]
    fake_simbad(monkeypatch, table)
    assert targets.resolve_name("Crab", online=True).source == "builtin"
