"""A ready app for gunicorn, configured from ``HEAT_*`` environment variables.

``gunicorn -w 4 'flask_heat_collector.wsgi:create_app()'``
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from .config import settings_from_environ, warn_unknown_names
from .extension import HeatCollector


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """A Flask app with HeatCollector configured from the environment (lists comma-separated).

    Unknown ``HEAT_*`` variables (typos) are logged as warnings, even when the start then fails.
    """
    source = os.environ if environ is None else environ
    app = Flask("flask_heat_collector")
    app.config.update(settings_from_environ(source))
    try:
        HeatCollector(app)
    finally:
        warn_unknown_names(source, "the environment")
    return app
