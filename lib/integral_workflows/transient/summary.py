"""The GCN-style summary of a follow-up: the record, its text, its files."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import spiacs
from ..products import Product
from .active_scw import ActiveScw
from .attitude import Attitude
from .event import Event
from .isgri import IsgriFollowUp
from .spi_acs import SpiAcsFollowUp

__all__ = ["summary_record", "summary_text", "write_summary"]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summary_record(
    event: Event,
    attitude: Attitude,
    where: Mapping[str, Any],
    scw: ActiveScw | None,
    spiacs_result: SpiAcsFollowUp,
    isgri: IsgriFollowUp,
    *,
    simulated: bool,
    backend: str = "",
) -> dict:
    """Everything the follow-up found, as one JSON-safe record (``transient_summary.json``).

    Parameters
    ----------
    event : Event
    attitude : Attitude
    where : mapping
        :func:`exposure`'s answer.
    scw : ActiveScw or None
    spiacs_result : SpiAcsFollowUp
    isgri : IsgriFollowUp
    simulated : bool
        The data come from the local MMODA's simulated sky.
    backend : str
        The dispatcher's identity (``Session.backend_id``).

    Returns
    -------
    dict
    """
    instruments = {
        name: {
            "coded_fraction": _finite(exposed.coded_fraction),
            "best_coded_fraction_in_error_circle": _finite(exposed.best_coded_fraction),
            "exposed": exposed.exposed if event.has_position else None,
            "verdict": exposed.verdict,
        }
        for name, exposed in where["instruments"].items()
    }
    spiacs_part: dict[str, Any] = {
        "data": spiacs_result.has_data,
        "no_data_reason": spiacs_result.no_data or None,
        "search_window_s": list(spiacs_result.window),
        "limits_direction": (
            f"theta = {spiacs_result.theta_deg:.1f} deg"
            if spiacs_result.theta_deg is not None
            else "range over every direction (no position)"
        ),
        "fluence_band_keV": list(spiacs.FLUENCE_BAND_KEV),
    }
    if spiacs_result.has_data:
        best, limits = spiacs_result.search.best, spiacs_result.limits
        spiacs_part.update(
            time_bin_s=spiacs_result.light_curve.bin_s,
            excess_variance=_finite(spiacs_result.background.excess_variance),
            best_excess={key: _finite(value) for key, value in best.as_dict().items()},
            detected=bool(spiacs_result.search.detected),
            detection_threshold_post_trials_sigma=_finite(spiacs_result.search.threshold_sigma),
            count_upper_limits_3sigma={
                f"{float(t):g}": _finite(v) for t, v in zip(limits["timescale_s"], limits["ul_counts"], strict=True)
            },
            fluence_upper_limits_3sigma_erg_cm2={
                spectrum: {f"{t:g}": [_finite(low), _finite(high)] for t, (low, high) in by_scale.items()}
                for spectrum, by_scale in spiacs_result.fluence_limits.items()
            },
        )
    return {
        "event": {
            "name": event.name,
            "kind": event.kind,
            "t0_utc": event.t0_utc,
            "ra_deg": event.ra,
            "dec_deg": event.dec,
            "error_radius_deg": event.radius,
        },
        "integral": {
            "time_utc": attitude.utc,
            "revolution": attitude.revolution,
            "pointing_ra_deg": attitude.x[0],
            "pointing_dec_deg": attitude.x[1],
            "z_axis_ra_deg": attitude.z[0],
            "z_axis_dec_deg": attitude.z[1],
            "geocentric_ra_deg": attitude.integral_ra,
            "geocentric_dec_deg": attitude.integral_dec,
            "distance_km": attitude.distance_km,
            "earth_angular_radius_deg": attitude.earth_angular_radius_deg,
        },
        "position_in_spacecraft_frame": {
            "theta_deg": _finite(where["theta_deg"]),
            "y_deg": _finite(where["y_deg"]),
            "z_deg": _finite(where["z_deg"]),
            "earth_occulted": where["occulted"],
        },
        "instruments": instruments,
        "scw": None
        if scw is None
        else {
            "scw_id": scw.scw_id,
            "data_level": scw.data_level,
            "start_utc": scw.utc_span()[0],
            "end_utc": scw.utc_span()[1],
            "pointing_ra_deg": scw.ra_x,
            "pointing_dec_deg": scw.dec_x,
            "good_isgri_s": _finite(scw.good_isgri),
            "revolution": scw.revolution,
            "obs_id": scw.obs_id,
        },
        "spiacs": spiacs_part,
        "isgri": {
            "made": isgri.made,
            "reason": isgri.reason or None,
            "rate_ct_s": _finite(isgri.rate),
            "rate_error_ct_s": _finite(isgri.rate_error),
            "significance": _finite(isgri.significance),
            "upper_limit_3sigma_ct_s": _finite(isgri.upper_limit_3sigma),
            "detected_sources": [str(name) for name in isgri.sources["name"]] if isgri.sources is not None else [],
        },
        "simulated": bool(simulated),
        "backend": backend,
    }


def _fmt(value: float | None, spec: str = ".2g") -> str:
    if value is None:
        return "n/a"
    text = f"{value:{spec}}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def summary_text(record: Mapping[str, Any]) -> str:
    """A GCN-circular-style text of a :func:`summary_record`.

    Parameters
    ----------
    record : mapping
        From :func:`summary_record`.

    Returns
    -------
    str
        Title, subject and a few paragraphs: INTEGRAL's orientation and distance, the instruments' exposure, the
        ScW, the SPI-ACS result (excess or limits) and ISGRI's.
    """
    event, integral, frame = record["event"], record["integral"], record["position_in_spacecraft_frame"]
    spiacs_part, isgri = record["spiacs"], record["isgri"]
    lines = ["TITLE:   GCN CIRCULAR (draft)"]
    lines.append(f"SUBJECT: {event['name']}: INTEGRAL observation ({event['kind']})")
    if record["simulated"]:
        lines.append("NOTE:    SIMULATED DATA from the local MMODA; not INTEGRAL archive data.")
    lines.append("")
    if event["ra_deg"] is None:
        where = "The event has no position; INTEGRAL's orientation is given for reference."
    else:
        circle = f" (error radius {event['error_radius_deg']:g} deg)" if event["error_radius_deg"] else ""
        where = (
            f"At T0 the position RA = {event['ra_deg']:.3f}, Dec = {event['dec_deg']:.3f} deg{circle} was "
            f"{frame['theta_deg']:.1f} deg from INTEGRAL's pointing axis"
            + ("; it was hidden by the Earth." if frame["earth_occulted"] else ", not occulted by the Earth.")
        )
    lines.append(
        f"At T0 = {event['t0_utc']} UTC INTEGRAL (revolution {integral['revolution']}) was "
        f"{integral['distance_km']:.0f} km from the Earth's centre, pointing at RA = {integral['pointing_ra_deg']:.3f}, "
        f"Dec = {integral['pointing_dec_deg']:.3f} deg. {where}"
    )
    if event["ra_deg"] is None:
        lines.append("Field of view: unknown without a position.")
    else:
        exposures = ", ".join(f"{name} {facts['verdict']}" for name, facts in record["instruments"].items())
        lines.append(f"Field of view: {exposures}.")
    scw = record["scw"]
    if scw is None:
        lines.append("No pointing science window covers T0 (slew, perigee passage or gap).")
    else:
        lines.append(
            f"Science window {scw['scw_id']} ({scw['start_utc']} to {scw['end_utc']}) covers T0; its data are "
            f"{'consolidated (CONS)' if scw['data_level'] == 'CONS' else 'near-real-time (NRT)'}."
        )
    lines.append("")
    if not spiacs_part["data"]:
        lines.append(f"SPI-ACS has no usable data around T0 ({spiacs_part['no_data_reason']}).")
    else:
        window, best = spiacs_part["search_window_s"], spiacs_part["best_excess"]
        lines.append(
            f"We searched the INTEGRAL SPI-ACS light curve ({spiacs_part['time_bin_s']:g} s bins) from "
            f"T0{window[0]:+g} s to T0{window[1]:+g} s on timescales from {spiacs_part['time_bin_s']:g} to 10 s, "
            f"above a polynomial background fitted outside that interval (excess variance "
            f"{_fmt(spiacs_part['excess_variance'], '.2f')} times Poisson). The most significant excess is "
            f"{best['excess']:.0f} ± {best['sigma_counts']:.0f} counts on {best['timescale_s']:g} s from "
            f"T0{best['start_s']:+.2f} s: {best['significance']:.1f} sigma before trials, "
            f"{best['post_trial_significance']:.1f} sigma after trials."
        )
        threshold = spiacs_part["detection_threshold_post_trials_sigma"]
        lines.append(
            f"This is a detection (≥ {threshold:g} sigma after trials): a candidate counterpart in SPI-ACS."
            if spiacs_part["detected"]
            else f"No significant excess is found (threshold {threshold:g} sigma after trials)."
        )
        fluence, parts = spiacs_part["fluence_upper_limits_3sigma_erg_cm2"], []
        for spectrum, timescale in (("short-hard", "1"), ("long-soft", "8")):
            low, high = fluence.get(spectrum, {}).get(timescale, [None, None])
            if low is None:
                continue
            value = _fmt(low) if high is None or abs(high - low) <= 1e-3 * abs(low) else f"{_fmt(low)} to {_fmt(high)}"
            parts.append(f"{value} erg/cm2 for a {timescale} s burst with a {spectrum} spectrum")
        if parts:
            lines.append(
                f"3-sigma upper limits on the 75-2000 keV fluence of a burst starting at T0 "
                f"({spiacs_part['limits_direction']}): " + "; ".join(parts) + "."
            )
        counts = spiacs_part["count_upper_limits_3sigma"]
        lines.append(
            "3-sigma upper limits on the counts: "
            + ", ".join(f"{_fmt(value, '.0f')} on {scale} s" for scale, value in counts.items())
            + "."
        )
    lines.append("")
    if isgri["made"]:
        lines.append(
            f"IBIS/ISGRI: in science window {scw['scw_id']} the rate at the position is "
            f"{_fmt(isgri['rate_ct_s'], '.3f')} ± {_fmt(isgri['rate_error_ct_s'], '.3f')} ct/s "
            f"({_fmt(isgri['significance'], '.1f')} sigma); 3-sigma upper limit {_fmt(isgri['upper_limit_3sigma_ct_s'], '.3f')} ct/s."
        )
    else:
        lines.append(f"IBIS/ISGRI: no image or light curve ({isgri['reason']}).")
    lines.append(
        "Approximations: fields of view as squares (ISGRI) or circles (JEM-X, SPI) with linear coded fraction; "
        "SPI-ACS fluence limits from a typical response at the angle to the pointing axis (docs/transients.md)."
    )
    return "\n".join(lines) + "\n"


def write_summary(record: Mapping[str, Any], output_dir: str | Path) -> list[Product]:
    """Write ``transient_summary.txt`` (GCN-style text) and ``transient_summary.json`` (the record).

    Parameters
    ----------
    record : mapping
        From :func:`summary_record`.
    output_dir : path-like

    Returns
    -------
    list of Product
        The two files (kind ``table``).
    """
    out = Path(output_dir)
    text_path, json_path = out / "transient_summary.txt", out / "transient_summary.json"
    text_path.write_text(summary_text(record), encoding="utf-8")
    json_path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [Product(path=text_path, kind="table"), Product(path=json_path, kind="table")]
