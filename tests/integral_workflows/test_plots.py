"""Publication-quality figures: every plot of integral_workflows built from synthetic inputs at extreme ranges.

The checks are structural, on the drawn figure (``fig.canvas.draw()`` and the renderer's window extents): no
two texts overlap (titles, axis and colourbar labels, source labels, tick labels of one axis), a light curve
shows at most about one point per pixel of its axis, the spectrum has its unfolded E²F(E) panel. Inputs are
seeded and small; nothing is timed.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from matplotlib.text import Text

from integral_workflows import calibration, lightcurve, moving, scw, spectrum, spiacs, transient
from integral_workflows import mosaic as mosaic_module
from integral_workflows.mosaic import SkyMosaic

from .test_spectrum import make_response, make_spectrum

SIMULATION_MARK = {"ORIGIN": "mmoda_local (SIMULATED DATA)", "CREATOR": "test_plots", "SIMULATD": True}
#: Names as crowded as the Galactic Centre's (lengths of real catalogue names).
CROWDED_NAMES = [
    "1E 1740.7-2942",
    "IGR J17464-2811",
    "GRS 1741.9-2853",
    "SLX 1744-299",
    "SLX 1744-300",
    "1A 1742-294",
    "KS 1741-293",
    "AX J1745.6-2901",
    "IGR J17475-2822",
    "XTE J1743-363",
    "SAX J1747.0-2853",
    "GX 3+1",
    "GX 1+4",
    "GX 354-0",
    "GX 340+0",
    "IGR J17497-2821",
    "H 1743-322",
    "1E 1743.1-2843",
    "Sgr A*",
    "IGR J17445-2747",
    "XTE J1739-302",
    "IGR J17544-2619",
    "SAX J1748.9-2021",
    "AX J1754.2-2754",
    "IGR J17391-3021",
]


# -- synthetic inputs ------------------------------------------------------------------------------------------------
def crowded_mosaic(n_sources: int = 30, *, seed: int = 1, spread_deg: float = 2.5):
    """An ISGRI-like significance mosaic (4.94′ pixels, 20° wide) with ``n_sources`` within a few degrees."""
    rng = np.random.default_rng(seed)
    pixel = 4.94 / 60.0
    n = 241
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [266.4, -29.0]
    wcs.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    wcs.wcs.cdelt = [-pixel, pixel]
    offsets = rng.uniform(-spread_deg, spread_deg, size=(n_sources, 2))
    x = (n - 1) / 2 + offsets[:, 0] / pixel
    y = (n - 1) / 2 + offsets[:, 1] / pixel
    significance = 10 ** rng.uniform(0.8, 2.5, n_sources)
    yy, xx = np.indices((n, n))
    image = rng.standard_normal((n, n))
    sigma_pix = 12.0 / 60.0 / pixel / 2.3548
    for xi, yi, s in zip(x, y, significance):
        image += s * np.exp(-0.5 * ((xx - xi) ** 2 + (yy - yi) ** 2) / sigma_pix**2)
    outside = np.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2) > 0.48 * n
    image[outside] = np.nan
    variance = np.where(outside, np.nan, 1.0)
    meta = {"INSTRUME": "IBIS", "E_MIN": 28.0, "E_MAX": 40.0, **SIMULATION_MARK}
    sky = SkyMosaic(image, variance, np.where(outside, 0.0, 1.0), wcs, meta)
    ra, dec = wcs.pixel_to_world_values(x, y)
    names = [
        CROWDED_NAMES[k] if k < len(CROWDED_NAMES) else f"NEW_{k - len(CROWDED_NAMES) + 1}" for k in range(n_sources)
    ]
    sources = Table(
        {
            "name": names,
            "ra": ra,
            "dec": dec,
            "x": x,
            "y": y,
            "significance": significance,
            "new_source": [name.startswith("NEW_") for name in names],
        }
    )
    sources.sort("significance", reverse=True)
    return sky, sources


def long_light_curve(*, years: float = 2.0, bin_s: float = 3000.0, seed: int = 2) -> lightcurve.LightCurve:
    """A light curve of contiguous ``bin_s`` bins over ``years`` (2 years of 3 ks bins: 21 038 bins)."""
    rng = np.random.default_rng(seed)
    n = int(years * 365.25 * 86400.0 / bin_s)
    half = bin_s / 2.0 / 86400.0
    time = 8000.0 + half + 2 * half * np.arange(n)
    truth = 10.0 + 3.0 * np.sin(2 * np.pi * (time - time[0]) / 180.0)
    error = np.full(n, 1.5)
    return lightcurve.LightCurve(
        source="GX 339-4",
        time=time,
        half_width=np.full(n, half),
        rate=truth + error * rng.standard_normal(n),
        error=error,
        fracexp=np.full(n, 0.9),
        instrument="ISGRI",
        band=(28.0, 40.0),
        meta=dict(SIMULATION_MARK),
    )


def short_light_curve(n: int = 40, *, seed: int = 3) -> lightcurve.LightCurve:
    """A few ScW bins: nothing to rebin for display."""
    rng = np.random.default_rng(seed)
    half = 1000.0 / 86400.0
    time = 8000.0 + half + 2.2 * half * np.arange(n)
    return lightcurve.LightCurve(
        source="Crab",
        time=time,
        half_width=np.full(n, half),
        rate=100.0 + rng.standard_normal(n),
        error=np.ones(n),
        fracexp=np.full(n, 0.9),
        instrument="ISGRI",
        band=(28.0, 40.0),
        meta=dict(SIMULATION_MARK),
    )


def isgri_like_response() -> spectrum.Response:
    """test_spectrum's synthetic response with a Gaussian redistribution only (8 % FWHM at 60 keV), 15–600 keV."""
    return make_response(redistribution=(1.0, 0.0))


