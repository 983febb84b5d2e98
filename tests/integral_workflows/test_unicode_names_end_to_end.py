"""A Unicode target name end to end (issue 10): the mosaic notebook on the local MMODA with ``src_name = "Boötes null"``.

FITS headers hold ASCII only, so OBJECT is folded ("Bootes null"); the step record keeps the original.
"""

from __future__ import annotations

import json
import subprocess
import sys

from astropy.io import fits

from integral_workflows import hosts

from ..conftest import REPO


def test_mosaic_notebook_with_a_unicode_target_name(tmp_path, monkeypatch):
    home = tmp_path / "mmoda"
    monkeypatch.setenv("MMODA_LOCAL_HOME", str(home))
    monkeypatch.setenv("INTEGRAL_WORKFLOWS_CACHE", str(tmp_path / "chunks"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    out = tmp_path / "mosaic"
    # The Crab's field under another (Unicode) name: the name is only a label for the products.
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(REPO / "notebooks" / "mosaic.ipynb"),
        str(tmp_path / "m.ipynb"),
        "-p",
        "output_dir",
        str(out),
        "-p",
        "src_name",
        "Boötes null",
        "-p",
        "RA",
        "83.63308",
        "-p",
        "DEC",
        "22.0145",
        "-p",
        "s_max",
        "10",
    ]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        hosts.stop_local_server(home)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with fits.open(out / "mosaic.fits") as hdul:
        assert hdul[0].header["OBJECT"] == "Bootes null"
        for hdu in hdul:
            assert str(hdu.header).isascii()
    record = json.loads((out / "mosaic.step.json").read_text(encoding="utf-8"))
    assert record["parameters"]["src_name"] == "Boötes null"
    assert (out / "sources.ecsv").exists() and (out / "mosaic.png").exists()
