"""Products on the wire: FITS → oda_api's own encodings.

Products are encoded with oda_api's ``NumpyDataProduct`` (pickle + base64,
the real server's defaults), so the client decodes them with its own code.
One trap is avoided here: the client replaces ``null`` inside every string of
an answer by ``None`` (protocol §1.8), which would corrupt a base64 payload
that happens to contain it. Such a payload is re-pickled with another pickle
protocol (same data, different bytes) until it is clean.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import warnings

import numpy as np
from astropy.io import fits
from astropy.table import Table
from oda_api.data_products import NumpyDataProduct, NumpyDataUnit

from . import CREATOR, ORIGIN
from .protocol import strings_containing_null

log = logging.getLogger(__name__)

CATALOG_COLUMNS = ("meta_ID", "src_names", "significance", "ra", "dec", "NEW_SOURCE", "ISGRI_FLAG", "FLAG", "ERR_RAD")


def mark_simulated(hdul: fits.HDUList) -> fits.HDUList:
    """Stamp every HDU with ORIGIN/CREATOR and ``SIMULATD = T``.

    COMMENT cards do not survive oda_api's header encoding (it keeps one value
    per keyword), so the mark is carried by keywords.
    """
    for hdu in hdul:
        hdu.header["ORIGIN"] = (ORIGIN, "simulated data, not the INTEGRAL archive")
        hdu.header["CREATOR"] = (CREATOR, "software that made this file")
        hdu.header["SIMULATD"] = (True, "simulated by mmoda_local, not real INTEGRAL data")
    return hdul


def _clean_binarys(unit: dict, data) -> None:
    for protocol in (3, 2, 5, 4):
        if unit["binarys"] is None or "null" not in unit["binarys"]:
            return
        unit["binarys"] = base64.b64encode(pickle.dumps(data, protocol=protocol)).decode()
    raise RuntimeError("could not encode a data unit without the substring 'null'")


def _as_read_from_disk(hdu):
    """A table HDU written to FITS and read back, as the real backend's files are read.

    The columns then have FITS's big-endian dtypes (``>f8``, ``>f4``...), as
    on the real wire, and variable-length columns (RMF ``MATRIX``) take the
    form oda_api's encoding was made for (and tested with, on the real ISGRI
    RMF): arrays from a file's heap.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the ORIGIN card's comment does not fit beside its long value: FITS truncates it, which is harmless
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    buffer.seek(0)
    # Not copied, and the in-memory file is left open: a copied table holds weak references and does
    # not pickle.
    table = fits.open(buffer, lazy_load_hdus=False)[1]
    for name in table.columns.names:
        table.data[name]
    return table


def encode_numpy_product(
    hdul: fits.HDUList, *, name: str | None, meta_data: dict, unit_names: dict | None = None
) -> dict:
    """Encode a FITS product as the real dispatcher does.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The product (PRIMARY first).
    name : str or None
        ``NumpyDataProduct.name`` (the client builds attribute names from it).
    meta_data : dict
        ``NumpyDataProduct.meta_data`` (``src_name``, ``product``, ...).
    unit_names : dict, optional
        EXTNAME → data-unit name: the real plugin renames some data units
        (``ISGR-RMF.-RSP`` → ``SPECRESP MATRIX``...) without touching their
        headers, which keep the OSA EXTNAME.

    Returns
    -------
    dict
        ``NumpyDataProduct.encode()`` output, free of the ``null`` substring.
    """
    mark_simulated(hdul)
    hdus = []
    for hdu in hdul:
        if (
            isinstance(hdu, (fits.ImageHDU, fits.PrimaryHDU))
            and hdu.data is not None
            and hdu.data.dtype.byteorder in ("<", "=")
        ):
            # as read from a FITS file by the real backend: big-endian arrays
            hdu.data = hdu.data.astype(hdu.data.dtype.newbyteorder(">"))
        hdus.append(_as_read_from_disk(hdu) if isinstance(hdu, fits.BinTableHDU) else hdu)
    # oda_api's from_fits_hdu formats repr(data) for a debug message whether or not it is logged; for a table
    # (an RMF: 640 rows of variable-length arrays) that full repr took ~0.4 s. A summarised repr is as good.
    with np.printoptions(threshold=8, edgeitems=1):
        units = [NumpyDataUnit.from_fits_hdu(hdu) for hdu in hdus]
    for unit in units:
        unit.name = (unit_names or {}).get(unit.name, unit.name)
    product = NumpyDataProduct(units, name=name, meta_data=meta_data)
    encoded = product.encode()
    for unit_dict, unit in zip(encoded["data_unit_list"], units):
        _clean_binarys(unit_dict, unit.data)
    leftovers = strings_containing_null(encoded)
    if leftovers:
        raise RuntimeError(f"encoded product still holds 'null' in strings at {leftovers[:5]}")
    return encoded