def power_law_spectrum(response: spectrum.Response, *, band=(20.0, 600.0), seed: int = 4, exposure: float = 2e4):
    """test_spectrum's Γ = 2.1 Crab-like power law folded through ``response`` with Gaussian noise, grouped in ``band``."""
    measured = make_spectrum(seed, exposure=exposure, response=response)
    return spectrum.group(measured, min_energy=band[0], max_energy=band[1], factor=-5)


def calibration_inputs(*, seed: int = 5):
    """Crab rates of 20 years of ScWs (two visits a year) by two methods, and their yearly calibrations."""
    rng = np.random.default_rng(seed)
    visits = np.concatenate([1100.0 + 365.25 * k + np.array([60.0, 240.0]) for k in range(20)])
    ijd = np.sort(np.concatenate([v + rng.uniform(0, 3, 15) for v in visits]))
    per_scw = {}
    for method, level in (("psf_fit", 170.0), ("isgri_lc", 168.0)):
        rate = level * (1 - 0.01 * (ijd - ijd[0]) / 365.25) + rng.standard_normal(len(ijd))
        per_scw[method] = Table({"ijd": ijd, "rate": rate, "rate_error": np.full(len(ijd), 1.0)})
    calibrations = [
        calibration.CrabCalibration(
            calibration.period_means(t["ijd"], t["rate"], t["rate_error"], period="year"),
            instrument="isgri",
            e1_keV=28.0,
            e2_keV=40.0,
            method=method,
        )
        for method, t in per_scw.items()
    ]
    return per_scw, calibrations


def scw_table(*, days: float = 730.0, n: int = 600, seed: int = 6) -> Table:
    """Selected ScWs over ``days`` (``mjd_mid``, ``offaxis_deg``, ``good_isgri``)."""
    rng = np.random.default_rng(seed)
    mjd = np.sort(58000.0 + rng.uniform(0, days, n))
    return Table(
        {
            "scw_id": [f"{k:012d}" for k in range(n)],
            "mjd_mid": mjd,
            "offaxis_deg": rng.uniform(0, 10, n),
            "good_isgri": rng.uniform(1500, 3000, n),
        },
        meta={"query": {"radius": 10.0}},
    )


