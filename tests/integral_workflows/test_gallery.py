"""Uploads to the MMODA product gallery: product ids, the request, scrubbing, retries, and the local gallery end to end.

The unit tests talk to a small scripted HTTP server on 127.0.0.1 (:class:`FakeGallery`) that answers the
gallery endpoints the real oda_api client calls, and can fail on demand. The end-to-end tests run the real
notebooks against the local MMODA's gallery (started as a subprocess, as the notebooks do).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import nbformat
import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.table import Table

from integral_workflows import gallery, hosts, parameters, provenance
from integral_workflows.products import Product, describe, long_term_identity

from ..conftest import REPO

# A syntactically valid JWT (header {"alg":"HS256","typ":"JWT"}, payload {"sub":"fake-user"...}), never a real one.
FAKE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWtlLXVzZXIiLCJleHAiOjQxMDI0NDQ4MDB9.ZmFrZS1zaWduYXR1cmU"
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}")


# -- a scripted gallery ---------------------------------------------------------------------------------------------


def node(nid: int = 7, *, created: str = "2026-01-01T00:00:00+00:00", changed: str | None = None) -> dict:
    """A Drupal HAL-JSON node as the real gallery answers a post."""
    return {
        "nid": [{"value": nid}],
        "title": [{"value": "posted"}],
        "created": [{"value": created}],
        "changed": [{"value": changed or created}],
        "_links": {
            "self": {"href": f"http://gallery/node/{nid}?_format=hal_json"},
            "http://gallery/rest/relation/node/data_product/field_instrumentused": [{"href": "x"}],
            "http://gallery/rest/relation/node/data_product/field_data_product_type": [{"href": "y"}],
        },
    }


class FakeGallery:
    """Gallery endpoints on 127.0.0.1 answering from per-path scripts; every request is recorded.

    A script entry is ``("json", status, body)``, ``("text", status, text)`` or ``("drop",)`` (the
    connection is closed without an answer); a path without script entries gets its default answer.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.scripts: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.defaults = {
            "/get_parents_term": ("json", 200, ["image", "isgri_image"]),
            "/resolve_name": ("json", 200, {"message": "Crab successfully resolved", "RA": 83.63, "DEC": 22.01}),
            "/post_product_to_gallery": ("json", 200, node()),
            "/get_list_terms": ("json", 200, ["isgri", "jemx1"]),
            # the network seam asks a loopback dispatcher that dropped a connection whether it is still alive
            "/local/health": ("json", 200, {"status": "ok"}),
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                fake.requests.append(
                    {"method": self.command, "path": parts.path, "query": dict(parse_qsl(parts.query)), "body": body}
                )
                script = fake.scripts[parts.path]
                action = script.popleft() if script else fake.defaults.get(parts.path, ("json", 404, {}))
                if action[0] == "drop":
                    self.close_connection = True
                    return
                kind, status, content = action
                data = json.dumps(content).encode() if kind == "json" else content.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if kind == "json" else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *arguments):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        return [request["path"] for request in self.requests]

    def posts(self) -> list[dict]:
        return [request for request in self.requests if request["path"] == "/post_product_to_gallery"]


@pytest.fixture
def fake_gallery():
    server = FakeGallery()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


