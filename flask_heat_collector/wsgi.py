"""A ready app for gunicorn, configured from ``HEAT_*`` environment variables.

``gunicorn -w 4 'flask_heat_collector.wsgi:create_app()'``
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from .config import settings_from_environ
from .extension import HeatCollector


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """A Flask app with HeatCollector configured from the environment (lists comma-separated)."""
    app = Flask("flask_heat_collector")
    app.config.update(settings_from_environ(os.environ if environ is None else environ))
    HeatCollector(app)
    return app
