"""Figure helpers shared by the plots: readable ticks at any range, labels that avoid each other, display binning.

Design notes (tick thinning, label placement, display bins): ``docs/plots.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Below this many decades a log axis gets linear "nice" ticks (1-2-2.5-5 steps): at most one digit fits in it.
LINEAR_BELOW_DECADES = 0.3
#: Free space kept between two tick labels, in units of the label font size.
TICK_LABEL_GAP_EM = 0.6
#: Display bins of a time series (s), smallest first: :func:`display_bin_s` takes the first wide enough.
NICE_BINS_S = (
    1e-3,
    2e-3,
    5e-3,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    2 * 3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    2 * 86400.0,
    3 * 86400.0,
    5 * 86400.0,
    7 * 86400.0,
    10 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
    61 * 86400.0,
    91.3125 * 86400.0,
    182.625 * 86400.0,
    365.25 * 86400.0,
)


# -- ticks --------------------------------------------------------------------------------------------------------
def _mantissa_rank(value: float) -> int:
    """How important a tick value is: 0 first, then decades, 5, 2, 3 and the rest (lower is more important)."""
    if value == 0:
        return -1
    mantissa = abs(value) / 10 ** math.floor(math.log10(abs(value)) + 1e-9)
    for rank, wanted in enumerate((1.0, 5.0, 2.0, 3.0)):
        if abs(mantissa - wanted) < 1e-6 * wanted:
            return rank
    return 4


def log_tick_text(value: float, *, plain: bool | None = None) -> str:
    """A short tick label: plain (``0.02``, ``300``) or ``10^n`` / ``m×10^n`` (mathtext).

    Parameters
    ----------
    value : float
    plain : bool, optional
        Force the style; by default plain for 0.001 ≤ |v| < 10⁴.
    """
    if value == 0 or not np.isfinite(value):
        return "0" if value == 0 else ""
    magnitude = abs(value)
    if plain is None:
        plain = 1e-3 <= magnitude < 1e4
    if plain:
        return f"{round(value, 6):.6g}".replace("-", "\N{MINUS SIGN}")
    exponent = math.floor(math.log10(magnitude) + 1e-9)
    mantissa = value / 10**exponent
    sign = "-" if mantissa < 0 else ""
    if abs(abs(mantissa) - 1.0) < 1e-6:
        return rf"$\mathdefault{{{sign}10^{{{exponent}}}}}$"
    return rf"$\mathdefault{{{mantissa:.3g}\times10^{{{exponent}}}}}$"


def log_tick_texts(values: Sequence[float]) -> list[str]:
    """Labels of the ticks of one axis in one style: all plain when every value allows it, else all powers of 10."""
    values = [float(v) for v in values]
    plain = all(v == 0 or 1e-3 <= abs(v) < 1e4 for v in values if np.isfinite(v))
    return [log_tick_text(v, plain=plain) for v in values]


def sci_text(value: float, digits: int = 3) -> str:
    """A number in scientific notation with Unicode superscripts: ``7.3×10⁻¹²`` (plain below 10⁴ from 0.01)."""
    if value == 0 or not np.isfinite(value) or 1e-2 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    superscript = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa:.{digits}g}×10{superscript}"


def log_ticks(low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Major and minor tick values for a log axis from ``low`` to ``high`` (both positive).

    Two decades or more: majors at decades (every n-th decade beyond 8), minors at 2-9. From 0.7 to 2 decades:
    majors at 1, 2, 5, minors at every digit. From :data:`LINEAR_BELOW_DECADES` to 0.7: majors at every digit,
    minors halfway. Below: linear nice values (``MaxNLocator``), minors at a fifth of their step.
    """
    from matplotlib.ticker import MaxNLocator

    low, high = sorted((float(low), float(high)))
    decades = math.log10(high / low)
    first, last = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
    # parsed, not computed: 10.0 ** -5 by numpy is 9.999999999999999e-06
    powers = np.array([float(f"1e{k}") for k in range(first, last + 1)])

    def grid(subs):
        values = (powers[:, None] * np.asarray(subs, dtype=float)[None, :]).ravel()
        return values[(values >= low * (1 - 1e-9)) & (values <= high * (1 + 1e-9))]

    if decades < LINEAR_BELOW_DECADES:
        major = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
        step = float(np.diff(major[:2])[0]) if len(major) > 1 else (high - low)
        minor = np.arange(math.floor(low / (step / 5)), math.ceil(high / (step / 5)) + 1) * (step / 5)
        major, minor = major[(major >= low) & (major <= high)], minor[(minor >= low) & (minor <= high)]
    elif decades < 0.7:
        major, minor = grid(range(1, 10)), grid(np.arange(1.5, 10.0, 1.0))
    elif decades < 2.0:
        major, minor = grid((1, 2, 5)), grid((3, 4, 6, 7, 8, 9))
    else:
        every = max(1, math.ceil(decades / 8))
        exponents = np.arange(first, last + 1)
        major = grid((1,))
        major = major[np.round(np.log10(major)).astype(int) % every == 0]
        minor = grid(range(2, 10)) if every == 1 else powers[exponents % every != 0]
        minor = minor[(minor >= low) & (minor <= high)]
    minor = np.setdiff1d(np.round(minor, 12), np.round(major, 12))
    return np.asarray(major, dtype=float), minor


