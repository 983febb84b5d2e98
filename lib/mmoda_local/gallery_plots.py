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


def image_hdu_index(hdul) -> tuple[int, str] | None:
    """Which HDU of a FITS file the gallery shows as its image (the one :func:`image_plot` draws).

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The file.

    Returns
    -------
    (int, str) or None
        The HDU's index in ``hdul`` (what JS9 is given as ``file.fits[index]``) and what it holds
        (``significance``, ``intensity``... from ``IMATYPE``, else the HDU's name); None when the
        file holds no 2-D image.
    """
    hdu, what = _image_hdu(hdul)
    if hdu is None:
        return None
    return next(index for index, candidate in enumerate(hdul) if candidate is hdu), what


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


def response(hdul_list) -> dict | None:
    """The spectral response among the attachments: the RMF's dense matrix times the ARF, if one matches.

    Returns
    -------
    dict or None
        ``{"matrix": (n_energies, n_channels) cm², "e_lo", "e_hi": keV, "first_channel": int}``; None
        without an RMF.
    """
    matrix_hdu, arf = None, None
    for hdul in hdul_list:
        for hdu in hdul:
            names = {c.name.upper() for c in (getattr(hdu, "columns", None) or [])}
            if {"ENERG_LO", "ENERG_HI", "MATRIX", "F_CHAN", "N_CHAN"} <= names and matrix_hdu is None:
                matrix_hdu = hdu
            elif {"ENERG_LO", "ENERG_HI", "SPECRESP"} <= names and arf is None:
                arf = hdu
    if matrix_hdu is None:
        return None
    data = matrix_hdu.data
    column = matrix_hdu.columns.names.index(next(n for n in matrix_hdu.columns.names if n.upper() == "F_CHAN")) + 1
    first = int(matrix_hdu.header.get(f"TLMIN{column}", 1))
    n_channels = int(matrix_hdu.header.get("DETCHANS", 0)) or None
    rows = []
    for row in data:
        f_chan = np.atleast_1d(np.asarray(row["F_CHAN"], dtype=int)) - first
        n_chan = np.atleast_1d(np.asarray(row["N_CHAN"], dtype=int))
        values = np.atleast_1d(np.asarray(row["MATRIX"], dtype=float))
        rows.append((f_chan, n_chan, values))
    if n_channels is None:
        n_channels = max((int(np.max(f + n)) for f, n, _v in rows if len(f)), default=0)
    matrix = np.zeros((len(rows), n_channels))
    for i, (f_chan, n_chan, values) in enumerate(rows):
        start = 0
        for f, n in zip(f_chan, n_chan):
            matrix[i, f : f + n] = values[start : start + n]
            start += n
    if arf is not None and len(arf.data) == len(rows):
        matrix *= np.asarray(arf.data["SPECRESP"], dtype=float)[:, None]
    return {
        "matrix": matrix,
        "e_lo": np.asarray(data["ENERG_LO"], dtype=float),
        "e_hi": np.asarray(data["ENERG_HI"], dtype=float),
        "first_channel": first,
    }


