"""Fixtures of the mmoda_local tests."""

import socket

import pytest


@pytest.fixture(scope="session")
def scw_archive(archive_cache):
    """The simulated ScW archive, built once per session (cached in the session's archive cache)."""
    from mmoda_local.archive import ScwArchive

    return ScwArchive.load(cache_dir=archive_cache)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
