"""The dispatcher fixtures oda_api's tests import, backed by local MMODA servers.

Same names and meanings as in dispatcher-app's ``cdci_data_analysis/pytest_fixtures.py``
(read there; no code taken from it):

* ``dispatcher_test_conf_fn`` / ``dispatcher_test_conf``: a dispatcher
  configuration file and its ``dispatcher`` section, whose ``secret_key`` is
  ``'secretkey_test'`` (the tests sign their tokens with it);
* ``dispatcher_live_fixture``: the URL of a dispatcher started for this test,
  with its test instruments (debug mode);
* ``dispatcher_long_living_fixture``: the URL of a dispatcher that lives for
  the whole run;
* ``default_token_payload``: the claims of a test user with role ``general``;
* ``dispatcher_debug`` / ``dispatcher_nodebug``: the debug-mode environment flag;
* the ``*_with_gallery`` variants (a local MMODA serves the gallery routes itself);
* ``DispatcherJobState``: only what the selected tests call on it outside the
  excluded scratch-folder checks (``remove_scratch_folders``).

Each "dispatcher" is a local MMODA (``mmoda_local.server.ServerThread``) on
127.0.0.1 with its own data folder, started by the ``mmoda_conformance`` plugin.
"""

from __future__ import annotations

import glob
import shutil
import time

import pytest
import yaml

import mmoda_conformance

#: Token lifetime of the test user, as in the dispatcher's fixture.
DEFAULT_TOKEN_LIFETIME_S = 5000


def _write_conf(path, **extra) -> None:
    dispatcher = {
        "products_url": "PRODUCTS_URL",
        "secret_key": mmoda_conformance.TEST_SECRET_KEY,
        "token_max_refresh_interval": 604800,
        "resubmit_timeout": 1800,
        "bind_options": {"bind_host": "127.0.0.1", "bind_port": 0},
        **extra,
    }
    with open(path, "w") as handle:
        yaml.safe_dump({"dispatcher": dispatcher}, handle)


@pytest.fixture
def dispatcher_debug(monkeypatch):
    """The dispatcher's debug mode (test instruments served)."""
    monkeypatch.setenv("DISPATCHER_DEBUG_MODE", "yes")


@pytest.fixture
def dispatcher_nodebug(monkeypatch):
    """No debug mode."""
    monkeypatch.delenv("DISPATCHER_DEBUG_MODE", raising=False)


@pytest.fixture
def default_token_payload():
    """Claims of the test user (role ``general``), valid for 5000 s."""
    yield dict(
        sub="mtm@mtmco.net",
        name="mmeharga",
        roles="general",
        exp=int(time.time()) + DEFAULT_TOKEN_LIFETIME_S,
        tem=0,
        mstout=True,
        mssub=True,
        intsub=5,
    )


@pytest.fixture
def dispatcher_test_conf_fn(tmpdir):
    """Path of a dispatcher configuration file for one test."""
    path = tmpdir.join("test-dispatcher-conf.yaml")
    _write_conf(str(path))
    yield str(path)


@pytest.fixture
def dispatcher_test_conf(dispatcher_test_conf_fn):
    """The ``dispatcher`` section of the test configuration."""
    with open(dispatcher_test_conf_fn) as handle:
        yield yaml.safe_load(handle)["dispatcher"]


@pytest.fixture
def dispatcher_test_conf_with_gallery_fn(tmpdir):
    """Configuration with product-gallery options (the local MMODA serves its gallery itself)."""
    path = tmpdir.join("test-dispatcher-conf-with-gallery.yaml")
    _write_conf(
        str(path),
        product_gallery_options={
            "product_gallery_secret_key": "secret_key",
            "product_gallery_timezone": "Europe/Zurich",
        },
    )
    yield str(path)


@pytest.fixture
def dispatcher_test_conf_with_gallery(dispatcher_test_conf_with_gallery_fn):
    with open(dispatcher_test_conf_with_gallery_fn) as handle:
        yield yaml.safe_load(handle)["dispatcher"]


def _live_server(conf: dict):
    server = mmoda_conformance.servers().start(secret_key=conf["secret_key"], debug_instruments=True)
    return server


@pytest.fixture
def dispatcher_live_fixture(dispatcher_test_conf, dispatcher_debug):
    """URL of a local MMODA started for this test, with the dispatcher's test instruments."""
    server = _live_server(dispatcher_test_conf)
    yield server.url
    server.stop()


@pytest.fixture
def dispatcher_live_fixture_with_gallery(dispatcher_test_conf_with_gallery, dispatcher_debug):
    """URL of a local MMODA started for this test (it serves the gallery routes)."""
    server = _live_server(dispatcher_test_conf_with_gallery)
    yield server.url
    server.stop()


@pytest.fixture
def dispatcher_long_living_fixture(dispatcher_debug):
    """URL of a local MMODA with the test instruments that lives for the whole run."""
    return mmoda_conformance.servers().long_living("debug").url


class DispatcherJobState:
    """The dispatcher's scratch folders in the working folder.

    A local MMODA keeps its jobs in its own data folder and writes no
    ``scratch_*`` folders: the tests that read them are excluded (see the
    exclusion list), and removing them is all the others do.
    """

    @staticmethod
    def remove_scratch_folders(job_id=None):
        """Remove ``scratch_*`` folders (of one job, if given) from the working folder."""
        pattern = "scratch_*" if job_id is None else f"scratch_*_jid_{job_id}*"
        for folder in glob.glob(pattern):
            shutil.rmtree(folder)