def fit_power_law(rate, error, use, folding: dict) -> dict | None:
    """A forward-folded power law ``K E^-Γ`` (photons/cm²/s/keV) fitted to a count-rate spectrum by χ².

    Γ is scanned on a 0.005 grid from 0 to 5 and K, linear, solved for each Γ (no optimiser to go astray).

    Parameters
    ----------
    rate, error : numpy.ndarray
        Rates and errors per channel (count/s), in the matrix's channel order.
    use : numpy.ndarray of bool
        Channels fitted (good quality, finite, positive error).
    folding : dict
        :func:`response`.

    Returns
    -------
    dict or None
        ``gamma``, ``norm``, ``chi2``, ``dof`` and ``model`` (folded rate per channel); None when fewer than
        three channels can be fitted.
    """
    matrix, e_lo, e_hi = folding["matrix"], folding["e_lo"], folding["e_hi"]
    if matrix.shape[1] != len(rate) or np.count_nonzero(use) < 3:
        return None
    e_lo = np.maximum(e_lo, 1e-3)
    weight = 1.0 / error[use] ** 2
    best = None
    for gamma in np.arange(0.0, 5.0001, 0.005):
        if abs(gamma - 1.0) < 1e-9:
            photons = np.log(e_hi / e_lo)
        else:
            photons = (e_hi ** (1.0 - gamma) - e_lo ** (1.0 - gamma)) / (1.0 - gamma)
        shape = photons @ matrix
        m = shape[use]
        denominator = np.sum(m * m * weight)
        if denominator <= 0:
            continue
        norm = np.sum(rate[use] * m * weight) / denominator
        chi2 = float(np.sum((rate[use] - norm * m) ** 2 * weight))
        if best is None or chi2 < best["chi2"]:
            best = {"gamma": float(gamma), "norm": float(norm), "chi2": chi2, "model": norm * shape}
    if best is not None:
        best["dof"] = int(np.count_nonzero(use)) - 2
    return best


def spectrum_plot(hdu, bounds: dict | None, *, title: str, simulated: bool, folding: dict | None = None):
    """A bokeh count spectrum, rate per keV against energy (per channel without an RMF), log-log.

    With the response (:func:`response`), the forward-folded power-law fit is drawn over the data and its
    residuals, (data − model)/σ, in a panel below.
    """
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, HoverTool, Span
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
    fit = None
    if folding is not None:
        order = channel - folding["first_channel"]
        if order.min() >= 0 and order.max() < folding["matrix"].shape[1] and len(set(order)) == len(order):
            ordered_rate = np.zeros(folding["matrix"].shape[1])
            ordered_error = np.ones(folding["matrix"].shape[1])
            use = np.zeros(folding["matrix"].shape[1], dtype=bool)
            ordered_rate[order], ordered_error[order] = rate, error
            use[order] = (quality == 0) & np.isfinite(rate) & np.isfinite(error) & (error > 0)
            fit = fit_power_law(ordered_rate, ordered_error, use, folding)
    if fit is None:
        return plot
    model = fit["model"][channel - folding["first_channel"]]
    scale = width if bounds else np.ones_like(model)
    with np.errstate(invalid="ignore", divide="ignore"):
        model_y = model / scale
        residual = (rate - model) / error
    shown = keep & np.isfinite(model_y) & (model_y > 0)
    sort = np.argsort(x[shown])
    model_source = ColumnDataSource({"x": x[shown][sort], "y": model_y[shown][sort]})
    label = f"folded power law, Γ = {fit['gamma']:.2f}, χ² = {fit['chi2']:.1f} / {fit['dof']} dof"
    plot.line(
        "x", "y", source=model_source, line_color="#1f77b4", line_width=2, legend_label=label, name="folded-model"
    )
    plot.legend.location = "bottom_left"
    plot.legend[0].name = "folded-model-legend"
    resid_source = ColumnDataSource(
        {"x": x[keep], "r": residual[keep], "lo": residual[keep] - 1.0, "hi": residual[keep] + 1.0}
    )
    residuals = figure(
        x_axis_type="log",
        x_range=plot.x_range,
        sizing_mode="stretch_width",
        height=180,
        tools="pan,wheel_zoom,box_zoom,reset",
        x_axis_label=x_label,
        y_axis_label="(data − model)/σ",
        name="gallery-spectrum-residuals",
    )
    residuals.add_layout(Span(location=0.0, dimension="width", line_color="#1f77b4", line_width=1))
    residuals.segment("x", "lo", "x", "hi", source=resid_source, line_color="#a05a2c")
    residuals.scatter("x", "r", source=resid_source, size=5, color="#7a3b12", name="residual-points")
    plot.xaxis.axis_label = None
    return column(plot, residuals, sizing_mode="stretch_width")
