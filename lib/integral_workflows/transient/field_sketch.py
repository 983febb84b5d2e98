"""A sketch of the instruments' fields, the event and the Earth in the spacecraft frame."""

from __future__ import annotations

from pathlib import Path

from .attitude import Attitude, instrument_frame
from .event import Event
from .geometry import INSTRUMENT_FIELDS

__all__ = ["plot_fields"]


def plot_fields(attitude: Attitude, event: Event, *, path: str | Path | None = None, simulated: bool = False):
    """The instruments' fields in the spacecraft frame (Y, Z angles from the pointing) and the event's position.

    Parameters
    ----------
    attitude : Attitude
    event : Event
    path : path-like, optional
        Save the figure there.
    simulated : bool
        Mark the plot ``[SIMULATED DATA]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    figure, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    colours = {"ISGRI": "tab:blue", "JEM-X": "tab:green", "SPI": "tab:purple"}
    for name, field in INSTRUMENT_FIELDS.items():
        for size, style in ((field.fully_coded_deg, "-"), (field.zero_response_deg, ":")):
            if field.shape == "square":
                patch = Rectangle((-size / 2, -size / 2), size, size, fill=False, ls=style, color=colours[name])
            else:
                patch = Circle((0, 0), size / 2, fill=False, ls=style, color=colours[name])
            ax.add_patch(patch)
        ax.plot([], [], color=colours[name], label=f"{name}: fully coded (—), zero response (···)")
    lim = 20.0
    if event.has_position:
        theta, y, z = (float(v[0]) for v in instrument_frame(attitude, [event.ra], [event.dec]))
        if theta < 90.0 and max(abs(y), abs(z)) < lim:
            ax.plot(y, z, "r*", markersize=14, label=f"{event.name} (θ = {theta:.1f}°)")
            if event.radius:
                ax.add_patch(Circle((y, z), event.radius, fill=False, color="r", lw=1))
        else:
            ax.text(0, -lim * 0.9, f"{event.name}: θ = {theta:.1f}° from the pointing", ha="center", color="r")
    else:
        ax.text(0, -lim * 0.9, f"{event.name}: no position", ha="center", color="r")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("angle towards spacecraft Y (deg)")
    ax.set_ylabel("angle towards spacecraft Z (deg)")
    title = f"INTEGRAL fields at {attitude.utc}, pointing RA {attitude.x[0]:.2f}°, Dec {attitude.x[1]:.2f}°"
    ax.set_title(title + ("  [SIMULATED DATA]" if simulated else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    if path is not None:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure
