"""The ScW active at T0."""

from __future__ import annotations

import dataclasses

import numpy as np
from astropy.time import Time

__all__ = ["ActiveScw", "scw_at"]


IJD_MJD_OFFSET = 51544.0


@dataclasses.dataclass(frozen=True)
class ActiveScw:
    """The pointing ScW covering T0.

    Attributes
    ----------
    scw_id : str
        With its version (``.001`` consolidated, ``.000`` near-real-time).
    data_level : str
        ``CONS`` when the consolidated archive has it, else ``NRT``.
    tstart, tstop : float
        IJD (TT).
    ra_x, dec_x : float
        Pointing, deg.
    good_isgri : float
        ISGRI good time, s (NaN when the list does not give it).
    revolution : str
    obs_id : str
    """

    scw_id: str
    data_level: str
    tstart: float
    tstop: float
    ra_x: float
    dec_x: float
    good_isgri: float
    revolution: str
    obs_id: str

    def utc_span(self) -> tuple[str, str]:
        """Start and end, UTC ISOT (ms)."""
        times = Time(np.array([self.tstart, self.tstop]) + IJD_MJD_OFFSET, format="mjd", scale="tt").utc
        times.precision = 3
        return str(times[0].isot), str(times[1].isot)


def scw_at(session, t0_utc: str) -> ActiveScw | None:
    """The pointing ScW active at T0 and its data level, from the dispatcher's ScW-list service.

    The consolidated list (CONS) is asked first; a ScW found only in the near-real-time list is ``NRT``.

    Parameters
    ----------
    session : integral_workflows.session.Session
    t0_utc : str
        T0, UTC ISOT.

    Returns
    -------
    ActiveScw or None
        None when no pointing covers T0 (a slew, a perigee passage or a gap).
    """
    from .. import scw

    t0 = Time(t0_utc, format="isot", scale="utc")
    t0_ijd = float(t0.tt.mjd - IJD_MJD_OFFSET)
    for data_level in ("CONS", "NRT"):
        # a whole-sky cone: the ScW is wanted wherever it points
        table = scw.query_scws(
            ra=0.0,
            dec=0.0,
            radius=180.0,
            t1=Time(t0_ijd - 1.0 / 86400 + IJD_MJD_OFFSET, format="mjd", scale="tt"),
            t2=Time(t0_ijd + 1.0 / 86400 + IJD_MJD_OFFSET, format="mjd", scale="tt"),
            data_version=data_level,
            session=session,
        )
        covering = [row for row in table if row["tstart"] <= t0_ijd <= row["tstop"] and row["scw_type"] == "pointing"]
        if covering:
            row = covering[0]
            return ActiveScw(
                scw_id=str(row["scw_id"]),
                data_level=data_level,
                tstart=float(row["tstart"]),
                tstop=float(row["tstop"]),
                ra_x=float(row["ra_x"]),
                dec_x=float(row["dec_x"]),
                good_isgri=float(row["good_isgri"]),
                revolution=str(row["revolution"]),
                obs_id=str(row["obs_id"]) if "obs_id" in table.colnames else "",
            )
    return None