def body_stack(*, seed: int = 7) -> moving.BodyFrameStack:
    """A stack of 40 ScWs of pure noise in a body's frame."""
    rng = np.random.default_rng(seed)
    stack = moving.BodyFrameStack(pixel_deg=4.94 / 60, half_size_deg=2.0, psf_fwhm_deg=0.2)
    stack._weight[:] = 1.0
    stack._signal[:] = rng.standard_normal(stack.shape)
    stack._exposure[:] = 1.0
    stack.count = 40
    stack.reference = (10.0, 5.0)
    return stack


def moving_flux_inputs(*, seed: int = 8):
    """Per-ScW fluxes over two years and their monthly and yearly stacks."""
    rng = np.random.default_rng(seed)
    ijd = np.sort(calibration.period_bounds("2019")[0] + rng.uniform(0, 720, 400))
    per_scw = Table({"ijd": ijd, "flux": rng.normal(0, 5, len(ijd)), "flux_error": np.full(len(ijd), 5.0)})
    labels = [f"{y}-{m:02d}" for y in (2019, 2020) for m in range(1, 13)] + ["2019", "2020"]
    kinds = ["month"] * 24 + ["year"] * 2
    fluxes = Table(
        {
            "kind": kinds,
            "where": ["body"] * len(labels),
            "label": labels,
            "fit": rng.normal(0, 1, len(labels)),
            "fit_error": np.where(np.array(kinds) == "month", 1.0, 0.3),
        }
    )
    return SimpleNamespace(per_scw=per_scw), fluxes


def spiacs_inputs(*, seed: int = 9):
    """A 50 ms SPI-ACS light curve of ±300 s with a 2 s burst at T0, its background, search and limits."""
    rng = np.random.default_rng(seed)
    bin_s = 0.05
    time = np.arange(-300.0, 300.0, bin_s) + bin_s / 2
    expected = bin_s * (80_000.0 + 10.0 * time + 20_000.0 * ((time > 0) & (time < 2.0)))
    lc = spiacs.SpiAcsLightCurve(
        time,
        rng.poisson(expected).astype(float),
        np.full(len(time), bin_s),
        bin_s,
        "2020-01-01T00:00:00",
        meta={"simulated": True},
    )
    background = spiacs.fit_background(lc)
    search = spiacs.search_excess(lc, background)
    limits = spiacs.upper_limits(lc, background)
    return lc, background, search, limits


def field_inputs():
    """An attitude pointing at (0, 0), Z to the north, and an event with an error circle in the fields."""
    attitude = transient.Attitude(
        utc="2010-01-01T00:00:00",
        x=(0.0, 0.0),
        y=(90.0, 0.0),
        z=(0.0, 90.0),
        integral_ra=0.0,
        integral_dec=0.0,
        distance_km=100_000.0,
        revolution=None,
        answer={},
    )
    return attitude, transient.Event("GRB 100101A", "2010-01-01T00:00:00", 6.0, 3.0, 1.5, "GRB")


# -- what the figure shows ------------------------------------------------------------------------------------------
def _box(bbox):
    return (float(bbox.x0), float(bbox.y0), float(bbox.x1), float(bbox.y1))


def _shown(text) -> bool:
    return text is not None and text.get_visible() and bool(text.get_text().strip())


