"""Reading a gallery product's attached files: source tables, region files, notebooks, parameters."""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import re
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

#: Column names of source tables, in order of preference.
NAME_COLUMNS = ("name", "src_name", "source", "source_name", "NAME", "SRC_NAME", "Source")
RA_COLUMNS = ("ra", "RA", "ra_fin", "RA_FIN", "ra_obj", "RA_OBJ", "ra_deg")
DEC_COLUMNS = ("dec", "DEC", "dec_fin", "DEC_FIN", "dec_obj", "DEC_OBJ", "dec_deg")
FLUX_COLUMNS = ("rate", "flux", "RATE", "FLUX", "flux_ct_s", "count_rate")
FLUX_ERROR_COLUMNS = (
    "rate_error",
    "rate_err",
    "flux_err",
    "flux_error",
    "FLUX_ERR",
    "ERR_FLUX",
    "RATE_ERR",
    "RATE_ERROR",
)
SIGNIFICANCE_COLUMNS = ("significance", "sig", "DETSIG", "det_sig", "SIGNIFICANCE")


def decompressed(data: bytes) -> bytes:
    """A file's content, gunzipped when it is gzip (unchanged when it is not, or is broken).

    Parameters
    ----------
    data : bytes

    Returns
    -------
    bytes
    """
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def open_fits(data: bytes):
    """A FITS attachment opened in memory, or None when it cannot be read (logged).

    Parameters
    ----------
    data : bytes
        The file's content (gzip or not).

    Returns
    -------
    astropy.io.fits.HDUList or None
    """
    from astropy.io import fits

    try:
        hdul = fits.open(io.BytesIO(decompressed(data)), memmap=False, lazy_load_hdus=False)
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


def finite_or_none(value) -> float | None:
    """A value as a finite float, or None.

    Parameters
    ----------
    value : object

    Returns
    -------
    float or None
    """
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
        rows.append(
            {
                "name": str(row[name]).strip() if name else f"source {index + 1}",
                "ra": finite_or_none(row[ra]),
                "dec": finite_or_none(row[dec]),
                "flux": finite_or_none(row[flux]) if flux else None,
                "flux_error": finite_or_none(row[flux_error]) if flux_error else None,
                "significance": finite_or_none(row[significance]) if significance else None,
                "unit": unit,
            }
        )
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

    def cell(cells, i):
        return cells[i] if i is not None and i < len(cells) else None

    rows = []
    for cells in parser.rows[1:]:
        row = {
            "name": cell(cells, name) or f"source {len(rows) + 1}",
            "ra": finite_or_none(cell(cells, ra)),
            "dec": finite_or_none(cell(cells, dec)),
            "flux": finite_or_none(cell(cells, flux)),
            "flux_error": finite_or_none(cell(cells, error)),
            "significance": finite_or_none(cell(cells, significance)),
            "unit": unit,
        }
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
        name, significance = (match.group(1), finite_or_none(match.group(2))) if match else (label.strip(), None)
        radius = getattr(shape, "radius", None)
        rows.append(
            {
                "name": name or f"region {len(rows) + 1}",
                "ra": float(center.ra.deg),
                "dec": float(center.dec.deg),
                "flux": None,
                "flux_error": None,
                "significance": significance,
                "unit": "",
                "radius_deg": float(radius.to_value("deg")) if radius is not None else None,
                "color": str(shape.visual.get("color", "") or ""),
            }
        )
    return rows


def read_table(data: bytes, filename: str):
    """An astropy table from an ECSV/CSV/ASCII attachment, or None."""
    from astropy.io import ascii as astropy_ascii

    text = decompressed(data).decode("utf-8", "replace")
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
        notebook = json.loads(decompressed(data).decode("utf-8"))
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
    return {
        "parameters": dict(parameters) if isinstance(parameters, dict) else None,
        "input_path": papermill.get("input_path"),
        "output_path": papermill.get("output_path"),
        "cell": cell_source,
        "kernel": (metadata.get("kernelspec") or {}).get("display_name", ""),
    }


def source_notebook(input_path: str | None, filename: str) -> str:
    """The project-relative notebook a run came from (``notebooks/mosaic.ipynb``)."""
    if input_path:
        text = str(input_path).replace("\\", "/")
        marker = text.rfind("notebooks/")
        return text[marker:] if marker >= 0 else text
    stem = re.sub(r"^\d+_", "", Path(filename).stem)
    return f"notebooks/{stem}.ipynb"


def produced_by(fields: dict) -> str | None:
    """The notebook named by a product's ``produced_by`` field.

    Parameters
    ----------
    fields : dict
        The product's fields.

    Returns
    -------
    str or None
        ``notebooks/<name>.ipynb``; None without the field.
    """
    name = str(fields.get("produced_by") or "").strip()
    if not name:
        return None
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    return name if "/" in name else f"notebooks/{name}"


def parameters_from_yaml(data: bytes) -> dict | None:
    """A parameters mapping from a YAML attachment (None when it is not one)."""
    import yaml

    try:
        value = yaml.safe_load(decompressed(data).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    if isinstance(value, dict) and isinstance(value.get("parameters"), dict):
        value = value["parameters"]
    return value if isinstance(value, dict) else None
