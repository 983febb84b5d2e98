"""Typed descriptors of the files a notebook makes: what each file is, for whom, in which band and period.

The science modules' product writers return :class:`Product` descriptors; the notebook records them
in its step record (``<step>.step.json``, :meth:`integral_workflows.notebook.NotebookRun.record_outputs`),
and the gallery uploads from those records (:func:`integral_workflows.gallery.upload_run_products`):
the names of the files are written in one place only, by the writer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: What a product can be. The first three are the ones the MMODA product gallery shows.
KINDS = (
    "image",
    "light_curve",
    "spectrum",
    "source_table",
    "region",
    "plot",
    "scw_table",
    "jobs",
    "calibration",
    "stack",
    "table",
)
#: Product kinds the gallery shows, with the gallery's name for them (``isgri_image``, ``jemx1_lc``...).
GALLERY_KINDS = {"image": "image", "light_curve": "lc", "spectrum": "spectrum"}
#: Instruments as products name them (a JEM-X unit is an instrument of its own; SPI-ACS, the anticoincidence
#: shield, for the light curves of the transient follow-up).
INSTRUMENTS = ("isgri", "jemx1", "jemx2", "spi_acs")


def isot_seconds(value: Any, *, round_up: bool = False) -> str:
    """A time as UTC ISOT with whole seconds, the only ISOT form the gallery client accepts.

    Parameters
    ----------
    value : str or datetime.datetime or astropy.time.Time
        ``'2005-03-01T00:00:00.123'``, a datetime or a Time.
    round_up : bool
        Round a fraction of a second up (for the end of a span) instead of down.

    Returns
    -------
    str
        ``YYYY-MM-DDThh:mm:ss``.

    Raises
    ------
    ValueError
        If the value is not a time.
    """
    if hasattr(value, "utc") and hasattr(value, "datetime"):  # astropy Time
        value = value.utc.datetime
    if isinstance(value, str):
        text = value.strip().replace(" ", "T")
        match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?$", text)
        if match is None:
            raise ValueError(f"{value!r} is not a UTC ISOT time (YYYY-MM-DDThh:mm:ss[.fff])")
        moment = dt.datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S")
        fraction = bool(match[2]) and int(match[2]) > 0
    elif isinstance(value, dt.datetime):
        moment, fraction = value.replace(microsecond=0, tzinfo=None), value.microsecond > 0
    else:
        raise ValueError(f"{value!r} is not a time")
    if fraction and round_up:
        moment += dt.timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def instrument_key(instrument: str, jemx_unit: int = 1) -> str:
    """``isgri``, or ``jemx1``/``jemx2`` for JEM-X and its unit."""
    return "isgri" if instrument == "isgri" else f"jemx{int(jemx_unit)}"


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Product:
    """One product file and what it is.

    Attributes
    ----------
    path : Path
        The file (for a spectrum: its PHA file).
    kind : str
        One of :data:`KINDS`.
    instrument : str or None
        ``isgri``, ``jemx1``, ``jemx2`` or ``spi_acs``.
    source : str or None
        The source of a light curve or spectrum; the target of an image.
    band : tuple of float or None
        Energy band ``(E1, E2)`` in keV.
    period : tuple of str or None
        Time span ``(T1, T2)`` of the data, UTC ISOT.
    position : tuple of float or None
        ``(RA, Dec)`` in degrees: the image centre or the source.
    companions : tuple of Path
        Files that belong to it and go with it (a spectrum's ARF and RMF).
    plot : Path or None
        Its picture (PNG).
    region : Path or None
        DS9 regions of an image's detected sources.
    sources : Path or None
        Table of an image's detected sources.
    title : str
        A human title (the gallery's), empty for a default one.
    identity : mapping
        What defines the product, beyond the file: two products with the same identity are the same
        product made again (the gallery's product id is derived from it).
    details : mapping
        Other JSON-safe facts: detected source names (``src_names``), observation ids (``obsids``),
        revolutions, light-curve bin (``time_bin``)...
    """

    path: Path
    kind: str
    instrument: str | None = None
    source: str | None = None
    band: tuple[float, float] | None = None
    period: tuple[str, str] | None = None
    position: tuple[float, float] | None = None
    companions: tuple[Path, ...] = ()
    plot: Path | None = None
    region: Path | None = None
    sources: Path | None = None
    title: str = ""
    identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"product kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.instrument is not None and self.instrument not in INSTRUMENTS:
            raise ValueError(f"product instrument {self.instrument!r}: one of {', '.join(INSTRUMENTS)}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "companions", tuple(Path(path) for path in self.companions))
        for name in ("plot", "region", "sources"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.band is not None:
            object.__setattr__(self, "band", (float(self.band[0]), float(self.band[1])))
        if self.period is not None:
            object.__setattr__(self, "period", (str(self.period[0]), str(self.period[1])))
        if self.position is not None:
            position = tuple(_finite_or_none(value) for value in self.position)
            object.__setattr__(self, "position", None if None in position else position)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def files(self) -> list[Path]:
        """Every file of the product: the main file, its companions, plot, region and sources table."""
        extra = [path for path in (self.plot, self.region, self.sources) if path is not None]
        return [self.path, *self.companions, *extra]

    @property
    def in_gallery(self) -> bool:
        """Whether the MMODA product gallery shows this kind of product."""
        return self.kind in GALLERY_KINDS

    def as_dict(self, *, relative_to: str | Path | None = None) -> dict:
        """JSON-safe form, paths relative to ``relative_to`` when they lie inside it."""

        def text(path: Path | None) -> str | None:
            if path is None:
                return None
            if relative_to is not None:
                try:
                    return Path(path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
                except ValueError:
                    pass
            return Path(path).as_posix()

        return {
            "path": text(self.path),
            "kind": self.kind,
            "instrument": self.instrument,
            "source": self.source,
            "band": list(self.band) if self.band else None,
            "period": list(self.period) if self.period else None,
            "position": list(self.position) if self.position else None,
            "companions": [text(path) for path in self.companions],
            "plot": text(self.plot),
            "region": text(self.region),
            "sources": text(self.sources),
            "title": self.title,
            "identity": dict(self.identity),
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: str | Path | None = None) -> Product:
        """Rebuild a descriptor from :meth:`as_dict`, relative paths taken relative to ``base``."""

        def path(text: str | None) -> Path | None:
            if text is None:
                return None
            value = Path(text)
            return value if value.is_absolute() or base is None else Path(base) / value

        return cls(
            path=path(data["path"]),
            kind=data["kind"],
            instrument=data.get("instrument"),
            source=data.get("source"),
            band=tuple(data["band"]) if data.get("band") else None,
            period=tuple(data["period"]) if data.get("period") else None,
            position=tuple(data["position"]) if data.get("position") else None,
            companions=[path(item) for item in data.get("companions") or ()],
            plot=path(data.get("plot")),
            region=path(data.get("region")),
            sources=path(data.get("sources")),
            title=data.get("title", ""),
            identity=dict(data.get("identity") or {}),
            details=dict(data.get("details") or {}),
        )


class Products(list):
    """The products of a notebook run, with lookups for its ``outputs`` cell."""

    def of_kind(self, kind: str) -> list[Product]:
        """The products of ``kind``, in order."""
        return [product for product in self if product.kind == kind]

    def path(self, kind: str) -> str:
        """The path of the one product of ``kind``, as text (an output of the notebook).

        Raises
        ------
        LookupError
            If there is none or more than one.
        """
        found = self.of_kind(kind)
        if len(found) != 1:
            raise LookupError(f"{len(found)} products of kind {kind!r}: use paths()")
        return str(found[0].path)

    def named(self, name: str) -> str:
        """The path of the product whose file is called ``name``, as text.

        Raises
        ------
        LookupError
            If no product has that file name.
        """
        for product in self:
            if product.path.name == name:
                return str(product.path)
        raise LookupError(f"no product file named {name!r}")

    def paths(self, kind: str) -> list[str]:
        """The paths of the products of ``kind``, as text."""
        return [str(product.path) for product in self.of_kind(kind)]


def all_files(products: Iterable[Product]) -> list[Path]:
    """Every file of ``products`` (main files, companions, plots...), each once, in order."""
    return list(dict.fromkeys(path for product in products for path in product.files))


def describe(path: str | Path, kind: str, **facts: Any) -> Product:
    """A :class:`Product` for a file written by other means (a table, a plot)."""
    return Product(path=Path(path), kind=kind, **facts)


def products_table(products: Sequence[Product]):
    """The products as an astropy Table (kind, file, instrument, source, band), for notebooks."""
    from astropy.table import Table

    rows = [
        (
            product.kind,
            product.path.name,
            product.instrument or "",
            product.source or "",
            f"{product.band[0]:g}-{product.band[1]:g}" if product.band else "",
        )
        for product in products
    ]
    return Table(
        rows=rows or None, names=("kind", "file", "instrument", "source", "band_keV"), dtype=(str, str, str, str, str)
    )


def long_term_identity(params: Mapping[str, Any], *, instrument: str, kind: str, source: str | None = None) -> dict:
    """What defines a long-term product (image, light curve, spectrum) of a run: its gallery identity.

    Parameters
    ----------
    params : mapping or parameter model
        The run's parameters (``T1``, ``T2``, ``radius``, ``osa_version``, ``src_name``, the band...).
    instrument : str
        ``isgri``, ``jemx1`` or ``jemx2``.
    kind : str
        ``image``, ``light_curve`` or ``spectrum``.
    source : str, optional
        The source of a light curve or spectrum.

    Returns
    -------
    dict
        Period (whole seconds), radius, OSA version, target or source, band (and threshold or bin).
    """
    identity = {
        "instrument": instrument,
        "T1": isot_seconds(params["T1"]),
        "T2": isot_seconds(params["T2"], round_up=True),
        "radius": params.get("radius"),
        "osa_version": params.get("osa_version"),
    }
    if kind == "image":
        identity.update(
            src_name=params["src_name"],
            E1_keV=f"{float(params['E1_keV']):.1f}",
            E2_keV=f"{float(params['E2_keV']):.1f}",
            detection_threshold=params.get("detection_threshold"),
        )
    else:
        identity["source_name"] = source
    if kind == "light_curve":
        identity.update(
            E1_keV=f"{float(params['E1_keV']):.1f}",
            E2_keV=f"{float(params['E2_keV']):.1f}",
            time_bin=params.get("lc_time_bin"),
        )
    return identity
