"""The gallery website of the local MMODA: what a person browses at ``/gallery/``.

Pages (Jinja2 templates in ``gallery_assets/templates/gallery``):

``/gallery/``
    all products, newest first, filtered by instrument, product type, time
    span (``t1``/``t2``, ISOT), source and revolution (query arguments
    ``instrument``, ``product_type``, ``t1``, ``t2``, ``src_name``, ``rev``);
``/gallery/product/<nid>``
    one product: the image (zoomable PNG and, from the FITS mosaic, an
    interactive bokeh view with the detected sources as circles), bokeh
    light-curve and spectrum plots, the source table with fluxes, the
    attached files (FITS, region, tables, parameters), and the notebook with
    its parameters and the ``papermill`` command that reruns it;
``/gallery/sources`` and ``/gallery/source/<name>``
    the sources, and one source with its products (those put in evidence first);
``/gallery/revolutions`` and ``/gallery/revolution/<rev>``
    products per INTEGRAL revolution, with instrument and product-type tabs;
``/gallery/node/<nid>``
    a node: HAL-JSON with ``?_format=hal_json`` (the links oda_api logs),
    else its page; ``/gallery/files/<fid>/<name>`` downloads an attached file.

Everything is served offline: the bokeh JavaScript comes from the installed
``bokeh`` package (``/gallery/bokeh/static/...``), the CSS and the small
zoom script from ``gallery_assets/static``. Every page says that this is the
local gallery, and every product from the simulated sky carries a SIMULATED
banner or badge.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import logging
import math
import re
import shlex
import threading
import warnings
from collections import OrderedDict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import numpy as np
from flask import Blueprint, Flask, Response, abort, redirect, render_template, request, send_file, url_for

from . import gallery as _gallery

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "gallery_assets"

#: Scale (σ) of the asinh stretch of significance maps: linear below it, logarithmic above.
SIGNIFICANCE_SOFTENING = 2.0

#: Products per page of a list.
PAGE_SIZE = 48

#: Largest side of an image sent to the browser; larger mosaics are block-averaged (the FITS stays whole).
MAX_IMAGE_SIDE = 800

#: Labels of the instruments and families, as the real gallery shows them.
INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx": "JEM-X", "jemx1": "JEM-X1", "jemx2": "JEM-X2", "spi_acs": "SPI-ACS"}
FAMILY_LABELS = {"image": "Image", "lightcurve": "Light curve", "spectrum": "Spectrum"}

#: Column names of source tables, in order of preference.
NAME_COLUMNS = ("name", "src_name", "source", "source_name", "NAME", "SRC_NAME", "Source")
RA_COLUMNS = ("ra", "RA", "ra_fin", "RA_FIN", "ra_obj", "RA_OBJ", "ra_deg")
DEC_COLUMNS = ("dec", "DEC", "dec_fin", "DEC_FIN", "dec_obj", "DEC_OBJ", "dec_deg")
FLUX_COLUMNS = ("rate", "flux", "RATE", "FLUX", "flux_ct_s", "count_rate")
FLUX_ERROR_COLUMNS = ("rate_error", "rate_err", "flux_err", "flux_error", "FLUX_ERR", "ERR_FLUX", "RATE_ERR",
                      "RATE_ERROR")
SIGNIFICANCE_COLUMNS = ("significance", "sig", "DETSIG", "det_sig", "SIGNIFICANCE")

SIMULATED_TEXT = ("made by the local MMODA (mmoda_local) from a simulated INTEGRAL sky, "
                  "not from INTEGRAL observations.")


# -- reading the attached files ---------------------------------------------------------------------------------
def _raw(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def _hdus(data: bytes):
    from astropy.io import fits

    try:
        hdul = fits.open(io.BytesIO(_raw(data)), memmap=False, lazy_load_hdus=False)
        hdul.verify("silentfix")
        return hdul
    except Exception as exc:  # noqa: BLE001 - a broken upload must not break the page
        log.warning("gallery: unreadable FITS attachment: %s", exc)
        return None


def _column(names, candidates):
    lowered = {str(n).lower(): n for n in names}
    for candidate in candidates:
        if candidate in names:
            return candidate
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sources_from_table(table) -> list[dict]:
    """Rows ``name, ra, dec, flux, flux_error, significance, unit`` of a source table (empty if it is not one)."""
    names = list(table.colnames)
    ra, dec = _column(names, RA_COLUMNS), _column(names, DEC_COLUMNS)
    if ra is None or dec is None:
        return []
    name = _column(names, NAME_COLUMNS)
    flux, flux_error = _column(names, FLUX_COLUMNS), _column(names, FLUX_ERROR_COLUMNS)
    significance = _column(names, SIGNIFICANCE_COLUMNS)
    unit = str(table[flux].unit) if flux is not None and table[flux].unit is not None else ""
    rows = []
    for index, row in enumerate(table):
        rows.append({"name": str(row[name]).strip() if name else f"source {index + 1}",
                     "ra": _finite(row[ra]), "dec": _finite(row[dec]),
                     "flux": _finite(row[flux]) if flux else None,
                     "flux_error": _finite(row[flux_error]) if flux_error else None,
                     "significance": _finite(row[significance]) if significance else None, "unit": unit})
    return [r for r in rows if r["ra"] is not None and r["dec"] is not None]


class _TableCells(HTMLParser):
    """Collects the cells of the rows of an HTML table (header cells included)."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def sources_from_html(text: str) -> list[dict]:
    """Sources of an HTML table field (the gallery notebooks' ``detected_sources``): name, RA, Dec, flux...

    The header row names the columns (``Name``, ``RA``, ``Dec``,
    ``Significance``, ``Flux (cts/s)``, ``Unc``); rows without a usable
    position are left out.
    """
    parser = _TableCells()
    try:
        parser.feed(str(text))
    except Exception:  # noqa: BLE001 - a malformed field is shown as text only
        return []
    if len(parser.rows) < 2:
        return []
    header = [cell.lower() for cell in parser.rows[0]]

    def index(*starts):
        return next((i for i, name in enumerate(header) if name.startswith(starts)), None)

    name, ra, dec = index("name", "source"), index("ra"), index("dec")
    flux, error, significance = index("flux", "rate"), index("unc", "err"), index("signif", "sig")
    unit = ""
    if flux is not None:
        match = re.search(r"\(([^)]*)\)", parser.rows[0][flux])
        unit = match.group(1) if match else ""
    rows = []
    for cells in parser.rows[1:]:
        def cell(i):
            return cells[i] if i is not None and i < len(cells) else None
        row = {"name": cell(name) or f"source {len(rows) + 1}", "ra": _finite(cell(ra)), "dec": _finite(cell(dec)),
               "flux": _finite(cell(flux)), "flux_error": _finite(cell(error)),
               "significance": _finite(cell(significance)), "unit": unit}
        if row["ra"] is not None and row["dec"] is not None:
            rows.append(row)
    return rows


