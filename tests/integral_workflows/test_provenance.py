"""Provenance: checksums, versions, git state, parameter digests, token scrubbing, step records, FITS keywords."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from astropy.io import fits

from integral_workflows import parameters, provenance

FAKE_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLXByb3ZlbmFuY2U"


def test_file_checksum_is_the_sha256_of_the_content(tmp_path):
    path = tmp_path / "product.fits"
    content = b"SIMPLE  =" + bytes(range(256)) * 5000
    path.write_bytes(content)
    assert provenance.file_checksum(path) == hashlib.sha256(content).hexdigest()
    assert provenance.file_checksum(path, algorithm="md5", chunk_bytes=7) == hashlib.md5(content).hexdigest()


def test_package_versions_name_the_packages_that_shape_products():
    versions = provenance.package_versions()
    for name in ("integral_workflows", "oda_api", "astropy", "numpy", "papermill", "python"):
        assert versions[name], name
    assert versions["integral_workflows"] == __import__("integral_workflows").__version__


def test_git_commit_of_the_project_and_outside_a_repository(tmp_path):
    state = provenance.git_commit()
    assert len(state["commit"]) == 40 and int(state["commit"], 16) >= 0
    assert isinstance(state["dirty"], bool)
    assert provenance.git_commit(path=tmp_path) == {"commit": None, "dirty": None, "changed_files": None}


def workflow_parameters(notebook, **values):
    return parameters.validate(notebook, values)


def test_parameter_digest_ignores_how_the_values_were_written():
    plain = provenance.parameter_digest(parameters.validate("mosaic", {"instrument": "isgri"}))
    spelled_out = provenance.parameter_digest(
        parameters.validate("mosaic", {"instrument": "ISGRI", "E1_keV": None, "E2_keV": 40})
    )
    model = parameters.validate("mosaic", {})
    assert plain == spelled_out == provenance.parameter_digest(model)
    assert provenance.parameter_digest(parameters.to_papermill(model)) == plain  # the model's values as a mapping
    assert provenance.parameter_digest(parameters.validate("mosaic", {"E1_keV": 30})) != plain
    assert len(plain) == 64


def test_scrub_redacts_jwts_and_the_environment_token(monkeypatch):
    monkeypatch.setenv("ODA_TOKEN", "not-a-jwt-but-secret-1234")
    content = {"a": [f"token={FAKE_JWT}", {"k": "not-a-jwt-but-secret-1234 again"}], FAKE_JWT: 1, "n": 2.0}
    clean, count = provenance.scrub(content)
    text = json.dumps(clean)
    assert FAKE_JWT not in text and "not-a-jwt-but-secret-1234" not in text
    assert count == 3 and text.count(provenance.REDACTED) == 3
    assert clean["n"] == 2.0
    assert provenance.contains_secret(f"x {FAKE_JWT} y") and not provenance.contains_secret("eyJ alone")


def test_short_environment_tokens_are_not_treated_as_secrets(monkeypatch):
    # Redacting a 3-letter "token" would mangle ordinary words everywhere.
    monkeypatch.setenv("ODA_TOKEN", "abc")
    assert provenance.secret_values() == []


class _Record:
    """Anything with as_dict() (like integral_workflows.jobs.RunRecord) is accepted as the jobs summary."""

    def as_dict(self):
        return {
            "counts": {"done": 1, "skipped": 1, "failed": 0},
            "scws": {
                "004400010010.001": {"status": "done", "reason": "", "job_id": "j1"},
                "004400020010.001": {"status": "skipped", "reason": "in radiation belts", "job_id": "j1"},
            },
        }


def test_record_step_writes_products_checksums_jobs_and_parameters(tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "mosaic.fits").write_bytes(b"mosaic")
    (run / "sub" / "sources.ecsv").write_text("# sources\n")
    parameters = workflow_parameters("mosaic", src_name="Crab", host_type="local")
    path = provenance.record_step(
        "mosaic",
        output_dir=run,
        products=["mosaic.fits", run / "sub" / "sources.ecsv"],
        jobs=_Record(),
        parameters=parameters,
        extra={"n_sources": 3},
        timings={"query_s": 1.5},
    )
    assert path == run / "mosaic.step.json"
    record = provenance.read_step_record(run, "mosaic")
    assert [p["path"] for p in record["products"]] == ["mosaic.fits", "sub/sources.ecsv"]
    assert record["products"][0]["sha256"] == hashlib.sha256(b"mosaic").hexdigest()
    assert record["jobs"]["scws"]["004400020010.001"]["reason"] == "in radiation belts"
    assert record["parameters"]["host_type"] == "local"
    assert record["parameter_digest"] == provenance.parameter_digest(parameters)
    assert record["extra"] == {"n_sources": 3} and record["timings"] == {"query_s": 1.5}
    assert record["versions"]["papermill"]
    assert provenance.read_step_record(run, "absent") is None


def test_record_step_refuses_products_it_cannot_vouch_for(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere.fits").write_bytes(b"x")
    with pytest.raises(ValueError, match="outside the run folder"):
        provenance.record_step("mosaic", output_dir=run, products=[tmp_path / "elsewhere.fits"])
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        provenance.record_step("mosaic", output_dir=run, products=["missing.fits"])
    with pytest.raises(ValueError, match="step name"):
        provenance.record_step("../mosaic", output_dir=run, products=[])
    assert not list(run.iterdir())


def test_record_step_redacts_a_token_handed_to_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ODA_TOKEN", FAKE_JWT)
    (tmp_path / "a.txt").write_text("a")
    with caplog.at_level(logging.WARNING, logger="integral_workflows.provenance"):
        path = provenance.record_step(
            "careless",
            output_dir=tmp_path,
            products="a.txt",
            extra={"token": FAKE_JWT, "header": f"Authorization: Bearer {FAKE_JWT}"},
        )
    assert FAKE_JWT not in path.read_text()
    assert provenance.REDACTED in path.read_text()
    assert "redacted" in caplog.text and FAKE_JWT not in caplog.text


def test_fits_keywords_follow_creator_metadata(tmp_path):
    parameters = workflow_parameters("mosaic", src_name="Crab", RA=83.63308, DEC=22.0145, host_type="local")
    header = fits.Header()
    provenance.stamp_header(
        header, notebook="notebooks/mosaic.ipynb", parameters=parameters, created="2026-01-02T03:04:05"
    )
    assert header["CREATOR"] == f"integral_workflows {__import__('integral_workflows').__version__} mosaic.ipynb"
    assert header["CREATED"] == "2026-01-02T03:04:05"
    assert header["ORIGIN"] == "mmoda_local SIMULATED"
    assert header["OBJECT"] == "Crab"
    assert header["RA_OBJ"] == pytest.approx(83.63308) and header["DEC_OBJ"] == pytest.approx(22.0145)
    assert header["PARDIGST"] == provenance.parameter_digest(parameters)[:16]
    assert "HISTORY" not in header
    # The cards are valid FITS: they survive a write and a read.
    path = tmp_path / "stamped.fits"
    fits.PrimaryHDU(header=header).writeto(path)
    assert fits.getheader(path)["ORIGIN"] == "mmoda_local SIMULATED"


def test_fits_keywords_for_production_and_looked_up_coordinates():
    looked_up = workflow_parameters("mosaic", src_name="Cyg X-1", RA=0.0, DEC=0.0, host_type="production")
    cards = dict(
        (key, value)
        for key, value, _ in provenance.fits_keywords(notebook="lc.ipynb", parameters=looked_up, git={"commit": None})
    )
    assert cards["ORIGIN"] == "MMODA production"
    assert "RA_OBJ" not in cards and "GITCOMMT" not in cards  # RA = DEC = 0 means "look it up": not a position
    cards = dict(
        (key, value)
        for key, value, _ in provenance.fits_keywords(
            notebook="lc.ipynb",
            parameters=looked_up,
            ra_deg=299.59,
            dec_deg=35.2,
            git={"commit": "a" * 40, "dirty": True},
        )
    )
    assert cards["RA_OBJ"] == 299.59 and cards["GITCOMMT"] == "a" * 12 + "+dirty"
    with pytest.raises(ValueError, match="token"):
        provenance.fits_keywords(notebook="lc.ipynb", src_name=FAKE_JWT, git={"commit": None})


# -- Unicode names (issue 10) -----------------------------------------------------------------------------------
def test_fits_ascii_folds_accents_and_escapes_what_has_no_ascii_form():
    from integral_workflows.provenance import fits_ascii

    assert fits_ascii("Boötes null") == "Bootes null"
    assert fits_ascii("Crab") == "Crab"
    assert fits_ascii("ﬁeld²") == "field2"
    assert fits_ascii("γ Cas") == "\\u03b3 Cas" and fits_ascii("γ Cas") != fits_ascii("δ Cas")
    assert fits_ascii("a\tb") == "a?b"
    assert fits_ascii("北京").isascii()


def test_file_stem_of_unicode_names_is_a_portable_slug():
    from integral_workflows.provenance import file_stem

    assert file_stem("Boötes null") == "Bootes_null"
    assert file_stem("1A 0535+262") == "1A_0535+262"
    assert file_stem("γ Cas").isascii()


def test_object_keyword_of_a_unicode_target_is_ascii():
    from astropy.io import fits

    from integral_workflows.provenance import fits_keywords

    cards = dict(
        (key, value) for key, value, _ in fits_keywords(notebook="mosaic.ipynb", src_name="Boötes null", git={})
    )
    assert cards["OBJECT"] == "Bootes null"
    header = fits.Header()
    header["OBJECT"] = cards["OBJECT"]  # astropy refuses non-ASCII values: this must not raise
