"""Interactive bokeh plots of FITS products for the gallery's pages: images with sources, light curves, spectra."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .gallery_attachments import finite_or_none

#: Scale (σ) of the asinh stretch of significance maps: linear below it, logarithmic above.
SIGNIFICANCE_SOFTENING = 2.0

#: Largest side of an image sent to the browser; larger mosaics are block-averaged (the FITS stays whole).
MAX_IMAGE_SIDE = 800


def _image_hdu(hdul):
    """The HDU to show: the significance map if there is one, else the first 2-D image."""
    candidates = [
        hdu for hdu in hdul if getattr(hdu, "is_image", False) and hdu.data is not None and np.ndim(hdu.data) >= 2
    ]
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
        low, high = np.percentile(finite, [1.0, 99.8]).tolist() if finite.size else (0.0, 1.0)
    mapper = LinearColorMapper(palette="Magma256", low=low, high=high if high > low else low + 1.0, nan_color="#20242c")
    label = f"{title} – {what or 'image'}" + ("  [SIMULATED DATA]" if simulated else "")
    # square pixels: the frame keeps the image's aspect whatever the page width (ranges follow the glyph)
    plot = figure(
        title=label,
        match_aspect=True,
        aspect_scale=1.0,
        sizing_mode="scale_width",
        width=int(600 * nx / ny) + 160,
        height=640,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        x_axis_label="x (pixel)",
        y_axis_label="y (pixel)",
        name="gallery-image-plot",
    )
    plot.x_range.range_padding = plot.y_range.range_padding = 0.0
    # the colours come from the stretched "image", the hover shows the map's own "value"
    pixels = ColumnDataSource({"image": [display.astype(np.float32)], "value": [shown.astype(np.float32)]})
    renderer = plot.image(image="image", source=pixels, x=-0.5, y=-0.5, dw=nx, dh=ny, color_mapper=mapper)
    plot.add_tools(
        HoverTool(renderers=[renderer], tooltips=[("x, y", "$x{0.0}, $y{0.0}"), (what or "value", "@value{0.00}")])
    )
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
        radius = [
            max(smallest, (s.get("radius_deg") or 0.2) / pixel_deg) if pixel_deg > 0 else smallest for s in sources
        ]
        colours = [s.get("color") or "lime" for s in sources]
        data = ColumnDataSource(
            {
                "x": x[inside],
                "y": y[inside],
                "r": np.asarray(radius)[inside],
                "name": [s["name"] for s, keep in zip(sources, inside) if keep],
                "ra": ra[inside],
                "dec": dec[inside],
                "flux": ["" if s["flux"] is None else f"{s['flux']:.4g}" for s, k in zip(sources, inside) if k],
                "sig": [
                    "" if s["significance"] is None else f"{s['significance']:.1f}"
                    for s, k in zip(sources, inside)
                    if k
                ],
                "colour": [
                    c if c in ("red", "green", "lime", "cyan", "yellow", "white", "magenta", "blue") else "lime"
                    for c, k in zip(colours, inside)
                    if k
                ],
            }
        )
        circles = plot.circle(
            x="x",
            y="y",
            radius="r",
            source=data,
            fill_alpha=0.0,
            line_color="colour",
            line_width=2,
            name="gallery-sources",
        )
        plot.add_layout(
            LabelSet(
                x="x",
                y="y",
                text="name",
                source=data,
                x_offset=6,
                y_offset=6,
                text_color="white",
                text_font_size="10px",
            )
        )
        plot.add_tools(
            HoverTool(
                renderers=[circles],
                tooltips=[
                    ("source", "@name"),
                    ("RA, Dec", "@ra{0.000}, @dec{0.000}"),
                    ("significance", "@sig"),
                    ("flux", "@flux"),
                ],
            )
        )
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
                return {
                    int(c): (float(lo), float(hi)) for c, lo, hi in zip(data["CHANNEL"], data["E_MIN"], data["E_MAX"])
                }
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
    mjdref = finite_or_none(header.get("MJDREF"))
    if mjdref is None:
        mjdref = finite_or_none(header.get("MJDREFI", 0.0)) or 0.0
        mjdref += finite_or_none(header.get("MJDREFF", 0.0)) or 0.0
    time = np.asarray(data["TIME"], dtype=float) * scale
    rate = np.asarray(data["RATE" if "RATE" in names else "FLUX"], dtype=float)
    error = np.asarray(data["ERROR"], dtype=float) if "ERROR" in names else np.zeros_like(rate)
    keep = np.isfinite(time) & np.isfinite(rate)
    mjd = time[keep] + mjdref
    # MJD 40587 is 1970-01-01: bokeh's datetime axis counts milliseconds from there
    millis = (mjd - 40587.0) * 86400e3
    source = ColumnDataSource(
        {
            "t": millis,
            "mjd": mjd,
            "rate": rate[keep],
            "lo": rate[keep] - error[keep],
            "hi": rate[keep] + error[keep],
            "err": error[keep],
        }
    )
    band = ""
    if header.get("E_MIN") is not None and header.get("E_MAX") is not None:
        band = f" {float(header['E_MIN']):g}–{float(header['E_MAX']):g} keV"
    name = str(header.get("NAME", "") or "")
    label = f"{name or title}{band} light curve" + ("  [SIMULATED DATA]" if simulated else "")
    plot = figure(
        title=label,
        x_axis_type="datetime",
        sizing_mode="stretch_width",
        height=380,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        y_axis_label=f"rate ({hdu.columns['RATE'].unit or 'count/s'})" if "RATE" in names else "flux",
        name="gallery-lightcurve-plot",
    )
    plot.xaxis.formatter = DatetimeTickFormatter(hours="%Y-%m-%d %H:%M", days="%Y-%m-%d", months="%Y-%m", years="%Y")
    # error bars as glyphs (not annotations) so that the axes' auto-range includes them
    plot.segment("t", "lo", "t", "hi", source=source, line_color="#4c78a8")
    points = plot.scatter("t", "rate", source=source, size=5, color="#1f4e79")
    plot.add_tools(
        HoverTool(renderers=[points], tooltips=[("MJD", "@mjd{0.0000}"), ("rate", "@rate{0.000} ± @err{0.000}")])
    )
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
        exposure = finite_or_none(hdu.header.get("EXPOSURE")) or 1.0
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
    source = ColumnDataSource(
        {
            "x": x[keep],
            "y": y[keep],
            "lo": np.maximum(y[keep] - dy[keep], y[keep] * 1e-3),
            "hi": y[keep] + dy[keep],
            "channel": channel[keep],
        }
    )
    name = str(hdu.header.get("NAME", hdu.header.get("OBJECT", "")) or "")
    label = f"{name or title} spectrum" + ("  [SIMULATED DATA]" if simulated else "")
    plot = figure(
        title=label,
        x_axis_type="log",
        y_axis_type="log",
        sizing_mode="stretch_width",
        height=380,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        x_axis_label=x_label,
        y_axis_label=y_label,
        name="gallery-spectrum-plot",
    )
    plot.segment("x", "lo", "x", "hi", source=source, line_color="#a05a2c")
    points = plot.scatter("x", "y", source=source, size=5, color="#7a3b12")
    plot.add_tools(
        HoverTool(
            renderers=[points], tooltips=[("channel", "@channel"), (x_label, "@x{0.00}"), (y_label, "@y{0.000e}")]
        )
    )
    return plot