def encode_units(units: list, *, name: str | None, meta_data: dict) -> dict:
    """Encode data units built in memory (as a plugin does), with the same ``null`` guard.

    Parameters
    ----------
    units : list of oda_api.data_products.NumpyDataUnit
        The units, PRIMARY first; the caller marks them as simulated.
    name : str or None
        ``NumpyDataProduct.name``.
    meta_data : dict
        ``NumpyDataProduct.meta_data``.

    Returns
    -------
    dict
        ``NumpyDataProduct.encode()`` output, free of the ``null`` substring.
    """
    encoded = NumpyDataProduct(units, name=name, meta_data=meta_data).encode()
    for unit_dict, unit in zip(encoded["data_unit_list"], units):
        _clean_binarys(unit_dict, unit.data)
    leftovers = strings_containing_null(encoded)
    if leftovers:
        raise RuntimeError(f"encoded product still holds 'null' in strings at {leftovers[:5]}")
    return encoded


def catalog_dict(table: Table) -> dict:
    """Return the ``products.catalog`` dictionary of a source table (protocol §3.4)."""
    columns = [c for c in CATALOG_COLUMNS if c in table.colnames]
    column_list, descr = [], []
    for name in columns:
        values = table[name]
        if values.dtype.kind in "US":
            column_list.append([str(v) for v in values])
        else:
            column_list.append(
                [None if (isinstance(v, float) and not np.isfinite(v)) else v.item() for v in np.asarray(values)]
            )
        descr.append([name, np.asarray(values).dtype.str])
    return {
        "cat_frame": "fk5",
        "cat_coord_units": "deg",
        "cat_column_list": column_list,
        "cat_column_names": columns,
        "cat_column_descr": descr,
        "cat_lat_name": "dec",
        "cat_lon_name": "ra",
    }


def parse_selected_catalog(raw: str | dict | None) -> Table | None:
    """Read a ``selected_catalog`` (the JSON the client's ``ApiCatalog`` writes).

    Returns
    -------
    astropy.table.Table or None
        With at least ``src_names``, ``ra``, ``dec``.

    Raises
    ------
    ValueError
        If the value is not a catalog dictionary.
    """
    if raw is None or raw == "" or raw == "\x00":
        return None
    if isinstance(raw, list):
        raw = raw[0]
    try:
        catalog = json.loads(raw) if isinstance(raw, str) else raw
        names = list(catalog["cat_column_names"])
        columns = catalog["cat_column_list"]
        lon = catalog.get("cat_lon_name", "ra")
        lat = catalog.get("cat_lat_name", "dec")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"selected_catalog is not a catalog dictionary: {exc!r}") from None
    table = Table(columns, names=names)
    if lon != "ra":
        table.rename_column(lon, "ra")
    if lat != "dec":
        table.rename_column(lat, "dec")
    for required in ("src_names", "ra", "dec"):
        if required not in table.colnames:
            raise ValueError(f"selected_catalog lacks the column {required}")
    table["ra"] = np.asarray(table["ra"], dtype=float)
    table["dec"] = np.asarray(table["dec"], dtype=float)
    table["src_names"] = [str(n) for n in table["src_names"]]
    return table