class Sleeps(list):
    """Records the waits instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


# -- a product with real files ------------------------------------------------------------------------------------


def make_product(folder: Path, **changes) -> gallery.GalleryProduct:
    """An image product whose FITS, PNG, region, source table and executed notebook exist in ``folder``."""
    fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4), "f4"))]).writeto(folder / "mosaic.fits", overwrite=True)
    (folder / "mosaic.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a picture")
    (folder / "sources.reg").write_text("# Region file format: DS9\nicrs\ncircle(83.63,22.01,0.2)\n")
    Table(
        {
            "name": ["Crab", "NEW_1"],
            "ra": [83.633, 84.1],
            "dec": [22.0145, 21.5],
            "significance": [250.0, 7.2],
            "rate": [61.5, 0.3],
            "rate_error": [0.21, 0.04],
            "new_source": [False, True],
        }
    ).write(folder / "sources.ecsv", overwrite=True)
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": f"token = '{FAKE_TOKEN}'",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (folder / "01_mosaic.ipynb").write_text(json.dumps(notebook))
    values = dict(
        image=folder / "mosaic.png",
        fits_files=[folder / "mosaic.fits"],
        region_file=folder / "sources.reg",
        sources_table=folder / "sources.ecsv",
        notebook=folder / "01_mosaic.ipynb",
        title="Crab Rev. 0300",
        instrument="isgri",
        kind="image",
        product_id=gallery.product_id({"rev_num": "0300", "obsid": "07700030001"}),
        t1="2005-03-29T13:04:28",
        t2="2005-03-30T01:18:31",
        src_names=["Crab"],
        ra=83.72,
        dec=22.15,
        e1_kev=28.0,
        e2_kev=40.0,
        obsids=["07700030001"],
        revolutions=["0300"],
        produced_by="revolution_mosaics.ipynb",
        parameters={"rev_num": "0300", "host_type": "local", "note": f"leaked {FAKE_TOKEN}"},
    )
    values.update(changes)
    return gallery.GalleryProduct(**values)


# -- product ids and times ------------------------------------------------------------------------------------------


def test_product_ids_are_stable_hashes_of_the_defining_parameters():
    from oda_api.api import DispatcherAPI

    defining = {"rev_num": "0300", "obsid": "07700030001", "instrument": "isgri", "E1_keV": 28, "E2_keV": 40.0}
    same = {"E2_keV": 40, "E1_keV": 28.0, "instrument": "isgri", "obsid": "07700030001", "rev_num": "0300"}
    assert gallery.product_id(defining) == gallery.product_id(same)
    assert re.fullmatch(r"[0-9a-f]{16}", gallery.product_id(defining))
    assert gallery.product_id(defining) == DispatcherAPI.calculate_param_dict_id(
        {key: float(value) if isinstance(value, (int, float)) else value for key, value in defining.items()}
    )
    assert gallery.product_id({**defining, "E2_keV": 80}) != gallery.product_id(defining)
    assert gallery.product_id({**defining, "obsid": "07700030002"}) != gallery.product_id(defining)
    assert gallery.product_id({**defining, "unused": None}) == gallery.product_id(defining)  # None is no value
    with pytest.raises(ValueError):
        gallery.product_id({})


def test_times_are_sent_as_whole_seconds():
    assert gallery.isot_seconds("2005-03-01T10:00:00.700") == "2005-03-01T10:00:00"
    assert gallery.isot_seconds("2005-03-01T10:00:00.700", round_up=True) == "2005-03-01T10:00:01"
    assert gallery.isot_seconds("2005-03-01T10:00:00", round_up=True) == "2005-03-01T10:00:00"
    with pytest.raises(ValueError):
        gallery.isot_seconds("2005-03-01")
    with pytest.raises(ValueError, match="whole seconds"):
        gallery.GalleryProduct(
            title="x",
            instrument="isgri",
            kind="image",
            product_id="0",
            t1="2005-03-29T13:04:28.5",
            t2="2005-03-30T00:00:00",
        )
    with pytest.raises(ValueError, match="instrument"):
        gallery.product_type("jemx", "image")


def test_products_round_trip_through_their_records(tmp_path):
    product = make_product(tmp_path)
    recorded = product.as_dict(relative_to=tmp_path, include_parameters=False)
    assert recorded["fits_files"] == ["mosaic.fits"] and "parameters" not in recorded
    assert FAKE_TOKEN not in json.dumps(product.as_dict())  # records are scrubbed
    again = gallery.GalleryProduct.from_dict(recorded, base=tmp_path, parameters=product.parameters)
    assert again == product


# -- the request ---------------------------------------------------------------------------------------------------


def test_the_request_carries_the_gallery_fields_files_and_no_token_but_in_the_token_field(tmp_path):
    product = make_product(tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    request = gallery.build_upload_request(product, token=FAKE_TOKEN, workdir=workdir)
    assert request["token"] == FAKE_TOKEN
    assert request["product_id"] == product.product_id and request["product_title"] == "Crab Rev. 0300"
    assert (request["instrument"], request["product_type"]) == ("isgri", "isgri_image")
    assert (request["T1"], request["T2"]) == ("2005-03-29T13:04:28", "2005-03-30T01:18:31")
    assert request["src_name"] == ["Crab"] and request["obsid"] == "07700030001"
    assert (request["RA"], request["DEC"], request["e1_kev"], request["e2_kev"]) == (83.72, 22.15, 28.0, 40.0)
    assert "<td>Crab</td>" in request["detected_sources"] and "61.5" in request["detected_sources"]
    assert request["produced_by"] == "revolution_mosaics.ipynb"
    assert request["additional_information"].startswith("parameters = ")
    assert request["insert_new_source"] is True and request["observation_time_format"] == "ISOT"
    attached = [Path(path).name for path in request["fits_file_path"]]
    assert attached == ["mosaic.fits", "sources.reg", "01_mosaic.ipynb"]
    assert request["gallery_image_path"] == str(tmp_path / "mosaic.png")
    for key, value in request.items():
        if key != "token":
            assert FAKE_TOKEN not in json.dumps(value, default=str), key
    notebook_copy = Path(request["fits_file_path"][-1])
    assert notebook_copy.parent == workdir and FAKE_TOKEN not in notebook_copy.read_text()
    assert FAKE_TOKEN in (tmp_path / "01_mosaic.ipynb").read_text(), "the run's own notebook is not modified"
    parameters = Path(request["yaml_file_path"]).read_text()
    assert "rev_num: '0300'" in parameters and FAKE_TOKEN not in parameters and provenance.REDACTED in parameters


def test_a_product_file_holding_the_token_is_refused(tmp_path):
    product = make_product(tmp_path)
    (tmp_path / "leaky.fits").write_bytes(b"SIMPLE  = T" + FAKE_TOKEN.encode() + b" " * 100)
    with pytest.raises(gallery.GalleryUploadError, match="leaky.fits"):
        gallery.build_upload_request(
            product.replace(fits_files=[tmp_path / "leaky.fits"]), token=FAKE_TOKEN, workdir=tmp_path
        )
    with pytest.raises(gallery.GalleryUploadError, match="missing"):
        gallery.build_upload_request(product.replace(image=tmp_path / "absent.png"), token=FAKE_TOKEN, workdir=tmp_path)


# -- uploads against the scripted gallery ---------------------------------------------------------------------------


def test_an_upload_posts_the_product_as_the_real_client_does(fake_gallery, tmp_path):
    product = make_product(tmp_path)
    result = gallery.upload_product(product, url=fake_gallery.url, token=FAKE_TOKEN, sleep=Sleeps())
    assert result.link == "http://gallery/node/7" and result.node_id == 7 and result.attempts == 1
    assert not result.updated
    assert fake_gallery.paths()[0] == "/get_parents_term" and fake_gallery.paths()[-1] == "/post_product_to_gallery"
    assert fake_gallery.requests[0]["query"] == {"term": "isgri_image", "group": "products", "token": FAKE_TOKEN}
    body = fake_gallery.posts()[0]["body"]
    for part in (
        b'name="product_id"',
        product.product_id.encode(),
        b'name="obsid"',
        b'name="img"',
        b'name="fits_file_0"; filename="mosaic.fits"',
        b'name="fits_file_1"; filename="sources.reg"',
        b'filename="01_mosaic.ipynb"',
        b'name="yaml_file"',
        b'name="e1_kev"',
        b'name="detected_sources"',
    ):
        assert part in body, part
    assert body.count(FAKE_TOKEN.encode()) == 1, "the token travels in the token field only"
    assert len(JWT.findall(body)) == 1


def test_a_re_upload_is_reported_as_an_update(fake_gallery, tmp_path):
    fake_gallery.scripts["/post_product_to_gallery"].append(
        ("json", 200, node(created="2026-01-01T00:00:00+00:00", changed="2026-01-02T00:00:00+00:00"))
    )
    result = gallery.upload_product(make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN)
    assert result.updated and result.changed.startswith("2026-01-02")


def test_transient_failures_are_retried_with_backoff(fake_gallery, tmp_path):
    fake_gallery.scripts["/post_product_to_gallery"].extend(
        [
            ("text", 500, "<title>500 Internal Server Error</title>"),
            ("drop",),
            ("json", 503, {"error_message": "Service Unavailable"}),
        ]
    )
    fake_gallery.scripts["/get_parents_term"].append(("text", 502, "<h1>Bad Gateway</h1>"))
    sleeps = Sleeps()
    policy = gallery.RetryPolicy(attempts=6, first_delay_s=1.0, factor=2.0, max_delay_s=5.0)
    result = gallery.upload_product(
        make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN, policy=policy, sleep=sleeps
    )
    assert result.attempts == 5
    assert sleeps == [1.0, 2.0, 4.0, 5.0]
    assert len(fake_gallery.posts()) == 4  # the first attempt stopped at get_parents_term
    assert len({re.search(rb'name="product_id"\r\n\r\n(\w+)', post["body"])[1] for post in fake_gallery.posts()}) == 1


def test_retries_run_out(fake_gallery, tmp_path):
    for _ in range(3):
        fake_gallery.scripts["/post_product_to_gallery"].append(("text", 500, "Internal Server Error"))
    sleeps = Sleeps()
    with pytest.raises(gallery.GalleryUnavailableError, match="3 attempts"):
        gallery.upload_product(
            make_product(tmp_path),
            url=fake_gallery.url,
            token=FAKE_TOKEN,
            policy=gallery.RetryPolicy(attempts=3),
            sleep=sleeps,
        )
    assert sleeps == [2.0, 4.0]


def test_a_gallery_whose_server_is_gone_fails_at_once_and_the_error_never_shows_the_token(tmp_path):
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_port}"
    closed.server_close()
    sleeps = Sleeps()
    with pytest.raises(gallery.GalleryUnavailableError) as caught:
        gallery.upload_product(
            make_product(tmp_path), url=url, token=FAKE_TOKEN, policy=gallery.RetryPolicy(attempts=2), sleep=sleeps
        )
    # the network seam's liveness check: nothing listens there any more, so waiting cannot help
    assert "backend unavailable" in str(caught.value) and FAKE_TOKEN not in str(caught.value)
    assert sleeps == []


def test_a_dropped_connection_of_a_live_gallery_is_retried(fake_gallery, tmp_path):
    fake_gallery.scripts["/post_product_to_gallery"].append(("drop",))
    sleeps = Sleeps()
    result = gallery.upload_product(make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN, sleep=sleeps)
    assert result.attempts == 2 and len(sleeps) == 1 and len(fake_gallery.posts()) == 2


def test_a_token_without_the_gallery_role_gets_a_clear_error_at_once(fake_gallery, tmp_path):
    fake_gallery.scripts["/get_parents_term"].append(
        (
            "text",
            403,
            "Unfortunately, your privileges are not sufficient to post on the product gallery.\n"
            "Your privilege roles include ['general'], but the following roles are missing: "
            "gallery contributor.",
        )
    )
    sleeps = Sleeps()
    with pytest.raises(gallery.GalleryPermissionError) as caught:
        gallery.upload_product(make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN, sleep=sleeps)
    message = str(caught.value)
    assert "'gallery contributor'" in message and "ODA_TOKEN" in message and "mmoda_local token" in message
    assert "roles include ['general']" in message and FAKE_TOKEN not in message
    assert sleeps == [] and fake_gallery.posts() == []


def test_a_refusal_of_the_post_for_lack_of_rights_is_a_permission_error(fake_gallery, tmp_path):
    fake_gallery.scripts["/post_product_to_gallery"].append(
        ("text", 403, "The token provided is expired, please try to logout and login again.")
    )
    with pytest.raises(gallery.GalleryPermissionError, match="gallery contributor"):
        gallery.upload_product(make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN, sleep=Sleeps())
    assert len(fake_gallery.posts()) == 1


def test_other_refusals_are_not_retried(fake_gallery, tmp_path):
    fake_gallery.scripts["/post_product_to_gallery"].append(
        (
            "json",
            400,
            {
                "error_message": "issue when performing a request to the product gallery",
                "drupal_helper_error_message": "InvalidArgumentException: Field field_x is unknown.",
            },
        )
    )
    sleeps = Sleeps()
    with pytest.raises(gallery.GalleryUploadError, match="field_x is unknown"):
        gallery.upload_product(make_product(tmp_path), url=fake_gallery.url, token=FAKE_TOKEN, sleep=sleeps)
    assert sleeps == [] and len(fake_gallery.posts()) == 1


def test_no_token_no_request(fake_gallery, tmp_path):
    with pytest.raises(gallery.GalleryPermissionError, match="no MMODA token"):
        gallery.upload_product(make_product(tmp_path), url=fake_gallery.url)
    assert fake_gallery.requests == []


def test_simulated_products_go_to_the_local_gallery_only(tmp_path):
    with pytest.raises(gallery.GalleryUploadError, match="simulated"):
        gallery.upload_products([make_product(tmp_path, simulated=True)], host_type="production", token=FAKE_TOKEN)
    with pytest.raises(ValueError):
        gallery.upload_products([], token=FAKE_TOKEN)


def test_retry_policy_delays_grow_to_their_cap():
    policy = gallery.RetryPolicy(attempts=5, first_delay_s=2, factor=3, max_delay_s=10)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2, 6, 10, 10]
    with pytest.raises(ValueError):
        gallery.RetryPolicy(attempts=0)


# -- products of run folders ---------------------------------------------------------------------------------------


def write_long_term_run(run_dir: Path, *, target: tuple = ("Crab", 83.63308, 22.0145)) -> dict:
    """A long-term run folder as its notebooks leave it: small files and the steps' records with descriptors.

    Whatever its ``target`` (name, RA, Dec), the run has light curves of the Crab and 1A 0535+262.
    """
    run_dir.mkdir(parents=True)
    p = parameters.validate(
        "lightcurve",
        {
            "src_name": target[0],
            "RA": target[1],
            "DEC": target[2],
            "T1": "2005-03-01T00:00:00",
            "T2": "2005-04-15T00:00:00",
            "host_type": "local",
        },
    )
    values = parameters.to_papermill(p)
    make_product(run_dir)  # mosaic.fits, mosaic.png, sources.reg, sources.ecsv, 01_mosaic.ipynb
    facts = dict(instrument="isgri", band=(28.0, 40.0), period=(p.T1, p.T2))
    image = Product(
        path=run_dir / "mosaic.fits",
        kind="image",
        source=target[0],
        position=(target[1], target[2]),
        plot=run_dir / "mosaic.png",
        region=run_dir / "sources.reg",
        sources=run_dir / "sources.ecsv",
        identity=long_term_identity(p, instrument="isgri", kind="image"),
        details={"src_names": [target[0]]},
        **facts,
    )
    provenance.record_step(
        "mosaic",
        output_dir=run_dir,
        products=image.files,
        parameters=values,
        extra={"simulated": True},
        descriptors=[
            image.as_dict(relative_to=run_dir),
            describe(run_dir / "sources.ecsv", "source_table").as_dict(relative_to=run_dir),
        ],
    )
    curves = []
    for name, stem, position in (("Crab", "Crab", (83.633, 22.0145)), ("1A 0535+262", "1A_0535+262", None)):
        fits.HDUList([fits.PrimaryHDU()]).writeto(run_dir / f"lightcurve_{stem}.fits")
        (run_dir / f"lightcurve_{stem}.png").write_bytes(b"png")
        curves.append(
            Product(
                path=run_dir / f"lightcurve_{stem}.fits",
                kind="light_curve",
                source=name,
                position=position,
                plot=run_dir / f"lightcurve_{stem}.png",
                identity=long_term_identity(p, instrument="isgri", kind="light_curve", source=name),
                details={"time_bin": p.lc_time_bin},
                **facts,
            )
        )
    (run_dir / "03_lightcurve.ipynb").write_text((run_dir / "01_mosaic.ipynb").read_text())
    provenance.record_step(
        "lightcurve",
        output_dir=run_dir,
        products=[f for c in curves for f in c.files],
        parameters=values,
        extra={"simulated": True},
        descriptors=[curve.as_dict(relative_to=run_dir) for curve in curves],
    )
    for suffix in ("", "_arf", "_rmf"):
        fits.HDUList([fits.PrimaryHDU()]).writeto(run_dir / f"spectrum_Crab{suffix}.fits")
    (run_dir / "spectrum_Crab.png").write_bytes(b"png")
    spectrum = Product(
        path=run_dir / "spectrum_Crab.fits",
        kind="spectrum",
        source="Crab",
        companions=(run_dir / "spectrum_Crab_arf.fits", run_dir / "spectrum_Crab_rmf.fits"),
        plot=run_dir / "spectrum_Crab.png",
        identity=long_term_identity(p, instrument="isgri", kind="spectrum", source="Crab"),
        **facts,
    )
    provenance.record_step(
        "spectrum",
        output_dir=run_dir,
        products=spectrum.files,
        parameters=values,
        extra={"simulated": True},
        descriptors=[spectrum.as_dict(relative_to=run_dir)],
    )
    return values


def test_a_run_folder_tells_its_gallery_products(tmp_path):
    run_dir = tmp_path / "long_term" / "Crab" / "isgri_28-40keV_2005-03-01_2005-04-15"
    write_long_term_run(run_dir)
    assert gallery.recorded_steps(run_dir) == ["lightcurve", "mosaic", "spectrum"]
    products = gallery.run_products(run_dir, steps=["mosaic", "lightcurve", "spectrum"])
    assert [(p.kind, p.src_names) for p in products] == [
        ("image", ("Crab",)),
        ("lc", ("Crab",)),
        ("lc", ("1A 0535+262",)),
        ("spectrum", ("Crab",)),
    ]
    image, crab_curve, other_curve, spectrum = products
    assert [path.name for path in spectrum.fits_files] == [
        "spectrum_Crab.fits",
        "spectrum_Crab_arf.fits",
        "spectrum_Crab_rmf.fits",
    ]
    assert spectrum.product_type == "isgri_spectrum" and spectrum.e1_kev is None and spectrum.notebook is None
    assert image.title == "Crab ISGRI mosaic 28-40 keV, 2005-03-01 to 2005-04-15"
    assert (image.t1, image.t2) == ("2005-03-01T00:00:00", "2005-04-15T00:00:00")
    assert (image.ra, image.dec) == (83.63308, 22.0145) and image.simulated
    assert image.notebook == run_dir / "01_mosaic.ipynb" and image.region_file == run_dir / "sources.reg"
    assert image.parameters["src_name"] == "Crab" and image.produced_by == "mosaic.ipynb"
    assert crab_curve.product_type == "isgri_lc" and crab_curve.fields == {"time_bin": 3000.0}
    assert crab_curve.fits_files == (run_dir / "lightcurve_Crab.fits",) and crab_curve.ra == 83.633
    assert crab_curve.notebook == run_dir / "03_lightcurve.ipynb"
    assert other_curve.fits_files == (run_dir / "lightcurve_1A_0535+262.fits",) and other_curve.ra is None
    assert len({p.product_id for p in products}) == 4
    again = gallery.run_products(run_dir, steps=["mosaic"])
    assert [p.product_id for p in again] == [image.product_id]
    assert gallery.run_products(tmp_path) == []


def test_two_runs_whose_products_share_names_are_distinct_products(server_factory, tmp_path):
    """The issue's case: the Crab run's light curve of 1A 0535+262 replaced the one of 1A 0535+262's own run."""
    crab_run = tmp_path / "long_term" / "Crab" / "isgri_28-40keV_2005-03-01_2005-04-15"
    neighbour_run = tmp_path / "long_term" / "1A_0535+262" / "isgri_28-40keV_2005-03-01_2005-04-15"
    write_long_term_run(crab_run)
    write_long_term_run(neighbour_run, target=("1A 0535+262", 84.7274, 26.3158))
    crab, neighbour = gallery.run_products(crab_run), gallery.run_products(neighbour_run)
    # the same file names, the same sources, the same instrument, band and period in both runs
    assert [p.fits_files[0].name for p in crab] == [p.fits_files[0].name for p in neighbour]
    products = crab + neighbour
    assert len({p.product_id for p in products}) == len(products) == 8
    assert len({p.title for p in products}) == 8
    in_crab_field = next(p for p in crab if p.kind == "lc" and p.src_names == ("1A 0535+262",))
    own_field = next(p for p in neighbour if p.kind == "lc" and p.src_names == ("1A 0535+262",))
    assert in_crab_field.title == "1A 0535+262 ISGRI light curve 28-40 keV, 2005-03-01 to 2005-04-15, Crab field"
    assert own_field.title == "1A 0535+262 ISGRI light curve 28-40 keV, 2005-03-01 to 2005-04-15"
    # the same run read again gives the same ids: a re-upload updates
    assert [p.product_id for p in gallery.run_products(crab_run)] == [p.product_id for p in crab]

    server = server_factory()
    token = server.token("general, gallery contributor", email="contributor@example.org")
    results = gallery.upload_run_products(crab_run, url=server.url, token=token)
    results += gallery.upload_run_products(neighbour_run, url=server.url, token=token)
    assert len(results) == 8 and not any(result.updated for result in results)
    assert len(server.app.extensions["mmoda_local"].gallery.products()) == 8


