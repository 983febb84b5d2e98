"""The product page's FITS viewer (JS9) in headless Chromium: RA/Dec and pixel value under the cursor, scale, colours.

A tiny mosaic (48 × 40 pixels, a TAN projection with a known, analytic WCS,
intensities that differ at every pixel) is written by the project's own
mosaic writer and posted to the local gallery with oda_api. Its product page
must show it with JS9, served by the gallery itself (no CDN, no Node
helper). The test then

- asks JS9's public API (``JS9.PixToWCS``, ``JS9.GetValPos``) for RA/Dec and
  the value at known pixels and compares them with astropy's WCS (within
  1″) and the FITS data (exactly);
- moves the mouse over the display to a known pixel and reads what the page
  tells the user there (the read-out line under the image);
- changes the scale, the colour map, contrast and bias through the page's
  controls and JS9's API, and checks that JS9 reports them and that the
  displayed pixels changed.

JS9 comes from the npm registry, pinned by ``lib/mmoda_local/gallery_assets/js9/package-lock.json``
and installed by ``make setup`` (``npm ci``). Outside CI the test is skipped
when JS9, Chromium or chromedriver is missing; in CI (``CI`` set) it fails.
"""

from __future__ import annotations

import os

import numpy as np
import requests
from astropy.io import fits
from astropy.wcs import WCS

from mmoda_local import gallery_site

from .test_gallery import SIMULATED, client
from .test_gallery_browser import _wait, artifacts, browser, requirement_missing  # noqa: F401 - fixtures

#: The mosaic's size (nx, ny): not square, so that a transposed axis shows.
NX, NY = 48, 40
#: Its WCS: RA---TAN/DEC--TAN, 0.25° pixels, 1-based reference pixel (20.5, 16.5) at (83.6332°, 22.0145°).
CRVAL = (83.6332, 22.0145)
CRPIX = (20.5, 16.5)
CDELT = (-0.25, 0.25)
#: Pixels to check (1-based FITS x, y): a corner, the reference pixel's neighbour, the far corner.
PIXELS = [(3, 5), (21, 17), (45, 38)]

#: The display canvas's pixels, hashed: they change when the scale or colours change.
CANVAS_HASH_JS = """
const canvas = document.querySelector('#JS9 canvas.JS9Image') || document.querySelector('#JS9 canvas');
if (!canvas) { return null; }
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let hash = 0;
for (let i = 0; i < data.length; i += 1) { hash = (hash * 31 + data[i]) | 0; }
return hash;
"""


def _js9_or_skip() -> None:
    folder = gallery_site.js9_directory()
    if folder is None:
        where = os.environ.get(gallery_site.JS9_ENVIRONMENT) or gallery_site.JS9_PACKAGE
        requirement_missing(
            f"JS9 is not installed ({where}): run `make setup`, which runs `npm ci` in "
            f"{gallery_site.JS9_PACKAGE.parents[1]}"
        )


def _upload_mosaic(server, path, **position) -> dict:
    """Upload the tiny mosaic as a contributor's ISGRI image of the Crab; its gallery record."""
    token = server.token("general, gallery contributor", email="contributor@example.org")
    gallery = client(server.url)
    gallery.post_data_product_to_gallery(
        product_title="Tiny test mosaic",
        product_id="tiny-js9-mosaic",
        fits_file_path=[str(path)],
        token=token,
        instrument="isgri",
        product_type="isgri_image",
        src_name="Crab",
        insert_new_source=True,
        validate_source=True,
        force_insert_not_valid_new_source=True,
        **position,
    )
    (product,) = gallery.get_list_products_with_conditions(product_type="image")
    return product


def analytic_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(CRVAL)
    wcs.wcs.crpix = list(CRPIX)
    wcs.wcs.cdelt = list(CDELT)
    wcs.wcs.radesys = "ICRS"
    return wcs


def write_tiny_mosaic(path):
    """A 48 × 40 mosaic whose significance is 1000 y + x + 0.25 (1-based pixels): every pixel differs."""
    from integral_workflows import mosaic

    ny, nx = NY, NX
    yy, xx = np.mgrid[1 : ny + 1, 1 : nx + 1]
    intensity = 1000.0 * yy + xx + 0.25
    meta = {"TELESCOP": "INTEGRAL", "INSTRUME": "IBIS", "DETNAM": "ISGRI", "ORIGIN": SIMULATED, "SIMULATD": True}
    sky = mosaic.SkyMosaic(intensity, np.ones((ny, nx)), np.full((ny, nx), 1000.0), analytic_wcs(), meta)
    return sky.write(path)


