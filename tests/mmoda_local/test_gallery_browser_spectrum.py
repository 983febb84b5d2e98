"""The spectrum of a product page in headless Chromium: the folded model over the data, and the residuals panel.

The product set's spectrum is a power law of photon index 2.1 through a diagonal response: the gallery
fits it through the attached RMF and ARF and draws the folded model and (data − model)/σ. The page's
BokehJS document is read for both panels' data, and their canvases must have drawn.
"""

from __future__ import annotations

import pytest

from .test_gallery import client, make_product_set, post_product_set
from .test_gallery_browser import _drawn, _wait, artifacts, browser  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:Card is too long, comment will be truncated")

#: The data of the named bokeh renderers and figures of the page's document.
PANELS_JS = """
if (typeof Bokeh === 'undefined' || !Bokeh.documents || !Bokeh.documents.length) { return null; }
const doc = Bokeh.documents[0];
if (!doc) { return null; }
const model = doc.get_model_by_name('folded-model');
const residuals = doc.get_model_by_name('gallery-spectrum-residuals');
const points = doc.get_model_by_name('residual-points');
if (!model || !residuals || !points) { return {model: !!model, residuals: !!residuals}; }
return {
  model_points: model.data_source.data.y.length,
  model_label: doc.get_model_by_name('folded-model-legend').items[0].label.value,
  residual_points: Array.from(points.data_source.data.r),
};
"""


def test_the_spectrum_shows_its_folded_model_and_residuals(server_factory, browser, artifacts, tmp_path):  # noqa: F811
    server = server_factory()
    token = server.token("general, gallery contributor", email="contributor@example.org")
    paths = make_product_set(tmp_path / "products", token=token)
    gallery = client(server.url)
    post_product_set(
        gallery,
        paths,
        token,
        product_id="crab-spectrum",
        product_title="Crab ISGRI spectrum",
        product_type="isgri_spectrum",
        src_name="Crab",
        gallery_image_path=None,
        fits_file_path=[str(paths[k]) for k in ("spectrum", "arf", "rmf")],
        yaml_file_path=None,
    )
    (product,) = gallery.get_list_products_with_conditions(product_type="spectrum")
    browser.get(product["url"])
    panels = {}

    def ready(driver):
        panels.clear()
        panels.update(driver.execute_script(PANELS_JS) or {})
        return "residual_points" in panels

    _wait(browser, ready, message=f"the spectrum's panels are not in the page: {panels}")
    assert panels["model_points"] == 32
    assert panels["model_label"].startswith("folded power law, Γ = 2.10")
    # a power law fitted to a power law: residuals ~0, every channel shown
    assert len(panels["residual_points"]) == 32 and max(abs(r) for r in panels["residual_points"]) < 1.0
    drawn = _drawn(browser, ".plot-spectrum", colours=3)
    assert drawn["canvases"] >= 2, drawn  # the spectrum and the residuals
    browser.find_element("css selector", ".plot-spectrum").screenshot(str(artifacts / "06_spectrum_model.png"))
