"""The ISGRI part of the follow-up: image and light curve of the ScW at T0 when the event was in the IBIS field."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u

from ..products import Product
from .active_scw import ActiveScw
from .attitude import InstrumentExposure
from .event import Event, _long_cards_allowed, _stamp

__all__ = ["IsgriFollowUp", "isgri_follow_up"]


@dataclasses.dataclass
class IsgriFollowUp:
    """The ISGRI image and light curve of the ScW active at T0, at the event's position.

    Attributes
    ----------
    made : bool
        Whether the products were made.
    reason : str
        Why not, when they were not.
    rate, rate_error : float
        Count rate at the position in the ScW image (ct/s) and its 1σ error.
    significance : float
    upper_limit_3sigma : float
        3σ upper limit on the rate at the position, ct/s (rate + 3σ, floored at 3σ).
    sources : astropy.table.Table or None
        Sources detected in the image.
    curve : integral_workflows.lightcurve.LightCurve or None
        The light curve at the position.
    records : dict
        MMODA jobs (label → RunRecord).
    products : list of Product
    """

    made: bool
    reason: str = ""
    rate: float = float("nan")
    rate_error: float = float("nan")
    significance: float = float("nan")
    upper_limit_3sigma: float = float("nan")
    sources: Any = None
    curve: Any = None
    records: dict = dataclasses.field(default_factory=dict)
    products: list = dataclasses.field(default_factory=list)


def isgri_follow_up(
    session,
    event: Event,
    parameters: Mapping[str, Any],
    scw: ActiveScw | None,
    isgri: InstrumentExposure,
    output_dir: str | Path,
) -> IsgriFollowUp:
    """The ISGRI image and light curve of the ScW at T0, when the event's position was in the IBIS field.

    One ``isgri_image`` job and one ``isgri_lc`` job (the event's position and the catalogue sources the
    image detects extracted together, as a coded-mask analysis needs) of that single ScW, in
    ``E1_keV``–``E2_keV``, the light curve binned to ``lc_time_bin``.

    Parameters
    ----------
    session : integral_workflows.session.Session
    event : Event
    parameters : mapping
        ``E1_keV``, ``E2_keV``, ``lc_time_bin`` and the notebook's other parameters (provenance).
    scw : ActiveScw or None
    isgri : InstrumentExposure
        ISGRI's exposure of the event (:func:`exposure`).
    output_dir : path-like

    Returns
    -------
    IsgriFollowUp
        ``made`` False (with the reason) when there is no position, no pointing at T0, no ISGRI good time, or
        the position was outside the IBIS field.
    """
    import matplotlib.pyplot as plt
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import proj_plane_pixel_scales

    from .. import catalog, lightcurve, mosaic, queries
    from ..parameters.models import ObservationParameters
    from ..parameters.validation import validate_model

    if not event.has_position:
        return IsgriFollowUp(False, "the event has no position")
    if scw is None:
        return IsgriFollowUp(False, "no pointing ScW at T0 (slew, perigee passage or gap)")
    if not isgri.exposed:
        return IsgriFollowUp(False, "the position was outside the IBIS field")
    if not scw.good_isgri > 0:
        return IsgriFollowUp(False, f"ScW {scw.scw_id} has no ISGRI good time")
    p = validate_model(
        ObservationParameters,
        {
            "src_name": event.name,
            "RA": event.ra,
            "DEC": event.dec,
            "instrument": "isgri",
            "E1_keV": float(parameters["E1_keV"]),
            "E2_keV": float(parameters["E2_keV"]),
            "lc_time_bin": float(parameters["lc_time_bin"]),
            "s_max": 1,
        },
        where="the ISGRI jobs of the ScW at T0",
    )
    out = Path(output_dir)
    coord = SkyCoord(event.ra * u.deg, event.dec * u.deg)
    image_record = session.fetch(
        queries.image_request(p, ra=event.ra, dec=event.dec), [scw.scw_id], s_max=1, description="ISGRI image"
    )
    result = IsgriFollowUp(True, records={"isgri_image": image_record})
    sky = mosaic.SkyMosaic.from_data_collection(image_record.pieces[0].data_collection())
    field = catalog.default_catalog(scw.ra_x, scw.dec_x, 20.0)
    sources = mosaic.find_sources(sky, threshold=p.detection_threshold, catalog=field, n_images=1)
    rate, error = mosaic.point_source_rate(sky, coord)
    result.rate, result.rate_error = float(rate), float(error)
    result.significance = float(rate / error) if error > 0 else float("nan")
    result.upper_limit_3sigma = float(max(rate, 0.0) + 3.0 * error)
    result.sources = sources
    stamp = _stamp(parameters, event)
    with _long_cards_allowed():
        sky.write(out / "isgri_image.fits", provenance=stamp, overwrite=True)
    figure = mosaic.plot(
        sky, sources=sources, title=f"{event.name}: ISGRI {p.E1_keV:g}-{p.E2_keV:g} keV, ScW {scw.scw_id}"
    )
    x, y = sky.wcs.world_to_pixel(coord)
    # the error circle, drawn at least 0.3° wide so that it shows on 5′ pixels
    radius_px = max(event.radius or 0.0, 0.3) / float(proj_plane_pixel_scales(sky.wcs.celestial)[0])
    figure.axes[0].add_patch(plt.Circle((x, y), radius_px, fill=False, color="cyan", lw=1.2))
    figure.savefig(out / "isgri_image.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    sources.write(out / "isgri_sources.ecsv", overwrite=True)
    band = (p.E1_keV, p.E2_keV)
    names = {"src_names": [str(name) for name in sources["name"]]}
    image = _isgri_product(
        out / "isgri_image.fits", "image", event, scw, band, details=names, sources=out / "isgri_sources.ecsv"
    )
    result.products.append(image)

    named = sources[~np.asarray(sources["new_source"], dtype=bool)] if len(sources) else sources
    extraction = catalog.sources_table(
        [event.name, *[str(n) for n in named["name"]]],
        [event.ra, *[float(v) for v in named["ra"]]],
        [event.dec, *[float(v) for v in named["dec"]]],
    )
    lc_record = session.fetch(
        queries.light_curve_request(
            p,
            ra=event.ra,
            dec=event.dec,
            selected_catalog=catalog.to_api_catalog(extraction),
            time_bin_s=float(parameters["lc_time_bin"]),
        ),
        [scw.scw_id],
        s_max=1,
        description="ISGRI light curve",
    )
    result.records["isgri_lc"] = lc_record
    curve = lightcurve.light_curves_from_pieces(lc_record.pieces, [event.name]).get(event.name)
    if curve is not None:
        result.curve = curve
        with _long_cards_allowed():
            curve.write(out / "isgri_lc.fits", provenance=stamp, overwrite=True)
        figure = lightcurve.plot(
            curve,
            path=out / "isgri_lc.png",
            time_axis="mjd",
            title=f"{event.name}: ISGRI {p.E1_keV:g}-{p.E2_keV:g} keV, ScW {scw.scw_id}",
        )
        plt.close(figure)
        time_bin = {"time_bin": float(parameters["lc_time_bin"])}
        light_curve = _isgri_product(
            out / "isgri_lc.fits", "light_curve", event, scw, band, identity=time_bin, details=time_bin
        )
        result.products.append(light_curve)
    return result


def _isgri_product(
    path: Path,
    kind: str,
    event: Event,
    scw: ActiveScw,
    band: tuple[float, float],
    *,
    identity: Mapping[str, Any] | None = None,
    details: Mapping[str, Any],
    **fields: Any,
) -> Product:
    """An ISGRI product of the ScW at T0 (its plot beside it as ``.png``), named by the event, the ScW and the band.

    ``identity`` and ``details`` add to what every such product has (notebook, event, ScW, band; revolution);
    ``fields`` are further :class:`Product` fields.
    """
    return Product(
        path=path,
        kind=kind,
        instrument="isgri",
        source=event.name,
        band=band,
        period=scw.utc_span(),
        position=(event.ra, event.dec),
        plot=path.with_suffix(".png"),
        title=f"{event.name} ISGRI {kind.replace('_', ' ')} of ScW {scw.scw_id}",
        identity={
            "notebook": "transient_followup",
            "event_name": event.name,
            "scw": scw.scw_id,
            "E1_keV": band[0],
            "E2_keV": band[1],
            **(identity or {}),
        },
        details={**details, "revolutions": [scw.revolution]},
        **fields,
    )