def _pixel_positions(axis, values: np.ndarray) -> np.ndarray:
    """Display coordinate along ``axis`` of each value (the other coordinate taken inside the view)."""
    axes = axis.axes
    values = np.asarray(values, dtype=float)
    if axis.axis_name == "x":
        other = axes.get_ylim()[0]
        points = np.column_stack([values, np.full(len(values), other)])
        return axes.transData.transform(points)[:, 0]
    other = axes.get_xlim()[0]
    points = np.column_stack([np.full(len(values), other), values])
    return axes.transData.transform(points)[:, 1]


def _text_size_px(text: str, fontsize: float, dpi: float) -> tuple[float, float]:
    """Width and height (display pixels) of a label as the text renderer draws it."""
    if not text:
        return 0.0, 0.0
    from matplotlib import rcParams

    # the fonts in the key: a notebook may change them between figures
    families = tuple(rcParams["font.family"])
    fonts = (families, *(tuple(rcParams.get(f"font.{name}", ())) for name in families), rcParams["mathtext.fontset"])
    width, height = _text_size_pt(text, float(fontsize), fonts)
    return width * dpi / 72.0, height * dpi / 72.0


@functools.lru_cache(maxsize=4096)
def _text_size_pt(text: str, fontsize: float, fonts: tuple) -> tuple[float, float]:
    # cached: a figure's tick labels are measured at every draw (layout passes, savefig), mathtext parsing is slow
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    ismath = text.count("$") >= 2
    width, height, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=ismath)
    return float(width), float(height)


def thinned_formatter(text: Callable[[float], str] | None = None, rank: Callable[[float], int] = _mantissa_rank):
    """A ``matplotlib.ticker.Formatter`` writing ``text(value)`` and blanking labels that would overlap.

    At draw time the labels are measured (``matplotlib.textpath``, the axis's tick-label size) and put at the
    ticks' display positions; taken by importance (``rank``, then from the start of the axis), a label is kept
    when it and a gap of :data:`TICK_LABEL_GAP_EM` stay clear of every label kept before it. So the labels
    never touch, whatever the axis's length, the figure's dpi or the number of ticks.

    Parameters
    ----------
    text : callable
        Value → label; by default :func:`log_tick_texts` (one style for all the ticks of the axis).
    rank : callable
        Value → importance, lower kept first (by default 0, decades, 5, 2, 3, the rest).

    Returns
    -------
    matplotlib.ticker.Formatter
    """
    from matplotlib.ticker import Formatter

    class _Thinned(Formatter):
        def __call__(self, value, pos=None):
            return text(value) if text is not None else log_tick_text(value)

        def format_ticks(self, values):
            values = np.asarray(values, dtype=float)
            labels = [text(v) for v in values] if text is not None else log_tick_texts(values)
            if self.axis is None or len(values) < 2:
                return labels
            ticks = self.axis.get_major_ticks(len(values)) if len(values) else []
            fontsize = ticks[0].label1.get_fontsize() if ticks else 10.0
            dpi = self.axis.figure.dpi if self.axis.figure is not None else 100.0
            try:
                centres = _pixel_positions(self.axis, values)
            except (ValueError, np.linalg.LinAlgError):
                return labels
            along = 0 if self.axis.axis_name == "x" else 1
            gap = TICK_LABEL_GAP_EM * fontsize * dpi / 72.0
            extents = [_text_size_px(label, fontsize, dpi)[along] for label in labels]
            order = sorted(range(len(values)), key=lambda k: (rank(values[k]), k))
            kept: list[tuple[float, float]] = []
            shown = [""] * len(values)
            for k in order:
                if not labels[k] or not np.isfinite(centres[k]):
                    continue
                low, high = centres[k] - extents[k] / 2 - gap / 2, centres[k] + extents[k] / 2 + gap / 2
                if all(high <= a or low >= b for a, b in kept):
                    kept.append((low, high))
                    shown[k] = labels[k]
            return shown

    return _Thinned()