def test_observations_of_a_revolution_get_distinct_titles(tmp_path):
    """Four revolution cards shared "Galactic Center Rev. 0300": the title says instrument, band and observation."""
    (tmp_path / "m.fits").write_bytes(b"")
    views = []
    for instrument, band in (("isgri", (28.0, 40.0)), ("jemx1", (3.0, 20.0))):
        for obsid in ("03000010001", "03000020001"):
            image = Product(
                path=tmp_path / "m.fits",
                kind="image",
                instrument=instrument,
                source="Galactic Center",
                band=band,
                period=("2005-04-01T00:00:00", "2005-04-01T12:00:00"),
                title="Galactic Center Rev. 0300",
                identity={"rev_num": "0300", "obsid": obsid, "instrument": instrument},
                details={"obsids": [obsid], "revolutions": ["0300"]},
            )
            views.append(gallery.gallery_product(image, parameters={"rev_num": "0300"}, produced_by="x.ipynb"))
    titles = [view.title for view in views]
    assert titles[0] == "Galactic Center Rev. 0300, ISGRI 28-40 keV, obs. 03000010001"
    assert titles[3] == "Galactic Center Rev. 0300, JEM-X1 3-20 keV, obs. 03000020001"
    assert len(set(titles)) == 4 and len({view.product_id for view in views}) == 4


