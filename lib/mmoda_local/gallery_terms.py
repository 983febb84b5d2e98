"""The gallery's vocabularies (instruments, product types and their families) and its source names.

Source names are resolved (``resolve_name``) from the simulated sky's catalogue, a subset of the ISDC
reference catalogue: this gallery belongs to the local, SIMULATED MMODA.
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import quote

#: Instruments of the gallery's ``instruments`` vocabulary (what ``get_list_terms?group=instruments`` lists).
INSTRUMENTS = ("isgri", "jemx", "jemx1", "jemx2", "spi_acs")

#: Product-type families: the parents of the ``products`` vocabulary's terms.
FAMILIES = ("image", "lightcurve", "spectrum")

#: Product-type terms per instrument (``get_list_terms?group=products&parent=<instrument>``).
INSTRUMENT_PRODUCTS = {
    "isgri": ("isgri_image", "isgri_lc", "isgri_spectrum"),
    "jemx": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "jemx1": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "jemx2": ("jemx_image", "jemx_lc", "jemx_spectrum"),
    "spi_acs": ("spi_acs_lc",),
}


def product_family(product_type: str | None) -> str | None:
    """The family (``image``, ``lightcurve``, ``spectrum``) of a product type, or None.

    Parameters
    ----------
    product_type : str or None
        A term such as ``isgri_image``, ``jemx_lc``, ``isgri_spectrum``,
        ``mosaic`` or a family name itself.

    Returns
    -------
    str or None
        The family; None when the name says nothing about it.
    """
    if not product_type:
        return None
    term = str(product_type).strip().lower()
    if term in FAMILIES:
        return term
    if "image" in term or "mosaic" in term:
        return "image"
    if term.endswith("_lc") or term == "lc" or "lightcurve" in term or "light_curve" in term:
        return "lightcurve"
    if "spectr" in term:
        return "spectrum"
    return None


def product_terms(parent: str | None = None) -> list[str]:
    """Terms of the ``products`` vocabulary, all of them or those of one instrument."""
    if parent and parent != "all":
        return list(INSTRUMENT_PRODUCTS.get(parent.lower(), ()))
    terms = list(FAMILIES)
    for names in INSTRUMENT_PRODUCTS.values():
        terms += [name for name in names if name not in terms]
    return terms


def term_id(vocabulary: str, name: str) -> int:
    """A stable taxonomy term id (Drupal's ``tid``) for a vocabulary term."""
    digest = hashlib.sha256(f"{vocabulary}:{name.lower()}".encode()).hexdigest()
    return 1000 + int(digest[:6], 16) % 900000


def normalised_name(name) -> str:
    """Case-, space- and underscore-insensitive form of a source name (as the simulated sky's)."""
    return "".join(str(name).split()).lower().replace("_", "")


#: A coarse reading of the ISDC reference catalogue's CLASS code into SIMBAD-like object types.
CLASS_TYPES = (
    (1200, 1400, "HighMassXBin"),
    (1400, 1500, "LowMassXBin"),
    (1000, 1200, "XrayBin"),
    (1500, 1600, "XrayBin"),
    (1700, 1800, "Pulsar"),
    (3000, 4000, "SNRemnant"),
    (7100, 7200, "Seyfert"),
    (7200, 7300, "QSO"),
    (7300, 7400, "BLLac"),
    (7500, 7600, "RadioG"),
    (7000, 8000, "AGN"),
)


def object_type_of(class_code: int) -> str:
    """SIMBAD-like object type of an ISDC CLASS code (``X`` when the code says nothing usable)."""
    for low, high, name in CLASS_TYPES:
        if low <= class_code < high:
            return name
    return "X"


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, dict]:
    """The simulated sky's catalogue (ISDC reference catalogue subset), by normalised name."""
    import importlib.resources

    from astropy.table import Table

    resource = importlib.resources.files("mmoda_local") / "data" / "isdc_ref_cat_0043_subset.ecsv"
    with importlib.resources.as_file(resource) as path:
        table = Table.read(str(path), format="ascii.ecsv")
    entries = {}
    for row in table:
        name = str(row["NAME"]).strip()
        entries.setdefault(
            normalised_name(name),
            {
                "name": name,
                "source_id": str(row["SOURCE_ID"]).strip(),
                "ra": float(row["RA_OBJ"]),
                "dec": float(row["DEC_OBJ"]),
                "object_type": object_type_of(int(row["CLASS"])),
            },
        )
    return entries


def resolve(name: str | None, *, portal: str = "") -> dict:
    """Answer of ``resolve_name`` for a name, from the simulated sky's catalogue.

    Parameters
    ----------
    name : str or None
        Source name (``_`` are read as spaces, as the real resolver does).
    portal : str, optional
        Base URL of this gallery's source pages (``entity_portal_link``).

    Returns
    -------
    dict
        ``{}`` without a name; else ``name``, ``message`` (``... successfully
        resolved`` or ``... could not be resolved: ...``) and, when resolved,
        ``RA``, ``DEC`` (deg), ``object_ids``, ``object_type``,
        ``entity_portal_link``.
    """
    if name is None:
        return {}
    shown = name.replace("_", " ").strip()
    entry = catalogue().get(normalised_name(shown))
    if entry is None:
        return {
            "name": shown,
            "message": f"{name} could not be resolved: not in the catalogue of the simulated INTEGRAL sky",
        }
    return {
        "name": shown,
        "RA": entry["ra"],
        "DEC": entry["dec"],
        "object_ids": [entry["name"], entry["source_id"]],
        "object_type": entry["object_type"],
        "entity_portal_link": f"{portal}/source/{quote(entry['name'], safe='')}",
        "message": f"{name} successfully resolved",
    }
