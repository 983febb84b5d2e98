"""The local product gallery through oda_api's ``GalleryDispatcherAPI``, as the real gallery is used.

A product set like the notebooks make (mosaic FITS and PNG, source table and
region file, light curve, spectrum with its responses, parameters YAML and an
executed notebook) is posted to a local MMODA with the unmodified client,
found again with the client's gallery queries, updated by a second post with
the same ``product_id``, and checked for tokens in everything stored. The
answers' keys are compared with those of the captured gallery exchanges
(``tests/data/dispatcher-captures/gallery_exchanges.jsonl`` and the
fake gallery that answered them).
"""

from __future__ import annotations

import ast
import html
import io
import json
import re
import sqlite3
from pathlib import Path

import nbformat
import numpy as np
import pytest
import requests
import yaml
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from oda_api.api import RemoteException
from oda_api.gallery_api import GalleryDispatcherAPI

from ..conftest import TEST_DATA
from .test_conformance import Recorder, shape_differences

# integral_workflows' spectrum writer truncates a long header comment; harmless for these tests
pytestmark = pytest.mark.filterwarnings("ignore:Card is too long, comment will be truncated")

CAPTURES = TEST_DATA / "dispatcher-captures"
SIMULATED = "mmoda_local (SIMULATED DATA)"

CRAB = SkyCoord(83.6332, 22.0145, unit="deg")
A0535 = SkyCoord(84.7274, 26.3158, unit="deg")