def test_the_product_id_is_the_descriptors_identity():
    # The identity a writer gives a product decides its gallery id: same identity, same product.
    p = parameters.validate("mosaic", {"T1": "2005-03-01T00:00:00.4", "T2": "2005-04-15T00:00:00.2"})
    identity = long_term_identity(p, instrument="isgri", kind="image")
    assert (identity["T1"], identity["T2"]) == ("2005-03-01T00:00:00", "2005-04-15T00:00:01")
    image = Product(
        path="mosaic.fits",
        kind="image",
        instrument="isgri",
        source="Crab",
        band=(28.0, 40.0),
        period=(p.T1, p.T2),
        identity=identity,
    )
    view = gallery.gallery_product(image, parameters={}, produced_by="mosaic.ipynb")
    assert view.product_id == gallery.product_id(gallery.defining_parameters(image, {}))
    assert gallery.defining_parameters(image, {}).items() >= {**identity, "product_type": "isgri_image"}.items()
    with pytest.raises(ValueError, match="images, light curves and spectra"):
        gallery.gallery_product(describe("sources.ecsv", "source_table"), parameters={}, produced_by="x")


def test_an_upload_record_lists_what_was_uploaded_without_the_token(fake_gallery, tmp_path, monkeypatch):
    monkeypatch.setenv("ODA_TOKEN", FAKE_TOKEN)
    run_dir = tmp_path / "run"
    write_long_term_run(run_dir)
    (run_dir / "05_mosaic.ipynb").write_text((run_dir / "01_mosaic.ipynb").read_text())
    results = gallery.upload_run_products(run_dir, steps=["mosaic"], url=fake_gallery.url)
    assert len(results) == 1 and results[0].product_type == "isgri_image"
    body = fake_gallery.posts()[0]["body"]
    assert b'filename="05_mosaic.ipynb"' in body, "the newest executed notebook of the step is attached"
    record = json.loads((run_dir / "mosaic_gallery.json").read_text())
    assert record["products"][0]["product_id"] == results[0].product_id
    assert FAKE_TOKEN not in (run_dir / "mosaic_gallery.json").read_text()