def tick_label_boxes(axis, renderer) -> list[tuple[str, tuple]]:
    """The drawn tick labels, major and minor, of an axis (inside its view, non-empty) with their display boxes."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(low), abs(high), 1.0)
    found = []
    for locs, ticks in (
        (axis.get_majorticklocs(), axis.get_major_ticks()),
        (axis.get_minorticklocs(), axis.get_minor_ticks()),
    ):
        for loc, tick in zip(locs, ticks):
            if not (low - slack <= loc <= high + slack):
                continue
            for label in (tick.label1, tick.label2):
                if _shown(label):
                    found.append((label.get_text(), _box(label.get_window_extent(renderer))))
    return found


def text_boxes(figure) -> list[tuple[str, str, tuple]]:
    """Every text a reader sees, as (kind, text, display box): titles, axis and colour-bar labels, tick labels,
    annotations (source labels), legends and the figure's own texts. The figure is drawn first.

    The coordinate labels of a WCSAxes (astropy's, outside the map) are not included.
    """
    if not hasattr(figure.canvas, "get_renderer"):  # a bare Figure: give it the Agg canvas savefig would use
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = []

    def add(kind, text):
        if _shown(text):
            # an annotation's own extent includes its leader line: the text's alone is what must stay clear
            found.append((kind, text.get_text(), _box(Text.get_window_extent(text, renderer))))

    for ax in figure.axes:
        for title in (ax.title, ax._left_title, ax._right_title):
            add("title", title)
        for text in ax.texts:
            add("label", text)
        legend = ax.get_legend()
        if legend is not None:
            add("legend", legend.get_title())
            for text in legend.get_texts():
                add("legend", text)
        if hasattr(ax, "coords"):
            # WCSAxes draws its own tick and axis labels outside the frame (and keeps them apart itself): the
            # source labels are checked to stay inside the frame instead
            continue
        for axis in ax._axis_map.values():
            add("axis label", axis.label)
            add("offset", axis.offsetText)
            for text, box in tick_label_boxes(axis, renderer):
                found.append((f"tick {id(axis)}", text, box))
        for child in ax.child_axes:
            for axis in child._axis_map.values():
                add("axis label", axis.label)
                for text, box in tick_label_boxes(axis, renderer):
                    found.append((f"tick {id(axis)}", text, box))
    for legend in figure.legends:
        add("legend", legend.get_title())
        for text in legend.get_texts():
            add("legend", text)
    for text in figure.texts:  # the suptitle among them
        add("figure text", text)
    return found


def overlaps(found, *, tolerance_px: float = 0.5, tick_gap_px: float = 2.0) -> list:
    """Pairs of texts whose boxes overlap by more than ``tolerance_px`` in both directions; two tick labels
    of one axis must moreover be at least ``tick_gap_px`` apart (``3×10¹4×10¹`` touches without overlapping)."""
    pairs = []
    for (kind_a, a, box_a), (kind_b, b, box_b) in itertools.combinations(found, 2):
        dx = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
        dy = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
        limit = -tick_gap_px if kind_a == kind_b and kind_a.startswith("tick") else tolerance_px
        if dx > limit and dy > limit:
            pairs.append(((kind_a, a), (kind_b, b)))
    return pairs


def assert_readable(figure):
    """No two texts of the figure overlap, and none is empty-boxed."""
    found = text_boxes(figure)
    assert found, "the figure shows no text"
    clashes = overlaps(found)
    assert not clashes, f"overlapping texts: {clashes[:5]}"
    return found


def points_drawn(ax) -> int:
    """The most points any line of the axes draws (the data of an errorbar or a step curve)."""
    return max(len(line.get_xdata()) for line in ax.get_lines())


# -- sky maps ---------------------------------------------------------------------------------------------------------
def test_crowded_field_labels_avoid_each_other_and_numbers_have_a_key():
    sky, sources = crowded_mosaic(30)
    figure = mosaic_module.plot(sky, sources=sources, title="Galactic Centre, rev 2345, ISGRI 28–40 keV, obs 01234")
    found = assert_readable(figure)
    ax = figure.axes[0]
    labels = [text for kind, text, _ in found if kind == "label"]
    numbers = [text for text in labels if text.isdigit()]
    names = [text for text in labels if not text.isdigit()]
    # the brightest sources keep their names; the crowd is numbered, every number explained in the key
    assert len(names) >= 10 and numbers
    assert str(sources["name"][0]) in names
    key = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert [entry.split()[0] for entry in key if entry.split()[0].isdigit()] == [
        str(k + 1) for k in range(len(numbers))
    ]
    named_or_keyed = set(names) | {entry.split(maxsplit=1)[1] for entry in key if entry.split()[0].isdigit()}
    unlabelled = sum(int(entry.split()[0]) for entry in key if "without room" in entry)
    assert len(named_or_keyed) + unlabelled == len(sources)
    # labels stay inside the map, and the title clears the colour bar
    frame = _box(ax.bbox)
    for kind, _, box in found:
        if kind == "label":
            assert frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
    renderer = figure.canvas.get_renderer()
    title, colorbar = _box(ax.title.get_window_extent(renderer)), _box(figure.axes[1].get_window_extent(renderer))
    assert not overlaps([("title", "", title), ("colorbar", "", colorbar)])
    assert figure.axes[1].get_ylabel() == "significance (σ)"
    plt.close(figure)


def test_label_placement_is_deterministic():
    sky, sources = crowded_mosaic(30)
    placed = []
    for _ in range(2):
        figure = mosaic_module.plot(sky, sources=sources)
        ax = figure.axes[0]
        placed.append([(text.get_text(), tuple(np.round(text.xyann, 6))) for text in ax.texts])
        plt.close(figure)
    assert placed[0] == placed[1]


def test_sparse_field_is_labelled_by_name_without_a_key():
    sky, sources = crowded_mosaic(4, spread_deg=6.0)
    figure = mosaic_module.plot(sky, sources=sources)
    found = assert_readable(figure)
    assert sorted(text for kind, text, _ in found if kind == "label") == sorted(sources["name"])
    assert not figure.legends
    plt.close(figure)


def test_labels_on_a_callers_axes():
    sky, sources = crowded_mosaic(30)
    figure = plt.figure(figsize=(6, 5))
    ax = figure.add_subplot(projection=sky.wcs)
    assert mosaic_module.plot(sky, sources=sources, ax=ax) is figure
    found = text_boxes(figure)
    assert not overlaps([item for item in found if item[0] == "label"])
    plt.close(figure)


# -- light curves -----------------------------------------------------------------------------------------------------
def test_two_years_of_3ks_bins_are_shown_rebinned_and_stated():
    curve = long_light_curve()
    assert len(curve) == 21038
    figure = lightcurve.plot(curve, flux_calibration=170.0, energy_flux_per_mcrab=7.3e-12)
    assert_readable(figure)
    ax = figure.axes[0]
    width_px = ax.bbox.width
    assert 0 < points_drawn(ax) <= width_px
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    data_label = next(label for label in labels if label.startswith("GX 339-4"))
    assert "21038 bins of 3 ks" in data_label and "rebinned to 2 d" in data_label and "display only" in data_label
    # the statistics are those of the curve's own bins, and the curve is untouched
    assert any("/21037)" in label for label in labels)
    assert len(curve) == 21038 and "REBIN_S" not in curve.meta
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "2022" in ticks and not any(t.endswith(".00") for t in ticks)
    plt.close(figure)


def test_a_few_bins_are_drawn_as_they_are():
    curve = short_light_curve(40)
    figure = lightcurve.plot(curve, time_axis="mjd")
    assert_readable(figure)
    assert points_drawn(figure.axes[0]) == 40
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert not any("rebinned" in label for label in labels)
    plt.close(figure)


def test_display_rebinning_on_a_callers_narrow_axes():
    curve = long_light_curve(years=0.5)
    figure, ax = plt.subplots(figsize=(3, 2))
    lightcurve.plot(curve, ax=ax)
    figure.canvas.draw()
    assert points_drawn(ax) <= ax.bbox.width
    assert any("rebinned" in text.get_text() for text in ax.get_legend().get_texts())
    plt.close(figure)


def test_display_bin_is_a_readable_duration_of_at_least_a_pixel():
    from integral_workflows.plotting import display_bin_s, duration_text

    year = 365.25 * 86400.0
    assert display_bin_s(2 * year, 3000.0, 800) == 2 * 86400.0  # 2 px = 1.8 d → 2 d
    assert display_bin_s(86400.0, 3000.0, 800) is None  # 3 ks over a day: 28 px each
    assert display_bin_s(600.0, 0.05, 800, pixels_per_bin=1.0) == 1.0
    assert [duration_text(s) for s in (0.05, 20.0, 3000.0, 6 * 3600.0, 86400.0, year)] == [
        "50 ms",
        "20 s",
        "3 ks",
        "6 h",
        "1 d",
        "1 yr",
    ]


# -- spectra ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("band", [(25.0, 45.0), (20.0, 600.0)], ids=["short log range", "wide"])
def test_spectrum_has_counts_unfolded_and_residual_panels(band):
    response = isgri_like_response()
    measured = power_law_spectrum(response, band=band)
    fit = spectrum.fit_power_law(measured, response, energy_range=(band[0], min(band[1], 300.0)))
    figure = spectrum.plot(measured, response, fit)
    found = assert_readable(figure)
    counts, unfolded, residuals, erg = figure.axes
    assert "ct s⁻¹ keV⁻¹" in counts.get_ylabel()
    assert unfolded.get_ylabel() == "E² F(E) (keV² ph cm⁻² s⁻¹ keV⁻¹)" == spectrum.E2F_LABEL
    assert erg.get_ylabel() == "E² F(E) (erg cm⁻² s⁻¹)"
    assert "σ" in residuals.get_ylabel() and residuals.get_xlabel() == "energy (keV)"
    assert "[SIMULATED DATA]" in counts.get_title()
    # the energy axis has plain labels (no "3×10¹4×10¹"), at least two of them
    energy_ticks = [text for kind, text, box in found if kind.startswith("tick") and box[3] < residuals.bbox.y0 + 1]
    assert len(energy_ticks) >= 2 and not any("times" in text for text in energy_ticks)
    plt.close(figure)


def test_spectrum_without_fit_has_no_unfolded_panel():
    response = isgri_like_response()
    figure = spectrum.plot(power_law_spectrum(response, band=(25.0, 45.0)), response)
    assert len(figure.axes) == 2
    assert_readable(figure)
    plt.close(figure)


def test_unfolded_spectrum_of_the_model_itself_is_e2_times_the_model():
    response = isgri_like_response()
    measured = power_law_spectrum(response)
    fit = spectrum.fit_power_law(measured, response, energy_range=(20.0, 300.0))
    binned = measured.binned(response=response)
    exact = dataclasses_replace_rate(measured, fit.model_rate)
    points = spectrum.unfolded_spectrum(exact, response, fit)
    assert len(points["energy"]) == len(binned)
    # data = model: the points are E² × the model's mean over each group, within 2 % of E² N(E) at the centre
    np.testing.assert_allclose(points["e2f"], points["energy"] ** 2 * fit.photon_spectrum(points["energy"]), rtol=0.02)
    assert np.all(points["e2f_error"] > 0)
    # and the noisy data scatter about it by their errors
    noisy = spectrum.unfolded_spectrum(measured, response, fit)
    pulls = (noisy["e2f"] - points["e2f"]) / noisy["e2f_error"]
    assert np.all(np.abs(pulls[noisy["in_fit"]]) < 4)


def dataclasses_replace_rate(measured, channel_rate):
    """The spectrum with every channel's rate replaced (errors kept)."""
    import dataclasses

    return dataclasses.replace(measured, rate=np.asarray(channel_rate, dtype=float))


# -- log ticks at any span --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("low", "high"),
    [(25.0, 45.0), (30.0, 33.0), (100.0, 101.0), (20.0, 600.0), (1e-5, 1.0), (0.05, 10.0), (1e-9, 1e3), (0.5, 4.0)],
)
@pytest.mark.parametrize("size", [(2.0, 1.5), (8.0, 4.0)], ids=["small", "large"])
def test_log_axes_are_readable_at_any_span(low, high, size):
    from integral_workflows.plotting import readable_log_axis

    figure, ax = plt.subplots(figsize=size, layout="constrained")
    ax.plot([low, high], [low, high])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    readable_log_axis(ax.xaxis)
    readable_log_axis(ax.yaxis)
    found = assert_readable(figure)
    for axis in ("x", "y"):
        ticks = tick_label_boxes(getattr(ax, f"{axis}axis"), figure.canvas.get_renderer())
        assert len(ticks) >= 2, (axis, ticks)
        # one style per axis
        assert len({"$" in text for text, _ in ticks}) == 1
    assert found
    plt.close(figure)


