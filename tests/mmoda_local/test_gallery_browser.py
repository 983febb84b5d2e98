"""The gallery website in a real browser: Debian's headless Chromium driven by selenium and chromedriver.

The test posts products with oda_api, opens the gallery, filters it, opens a
product page and checks that the PNG image loaded, that JS9 displayed the
mosaic with its sources (test_gallery_browser_js9.py checks the viewer itself)
and that the bokeh plots drew something (canvas pixels of many colours), then a source and a
revolution page. Every resource the pages load comes from the local server
(nothing from a CDN: the machine's network is closed). Screenshots are kept
in ``build/test-artifacts/gallery/``.

Chromium and chromedriver come from Debian (``apt-get install chromium
chromium-driver``, done by ``.ci/run``); no browser is downloaded at run time.
Outside CI the test is skipped when they are missing; in CI it fails.
"""

from __future__ import annotations

import base64
import importlib.util
import os
from pathlib import Path

import pytest

from ..conftest import REPO
from .test_gallery import client, make_product_set, post_product_set

pytestmark = pytest.mark.filterwarnings("ignore:Card is too long, comment will be truncated")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "build" / "test-artifacts" / "gallery"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1400,1000",
)

#: Walks shadow roots too: bokeh 3 draws into canvases inside its elements' shadow DOM.
CANVAS_COLOURS_JS = """
function canvases(root) {
  let found = Array.from(root.querySelectorAll('canvas'));
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) { found = found.concat(canvases(element.shadowRoot)); }
  }
  return found;
}
const host = document.querySelector(arguments[0]);
if (!host) { return {canvases: 0, colours: 0}; }
let colours = 0, count = 0;
for (const canvas of canvases(host)) {
  if (!canvas.width || !canvas.height) { continue; }
  const context = canvas.getContext('2d');
  if (!context) { continue; }
  count += 1;
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 7) {
    if (data[i + 3] > 0) { seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]); }
  }
  colours = Math.max(colours, seen.size);
}
return {canvases: count, colours: colours};
"""