def test_one_entry_point_uploads_every_recorded_step_with_the_notebook_it_is_given(fake_gallery, tmp_path, monkeypatch):
    monkeypatch.setenv("ODA_TOKEN", FAKE_TOKEN)
    run_dir = tmp_path / "run"
    write_long_term_run(run_dir)
    executed = tmp_path / "elsewhere.ipynb"
    executed.write_text((run_dir / "01_mosaic.ipynb").read_text())
    assert gallery.upload_run_products(run_dir, url=fake_gallery.url, dry_run=True) == []
    assert fake_gallery.posts() == []
    results = gallery.upload_run_products(run_dir, url=fake_gallery.url, notebooks={"spectrum": executed})
    assert [result.product_type for result in results] == ["isgri_lc", "isgri_lc", "isgri_image", "isgri_spectrum"]
    bodies = [post["body"] for post in fake_gallery.posts()]
    assert b'filename="elsewhere.ipynb"' in bodies[-1]
    assert {path.name for path in run_dir.glob("*_gallery.json")} == {
        "lightcurve_gallery.json",
        "mosaic_gallery.json",
        "spectrum_gallery.json",
    }


# -- end to end, against the local MMODA's gallery ------------------------------------------------------------------


def mint_token(home: Path, roles: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mmoda_local", "token", "--roles", roles, "--data-dir", str(home)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def local_gallery(tmp_path, monkeypatch):
    """A local MMODA (subprocess, private data folder) whose gallery answers."""
    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    monkeypatch.setenv("INTEGRAL_WORKFLOWS_CACHE", str(tmp_path / "chunks"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    url = hosts.ensure_local_server(data_dir=home).url
    probe = requests.get(f"{url}/get_parents_term", params={"term": "isgri_image", "group": "products"}, timeout=30)
    # without a token the real gallery endpoints answer 403: that is the gallery answering
    if probe.status_code not in (200, 403):
        hosts.stop_local_server(home)
        pytest.fail(f"the local MMODA's gallery does not answer: /get_parents_term gave HTTP {probe.status_code}")
    yield home, url
    hosts.stop_local_server(home)


def leaking_files(folder: Path, token: str) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and token.encode() in path.read_bytes()]


def test_a_revolution_run_uploads_to_the_local_gallery_and_a_second_upload_updates(local_gallery, tmp_path):
    from oda_api.gallery_api import GalleryDispatcherAPI

    home, url = local_gallery
    token = mint_token(home, "general,gallery contributor")
    env = dict(os.environ, ODA_TOKEN=token)
    parameter_file = tmp_path / "revolution.yaml"
    parameter_file.write_text(
        "workflow: revolution\nparameters:\n  host_type: local\n  rev_num: '1000'\n"
        "  use_jemx1: false\n  use_jemx2: false\n  upload_to_gallery: true\n"
    )
    output_root = tmp_path / "outputs"
    finished = subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), str(parameter_file), "--output-root", str(output_root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    run_dir = output_root / "revolution" / "1000" / "isgri_28-40keV_CONS"
    first = json.loads((run_dir / "revolution_mosaics_gallery.json").read_text())["products"]
    assert first and all(not product["updated"] for product in first)
    image = first[0]
    assert image["product_type"] == "isgri_image"
    assert re.fullmatch(r".+ Rev\. 1000, ISGRI 28-40 keV, obs\. \d{11}", image["title"]), image["title"]

    client = GalleryDispatcherAPI(url=url, instrument="mock", token=token)
    found = client.get_list_products_with_conditions(token=token, instrument_name="isgri", product_type="isgri_image")
    assert [item for item in found if item.get("product_id") == image["product_id"]]
    step = json.loads((run_dir / "revolution_mosaics.step.json").read_text())
    sources = step["descriptors"][0]["details"]["src_names"]
    if sources:
        by_source = client.get_list_products_by_source_name(source_name=sources[0], token=token)
        assert any(item.get("product_id") == image["product_id"] for item in by_source)

    time.sleep(1.1)  # the gallery's times have whole seconds: the update must be visibly later
    executed = tmp_path / "gallery_upload.ipynb"
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(REPO / "notebooks" / "gallery_upload.ipynb"),
            str(executed),
            "-p",
            "run_folder",
            str(run_dir),
            "-p",
            "host_type",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((run_dir / "gallery_uploads.json").read_text())["products"]
    assert [p["product_id"] for p in second] == [p["product_id"] for p in first]
    assert all(p["updated"] and p["changed"] != p["created"] for p in second)
    assert all(p["link"] == q["link"] for p, q in zip(second, first))
    found = client.get_list_products_with_conditions(token=token, instrument_name="isgri", product_type="isgri_image")
    assert len([item for item in found if item.get("product_id") == image["product_id"]]) == 1, "no duplicate"

    assert leaking_files(output_root, token) == []
    assert token not in executed.read_text()
    stored = home / "gallery"
    # run_all.py uploaded after the notebook had finished: the attached notebook is complete, outputs cell included
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [u["product_id"] for u in manifest["steps"][0]["hooks"]["gallery_upload"]] == [
        p["product_id"] for p in first
    ]
    notebooks = [nbformat.read(str(path), as_version=4) for path in stored.rglob("*.ipynb")]
    assert notebooks
    for notebook in notebooks:
        last = notebook.cells[-1]
        assert "outputs" in last.metadata.get("tags", []) and last.execution_count is not None
    assert stored.is_dir() and leaking_files(stored, token) == []
    for path in stored.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".yaml", ".json", ".sqlite"):
            assert not JWT.search(path.read_bytes()), path


def test_a_product_notebook_uploads_when_asked(local_gallery, tmp_path):
    home, url = local_gallery
    token = mint_token(home, "general,gallery contributor")
    out = tmp_path / "mosaic"
    executed = tmp_path / "mosaic.ipynb"
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(REPO / "notebooks" / "mosaic.ipynb"),
        str(executed),
        "-p",
        "output_dir",
        str(out),
        "-p",
        "T1",
        "2005-03-20T00:00:00",
        "-p",
        "T2",
        "2005-04-05T00:00:00",
        "-p",
        "upload_to_gallery",
        "True",
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=dict(os.environ, ODA_TOKEN=token)
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    record = json.loads((out / "mosaic_gallery.json").read_text())["products"]
    assert len(record) == 1 and record[0]["product_type"] == "isgri_image"
    listed = gallery.list_products(url=url, token=token, src_name="Crab")
    assert any(item.get("product_id") == record[0]["product_id"] for item in listed)
    assert leaking_files(out, token) == [] and token not in executed.read_text()

    outsider = mint_token(home, "general")
    refused = subprocess.run(
        command[:4] + [str(tmp_path / "refused.ipynb")] + command[5:],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, ODA_TOKEN=outsider),
    )
    assert refused.returncode != 0
    assert "GalleryPermissionError" in refused.stderr and "gallery contributor" in refused.stderr


