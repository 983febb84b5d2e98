"""Spectra through the local MMODA (issue 10): the fit band follows the epoch, the fit's p-value is recorded,
and a catalogue source outside every ScW of the field is skipped and reported, not a crash.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table

from integral_workflows import catalog, provenance, queries, spectrum
from integral_workflows.session import Session

from .test_jobs import FAST

CRAB = (83.633, 22.0145)
GX_349 = (256.43542, -36.42325)  # GX 349+2: never in a Crab-field pointing
PARAMETERS = {
    "osa_version": "OSA11.2",
    "E1_keV": 20.0,
    "E2_keV": 40.0,
    "src_name": "Crab",
    "instrument": "isgri",
    "integral_data_rights": "public",
}


def crab_field_scws(server, start_ijd: float, n: int) -> list[str]:
    """``n`` good Crab-field ScWs from ``start_ijd`` (IJD) on, from the server's archive."""
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(start_ijd, start_ijd + 800.0, ra=CRAB[0], dec=CRAB[1], radius=10.0)]
    good = [f"{s}.001" for s, b, g in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"]) if not b and g > 0]
    assert len(good) >= n
    return sorted(good[:n])


def test_spectra_of_two_epochs_through_the_local_mmoda(server, tmp_path):
    sources = Table(
        {
            "name": ["Crab", "GX 349+2"],
            "ra": [CRAB[0], GX_349[0]],
            "dec": [CRAB[1], GX_349[1]],
            "significance": [100.0, 0.0],
        }
    )
    request = queries.spectrum_request(
        PARAMETERS, ra=CRAB[0], dec=CRAB[1], selected_catalog=catalog.to_api_catalog(sources)
    )
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=FAST, progress=False)
    grouping = {"min_energy": 20.0, "max_energy": 600.0, "factor": -30}
    # IJD 2000 is 2005-06, IJD 6400 is 2017-07 (after ISGRI's threshold rose).
    for start_ijd, expected_low in ((2000.0, 20.0), (6400.0, 25.0)):
        record = session.fetch(request, crab_field_scws(server, start_ijd, 2), s_max=1)
        report = {}
        combined = spectrum.spectra_from_pieces(record.pieces, ["Crab", "GX 349+2"], instrument="isgri", report=report)
        assert "Crab" in combined
        assert "GX 349+2" not in combined and report["GX 349+2"]["status"] == "not seen by any chunk"
        assert spectrum.coverage_record(report)["sources_not_seen"] == ["GX 349+2"]
        spectra, fits_by_source, summary = spectrum.fit_sources(
            combined, instrument="isgri", systematic_fraction=0.0015, band_keV=(20.0, 40.0), grouping=grouping
        )
        row = summary[list(summary["source"]).index("Crab")]
        assert row["fit_band_min_keV"] == expected_low
        assert row["fitted_min_keV"] >= expected_low and (expected_low > 20 or row["fitted_min_keV"] < 25)
        fit = fits_by_source["Crab"]
        assert row["p_value"] == fit.p_value and np.isfinite(fit.p_value) and fit.dof > 0
        assert bool(row["poor_fit"]) == (fit.p_value < spectrum.POOR_FIT_P_VALUE)
        pha, _, _ = spectrum.write(
            *spectra["Crab"],
            tmp_path / f"crab_{int(start_ijd)}.fits",
            provenance=provenance.fits_provenance(notebook="spectrum.ipynb", src_name="Crab", git={}),
        )
        header = fits.getheader(pha, 1)
        assert header["FIT_EMIN"] == expected_low and header["FITDOF"] == fit.dof
        assert header["FITPVAL"] == fit.p_value and header["POORFIT"] == bool(row["poor_fit"])
        assert header["SIMULATD"]