def requirement_missing(reason: str) -> None:
    """Fail under CI (which installs every requirement: a missing one is a defect), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _browser_or_skip():
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    if missing:
        requirement_missing(
            f"headless browser test needs {', '.join(missing)} (Debian: apt-get install chromium "
            f"chromium-driver; .ci/run installs them)"
        )


@pytest.fixture
def browser(tmp_path, monkeypatch):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # selenium must not look for (or download) a driver: we give it Debian's
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts() -> Path:
    # files are overwritten, the folder is not emptied: two test runs in one checkout must not race
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _wait(driver, condition, *, timeout: float = 30.0, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, message)


def _drawn(driver, selector: str, *, colours: int) -> dict:
    """Wait until a bokeh plot under ``selector`` has drawn at least ``colours`` distinct colours."""
    state = {}

    def enough(drv):
        state.update(drv.execute_script(CANVAS_COLOURS_JS, selector))
        return state["canvases"] > 0 and state["colours"] >= colours

    _wait(driver, enough, message=f"bokeh plot {selector} did not draw: {state}")
    return state


def test_gallery_in_headless_chromium(server_factory, browser, artifacts, tmp_path, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server = server_factory()
    token = server.token("general, gallery contributor", email="contributor@example.org")
    paths = make_product_set(tmp_path / "products", token=token)
    gallery = client(server.url)
    post_product_set(gallery, paths, token)
    post_product_set(
        gallery,
        paths,
        token,
        product_id="crab-isgri-lc",
        product_title="Crab ISGRI light curve",
        product_type="isgri_lc",
        src_name="Crab",
        gallery_image_path=None,
        fits_file_path=[str(paths["lightcurve"])],
        yaml_file_path=[str(paths["notebook"])],
    )
    shots = []

    def shot(name: str, *, full_page: bool = False):
        path = artifacts / name
        if full_page:
            # the whole page, not only the window (Chrome DevTools protocol)
            metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            picture = browser.execute_cdp_cmd(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                },
            )
            path.write_bytes(base64.b64decode(picture["data"]))
        else:
            browser.save_screenshot(str(path))
        shots.append(path)

    # the gallery: two products, both marked SIMULATED
    browser.get(f"{server.url}/gallery/")
    assert "MMODA product gallery" in browser.title
    cards = browser.find_elements(By.CSS_SELECTOR, "#product-cards a.card")
    assert len(cards) == 2
    assert browser.find_element(By.ID, "simulated-banner").is_displayed()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".card .badge.simulated")) == 2
    _wait(
        browser,
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.card img')).every(i => i.complete && i.naturalWidth > 0)"
        ),
        message="a thumbnail did not load",
    )
    shot("01_gallery.png")

    # filter it: images of the Crab
    Select(browser.find_element(By.ID, "filter-product-type")).select_by_value("image")
    source = browser.find_element(By.ID, "filter-source")
    source.clear()
    source.send_keys("Crab")
    browser.find_element(By.ID, "filter-apply").click()
    _wait(browser, lambda d: "product_type=image" in d.current_url, message="the filter was not applied")
    cards = browser.find_elements(By.CSS_SELECTOR, "#product-cards a.card")
    assert [c.get_attribute("data-product-type") for c in cards] == ["isgri_image"]
    shot("02_gallery_filtered.png")

    # the product page: image loaded, bokeh plots drawn, sources, notebook and its rerun command
    cards[0].click()
    _wait(browser, lambda d: "/gallery/product/" in d.current_url, message="the product page did not open")
    assert browser.find_element(By.ID, "simulated-banner").is_displayed()
    natural_width = _wait(
        browser,
        lambda d: d.execute_script(
            "const i = document.getElementById('product-image'); return i.complete && i.naturalWidth"
        ),
        message="the product image did not load",
    )
    assert natural_width > 100
    image_plot = _drawn(browser, ".plot-image", colours=40)
    lightcurve_plot = _drawn(browser, ".plot-lightcurve", colours=3)
    spectrum_plot = _drawn(browser, ".plot-spectrum", colours=3)
    assert browser.execute_script("return window.Bokeh !== undefined && Bokeh.documents.length") >= 1
    rows = browser.find_elements(By.CSS_SELECTOR, "#source-table tbody tr")
    assert {r.find_element(By.TAG_NAME, "td").text for r in rows} == {"Crab", "1A 0535+262"}
    rerun = browser.find_element(By.ID, "rerun-command").text
    assert rerun.startswith(f"papermill {server.url}/gallery/files/") and "-r output_dir mosaic_rerun_" in rerun
    assert token not in browser.page_source
    # the mosaic in JS9 (when installed: test_gallery_browser_js9.py fails under CI without it), sources drawn
    if browser.find_element(By.ID, "fits-viewer").get_attribute("data-js9-state") != "missing":
        _wait(
            browser,
            lambda d: d.find_element(By.ID, "fits-viewer").get_attribute("data-js9-state") == "loaded",
            message="JS9 did not display the mosaic",
        )
        assert browser.execute_script("return JS9.GetRegions('all', {display: 'JS9'}).length") == 2
    shot("03_product_page.png", full_page=True)
    browser.find_element(By.CSS_SELECTOR, ".plot-image").screenshot(str(artifacts / "04_interactive_image.png"))
    shots.append(artifacts / "04_interactive_image.png")

    # zoom the PNG (scroll) and check the transform changed
    before = browser.execute_script("return document.getElementById('product-image').style.transform")
    browser.execute_script("""
        const box = document.querySelector('[data-zoom]'); const r = box.getBoundingClientRect();
        box.dispatchEvent(new WheelEvent('wheel', {deltaY: -120, clientX: r.left + r.width / 2,
                                                   clientY: r.top + r.height / 2, bubbles: true,
                                                   cancelable: true}));""")
    assert browser.execute_script("return document.getElementById('product-image').style.transform") != before

    # every resource came from the local server: nothing from a CDN
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(server.url) for url in resources), resources

    # a source page and a revolution page
    browser.get(f"{server.url}/gallery/source/Crab")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Crab"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#product-cards a.card")) == 2
    shot("05_source_page.png")
    browser.get(f"{server.url}/gallery/revolution/270")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#product-cards a.card")) == 2
    browser.find_element(By.LINK_TEXT, "Light curve").click()
    _wait(browser, lambda d: "product_type=lightcurve" in d.current_url)
    assert [
        c.get_attribute("data-product-type") for c in browser.find_elements(By.CSS_SELECTOR, "#product-cards a.card")
    ] == ["isgri_lc"]
    shot("06_revolution_page.png")

    # the light-curve product's own page
    browser.find_element(By.CSS_SELECTOR, "#product-cards a.card").click()
    _wait(browser, lambda d: "/gallery/product/" in d.current_url)
    _drawn(browser, ".plot-lightcurve", colours=3)
    shot("07_lightcurve_page.png", full_page=True)

    for path in shots:
        assert path.stat().st_size > 10_000, path
    with capsys.disabled():
        print(
            f"\ngallery screenshots ({image_plot['colours']} colours in the image plot, "
            f"{lightcurve_plot['colours']} in the light curve, {spectrum_plot['colours']} in the spectrum):"
        )
        for path in shots:
            print(f"  {path}")