def _tree(folder: Path) -> dict:
    """Every file of a folder: relative path → (size, mtime_ns, sha256)."""
    import hashlib

    return {
        path.relative_to(folder).as_posix(): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_rerun_command_of_a_product_page_runs_anywhere_and_leaves_the_original_untouched(local_gallery, tmp_path):
    import html

    home, url = local_gallery
    token = mint_token(home, "general,gallery contributor")
    original = tmp_path / "machine-a" / "outputs" / "mosaic"
    original.mkdir(parents=True)
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(REPO / "notebooks" / "mosaic.ipynb"),
            str(original / "02_mosaic.ipynb"),
            "-p",
            "output_dir",
            str(original),
            "-p",
            "T1",
            "2005-03-20T00:00:00",
            "-p",
            "T2",
            "2005-04-05T00:00:00",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    (uploaded,) = gallery.upload_run_products(original, url=url, token=token)

    page = requests.get(uploaded.link, timeout=60).text
    command = html.unescape(re.search(r'<code id="rerun-command">(.*?)</code>', page, re.S)[1])
    # portable: nothing of the machine that made it, a new folder, no upload over the product
    assert str(tmp_path) not in command and str(REPO) not in command
    assert "upload_to_gallery True" not in command and "-r output_dir mosaic_rerun_" in command
    folder = re.search(r"-r output_dir (\S+)", command)[1]
    before = _tree(original)
    listed_before = gallery.list_products(url=url, token=token)

    machine_b = tmp_path / "machine-b"
    machine_b.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", ODA_TOKEN=token)
    rerun = subprocess.run(["bash", "-c", command], cwd=machine_b, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    assert _tree(original) == before, "the original products changed"
    assert gallery.list_products(url=url, token=token) == listed_before, "the gallery product changed"
    rerun_mosaic = machine_b / folder / "mosaic.fits"
    assert rerun_mosaic.is_file() and (machine_b / f"{folder}.ipynb").is_file()
    with fits.open(original / "mosaic.fits") as first, fits.open(rerun_mosaic) as again:
        assert np.array_equal(first[1].data, again[1].data, equal_nan=True)
    assert leaking_files(machine_b, token) == []