def test_log_ticks_by_span():
    from integral_workflows.plotting import log_tick_texts, log_ticks

    major, minor = log_ticks(25.0, 45.0)  # a quarter of a decade: linear nice values
    assert list(major) == [25.0, 30.0, 35.0, 40.0, 45.0] and 27.0 in minor
    major, minor = log_ticks(25.0, 90.0)  # half a decade: every digit
    assert list(major) == [30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0] and 35.0 in minor
    major, _ = log_ticks(20.0, 600.0)
    assert list(major) == [20.0, 50.0, 100.0, 200.0, 500.0]
    major, minor = log_ticks(1e-5, 1.0)
    assert list(major) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0] and 2e-3 in minor
    major, _ = log_ticks(30.0, 33.0)
    assert len(major) >= 2 and np.all(np.diff(major) > 0)
    assert log_tick_texts([20.0, 50.0, 100.0]) == ["20", "50", "100"]
    assert log_tick_texts([1e-5, 1.0])[1] == r"$\mathdefault{10^{0}}$"


# -- the other figures ------------------------------------------------------------------------------------------------
def _calibration_figure():
    per_scw, calibrations = calibration_inputs()
    return calibration.plot_calibration(per_scw, calibrations, title="Crab ISGRI 28–40 keV", simulated=True)


