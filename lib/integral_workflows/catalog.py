"""Which sources light curves and spectra are extracted for (the ``selected_catalog``).

The rules of MMODA's long-term services (seed 001):

- ``api_catalog_file`` given: that catalogue (a JSON API catalog, as text or
  a file) is used;
- else ``use_default_catalog``: the default catalogue (the ISDC reference
  catalogue) within the selection radius of the target;
- else ``make_image``: the sources detected in a mosaic of the ScWs (all of
  them, or ``n_scw_image`` of them);
- else the target alone.

In every case the target is added when it is missing. The catalogue is sent
to MMODA as ``selected_catalog``, in the JSON form oda_api's ``ApiCatalog``
writes (protocol §3.4).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from .targets import builtin_catalogue_path

log = logging.getLogger(__name__)

COLUMNS = ("meta_ID", "src_names", "significance", "ra", "dec", "NEW_SOURCE", "ISGRI_FLAG", "FLAG", "ERR_RAD")


def source_name_key(name) -> str:
    """A source name without case, blanks and underscores (``GX 339-4`` ≡ ``GX339-4`` ≡ ``gx_339-4``).

    MMODA writes source names in product names and meta data with blanks
    replaced; compare names through this key.
    """
    return "".join(ch for ch in str(name).casefold() if ch not in " _")


def same_source_name(a, b) -> bool:
    """Whether two spellings name the same source (:func:`source_name_key`)."""
    return source_name_key(a) == source_name_key(b)


def sources_table(names, ra, dec, *, significance=None) -> Table:
    """A catalogue table with ``name``, ``ra``, ``dec`` (deg) and ``significance``."""
    names = [str(n) for n in names]
    significance = np.full(len(names), np.nan) if significance is None else np.asarray(significance, float)
    table = Table(
        {"name": names, "ra": np.asarray(ra, float), "dec": np.asarray(dec, float), "significance": significance}
    )
    table["ra"].unit = table["dec"].unit = u.deg
    return table


def default_catalog(ra: float, dec: float, radius_deg: float) -> Table:
    """Sources of the ISDC reference catalogue within ``radius_deg`` of (ra, dec)."""
    reference = Table.read(builtin_catalogue_path(), format="ascii.ecsv")
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    positions = SkyCoord(np.asarray(reference["RA"], float) * u.deg, np.asarray(reference["DEC"], float) * u.deg)
    near = centre.separation(positions).deg <= radius_deg
    return sources_table(reference["NAME"][near], reference["RA"][near], reference["DEC"][near])


def reference_catalog(ra: float, dec: float, radius_deg: float, *, isdc_cat_url: str | None = None) -> Table:
    """Known sources around (ra, dec) to name a mosaic's excesses.

    Parameters
    ----------
    ra, dec, radius_deg : float
        The field.
    isdc_cat_url : str, optional
        A reference catalogue to use instead of the shipped ISDC one: a local
        file or a URL (downloaded and cached by astropy; online only) that
        astropy reads (FITS, ECSV, VOTable), with a name column (``NAME``,
        ``name`` or ``src_names``) and positions (``RA_OBJ``/``DEC_OBJ``,
        ``RA``/``DEC`` or ``ra``/``dec``, degrees).
    """
    if not isdc_cat_url:
        return default_catalog(ra, dec, radius_deg)
    path = isdc_cat_url
    if "://" in isdc_cat_url:
        from astropy.utils.data import download_file

        path = download_file(isdc_cat_url, cache=True)
    table = Table.read(path)

    def pick(*names):
        for name in names:
            if name in table.colnames:
                return table[name]
        raise ValueError(f"isdc_cat_url {isdc_cat_url}: none of the columns {names} found ({table.colnames})")

    names = [str(n).strip() for n in pick("NAME", "name", "src_names", "SOURCE")]
    ra_all = np.asarray(pick("RA_OBJ", "RA", "ra"), float)
    dec_all = np.asarray(pick("DEC_OBJ", "DEC", "dec"), float)
    near = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra_all * u.deg, dec_all * u.deg)).deg <= radius_deg
    return sources_table(np.asarray(names)[near], ra_all[near], dec_all[near])


def with_target(catalog: Table, name: str, ra: float, dec: float, *, match_radius_deg: float = 0.1) -> Table:
    """The catalogue with the target added when no entry lies within ``match_radius_deg`` of it."""
    if len(catalog):
        separation = SkyCoord(ra * u.deg, dec * u.deg).separation(
            SkyCoord(np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg)
        )
        if np.min(separation.deg) <= match_radius_deg:
            return catalog
    log.info("adding the target %s to the extraction catalogue", name)
    added = sources_table([name], [ra], [dec])
    if not len(catalog):
        return added
    from astropy.table import vstack

    return vstack([catalog[list(added.colnames)], added])


def to_api_catalog(catalog: Table) -> str:
    """The catalogue as the JSON ``selected_catalog`` MMODA expects."""
    n = len(catalog)
    significance = [0.0 if not np.isfinite(s) else float(s) for s in np.asarray(catalog["significance"], float)]
    columns = [
        list(range(n)),
        [str(s) for s in catalog["name"]],
        significance,
        [float(x) for x in catalog["ra"]],
        [float(x) for x in catalog["dec"]],
        [-32768] * n,
        [2] * n,
        [0] * n,
        [0.00028] * n,
    ]
    descr = [
        ["meta_ID", "<i8"],
        ["src_names", "<U64"],
        ["significance", "<f8"],
        ["ra", "<f8"],
        ["dec", "<f8"],
        ["NEW_SOURCE", "<i8"],
        ["ISGRI_FLAG", "<i8"],
        ["FLAG", "<i8"],
        ["ERR_RAD", "<f8"],
    ]
    return json.dumps(
        {
            "cat_frame": "fk5",
            "cat_coord_units": "deg",
            "cat_column_list": columns,
            "cat_column_names": list(COLUMNS),
            "cat_column_descr": descr,
            "cat_lat_name": "dec",
            "cat_lon_name": "ra",
        }
    )


def read_api_catalog(value: str | Path) -> Table:
    """Read an API catalogue given as JSON text or as the path of a JSON file."""
    text = str(value)
    if not text.lstrip().startswith(("{", "[")):
        text = Path(text).read_text()
    catalog = json.loads(text)
    try:
        names = catalog["cat_column_names"]
        columns = dict(zip(names, catalog["cat_column_list"]))
        lon, lat = catalog.get("cat_lon_name", "ra"), catalog.get("cat_lat_name", "dec")
        return sources_table(columns["src_names"], columns[lon], columns[lat], significance=columns.get("significance"))
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"api_catalog_file is not an API catalog (cat_column_names/cat_column_list): {exc!r}"
        ) from None


def extraction_catalog(
    *,
    target_name: str,
    ra: float,
    dec: float,
    radius_deg: float,
    api_catalog_file: str | None = None,
    use_default_catalog: bool = False,
    image_sources: Table | None = None,
) -> tuple[Table, str]:
    """The sources to extract light curves and spectra for, by the seed-001 rules.

    Parameters
    ----------
    target_name, ra, dec : str, float, float
        The target (added when missing).
    radius_deg : float
        Radius of the default catalogue around the target.
    api_catalog_file : str, optional
        JSON API catalogue (text or path); wins over everything else.
    use_default_catalog : bool, optional
        Use the ISDC reference catalogue around the target.
    image_sources : astropy.table.Table, optional
        Sources found in a mosaic (``name``, ``ra``, ``dec``, ``significance``),
        used when ``make_image`` built one.

    Returns
    -------
    catalog : astropy.table.Table
    origin : str
        Which rule chose it (for the notebook's narrative and the manifest).
    """
    if api_catalog_file:
        catalog, origin = read_api_catalog(api_catalog_file), "api_catalog_file"
    elif use_default_catalog:
        catalog, origin = default_catalog(ra, dec, radius_deg), "the ISDC reference catalogue (default catalog)"
    elif image_sources is not None:
        catalog = sources_table(
            image_sources["name"], image_sources["ra"], image_sources["dec"], significance=image_sources["significance"]
        )
        origin = "sources detected in the mosaic (make_image)"
    else:
        catalog, origin = sources_table([], [], []), "the target only"
    return with_target(catalog, target_name, ra, dec), origin


def catalog_for_extraction(parameters, *, target, session, scw_table, source_catalog_file: str = ""):
    """The extraction catalogue of a light-curve or spectrum run, making the image it needs.

    Applies :func:`extraction_catalog`; with ``make_image`` (and neither
    ``api_catalog_file`` nor ``use_default_catalog``) the sources come from
    ``source_catalog_file`` (the mosaic step's ``sources.ecsv``) when given,
    else from a mosaic of ``n_scw_image`` ScWs made here.

    Parameters
    ----------
    parameters : parameter model
        The run's parameters.
    target : integral_workflows.targets.Target
        The target (resolved position).
    session : integral_workflows.session.Session
        Where to send the image jobs.
    scw_table : astropy.table.Table
        The run's ScWs (``integral_workflows.scw``).
    source_catalog_file : str, optional
        Sources found by the mosaic step.

    Returns
    -------
    catalog : astropy.table.Table
    origin : str
    image_record : integral_workflows.jobs.RunRecord or None
        The image jobs made here, if any.
    """
    from . import mosaic, queries, scw

    image_sources, image_record = None, None
    if parameters["make_image"] and not parameters["api_catalog_file"] and not parameters["use_default_catalog"]:
        if source_catalog_file:
            image_sources = Table.read(source_catalog_file)
        else:
            chosen = scw.sample(scw_table, parameters["n_scw_image"], seed=parameters["random_seed"])
            image_record = session.fetch(
                queries.image_request(parameters, ra=target.ra, dec=target.dec),
                scw.scw_ids(chosen),
                s_max=parameters["s_max"],
                description="catalogue image",
            )
            image = mosaic.combine(
                mosaic.SkyMosaic.from_data_collection(piece.data_collection()) for piece in image_record.pieces
            )
            image_sources = mosaic.find_sources(
                image,
                threshold=parameters["detection_threshold"],
                catalog=default_catalog(target.ra, target.dec, parameters["radius"] + 15.0),
                include_new_sources=parameters["include_new_sources"],
                n_images=len(image_record.scws("done")),
            )
    chosen_catalog, origin = extraction_catalog(
        target_name=target.name,
        ra=target.ra,
        dec=target.dec,
        radius_deg=parameters["radius"],
        api_catalog_file=parameters["api_catalog_file"],
        use_default_catalog=parameters["use_default_catalog"],
        image_sources=image_sources,
    )
    return chosen_catalog, origin, image_record