def readable_log_axis(axis) -> None:
    """Ticks of a log axis that stay readable at any span (:func:`log_ticks`, thinned plain or 10ⁿ labels).

    Parameters
    ----------
    axis : matplotlib.axis.Axis
        ``ax.xaxis`` or ``ax.yaxis`` of a log-scaled axes (also a secondary axis or a colour bar's long axis).
    """
    from matplotlib.ticker import Locator, NullFormatter

    class _LogTicks(Locator):
        def __init__(self, minor: bool):
            self.minor = minor

        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin, vmax):
            if not (np.isfinite(vmin) and np.isfinite(vmax)) or min(vmin, vmax) <= 0 or vmin == vmax:
                return np.zeros(0)
            major, minor = log_ticks(vmin, vmax)
            return minor if self.minor else major

    axis.set_major_locator(_LogTicks(False))
    axis.set_minor_locator(_LogTicks(True))
    axis.set_major_formatter(thinned_formatter())
    axis.set_minor_formatter(NullFormatter())


def plain_number_formatter():
    """Tick labels as plain numbers without an offset or trailing zeros (``2022``, ``2022.25``, ``59544.2``)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, pos=None: f"{round(value, 6):.10g}".replace("-", "\N{MINUS SIGN}"))


def year_axis(axis) -> None:
    """Ticks of a decimal-year axis: whole years over three years or more (2005, 2010), else quarters or halves.

    Labels are plain numbers without trailing zeros (:func:`plain_number_formatter`).
    """
    from matplotlib.ticker import Locator, MaxNLocator

    class _Years(Locator):
        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin, vmax):
            low, high = sorted((float(vmin), float(vmax)))
            if high - low >= 3.0:
                chosen = MaxNLocator(nbins="auto", steps=[1, 2, 5, 10], integer=True)
            else:
                chosen = MaxNLocator(nbins="auto", steps=[1, 2.5, 5, 10])
            chosen.set_axis(self.axis)
            return chosen.tick_values(low, high)

    axis.set_major_locator(_Years())
    axis.set_major_formatter(plain_number_formatter())


# -- display binning ---------------------------------------------------------------------------------------------
def axis_width_px(ax) -> float:
    """Width of an axes in pixels (figure dpi), as laid out so far."""
    return float(ax.get_position().width * ax.figure.get_figwidth() * ax.figure.dpi)


def display_bin_s(span_s: float, bin_s: float, width_px: float, *, pixels_per_bin: float = 2.0) -> float | None:
    """A display bin for a time series whose bins would be narrower than a pixel, else None.

    Parameters
    ----------
    span_s : float
        Time the axis shows, s.
    bin_s : float
        Typical (median) bin of the series, s.
    width_px : float
        The axis's length in pixels.
    pixels_per_bin : float
        A display bin spans at least this many pixels (2: at most half the axis's pixels as points).

    Returns
    -------
    float or None
        The first of :data:`NICE_BINS_S` at least ``pixels_per_bin`` pixels wide (or that width itself beyond the
        list), or None when the series' bins are already a pixel wide or more.
    """
    if width_px <= 0 or span_s <= 0 or not np.isfinite(bin_s):
        return None
    pixel_s = span_s / width_px
    if bin_s >= pixel_s:
        return None
    wanted = pixels_per_bin * pixel_s
    return next((nice for nice in NICE_BINS_S if nice >= wanted), wanted)


def duration_text(seconds: float) -> str:
    """A duration as a legend says it: ``50 ms``, ``20 s``, ``3 ks``, ``6 h``, ``1 d``, ``0.5 yr``."""
    seconds = float(seconds)
    if seconds >= 0.5 * 365.25 * 86400.0:
        return f"{seconds / (365.25 * 86400.0):.3g} yr"
    if seconds >= 86400.0:
        return f"{seconds / 86400.0:.3g} d"
    if seconds >= 3600.0 and seconds % 3600.0 == 0:
        return f"{seconds / 3600.0:.3g} h"
    if seconds >= 1000.0:
        return f"{seconds / 1000.0:.3g} ks"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms"


# -- label placement ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Placement:
    """What :func:`place_labels` did.

    Attributes
    ----------
    named : list of int
        Indices labelled with their text.
    numbered : list of (int, int)
        (index, number) of those labelled with a number instead (listed in the key).
    unlabelled : list of int
        Indices left without any label (no room even for a number).
    artists : list
        The annotations made (to remove them before placing again).
    frame : tuple of float
        The axes' bounds (display pixels: x0, y0, width, height) the labels were placed for.
    """

    named: list
    numbered: list
    unlabelled: list
    artists: list
    frame: tuple = ()


def renderer_of(figure):
    """The figure's renderer (drawing it first when it has none)."""
    canvas = figure.canvas
    if hasattr(canvas, "get_renderer"):
        return canvas.get_renderer()
    return figure._get_renderer()


def settle_layout(ax, *, tolerance_px: float = 0.5, max_draws: int = 8) -> tuple:
    """Draw the figure until the axes stop moving; its bounds (display pixels: x0, y0, width, height).

    A layout engine sizes the axes from the decorations of the previous draw; with WCSAxes (whose tick labels
    are placed while drawing) the constrained layout takes a few draws to settle, a pixel at a time.
    """
    figure = ax.figure
    previous = None
    for _ in range(max_draws):
        figure.draw_without_rendering()
        bounds = np.asarray(ax.bbox.bounds, dtype=float)
        if previous is not None and np.all(np.abs(bounds - previous) <= tolerance_px):
            break
        previous = bounds
    return tuple(float(v) for v in bounds)


def _overlaps(box: tuple, boxes: Sequence[tuple]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def place_labels(
    ax,
    x: Sequence[float],
    y: Sequence[float],
    texts: Sequence[str],
    *,
    marker_radius_pt: float = 7.0,
    fontsize: float = 8.0,
    number_fontsize: float | None = None,
    first_number: int = 1,
    number_rings: int = 3,
    **text_style,
) -> Placement:
    """Label points of an axes (data coordinates) so that no label overlaps another, a marker or the edges.

    The figure is drawn first, so that the layout (constrained or not) is final. Points are taken in the
    given order (put the most important first): each label tries eight positions around its point, just
    outside the marker (right, left, above, below, then the diagonals); the first that lies inside the axes and
    clear of every marker and every label placed so far is used. A label that finds none is replaced by a
    number (``first_number``, ``first_number + 1``... in order) tried at the same positions and then on
    ``number_rings - 1`` rings further out, joined to its point by a leader line; a number that finds no room
    either is left out. Offsets are in points, so a label stays next to its point at any dpi.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Also a WCSAxes (pixel coordinates of its image are its data coordinates).
    x, y : sequence of float
        The points (data coordinates).
    texts : sequence of str
        Their labels.
    marker_radius_pt : float
        Half-size of the points' markers (points): labels keep clear of them.
    fontsize : float
        Size of the labels.
    number_fontsize : float, optional
        Size of the numbers (``fontsize`` by default).
    first_number : int
        The first number given.
    number_rings : int
        Rings of positions tried for a number (the first next to the marker, the others with a leader line).
    **text_style
        Passed to ``ax.annotate`` (colour, path effects...).

    Returns
    -------
    Placement
    """
    from matplotlib.text import Text

    figure = ax.figure
    renderer = renderer_of(figure)
    settle_layout(ax)
    dpi = figure.dpi
    scale = dpi / 72.0
    points = ax.transData.transform(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    frame = ax.bbox
    result = Placement([], [], [], [], tuple(float(v) for v in frame.bounds))
    inner = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
    radius = marker_radius_pt * scale
    markers = [
        (px - radius, py - radius, px + radius, py + radius) for px, py in points if np.isfinite(px) and np.isfinite(py)
    ]
    placed: list[tuple] = []
    number = first_number
    pad = 1.5 * scale
    directions = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))

    def size(text: str, size_pt: float) -> tuple[float, float]:
        probe = Text(0, 0, text, fontsize=size_pt)
        probe.set_figure(figure)
        box = probe.get_window_extent(renderer)
        return box.width, box.height

    def try_place(k: int, text: str, size_pt: float, rings: int):
        px, py = points[k]
        if not (np.isfinite(px) and np.isfinite(py)):
            return None
        width, height = size(text, size_pt)
        for ring in range(rings):
            # beyond the first ring the label is as far again as its own size, and a leader line joins it
            extra = ring * (radius + max(width, height))
            for dx, dy in directions:
                # the box's near edge just outside the marker along the direction, centred across it
                cx = px + dx * (radius + pad + extra + width / 2)
                cy = py + dy * (radius + pad + extra + height / 2)
                box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
                if box[0] < inner[0] or box[1] < inner[1] or box[2] > inner[2] or box[3] > inner[3]:
                    continue
                if _overlaps(box, placed) or _overlaps(box, markers):
                    continue
                placed.append(box)
                return (cx - px) / scale, (cy - py) / scale, ring > 0
        return None

    for k, text in enumerate(texts):
        found = try_place(k, str(text), fontsize, 1)
        label_text, size_pt = str(text), fontsize
        if found is None:
            label_text, size_pt = str(number), number_fontsize or fontsize
            found = try_place(k, label_text, size_pt, number_rings)
            if found is None:
                result.unlabelled.append(k)
                continue
            result.numbered.append((k, number))
            number += 1
        else:
            result.named.append(k)
        dx, dy, leader = found
        arrow = None
        if leader:
            colour = text_style.get("color", "black")
            arrow = dict(arrowstyle="-", color=colour, lw=0.6, shrinkA=0, shrinkB=marker_radius_pt)
        annotation = ax.annotate(
            label_text,
            xy=(x[k], y[k]),
            xycoords="data",
            xytext=(dx, dy),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=size_pt,
            annotation_clip=False,
            arrowprops=arrow,
            **text_style,
        )
        annotation.set_in_layout(False)
        result.artists.append(annotation)
    return result
