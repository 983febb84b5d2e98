"""The local MMODA's Flask application: one backend, one blueprint per service (docs/architecture.md)."""

from __future__ import annotations

from flask import Flask

from . import dispatcher, gallery_api, gallery_site, gateway_api
from .backend import EXTENSION, GALLERY_EXTENSION, Backend
from .config import ServerConfig
from .scrubbing import redact_tokens_in_access_log

#: The services, each a blueprint: the dispatcher, the ``gw`` services, the gallery's endpoints and website.
BLUEPRINTS = (dispatcher.blueprint, gateway_api.blueprint, gallery_api.blueprint, gallery_site.blueprint)


def create_app(config: ServerConfig | None = None, *, analysis=None) -> Flask:
    """Build the Flask application of a local MMODA.

    Parameters
    ----------
    config : ServerConfig, optional
        Server configuration (defaults: ``ServerConfig()``).
    analysis : object, optional
        Product computation, replaceable in tests.

    Returns
    -------
    flask.Flask
        The application; its :class:`~mmoda_local.backend.Backend` is ``app.extensions["mmoda_local"]``.
    """
    backend = Backend(config or ServerConfig(), analysis=analysis)
    app = Flask("mmoda_local")
    app.extensions[EXTENSION] = backend
    app.extensions[GALLERY_EXTENSION] = backend.gallery
    # gallery requests carry the token in the query string, which werkzeug's access log would write
    redact_tokens_in_access_log()
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