# -- a product set, as the notebooks write it ---------------------------------------------------------------------
def make_product_set(folder: Path, *, token: str = "") -> dict[str, Path]:
    """Write a mosaic, its PNG, sources, a light curve, a spectrum, parameters and an executed notebook.

    The parameters YAML and the notebook carry ``token`` (as a careless
    notebook would) so that the gallery's scrubbing can be checked.
    """
    import matplotlib

    matplotlib.use("Agg")
    from integral_workflows import lightcurve, mosaic, spectrum

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [84.2, 24.2]
    wcs.wcs.crpix = [80.5, 80.5]
    wcs.wcs.cdelt = [-0.08, 0.08]
    ny = nx = 160
    yy, xx = np.mgrid[0:ny, 0:nx]
    intensity = rng.normal(0.0, 0.01, (ny, nx))
    for coord, rate in ((CRAB, 1.0), (A0535, 0.2)):
        x0, y0 = wcs.world_to_pixel(coord)
        intensity += rate * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2))
    variance = np.full((ny, nx), 0.01**2)
    meta = {
        "TELESCOP": "INTEGRAL",
        "INSTRUME": "IBIS",
        "DETNAM": "ISGRI",
        "E_MIN": 28.0,
        "E_MAX": 40.0,
        "ORIGIN": SIMULATED,
        "SIMULATD": True,
    }
    sky = mosaic.SkyMosaic(intensity, variance, np.full((ny, nx), 2000.0), wcs.celestial, meta)
    paths = {"mosaic": sky.write(folder / "mosaic.fits")}
    catalog = Table(
        {"name": ["Crab", "1A 0535+262"], "ra": [CRAB.ra.deg, A0535.ra.deg], "dec": [CRAB.dec.deg, A0535.dec.deg]}
    )
    sources = mosaic.find_sources(sky, threshold=7.0, catalog=catalog, include_new_sources=False)
    sources.write(folder / "sources.ecsv", overwrite=True)
    paths["sources"] = folder / "sources.ecsv"
    paths["region"] = mosaic.write_region_file(sources, folder / "sources.reg")
    figure = mosaic.plot(sky, sources=sources, path=folder / "mosaic.png")
    import matplotlib.pyplot as plt

    plt.close(figure)
    paths["png"] = folder / "mosaic.png"

    time = 1824.0 + np.arange(40) * 0.035  # IJD: 2004-12-30, within revolution 270
    curve = lightcurve.LightCurve(
        "Crab",
        time,
        np.full(40, 0.02),
        20 + rng.normal(0, 0.3, 40),
        np.full(40, 0.3),
        np.ones(40),
        instrument="ISGRI",
        band=(28.0, 40.0),
        meta={"ORIGIN": SIMULATED, "SIMULATD": True},
    )
    paths["lightcurve"] = curve.write(folder / "crab_lc.fits")

    edges = np.geomspace(20.0, 200.0, 33)
    channel = np.arange(32)
    model = 10.0 * (np.sqrt(edges[:-1] * edges[1:]) / 30.0) ** -2.1 * np.diff(edges)
    response = spectrum.Response(
        edges[:-1], edges[1:], np.ones(32), np.eye(32), channel, edges[:-1], edges[1:], instrument="ISGRI"
    )
    spec = spectrum.Spectrum(
        "Crab",
        channel,
        model,
        0.05 * model,
        np.zeros(32),
        np.zeros(32, dtype=int),
        np.ones(32, dtype=int),
        20000.0,
        instrument="ISGRI",
        e_min=edges[:-1],
        e_max=edges[1:],
        meta={"ORIGIN": SIMULATED, "SIMULATD": True},
    )
    paths["spectrum"], paths["arf"], paths["rmf"] = spectrum.write(spec, response, folder / "crab_spectrum.fits")

    parameters = {
        "src_name": "Crab",
        "RA": 83.6332,
        "DEC": 22.0145,
        "T1": "2004-12-30T00:00:00",
        "T2": "2004-12-31T12:00:00",
        "E1_keV": "28.0",
        "E2_keV": "40.0",
        "detection_threshold": 7.0,
        "host_type": "local",
        "use_isgri": True,
        "token": token,
    }
    paths["yaml"] = folder / "parameters.yaml"
    paths["yaml"].write_text(yaml.safe_dump(parameters, sort_keys=False))

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Mosaic\n[SIMULATED DATA] from the local MMODA."),
        nbformat.v4.new_code_cell(
            "src_name = 'Crab'\nT1 = '2003-01-01T00:00:00'\ntoken = ''", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "\n".join(f"{k} = {v!r}" for k, v in parameters.items()), metadata={"tags": ["injected-parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "print('done')", outputs=[nbformat.v4.new_output("stream", name="stdout", text=f"using token {token}\n")]
        ),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["papermill"] = {
        "input_path": "/home/user/integral/notebooks/mosaic.ipynb",
        "output_path": "/home/user/integral/outputs/long_term/Crab/isgri_28-40keV_2004-12-30_2004-12-31/"
        "02_mosaic.ipynb",
        "parameters": parameters,
    }
    paths["notebook"] = folder / "02_mosaic.ipynb"
    nbformat.write(notebook, paths["notebook"])
    return paths


def post_product_set(gallery: GalleryDispatcherAPI, paths: dict, token: str, **overrides) -> dict:
    """Post a product set as the client side does (title, instrument, type, sources, times, files)."""
    arguments = dict(
        product_title="Crab Rev. 0270 ISGRI mosaic",
        product_id="crab-isgri-mosaic-0270",
        gallery_image_path=str(paths["png"]),
        fits_file_path=[str(paths[k]) for k in ("mosaic", "region", "sources", "lightcurve", "spectrum", "arf", "rmf")],
        yaml_file_path=[str(paths["yaml"]), str(paths["notebook"])],
        token=token,
        insert_new_source=True,
        validate_source=True,
        force_insert_not_valid_new_source=True,
        instrument="isgri",
        product_type="isgri_image",
        src_name="Crab,1A 0535+262",
        T1="2004-12-30T00:00:00",
        T2="2004-12-31T12:00:00",
        E1_keV=28.0,
        E2_keV=40.0,
        RA=84.2,
        DEC=24.2,
        obsid="0270001",
        proposal_id="0210001",
        detection_threshold=7.0,
        host_type="local",
    )
    arguments.update(overrides)
    return gallery.post_data_product_to_gallery(**arguments)


@pytest.fixture
def gallery_server(server_factory):
    return server_factory()


@pytest.fixture
def contributor(gallery_server) -> str:
    return gallery_server.token("general, gallery contributor", email="contributor@example.org")


def client(url: str) -> GalleryDispatcherAPI:
    api = GalleryDispatcherAPI(url=url, instrument="mock")
    api.n_max_tries = 1
    return api


# -- tests --------------------------------------------------------------------------------------------------------
def test_upload_find_update_and_delete_through_oda_api(gallery_server, contributor, tmp_path):
    paths = make_product_set(tmp_path / "products", token=contributor)
    gallery = client(gallery_server.url)

    node = post_product_set(gallery, paths, contributor)
    assert node["title"][0]["value"] == "Crab Rev. 0270 ISGRI mosaic"
    assert node["created"][0]["value"] == node["changed"][0]["value"]
    link = node["_links"]["self"]["href"]
    assert link.startswith(f"{gallery_server.url}/gallery/node/")
    relations = {key.rsplit("/", 1)[-1]: value for key, value in node["_links"].items()}
    assert {
        "field_instrumentused",
        "field_data_product_type",
        "field_derived_from_observation",
        "field_describes_astro_entity",
        "field_image_png",
        "field_fits_file",
        "field_yaml_file",
    } <= set(relations)
    assert len(relations["field_describes_astro_entity"]) == 2
    assert len(relations["field_fits_file"]) == 7
    assert node["field_e1_kev"][0]["value"] == 28.0 and node["field_product_id"][0]["value"] == "crab-isgri-mosaic-0270"

    # found through the client's queries
    found = gallery.get_list_products_with_conditions(instrument_name="isgri", product_type="image", src_name="Crab")
    assert [p["title"] for p in found] == ["Crab Rev. 0270 ISGRI mosaic"]
    row = found[0]
    assert row["nid"] == str(node["nid"][0]["value"]) and row["rev1"] == "270" and row["rev2"] == "270"
    assert float(row["ra"]) == 84.2 and row["simulated"] == "1"
    assert gallery.get_list_products_with_conditions(instrument_name="jemx1") == []
    assert (
        gallery.get_list_products_with_conditions(e1_kev_value=20, e2_kev_value=50, rev1_value=260, rev2_value=280)
        == found
    )
    assert gallery.get_list_products_with_conditions(e1_kev_value=30) == []
    assert gallery.get_list_products_with_conditions(rev1_value=271) == []
    assert gallery.get_list_products_with_conditions(max_span_rev_value=0) == found
    assert gallery.get_list_images_with_conditions(t1="2004-12-01T00:00:00", t2="2005-02-01T00:00:00") == found
    assert gallery.get_list_products_by_source_name("1A 0535+262") == found
    assert gallery.get_list_products_by_source_name("J053432.0+220052") == found  # an alternative name of the Crab
    assert gallery.get_list_products_by_source_name("Cyg X-1") == []

    # a second post with the same product_id updates the product instead of adding one
    paths["png"].write_bytes(paths["png"].read_bytes())
    updated = post_product_set(
        gallery,
        paths,
        contributor,
        product_title="Crab Rev. 0270 ISGRI mosaic (v2)",
        fits_file_path=[str(paths["mosaic"])],
        E1_keV=25.0,
    )
    assert updated["nid"] == node["nid"]
    assert updated["changed"][0]["value"] != updated["created"][0]["value"]
    assert updated["field_e1_kev"][0]["value"] == 25.0
    assert len([k for k in updated["_links"] if k.endswith("/field_fits_file")][0]) > 0
    fits_links = next(v for k, v in updated["_links"].items() if k.endswith("/field_fits_file"))
    assert len(fits_links) == 1
    every = gallery.get_list_products_with_conditions()
    assert [p["title"] for p in every] == ["Crab Rev. 0270 ISGRI mosaic (v2)"]

    # the HAL link the client logs is a real page of this server
    hal = requests.get(link, timeout=10)
    assert hal.status_code == 200 and hal.json()["title"][0]["value"].endswith("(v2)")
    page = requests.get(link.split("?")[0], timeout=10)
    assert page.status_code == 200 and "SIMULATED" in page.text and "Crab Rev. 0270" in page.text

    # deletion through the client
    assert gallery.delete_data_product_from_gallery_via_product_id("crab-isgri-mosaic-0270", token=contributor) == {}
    assert gallery.get_list_products_with_conditions() == []
    again = gallery.delete_data_product_from_gallery_via_product_id("crab-isgri-mosaic-0270", token=contributor)
    assert "no data-product" in again["output_message"]


def test_no_token_is_stored_anywhere(gallery_server, contributor, tmp_path):
    paths = make_product_set(tmp_path / "products", token=contributor)
    other = gallery_server.token("general", email="someone@example.org")  # a second JWT, not the poster's
    paths["yaml"].write_text(paths["yaml"].read_text() + f"extra_token: {other}\n")
    with fits.open(paths["mosaic"], mode="update") as hdul:
        # cut: a FITS card holds 68 characters; a token's header and the start of its payload still identify it
        hdul[0].header["TOKEN"] = contributor[:60]
    gallery = client(gallery_server.url)
    post_product_set(gallery, paths, contributor, note=f"made with {other}", oda_token=contributor)

    root = Path(gallery_server.config.data_dir) / "gallery"
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert len(stored) > 5
    pieces = [contributor, other, contributor.split(".")[1], other.split(".")[1], other.split(".")[2], contributor[:60]]
    for path in stored:
        content = path.read_bytes()
        for piece in pieces:
            assert piece.encode() not in content, f"a token is stored in {path}"
    with sqlite3.connect(root / "gallery.sqlite") as db:
        dump = "\n".join(db.iterdump())
    assert not any(piece in dump for piece in pieces)
    # the files stay usable: the FITS still opens, the YAML and the notebook still parse
    product = gallery.get_list_products_with_conditions()[0]
    mosaic_url = next(u for u in product["fits_file"].split(",") if u.endswith("mosaic.fits"))
    with fits.open(io.BytesIO(requests.get(mosaic_url, timeout=10).content)) as hdul:
        assert set(hdul[0].header["TOKEN"]) == {"X"}
        assert hdul[1].header["IMATYPE"] == "INTENSITY" and hdul[1].data.shape == (160, 160)
    html = requests.get(product["url"], timeout=10).text
    assert contributor not in html and other not in html
    assert "&lt;token removed&gt;" in html or "token removed" in html


def test_the_access_log_never_holds_a_token(gallery_server, contributor, caplog):
    import logging

    # werkzeug logs each request line (query string included) at INFO; the server thread silences it in tests,
    # caplog.at_level lowers the level for this block only
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        requests.get(
            f"{gallery_server.url}/get_parents_term",
            params={"term": "isgri_image", "group": "products", "token": contributor},
            timeout=10,
        )
        requests.get(f"{gallery_server.url}/resolve_name", params={"name": "Crab", "token": contributor}, timeout=10)
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("/get_parents_term?term=isgri_image" in line and "token=<removed>" in line for line in lines), lines
    assert not any(contributor in line or contributor.split(".")[1] in line for line in lines)


def test_writes_need_the_gallery_role_and_reads_do_not(gallery_server, tmp_path):
    paths = make_product_set(tmp_path / "products")
    gallery = client(gallery_server.url)
    general = gallery_server.token("general")

    # without the role: the policy look-up (get_parents_term) is refused, as on the real dispatcher
    with pytest.raises(RemoteException):
        post_product_set(gallery, paths, general)
    # without a product type the post itself is refused: a 403 text, returned as error_message
    answer = post_product_set(gallery, paths, general, product_type=None)
    assert "gallery contributor" in answer["error_message"]
    assert "the following roles are missing: gallery contributor" in answer["error_message"]
    answer = post_product_set(gallery, paths, None, product_type=None)
    assert answer["error_message"] == "A token must be provided."
    expired = gallery_server.token("general, gallery contributor", lifetime_s=-10)
    answer = post_product_set(gallery, paths, expired, product_type=None)
    assert answer["error_message"] == "The token provided is expired."
    forged = gallery_server.token("general, gallery contributor")[:-4] + "AAAA"
    answer = post_product_set(gallery, paths, forged, product_type=None)
    assert answer["error_message"] == "The token provided is not valid."
    refused = requests.post(
        f"{gallery_server.url}/delete_product_to_gallery",
        data={"content_type": "data_product", "product_id": "x", "token": general},
        timeout=10,
    )
    assert refused.status_code == 403 and refused.headers["Content-Type"].startswith("text/html")
    assert not (Path(gallery_server.config.data_dir) / "gallery" / "files").exists() or not any(
        (Path(gallery_server.config.data_dir) / "gallery" / "files").iterdir()
    )

    # reads need no token
    assert gallery.get_list_products_with_conditions() == []
    assert gallery.get_list_products_by_source_name("Crab") == []
    assert requests.get(f"{gallery_server.url}/gallery/", timeout=10).status_code == 200


def test_answers_have_the_captured_shapes(gallery_server, contributor, monkeypatch, tmp_path):
    """The s5 gallery calls, replayed: same requests as captured, answers shaped as the gallery's."""
    exchanges = CAPTURES / "gallery_exchanges.jsonl"
    captured = [json.loads(line) for line in exchanges.read_text().splitlines() if line.strip()]
    fake_answers = _fake_gallery_answers(CAPTURES / "fake_gallery.py")
    recorder = Recorder(monkeypatch)
    gallery = client(gallery_server.url)
    resolved = gallery.resolve_source("Crab", token=contributor)
    assert resolved["message"] == "Crab successfully resolved"
    assert abs(resolved["RA"] - 83.633) < 0.01 and abs(resolved["DEC"] - 22.014) < 0.01
    image = _tiny_png(tmp_path / "img.png")
    node = gallery.post_data_product_to_gallery(
        product_title="Crab test",
        gallery_image_path=str(image),
        token=contributor,
        validate_source=True,
        instrument="isgri",
        product_type="isgri_image",
        src_name="Crab",
        T1="2003-03-15T23:27:40",
        T2="2003-03-16T00:03:12",
        E1_keV=20,
        E2_keV=40,
        RA=83.63,
        DEC=22.01,
    )
    assert node["title"][0]["value"] == "Crab test"

    ours = recorder.exchanges
    # the client made the captured calls in the captured order (resolve_name comes first here: s5 asked for it)
    assert [(e["method"], e["path"]) for e in ours] == [
        ("GET", "/resolve_name"),
        ("GET", "/get_parents_term"),
        ("GET", "/resolve_name"),
        ("POST", "/post_product_to_gallery"),
    ]
    captured_paths = {(e["method"], e["path"]) for e in captured}
    assert {(e["method"], e["path"]) for e in ours} == captured_paths
    for exchange in ours:
        assert exchange["status"] == 200, exchange
        answer = json.loads(exchange["body"])
        expected = fake_answers[exchange["path"].lstrip("/")]
        if isinstance(expected, dict):
            differences = [d for d in shape_differences(answer, expected) if not d.endswith(": unexpected")]
            differences = [d for d in differences if "_links.http://gallery" not in d]
            assert differences == [], (exchange["path"], differences)
            for key in expected.get("_links", {}):
                suffix = key.rsplit("/", 1)[-1]
                assert key == "self" or any(k.endswith("/" + suffix) for k in answer["_links"]), suffix
        else:
            assert isinstance(answer, list) and all(isinstance(term, str) for term in answer)
            assert answer == expected
    # the form fields the client sent are the captured ones
    post = next(e for e in captured if e["path"] == "/post_product_to_gallery")
    captured_fields = _multipart_names(post["body"])
    assert captured_fields[:4] == ["content_type", "product_title", "token", "insert_new_source"]
    stored = requests.get(node["_links"]["self"]["href"], timeout=10).json()
    for name in captured_fields:
        if name in (
            "content_type",
            "product_title",
            "token",
            "insert_new_source",
            "img",
            "in_evidence",
            "entity_portal_link_list",
            "source_coord_list",
            "object_ids_list",
            "object_type_list",
            "instrument",
            "product_type",
            "src_name",
        ):
            continue
        assert "field_" + name.lower() in stored, name
    assert {k for k, _v in captured[0]["query"]} == {"term", "group", "token"}


def _fake_gallery_answers(path: Path) -> dict:
    """The answers of the fake gallery the captures were made against, read from its source."""
    tree = ast.parse(path.read_text())
    answers = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Call) and node.body:
            target = node.test.args[0].value.lstrip("/") if node.test.args else None
            assign = node.body[0]
            if target and isinstance(assign, ast.Assign):
                answers[target] = ast.literal_eval(assign.value)
    return answers


def _multipart_names(body: str) -> list[str]:
    import re

    return re.findall(r'Content-Disposition: form-data; name="([^"]+)"', body)


def _tiny_png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = plt.figure(figsize=(2, 2))
    plt.imshow(np.arange(16).reshape(4, 4))
    figure.savefig(path)
    plt.close(figure)
    return path


def test_terms_revnum_and_resolver(gallery_server, contributor):
    gallery = client(gallery_server.url)
    assert "isgri" in gallery.get_list_terms_gallery(group="instruments", token=contributor)
    assert gallery.get_list_terms_gallery(group="products", parent="isgri", token=contributor) == [
        "isgri_image",
        "isgri_lc",
        "isgri_spectrum",
    ]
    assert gallery.get_revnum("2022-10-28T05:52:20", token=None) == 2565
    assert gallery.get_revnum("2004-12-30T00:00:00", token=None) == 270
    unknown = gallery.resolve_source("Not A Source", token=contributor)
    assert "could not be resolved" in unknown["message"] and "RA" not in unknown
    answer = requests.get(
        f"{gallery_server.url}/get_parents_term",
        params={"term": "jemx_lc", "group": "products", "token": contributor},
        timeout=10,
    )
    assert answer.json() == ["lightcurve", "jemx_lc"]
    denied = requests.get(f"{gallery_server.url}/get_list_terms", params={"group": "instruments"}, timeout=10)
    assert denied.status_code == 403 and denied.text == "A token must be provided."


def test_website_pages_show_the_product(gallery_server, contributor, tmp_path):
    paths = make_product_set(tmp_path / "products", token=contributor)
    gallery = client(gallery_server.url)
    post_product_set(gallery, paths, contributor)
    post_product_set(
        gallery,
        paths,
        contributor,
        product_id="crab-lc",
        product_title="Crab ISGRI light curve",
        product_type="isgri_lc",
        src_name="Crab",
        gallery_image_path=None,
        fits_file_path=[str(paths["lightcurve"])],
        yaml_file_path=None,
    )
    base = f"{gallery_server.url}/gallery"
    index = requests.get(f"{base}/", timeout=10).text
    assert "Crab Rev. 0270 ISGRI mosaic" in index and "Crab ISGRI light curve" in index and "SIMULATED" in index
    filtered = requests.get(f"{base}/", params={"product_type": "lightcurve"}, timeout=10).text
    assert "Crab ISGRI light curve" in filtered and "Crab Rev. 0270 ISGRI mosaic" not in filtered
    for params, expected in [
        ({"instrument": "jemx1"}, 0),
        ({"rev": "270"}, 2),
        ({"rev": "271"}, 0),
        ({"t1": "2004-12-31T00:00:00", "t2": "2005-02-01T00:00:00"}, 2),
        ({"t1": "2006-01-01T00:00:00"}, 0),
        ({"src_name": "1A 0535+262"}, 1),
    ]:
        page = requests.get(f"{base}/", params=params, timeout=10).text
        assert page.count('data-nid="') == expected, params

    mosaic = gallery.get_list_products_with_conditions(product_type="image")[0]
    page = requests.get(mosaic["url"], timeout=30).text
    assert 'id="simulated-banner"' in page
    assert "gallery-image-plot" in page and "/gallery/bokeh/static/js/bokeh.min.js" in page
    assert 'id="source-table"' in page and "1A 0535+262" in page
    command = html.unescape(re.search(r'<code id="rerun-command">(.*?)</code>', page, re.S)[1])
    nid = mosaic["url"].rstrip("/").rsplit("/", 1)[1]
    assert command.startswith(f"papermill {gallery_server.url}/gallery/files/")
    assert f" mosaic_rerun_{nid}.ipynb " in command and f"-r output_dir mosaic_rerun_{nid}" in command
    assert "-r src_name Crab" in command and "-p detection_threshold 7.0" in command
    assert "/home/user" not in command and "token" not in command
    assert "papermill notebooks/mosaic.ipynb mosaic_rerun_" in page  # the same from a checkout
    assert "python run_all.py rerun outputs/long_term/Crab/isgri_28-40keV_2004-12-30_2004-12-31/02_mosaic.ipynb" in page
    assert "gallery-lightcurve-plot" in page and "gallery-spectrum-plot" in page
    assert "sources.reg" in page and "mosaic.fits" in page
    assert requests.get(f"{base}/bokeh/static/js/bokeh.min.js", timeout=10).status_code == 200

    for url in (f"{base}/sources", f"{base}/source/Crab", f"{base}/revolutions", f"{base}/revolution/270"):
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200, url
        assert "SIMULATED" in answer.text, url
    assert "Crab Rev. 0270 ISGRI mosaic" in requests.get(f"{base}/revolution/270", timeout=10).text
    assert "HighMassXBin" in requests.get(f"{base}/sources", timeout=10).text


def test_observations_and_their_attachments(gallery_server, contributor, tmp_path):
    paths = make_product_set(tmp_path / "products", token=contributor)
    gallery = client(gallery_server.url)
    node = gallery.post_observation_to_gallery(
        observation_title="Crab Rev. 0270",
        T1="2004-12-30T00:00:00",
        T2="2004-12-31T12:00:00",
        obsid=["0270001", "0270002"],
        yaml_file_path=str(paths["yaml"]),
        token=contributor,
    )
    assert node["title"][0]["value"] == "Crab Rev. 0270"
    assert [o["value"] for o in node["field_obsid"]] == ["0270001", "0270002"]
    assert node["field_rev1"][0]["value"] == node["field_rev2"][0]["value"] == 270
    attachments = gallery.get_yaml_files_observation_with_title("Crab Rev. 0270", token=contributor)
    assert "detection_threshold: 7.0" in attachments["file_content"] and contributor not in attachments["file_content"]
    # a product posted with this observation id is attached to it
    post_product_set(gallery, paths, contributor, observation_id="Crab Rev. 0270", yaml_file_path=None)
    product = gallery.get_list_products_with_conditions()[0]
    hal = requests.get(product["url"].replace("/product/", "/node/") + "?_format=hal_json", timeout=10).json()
    link = next(v for k, v in hal["_links"].items() if k.endswith("/field_derived_from_observation"))
    assert link[0]["href"].split("?")[0].endswith(f"/node/{node['nid'][0]['value']}")


def test_a_product_posted_as_the_gallery_notebooks_post_it(gallery_server, contributor, tmp_path):
    """Sources with fluxes from the ``detected_sources`` HTML field, the notebook among the FITS-file parts."""
    paths = make_product_set(tmp_path / "products")
    detected = (
        "<table>\n<tr><th>Name</th><th>RA</th><th>Dec</th><th>Significance</th><th>Flux (cts/s)</th>"
        "<th>Unc</th></tr>\n<tr><td>Crab</td><td>83.6332</td><td>22.0145</td><td>98.7</td><td>0.9563</td>"
        "<td>0.01</td></tr>\n</table>"
    )
    gallery = client(gallery_server.url)
    post_product_set(
        gallery,
        paths,
        contributor,
        product_id="jemx1-rev-270",
        product_title="Crab Rev. 0270 JEM-X1",
        instrument="jemx1",
        product_type="jemx1_image",
        src_name="Crab",
        fits_file_path=[str(paths["mosaic"]), str(paths["region"]), str(paths["notebook"])],
        yaml_file_path=str(paths["yaml"]),
        detected_sources=detected,
        additional_information="parameters = {}",
        produced_by="revolution_mosaics",
    )
    found = gallery.get_list_products_with_conditions(instrument_name="jemx", product_type="image")
    assert [p["title"] for p in found] == ["Crab Rev. 0270 JEM-X1"]
    page = requests.get(found[0]["url"], timeout=30).text
    assert "the detected sources posted with the product" in page and "0.9563" in page
    assert 'id="notebook-section"' in page and "papermill notebooks/mosaic.ipynb" in page
    assert "<th>detected_sources</th>" not in page  # shown as the source table, not as raw HTML


def test_rerun_parameters_are_portable_and_never_the_original_folder():
    from mmoda_local.gallery_site import portable_parameters

    portable, changed = portable_parameters(
        {
            "src_name": "Crab",
            "T1": "2005-03-01T00:00:00",
            "scw_table_file": "/home/user/integral/outputs/run/scws.ecsv",
            "source_catalog_file": "outputs/run/sources.ecsv",
            "crab_calibration_file": "",
            "api_catalog_file": None,
            "upload_to_gallery": True,
            "output_dir": "/home/user/integral/outputs/run",
            "note": "C:\\Users\\me\\run",
            "token": "secret",
        },
        output_dir="mosaic_rerun_7",
    )
    assert portable == {
        "src_name": "Crab",
        "T1": "2005-03-01T00:00:00",
        "scw_table_file": "",
        "source_catalog_file": "",
        "crab_calibration_file": "",
        "api_catalog_file": None,
        "upload_to_gallery": False,
        "output_dir": "mosaic_rerun_7",
        "note": "",
    }
    assert [c["name"] for c in changed] == [
        "scw_table_file",
        "source_catalog_file",
        "upload_to_gallery",
        "output_dir",
        "note",
    ]
    assert portable_parameters({"src_name": "Crab"}, output_dir="x")[0] == {"src_name": "Crab", "output_dir": "x"}


def test_rerun_command_keeps_strings_as_strings():
    from mmoda_local.gallery_site import rerun_command

    command = rerun_command(
        "notebooks/mosaic.ipynb",
        {"E1_keV": "28.0", "s_max": 50, "use_isgri": True, "src_name": "GX 1+4", "token": "x", "bands": [1, 2]},
        output="out.ipynb",
    )
    assert command == (
        "papermill notebooks/mosaic.ipynb out.ipynb -r E1_keV 28.0 -p s_max 50 -p use_isgri True "
        "-r src_name 'GX 1+4' -y '{\"bands\": [1, 2]}'"
    )