def sources_from_region(text: str) -> list[dict]:
    """Sources (name, ra, dec, radius in deg, colour) of a DS9 region file's sky circles and points."""
    from regions import Regions

    try:
        shapes = Regions.parse(text, format="ds9")
    except Exception as exc:  # noqa: BLE001 - a malformed region file is shown as a download only
        log.warning("gallery: unreadable region file: %s", exc)
        return []
    rows = []
    for shape in shapes:
        center = getattr(shape, "center", None)
        if center is None or not hasattr(center, "ra"):
            continue
        label = str(shape.meta.get("text", "") or "")
        match = re.match(r"\s*(.*?)\s*\(([-+0-9.eE]+)\s*σ?\)\s*$", label)
        name, significance = (match.group(1), _finite(match.group(2))) if match else (label.strip(), None)
        radius = getattr(shape, "radius", None)
        rows.append({"name": name or f"region {len(rows) + 1}", "ra": float(center.ra.deg),
                     "dec": float(center.dec.deg), "flux": None, "flux_error": None,
                     "significance": significance, "unit": "",
                     "radius_deg": float(radius.to_value("deg")) if radius is not None else None,
                     "color": str(shape.visual.get("color", "") or "")})
    return rows


def read_table(data: bytes, filename: str):
    """An astropy table from an ECSV/CSV/ASCII attachment, or None."""
    from astropy.io import ascii as astropy_ascii

    text = _raw(data).decode("utf-8", "replace")
    lowered = filename.lower()
    formats = ["ecsv"] if text.lstrip().startswith("# %ECSV") else []
    formats += ["csv"] if lowered.endswith(".csv") else []
    formats += ["basic", None]
    for fmt in formats:
        try:
            return astropy_ascii.read(text, format=fmt) if fmt else astropy_ascii.read(text)
        except Exception:  # noqa: BLE001 - try the next reader
            continue
    return None