def _stack_figure():
    return moving.plot_stack(body_stack(), title="Jupiter", control_offset_pix=(10, 0), simulated=True)


def _histogram_figure():
    rng = np.random.default_rng(10)
    samples = {"body stack": rng.standard_normal(5000), "control": rng.standard_normal(3000)}
    return moving.plot_significance_histogram(samples, title="Jupiter", simulated=True)


def _flux_time_figure():
    result, fluxes = moving_flux_inputs()
    return moving.plot_flux_time(result, fluxes, body="Jupiter", unit="mCrab", band_keV=(28.0, 40.0), simulated=True)


def _selection_figure():
    table = scw_table()
    return scw.plot_selection_summary(table, cut=table[:50], title="Crab")


def _short_selection_figure():
    return scw.plot_offaxis_vs_time(scw_table(days=20.0, n=60), title="Crab, 20 days")


def _spiacs_figure():
    lc, background, search, _ = spiacs_inputs()
    return spiacs.plot_light_curve(lc, background, search, display_bin_s=0.25)


def _spiacs_significance_figure():
    _, _, search, limits = spiacs_inputs()
    return spiacs.plot_significance(search, ul_table=limits)


def _transient_spiacs_figure():
    lc, background, search, _ = spiacs_inputs()
    result = SimpleNamespace(has_data=True, light_curve=lc, background=background, search=search)
    return transient.plot_spiacs(result, field_inputs()[1])


def _fields_figure():
    return transient.plot_fields(*field_inputs(), simulated=True)


@pytest.mark.parametrize(
    "build",
    [
        _calibration_figure,
        _stack_figure,
        _histogram_figure,
        _flux_time_figure,
        _selection_figure,
        _short_selection_figure,
        _spiacs_figure,
        _spiacs_significance_figure,
        _transient_spiacs_figure,
        _fields_figure,
    ],
    ids=lambda build: build.__name__.strip("_").removesuffix("_figure"),
)
def test_every_other_figure_is_readable(build):
    figure = build()
    assert_readable(figure)
    plt.close(figure)


def test_spiacs_light_curve_is_summed_to_a_pixel_for_display():
    lc, background, search, _ = spiacs_inputs()
    figure = spiacs.plot_light_curve(lc, background, search)  # 50 ms bins over 600 s
    ax = figure.axes[0]
    figure.canvas.draw()
    steps = ax.get_lines()[0]
    assert len(steps.get_xdata()) <= ax.bbox.width
    assert "for display; data in 0.05 s" in ax.get_legend().get_texts()[0].get_text()
    plt.close(figure)
