"""Light-curve variability through the local MMODA (issue 10).

In the GX 339-4 field of 2010-03-29 to 04-05, OAO 1657-415 is constant in the simulated sky and sits near the edge
of many pointings (errors up to ~50 times the median); GX 339-4 varies (curated outburst model).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.time import Time

from integral_workflows import catalog, queries
from integral_workflows import lightcurve as lc
from integral_workflows.session import Session

from .test_jobs import FAST

GX_339 = (255.7057, -48.7897)
OAO_1657 = (255.2039, -41.6561)


def test_constant_edge_of_field_source_is_not_variable_and_a_variable_one_is(server, tmp_path):
    t1, t2 = (Time(t, scale="utc").tt.mjd - 51544.0 for t in ("2010-03-29", "2010-04-05"))
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(t1, t2, ra=GX_339[0], dec=GX_339[1], radius=10.5)]
    scws = sorted(
        f"{s}.001" for s, b, g in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"]) if not b and g > 0
    )
    names = ["GX 339-4", "OAO 1657-415"]
    sources = Table(
        {"name": names, "ra": [GX_339[0], OAO_1657[0]], "dec": [GX_339[1], OAO_1657[1]], "significance": [50.0, 20.0]}
    )
    parameters = {
        "osa_version": "OSA11.2",
        "E1_keV": 28.0,
        "E2_keV": 40.0,
        "src_name": "GX 339-4",
        "instrument": "isgri",
        "integral_data_rights": "public",
    }
    request = queries.light_curve_request(
        parameters, ra=GX_339[0], dec=GX_339[1], selected_catalog=catalog.to_api_catalog(sources), time_bin_s=3000.0
    )
    session = Session(url=server.url, cache_dir=tmp_path / "chunks", retry=FAST, progress=False)
    record = session.fetch(request, scws, s_max=10)
    curves = lc.light_curves_from_pieces(record.pieces, names)
    constant = lc.add_systematics(curves["OAO 1657-415"], 0.0015)
    usable = constant.error[np.isfinite(constant.error) & (constant.error > 0)]
    assert usable.max() > 20 * np.median(usable)  # the heteroscedastic case of the issue
    quiet = lc.variability(constant)
    assert quiet.n_excluded >= 1
    assert abs(quiet.excess_significance) < 3
    assert not (quiet.fvar > 3 * quiet.fvar_error)
    assert quiet.p_value > 1e-3
    variable = lc.variability(lc.add_systematics(curves["GX 339-4"], 0.0015))
    assert variable.excess_significance > 5 and variable.fvar > 3 * variable.fvar_error