def test_js9_shows_the_mosaic_with_ra_dec_value_scale_and_contrast(server_factory, browser, artifacts, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _js9_or_skip()
    path = write_tiny_mosaic(tmp_path / "tiny_mosaic.fits")
    with fits.open(path) as hdul:
        index = next(i for i, h in enumerate(hdul) if h.header.get("IMATYPE") == "SIGNIFICANCE")
        data = np.array(hdul[index].data, dtype=float)
        wcs = WCS(hdul[index].header)
    assert data.shape == (NY, NX)

    server = server_factory()
    product = _upload_mosaic(server, path, RA=CRVAL[0], DEC=CRVAL[1])
    browser.get(product["url"])

    section = browser.find_element(By.ID, "fits-viewer")
    assert section.get_attribute("data-js9-url").endswith(f"tiny_mosaic.fits[{index}]")
    state = {}

    def loaded(driver):
        state["state"] = driver.execute_script(
            "return document.getElementById('fits-viewer').getAttribute('data-js9-state')"
        )
        return state["state"] == "loaded"

    _wait(browser, loaded, timeout=45, message=f"JS9 did not display the mosaic: {state}")
    image = browser.execute_script("return JS9.GetImageData(false, {display: 'JS9'})")
    assert (image["width"], image["height"]) == (NX, NY)

    # RA/Dec and value at known pixels, through JS9's public API
    for x, y in PIXELS:
        answer = browser.execute_script(
            "const w = JS9.PixToWCS(arguments[0], arguments[1], {display: 'JS9'});"
            "const v = JS9.GetValPos({x: arguments[0], y: arguments[1]}, false, {display: 'JS9'});"
            "return {ra: w.ra, dec: w.dec, val: v.val};",
            x,
            y,
        )
        for expected in (wcs, analytic_wcs()):
            ra, dec = expected.all_pix2world([[x, y]], 1)[0]
            assert abs((answer["ra"] - ra) * np.cos(np.radians(dec))) * 3600 < 1.0, (x, y, answer, ra)
            assert abs(answer["dec"] - dec) * 3600 < 1.0, (x, y, answer, dec)
        assert answer["val"] == data[y - 1, x - 1] == 1000.0 * y + x + 0.25, (x, y, answer)

    # the mouse over a known pixel: the read-out line says its RA/Dec and value
    canvas = browser.find_element(By.CSS_SELECTOR, "#JS9 canvas.JS9Image")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    for x, y in PIXELS:
        target = browser.execute_script(
            "const d = JS9.ImageToDisplayPos({x: arguments[0], y: arguments[1]}, {display: 'JS9'});"
            "const c = arguments[2]; return {x: d.x, y: d.y, w: c.clientWidth, h: c.clientHeight};",
            x,
            y,
            canvas,
        )
        dx, dy = round(target["x"] - target["w"] / 2), round(target["y"] - target["h"] / 2)
        ActionChains(browser).move_to_element_with_offset(canvas, dx, dy).perform()
        readout = {}

        def moved(driver, readout=readout, x=x, y=y):
            element = driver.find_element(By.ID, "js9-readout")
            readout.update(
                text=element.text,
                x=element.get_attribute("data-x"),
                y=element.get_attribute("data-y"),
                ra=element.get_attribute("data-ra"),
                dec=element.get_attribute("data-dec"),
                value=element.get_attribute("data-value"),
            )
            return readout["x"] and round(float(readout["x"])) == x and round(float(readout["y"])) == y

        _wait(browser, moved, timeout=10, message=f"the read-out did not follow the mouse to {(x, y)}: {readout}")
        mouse_x, mouse_y = float(readout["x"]), float(readout["y"])
        ra, dec = wcs.all_pix2world([[mouse_x, mouse_y]], 1)[0]
        assert abs((float(readout["ra"]) - ra) * np.cos(np.radians(dec))) * 3600 < 1.0, readout
        assert abs(float(readout["dec"]) - dec) * 3600 < 1.0, readout
        assert float(readout["value"]) == data[y - 1, x - 1], readout
        assert "RA " in readout["text"] and "Dec " in readout["text"] and "value " in readout["text"], readout

    # scale and colours: through the page's controls, then JS9's API
    before = browser.execute_script(CANVAS_HASH_JS)
    Select(browser.find_element(By.ID, "js9-scale")).select_by_value("log")
    _wait(browser, lambda d: d.execute_script("return JS9.GetScale({display: 'JS9'}).scale") == "log")
    after_scale = browser.execute_script(CANVAS_HASH_JS)
    assert after_scale != before
    Select(browser.find_element(By.ID, "js9-colormap")).select_by_value("heat")
    _wait(browser, lambda d: d.execute_script("return JS9.GetColormap({display: 'JS9'}).colormap") == "heat")
    browser.execute_script(
        "for (const [id, value] of [['js9-contrast', 3], ['js9-bias', 0.3]]) {"
        "  const e = document.getElementById(id); e.value = value;"
        "  e.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    colours = browser.execute_script("return JS9.GetColormap({display: 'JS9'})")
    assert (colours["colormap"], colours["contrast"], colours["bias"]) == ("heat", 3, 0.3), colours
    after_colours = browser.execute_script(CANVAS_HASH_JS)
    assert after_colours not in (before, after_scale)
    browser.execute_script("JS9.SetScale('sqrt', {display: 'JS9'}); JS9.SetColormap('grey', {display: 'JS9'});")
    assert browser.execute_script("return JS9.GetScale({display: 'JS9'}).scale") == "sqrt"
    assert browser.execute_script("return JS9.GetColormap({display: 'JS9'}).colormap") == "grey"
    _wait(browser, lambda d: Select(d.find_element(By.ID, "js9-scale")).first_selected_option.text == "sqrt")
    browser.find_element(By.CSS_SELECTOR, "#fits-viewer").screenshot(str(artifacts / "08_js9_viewer.png"))

    # everything came from the gallery's own server, and JS9 never looked for its Node helper
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(server.url) for url in resources), resources
    assert any("/gallery/js9/astroemw.wasm" in url for url in resources), resources
    assert not any("socket.io" in url or ":2718" in url for url in resources), resources
    # (the gallery has no favicon: Chromium's request for one is the only error allowed)
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
    assert not logs, logs
    assert browser.execute_script("return JS9.helper.connected") in (None, False)


def test_the_product_page_says_so_when_js9_is_missing(server_factory, tmp_path, monkeypatch):
    """Without JS9 (setup skipped) the page keeps the older viewers and says how to get JS9."""
    monkeypatch.setenv(gallery_site.JS9_ENVIRONMENT, str(tmp_path / "no-js9-here"))
    path = write_tiny_mosaic(tmp_path / "tiny_mosaic.fits")
    server = server_factory()
    product = _upload_mosaic(server, path)
    page = requests.get(product["url"], timeout=30).text
    assert 'id="js9-missing"' in page and "make setup" in page
    assert 'data-js9-state="missing"' in page
    assert "js9.min.js" not in page and 'class="JS9"' not in page
    assert "gallery-image-plot" in page  # the bokeh view is still there
    assert requests.get(f"{server.url}/gallery/js9/js9.min.js", timeout=10).status_code == 404


def test_only_js9s_browser_files_are_served(server_factory):
    _js9_or_skip()
    server = server_factory()
    base = f"{server.url}/gallery/js9"
    for name in ("js9.min.js", "js9support.min.js", "js9plugins.js", "js9.css", "astroemw.js", "images/js9logo.png"):
        assert requests.get(f"{base}/{name}", timeout=10).status_code == 200, name
    wasm = requests.get(f"{base}/astroemw.wasm", timeout=10)
    assert wasm.status_code == 200 and wasm.headers["Content-Type"] == "application/wasm"
    assert wasm.content[:4] == b"\0asm"
    for name in (
        "package.json",
        "js9Helper.js",
        "js9prefs.js",
        "node_modules/socket.io/package.json",
        "images/../js9Helper.js",
        "analysis-wrappers/funcnts2flot",
        "build/quicktest",
        "help/../package.json",
    ):
        assert requests.get(f"{base}/{name}", timeout=10).status_code == 404, name