def notebook_info(data: bytes) -> dict:
    """Parameters, source notebook and parameters-cell code of an executed notebook.

    Returns
    -------
    dict
        ``parameters`` (dict, from papermill's metadata; None if absent),
        ``input_path`` and ``output_path`` (papermill's), ``cell`` (source of
        the ``injected-parameters`` or ``parameters`` cell), ``kernel``.
    """
    try:
        notebook = json.loads(_raw(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"parameters": None, "input_path": None, "output_path": None, "cell": "", "kernel": ""}
    metadata = notebook.get("metadata", {}) or {}
    papermill = metadata.get("papermill", {}) or {}
    cell_source = ""
    for wanted in ("injected-parameters", "parameters"):
        for cell in notebook.get("cells", []):
            if wanted in (cell.get("metadata", {}).get("tags") or []):
                source = cell.get("source", "")
                cell_source = "".join(source) if isinstance(source, list) else str(source)
                break
        if cell_source:
            break
    parameters = papermill.get("parameters")
    return {"parameters": dict(parameters) if isinstance(parameters, dict) else None,
            "input_path": papermill.get("input_path"), "output_path": papermill.get("output_path"),
            "cell": cell_source, "kernel": (metadata.get("kernelspec") or {}).get("display_name", "")}


def source_notebook(input_path: str | None, filename: str) -> str:
    """The project-relative notebook a run came from (``notebooks/mosaic.ipynb``)."""
    if input_path:
        text = str(input_path).replace("\\", "/")
        marker = text.rfind("notebooks/")
        return text[marker:] if marker >= 0 else text
    stem = re.sub(r"^\d+_", "", Path(filename).stem)
    return f"notebooks/{stem}.ipynb"


def _produced_by(fields: dict) -> str | None:
    """The notebook named by a product's ``produced_by`` field (``notebooks/<name>.ipynb``), if any."""
    name = str(fields.get("produced_by") or "").strip()
    if not name:
        return None
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    return name if "/" in name else f"notebooks/{name}"


def rerun_command(notebook: str, parameters: dict, *, output: str) -> str:
    """The ``papermill`` command that reruns ``notebook`` with ``parameters``.

    Strings go through ``-r`` (papermill would turn ``"28.0"`` into a
    number with ``-p``), numbers and booleans through ``-p``, anything else
    through ``-y`` as YAML. ``token`` is never passed: notebooks read it from
    ``$ODA_TOKEN`` or ``.oda-token``.
    """
    words = ["papermill", notebook, output]
    for name, value in parameters.items():
        if name.lower() == "token":
            continue
        if isinstance(value, bool) or isinstance(value, (int, float)) and not isinstance(value, bool):
            words += ["-p", name, str(value)]
        elif isinstance(value, str):
            words += ["-r", name, value]
        else:
            words += ["-y", json.dumps({name: value})]
    return " ".join(shlex.quote(word) for word in words)


def parameters_from_yaml(data: bytes) -> dict | None:
    """A parameters mapping from a YAML attachment (None when it is not one)."""
    import yaml

    try:
        value = yaml.safe_load(_raw(data).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    if isinstance(value, dict) and isinstance(value.get("parameters"), dict):
        value = value["parameters"]
    return value if isinstance(value, dict) else None


# -- bokeh plots ------------------------------------------------------------------------------------------------
def _image_hdu(hdul):
    """The HDU to show: the significance map if there is one, else the first 2-D image."""
    candidates = [hdu for hdu in hdul if getattr(hdu, "is_image", False) and hdu.data is not None
                  and np.ndim(hdu.data) >= 2]
    if not candidates:
        return None, ""
    for wanted in ("SIGNIFICANCE", "INTENSITY", "RECONSTRUCTED"):
        for hdu in candidates:
            if str(hdu.header.get("IMATYPE", "")).strip().upper() == wanted:
                return hdu, wanted.lower()
    return candidates[0], str(candidates[0].header.get("IMATYPE", "") or candidates[0].name).lower()


def _decimate(image: np.ndarray) -> tuple[np.ndarray, int]:
    factor = int(math.ceil(max(image.shape) / MAX_IMAGE_SIDE))
    if factor <= 1:
        return image, 1
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        # blocks entirely outside the coverage are NaN on purpose ("mean of empty slice")
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks, axis=(1, 3)), factor


def image_plot(hdul, sources: list[dict], *, title: str, simulated: bool):
    """An interactive (pan, zoom, hover) bokeh view of a FITS image with the sources drawn as circles.

    Returns
    -------
    bokeh.plotting.figure or None
        None when the file holds no 2-D image.
    """
    from astropy.wcs import WCS
    from bokeh.models import ColorBar, ColumnDataSource, FixedTicker, HoverTool, LabelSet, LinearColorMapper
    from bokeh.plotting import figure

    hdu, what = _image_hdu(hdul)
    if hdu is None:
        return None
    image = np.asarray(hdu.data, dtype=float)
    while image.ndim > 2:
        image = image[0]
    ny, nx = image.shape
    shown, factor = _decimate(image)
    finite = shown[np.isfinite(shown)]
    ticks, labels = None, None
    if what == "significance":
        # asinh stretch, as the PNG's: the noise (a few σ) and a source of hundreds of σ both stay readable
        top = max(10.0, float(np.max(finite))) if finite.size else 10.0
        display = np.arcsinh(shown / SIGNIFICANCE_SOFTENING)
        low, high = float(np.arcsinh(-3.0 / SIGNIFICANCE_SOFTENING)), float(np.arcsinh(top / SIGNIFICANCE_SOFTENING))
        values = [v for v in (-3, 0, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if v <= top]
        ticks = [float(np.arcsinh(v / SIGNIFICANCE_SOFTENING)) for v in values]
        labels = {tick: f"{v}" for tick, v in zip(ticks, values)}
    else:
        display = shown
        low, high = (np.percentile(finite, [1.0, 99.8]).tolist() if finite.size else (0.0, 1.0))
    mapper = LinearColorMapper(palette="Magma256", low=low, high=high if high > low else low + 1.0,
                               nan_color="#20242c")
    label = f"{title} – {what or 'image'}" + ("  [SIMULATED DATA]" if simulated else "")
    # square pixels: the frame keeps the image's aspect whatever the page width (ranges follow the glyph)
    plot = figure(title=label, match_aspect=True, aspect_scale=1.0, sizing_mode="scale_width",
                  width=int(600 * nx / ny) + 160, height=640, tools="pan,wheel_zoom,box_zoom,reset,save",
                  active_scroll="wheel_zoom", x_axis_label="x (pixel)", y_axis_label="y (pixel)",
                  name="gallery-image-plot")
    plot.x_range.range_padding = plot.y_range.range_padding = 0.0
    # the colours come from the stretched "image", the hover shows the map's own "value"
    pixels = ColumnDataSource({"image": [display.astype(np.float32)], "value": [shown.astype(np.float32)]})
    renderer = plot.image(image="image", source=pixels, x=-0.5, y=-0.5, dw=nx, dh=ny, color_mapper=mapper)
    plot.add_tools(HoverTool(renderers=[renderer], tooltips=[("x, y", "$x{0.0}, $y{0.0}"),
                                                              (what or "value", "@value{0.00}")]))
    bar = ColorBar(color_mapper=mapper, title=f"{what} (σ)" if what == "significance" else what)
    if ticks:
        bar.ticker = FixedTicker(ticks=ticks)
        bar.major_label_overrides = labels
    plot.add_layout(bar, "right")
    try:
        wcs = WCS(hdu.header).celestial
    except Exception:  # noqa: BLE001 - an image without a usable WCS is shown without sources
        wcs = None
    if wcs is not None and wcs.has_celestial and sources:
        from astropy.wcs.utils import proj_plane_pixel_scales
        pixel_deg = float(np.mean(np.abs(proj_plane_pixel_scales(wcs))))
        ra = np.array([s["ra"] for s in sources], dtype=float)
        dec = np.array([s["dec"] for s in sources], dtype=float)
        x, y = wcs.all_world2pix(ra, dec, 0)
        inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        # the region's radius, but never so small that the circle hides in a large mosaic
        smallest = max(1.5, 0.012 * max(nx, ny))
        radius = [max(smallest, (s.get("radius_deg") or 0.2) / pixel_deg) if pixel_deg > 0 else smallest
                  for s in sources]
        colours = [s.get("color") or "lime" for s in sources]
        data = ColumnDataSource({
            "x": x[inside], "y": y[inside], "r": np.asarray(radius)[inside],
            "name": [s["name"] for s, keep in zip(sources, inside) if keep],
            "ra": ra[inside], "dec": dec[inside],
            "flux": ["" if s["flux"] is None else f"{s['flux']:.4g}" for s, k in zip(sources, inside) if k],
            "sig": ["" if s["significance"] is None else f"{s['significance']:.1f}" for s, k in zip(sources, inside)
                    if k],
            "colour": [c if c in ("red", "green", "lime", "cyan", "yellow", "white", "magenta", "blue") else "lime"
                       for c, k in zip(colours, inside) if k]})
        circles = plot.circle(x="x", y="y", radius="r", source=data, fill_alpha=0.0, line_color="colour",
                              line_width=2, name="gallery-sources")
        plot.add_layout(LabelSet(x="x", y="y", text="name", source=data, x_offset=6, y_offset=6,
                                 text_color="white", text_font_size="10px"))
        plot.add_tools(HoverTool(renderers=[circles], tooltips=[("source", "@name"),
                                                                 ("RA, Dec", "@ra{0.000}, @dec{0.000}"),
                                                                 ("significance", "@sig"), ("flux", "@flux")]))
    if factor > 1:
        plot.title.text += f" (shown binned {factor}×{factor})"
    return plot


def lightcurve_hdu(hdul):
    """The light-curve table of a FITS file (TIME and RATE columns), or None."""
    for hdu in hdul:
        columns = getattr(hdu, "columns", None)
        if columns is None:
            continue
        names = [c.name.upper() for c in columns]
        if "TIME" in names and ("RATE" in names or "FLUX" in names):
            return hdu
    return None


def spectrum_hdu(hdul):
    """The PHA table of a FITS file (CHANNEL and RATE or COUNTS, not a response), or None."""
    for hdu in hdul:
        columns = getattr(hdu, "columns", None)
        if columns is None:
            continue
        names = [c.name.upper() for c in columns]
        if "CHANNEL" in names and ("RATE" in names or "COUNTS" in names) and "E_MIN" not in names:
            return hdu
    return None


def ebounds(hdul_list) -> dict | None:
    """Channel energy bounds (keV) from an RMF among the attachments: ``{channel: (e_min, e_max)}``."""
    for hdul in hdul_list:
        for hdu in hdul:
            columns = getattr(hdu, "columns", None)
            if columns is None:
                continue
            names = [c.name.upper() for c in columns]
            if {"CHANNEL", "E_MIN", "E_MAX"} <= set(names):
                data = hdu.data
                return {int(c): (float(lo), float(hi)) for c, lo, hi in zip(data["CHANNEL"], data["E_MIN"],
                                                                            data["E_MAX"])}
    return None


def lightcurve_plot(hdu, *, title: str, simulated: bool):
    """A bokeh light curve (dates on the x axis, rate with 1σ whiskers, hover)."""
    from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool
    from bokeh.plotting import figure

    header = hdu.header
    data = hdu.data
    names = [c.name.upper() for c in hdu.columns]
    time_unit = str(header.get("TIMEUNIT", "d")).strip().lower()
    scale = 1.0 if time_unit.startswith("d") else 1.0 / 86400.0
    mjdref = _finite(header.get("MJDREF"))
    if mjdref is None:
        mjdref = _finite(header.get("MJDREFI", 0.0)) or 0.0
        mjdref += _finite(header.get("MJDREFF", 0.0)) or 0.0
    time = np.asarray(data["TIME"], dtype=float) * scale
    rate = np.asarray(data["RATE" if "RATE" in names else "FLUX"], dtype=float)
    error = np.asarray(data["ERROR"], dtype=float) if "ERROR" in names else np.zeros_like(rate)
    keep = np.isfinite(time) & np.isfinite(rate)
    mjd = time[keep] + mjdref
    # MJD 40587 is 1970-01-01: bokeh's datetime axis counts milliseconds from there
    millis = (mjd - 40587.0) * 86400e3
    source = ColumnDataSource({"t": millis, "mjd": mjd, "rate": rate[keep], "lo": rate[keep] - error[keep],
                               "hi": rate[keep] + error[keep], "err": error[keep]})
    band = ""
    if header.get("E_MIN") is not None and header.get("E_MAX") is not None:
        band = f" {float(header['E_MIN']):g}–{float(header['E_MAX']):g} keV"
    name = str(header.get("NAME", "") or "")
    label = f"{name or title}{band} light curve" + ("  [SIMULATED DATA]" if simulated else "")
    plot = figure(title=label, x_axis_type="datetime", sizing_mode="stretch_width", height=380,
                  tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                  y_axis_label=f"rate ({hdu.columns['RATE'].unit or 'count/s'})" if "RATE" in names else "flux",
                  name="gallery-lightcurve-plot")
    plot.xaxis.formatter = DatetimeTickFormatter(hours="%Y-%m-%d %H:%M", days="%Y-%m-%d", months="%Y-%m",
                                                 years="%Y")
    # error bars as glyphs (not annotations) so that the axes' auto-range includes them
    plot.segment("t", "lo", "t", "hi", source=source, line_color="#4c78a8")
    points = plot.scatter("t", "rate", source=source, size=5, color="#1f4e79")
    plot.add_tools(HoverTool(renderers=[points], tooltips=[("MJD", "@mjd{0.0000}"),
                                                           ("rate", "@rate{0.000} ± @err{0.000}")]))
    return plot


def spectrum_plot(hdu, bounds: dict | None, *, title: str, simulated: bool):
    """A bokeh count spectrum: rate per keV against energy (per channel without an RMF), log-log."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    data = hdu.data
    names = [c.name.upper() for c in hdu.columns]
    channel = np.asarray(data["CHANNEL"], dtype=int)
    if "RATE" in names:
        rate = np.asarray(data["RATE"], dtype=float)
    else:
        exposure = _finite(hdu.header.get("EXPOSURE")) or 1.0
        rate = np.asarray(data["COUNTS"], dtype=float) / exposure
    error = np.asarray(data["STAT_ERR"], dtype=float) if "STAT_ERR" in names else np.sqrt(np.abs(rate))
    quality = np.asarray(data["QUALITY"], dtype=int) if "QUALITY" in names else np.zeros_like(channel)
    if bounds:
        lo = np.array([bounds.get(int(c), (np.nan, np.nan))[0] for c in channel])
        hi = np.array([bounds.get(int(c), (np.nan, np.nan))[1] for c in channel])
        width = hi - lo
        x = np.sqrt(lo * hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            y, dy = rate / width, error / width
        x_label, y_label = "energy (keV)", "rate (count/s/keV)"
    else:
        x, y, dy = channel.astype(float), rate, error
        x_label, y_label = "channel", "rate (count/s)"
    keep = np.isfinite(x) & np.isfinite(y) & (quality == 0) & (x > 0) & (y > 0)
    source = ColumnDataSource({"x": x[keep], "y": y[keep], "lo": np.maximum(y[keep] - dy[keep], y[keep] * 1e-3),
                               "hi": y[keep] + dy[keep], "channel": channel[keep]})
    name = str(hdu.header.get("NAME", hdu.header.get("OBJECT", "")) or "")
    label = f"{name or title} spectrum" + ("  [SIMULATED DATA]" if simulated else "")
    plot = figure(title=label, x_axis_type="log", y_axis_type="log", sizing_mode="stretch_width", height=380,
                  tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                  x_axis_label=x_label, y_axis_label=y_label, name="gallery-spectrum-plot")
    plot.segment("x", "lo", "x", "hi", source=source, line_color="#a05a2c")
    points = plot.scatter("x", "y", source=source, size=5, color="#7a3b12")
    plot.add_tools(HoverTool(renderers=[points], tooltips=[("channel", "@channel"), (x_label, "@x{0.00}"),
                                                           (y_label, "@y{0.000e}")]))
    return plot


# -- page model -------------------------------------------------------------------------------------------------
class ProductView:
    """What a product page shows, read from the product's files (built once per product version).

    Parameters
    ----------
    store : GalleryStore
    product : dict
        The product (:meth:`GalleryStore.product`).
    """

    def __init__(self, store, product: dict):
        self.product = product
        self.simulated = bool(product["simulated"])
        self.sources: list[dict] = []
        self.sources_origin = ""
        self.notebooks: list[dict] = []
        self.parameters: list[dict] = []
        self.plots = []
        self.plot_kinds: list[str] = []
        self.errors: list[str] = []
        files = product["files"]
        fits_files = []
        for record in files:
            data = store.read_file(record["fid"])
            if record["kind"] == "fits":
                hdul = _hdus(data)
                if hdul is not None:
                    fits_files.append((record, hdul))
            elif record["kind"] == "notebook":
                info = notebook_info(data)
                info["file"] = record
                info["notebook"] = source_notebook(info["input_path"] or _produced_by(product["fields"]),
                                                   record["filename"])
                if info["parameters"] is not None:
                    stem = Path(info["notebook"]).stem
                    info["command"] = rerun_command(info["notebook"], info["parameters"], output=f"{stem}_rerun.ipynb")
                    output_path = str(info["output_path"] or "").replace("\\", "/")
                    marker = output_path.rfind("outputs/")
                    if marker >= 0:
                        info["run_all"] = f"python run_all.py rerun {shlex.quote(output_path[marker:])}"
                self.notebooks.append(info)
            elif record["kind"] in ("yaml", "json"):
                parameters = parameters_from_yaml(data)
                if parameters is not None:
                    self.parameters.append({"file": record, "values": parameters})
            elif record["kind"] == "table" and not self.sources:
                table = read_table(data, record["filename"])
                if table is not None:
                    self.sources = sources_from_table(table)
                    self.sources_origin = record["filename"] if self.sources else ""
        regions = []
        for record in files:
            if record["kind"] == "region":
                regions += sources_from_region(_raw(store.read_file(record["fid"])).decode("utf-8", "replace"))
        if not self.sources and product["fields"].get("detected_sources"):
            self.sources = sources_from_html(product["fields"]["detected_sources"])
            self.sources_origin = "the detected sources posted with the product" if self.sources else ""
        if not self.sources:
            for record, hdul in fits_files:
                for hdu in hdul:
                    if getattr(hdu, "columns", None) is not None and lightcurve_hdu([hdu]) is None \
                            and spectrum_hdu([hdu]) is None and ebounds([[hdu]]) is None:
                        from astropy.table import Table
                        rows = sources_from_table(Table(hdu.data))
                        if rows:
                            self.sources, self.sources_origin = rows, record["filename"]
                            break
        if not self.sources and regions:
            self.sources, self.sources_origin = regions, "region file"
        elif regions:
            # the region file's circles (sizes, colours) go with the table's fluxes
            by_name = {r["name"]: r for r in regions}
            for row in self.sources:
                if row["name"] in by_name:
                    row["radius_deg"] = by_name[row["name"]].get("radius_deg")
                    row["color"] = by_name[row["name"]].get("color")
        if not self.sources:
            self.sources = [{"name": e["name"], "ra": e["ra"], "dec": e["dec"], "flux": None, "flux_error": None,
                             "significance": None, "unit": ""} for e in product["sources"]
                            if e["ra"] is not None and e["dec"] is not None]
            self.sources_origin = "source positions" if self.sources else ""
        title = product["title"]
        all_hdul = [hdul for _record, hdul in fits_files]
        bounds = ebounds(all_hdul)
        for record, hdul in fits_files:
            try:
                image = image_plot(hdul, self.sources, title=title, simulated=self.simulated)
                if image is not None:
                    self.plots.append(image)
                    self.plot_kinds.append("image")
                    continue
                lc = lightcurve_hdu(hdul)
                if lc is not None:
                    self.plots.append(lightcurve_plot(lc, title=title, simulated=self.simulated))
                    self.plot_kinds.append("lightcurve")
                    continue
                pha = spectrum_hdu(hdul)
                if pha is not None:
                    self.plots.append(spectrum_plot(pha, bounds, title=title, simulated=self.simulated))
                    self.plot_kinds.append("spectrum")
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not hide the rest of the page
                log.warning("gallery: cannot plot %s: %s", record["filename"], exc)
                self.errors.append(f"{record['filename']}: cannot be plotted ({type(exc).__name__})")
        self.components = None
        if self.plots:
            from bokeh.embed import components
            script, divs = components(self.plots)
            self.components = {"script": script, "divs": list(zip(self.plot_kinds, divs))}


class _ViewCache:
    """Product views by (nid, changed, revision): a product page is computed once per version."""

    def __init__(self, size: int = 32):
        self.size = size
        self._views: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store, product: dict) -> ProductView:
        key = (product["nid"], product["changed"], product["revision"])
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        view = ProductView(store, product)
        with self._lock:
            self._views[key] = view
            while len(self._views) > self.size:
                self._views.popitem(last=False)
        return view


# -- formatting helpers for the templates -----------------------------------------------------------------------
def file_url(record: dict) -> str:
    """The download URL of a stored file."""
    return url_for("gallery.download", fid=record["fid"], name=record["filename"])


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n} B"


def _short(text, length: int = 30) -> str:
    text = str(text or "")
    return text if len(text) <= length else text[: length - 1] + "…"


def _rev_span(product: dict) -> str:
    if product.get("rev1") is None:
        return ""
    return f"{product['rev1']} - {product['rev2'] if product['rev2'] is not None else product['rev1']}"


def _number(value, fmt: str = "{:.4g}") -> str:
    return "" if value is None else fmt.format(value)


@functools.lru_cache(maxsize=4)
def _bokeh_scripts(root: str) -> str:
    from bokeh.resources import Resources

    # served from the installed bokeh package: no CDN, works offline
    return Resources(mode="server", root_url=root, components=["bokeh"]).render_js()


def register_site(app: Flask, store) -> Blueprint:
    """Serve the gallery website (``/gallery/...``) from ``store`` on ``app``.

    Parameters
    ----------
    app : flask.Flask
    store : mmoda_local.gallery.GalleryStore

    Returns
    -------
    flask.Blueprint
    """
    site = Blueprint("gallery", __name__, url_prefix="/gallery", template_folder=str(ASSETS / "templates"),
                     static_folder=str(ASSETS / "static"), static_url_path="/static")
    views = _ViewCache()

    @site.app_template_filter("short")
    def short_filter(text, length: int = 30):
        return _short(text, length)

    @site.app_template_filter("literal")
    def literal_filter(value) -> str:
        # a parameter value as it would be written (JSON); Jinja escapes it for HTML afterwards
        return json.dumps(value, ensure_ascii=False, default=str)

    @site.context_processor
    def helpers():
        return {"file_url": file_url, "size": _size, "rev_span": _rev_span, "number": _number,
                "instrument_label": lambda name: INSTRUMENT_LABELS.get(name or "", name or ""),
                "family_label": lambda name: FAMILY_LABELS.get(name or "", name or ""),
                "simulated_text": SIMULATED_TEXT, "quote": lambda text: quote(str(text), safe="")}

    def listing(products: list[dict], *, heading: str, **context):
        simulated = sum(1 for p in products if p["simulated"])
        try:
            page = max(1, int(request.args.get("page", 1)))
        except ValueError:
            page = 1
        pages = max(1, math.ceil(len(products) / PAGE_SIZE))
        page = min(page, pages)
        shown = products[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        arguments = {k: v for k, v in request.args.items() if k != "page"}
        links = {number: url_for(request.endpoint, **{**arguments, **(request.view_args or {}), "page": number})
                 for number in range(1, pages + 1)} if pages > 1 else {}
        return render_template("gallery/list.html", products=shown, matched=len(products), heading=heading,
                               simulated_count=simulated, page=page, page_links=links, **context)

    @site.route("/")
    def index():
        arguments = {k: v.strip() for k, v in request.args.items() if v and v.strip()}
        conditions = {key: arguments.get(key) for key in ("instrument", "product_type", "src_name", "t1", "t2")}
        products = store.products(**conditions)
        rev = arguments.get("rev")
        if rev is not None:
            try:
                wanted = int(rev)
            except ValueError:
                wanted = None
            products = [p for p in products if wanted is not None and p["rev1"] is not None
                        and p["rev1"] <= wanted <= (p["rev2"] if p["rev2"] is not None else p["rev1"])]
        every = store.products()
        instruments = sorted({p["instrument"] for p in every if p["instrument"]} | {"isgri", "jemx1", "jemx2"})
        types = sorted({p["product_type"] for p in every if p["product_type"]})
        return listing(products, heading="Products", filters=arguments, instruments=instruments,
                       product_types=types, entities=store.entities(), show_filters=True,
                       total=len(every))

    @site.route("/product/<int:nid>")
    def product_page(nid: int):
        product = store.product(nid)
        if product is None:
            abort(404)
        view = views.get(store, product)
        others = {k: v for k, v in product["fields"].items()
                  if k not in ("instrument", "product_type", "src_name", "t1", "t2", "e1_kev", "e2_kev", "ra", "dec",
                               "product_id", "in_evidence", "detected_sources", "additional_information")}
        scripts = _bokeh_scripts(url_for("gallery.index") + "bokeh/") if view.components else ""
        return render_template("gallery/product.html", product=product, view=view, other_fields=others,
                               bokeh_scripts=scripts)

    @site.route("/node/<int:nid>")
    def node(nid: int):
        record = store.node(nid)
        if record is None:
            abort(404)
        if request.args.get("_format") == "hal_json":
            return Response(json.dumps(_gallery.hal_node(store, nid, _gallery.site_url())),
                            mimetype="application/hal+json")
        if record["bundle"] == "data_product":
            return redirect(url_for("gallery.product_page", nid=nid))
        if record["bundle"] == "astro_entity":
            return redirect(url_for("gallery.source_page", name=record["title"]))
        return redirect(url_for("gallery.observation_page", nid=nid))

    @site.route("/observation/<int:nid>")
    def observation_page(nid: int):
        observation = store.observation(nid=nid)
        if observation is None:
            abort(404)
        products = [p for p in store.products() if p["observation_nid"] == nid]
        return listing(products, heading=f"Observation {observation['title']}", observation=observation)

    @site.route("/taxonomy/term/<int:tid>")
    def term(tid: int):
        for vocabulary, names in (("instruments", _gallery.INSTRUMENTS), ("products", _gallery.product_terms())):
            for name in names:
                if _gallery.term_id(vocabulary, name) == tid:
                    return Response(json.dumps({"tid": [{"value": tid}], "name": [{"value": name}],
                                                "vid": [{"target_id": vocabulary}]}),
                                    mimetype="application/hal+json")
        abort(404)

    @site.route("/sources")
    def sources_page():
        name = (request.args.get("name") or "").strip()
        kind = (request.args.get("object_type") or "").strip()
        counts: dict[int, int] = {}
        for product in store.products():
            for entity in product["sources"]:
                counts[entity["nid"]] = counts.get(entity["nid"], 0) + 1
        entities = store.entities()
        types = sorted({e["object_type"] for e in entities if e["object_type"]})
        if name:
            key = _gallery.normalised_name(name)
            entities = [e for e in entities if key in _gallery.normalised_name(e["name"])
                        or any(key in _gallery.normalised_name(alias) for alias in e["object_ids"])]
        if kind:
            entities = [e for e in entities if (e["object_type"] or "") == kind]
        any_simulated = any(p["simulated"] for p in store.products())
        return render_template("gallery/sources.html", entities=entities, counts=counts, name=name, kind=kind,
                               types=types, any_simulated=any_simulated)

    @site.route("/source/<path:name>")
    def source_page(name: str):
        entity = store.entity(name)
        products = store.products(src_name=name)
        if entity is None and not products:
            abort(404)
        products.sort(key=lambda p: -int(p["in_evidence"] or 0))
        return listing(products, heading=entity["name"] if entity else name, entity=entity)

    @site.route("/revolutions")
    def revolutions_page():
        if request.args.get("rev"):
            try:
                return redirect(url_for("gallery.revolution_page", rev=int(request.args["rev"])))
            except ValueError:
                pass
        return render_template("gallery/revolutions.html", revolutions=store.revolutions(),
                               any_simulated=any(p["simulated"] for p in store.products()))

    @site.route("/revolution/<int:rev>")
    def revolution_page(rev: int):
        instrument = request.args.get("instrument") or None
        family = request.args.get("product_type") or None
        # products of this revolution: those spanning at most two revolutions (long-term ones would be everywhere)
        products = [p for p in store.products(instrument=instrument, product_type=family)
                    if p["rev1"] is not None and p["rev1"] <= rev
                    <= (p["rev2"] if p["rev2"] is not None else p["rev1"])
                    and (p["rev2"] if p["rev2"] is not None else p["rev1"]) - p["rev1"] <= 1]
        return listing(products, heading=f"Revolution {rev}", revolution=rev, tab_instrument=instrument or "",
                       tab_type=family or "")

    @site.route("/files/<int:fid>/<path:name>")
    def download(fid: int, name: str):
        record = store.file(fid)
        if record is None or not Path(record["path"]).exists():
            abort(404)
        mimetypes = {"image": None, "fits": "application/fits", "region": "text/plain", "yaml": "text/plain",
                     "table": "text/plain", "text": "text/plain", "json": "application/json",
                     "notebook": "application/x-ipynb+json"}
        inline = record["kind"] in ("image", "region", "yaml", "table", "text", "json")
        response = send_file(record["path"], mimetype=mimetypes.get(record["kind"]), as_attachment=not inline,
                             download_name=record["filename"], max_age=300)
        # uploaded HTML or SVG must not run scripts in the gallery's origin
        response.headers["Content-Security-Policy"] = "sandbox"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @site.route("/bokeh/static/<path:filename>")
    def bokeh_static(filename: str):
        from bokeh.util.paths import bokehjsdir
        from flask import send_from_directory
        return send_from_directory(str(bokehjsdir()), filename, max_age=3600)

    app.register_blueprint(site)
    return site


__all__ = ["register_site", "ProductView", "rerun_command", "notebook_info", "sources_from_table",
           "sources_from_region", "image_plot", "lightcurve_plot", "spectrum_plot", "SIMULATED_TEXT"]
