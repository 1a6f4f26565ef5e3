"""A ready app for gunicorn, configured from ``HEAT_*`` environment variables.

``gunicorn -w 4 'flask_heat_collector.wsgi:create_app()'``
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import settings_from_environ, warn_unknown_names
from .extension import HeatCollector
from .log import install_json_handler, install_json_handler_for_all_loggers
from .prometheus import MULTIPROC_ENV, check_private_dir


def _shared_metrics_dir() -> None:
    """Under a plain ``gunicorn -w N`` (no PROMETHEUS_MULTIPROC_DIR), one metrics directory for the
    workers of this gunicorn master: named by the master's pid and start, made by the first worker.

    The name can be guessed, so it is made as ``mkdtemp`` makes its directories (exclusively, mode
    0700), and one found there is used only if it is this user's and 0700 (a sibling worker's):
    a directory planted by someone else stops the start (ConfigurationError).

    Set before prometheus_client is imported (at ``init_app``), so it starts in multiprocess mode.
    """
    if os.environ.get(MULTIPROC_ENV) or "gunicorn.arbiter" not in sys.modules or "prometheus_client" in sys.modules:
        return
    master = os.getppid()
    try:
        started = int(os.stat(f"/proc/{master}").st_ctime)
    except OSError:
        started = 0
    path = os.path.join(tempfile.gettempdir(), f"heat-collector-metrics-{master}-{started}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # a sibling worker's, or planted: checked next
    check_private_dir(path, mode=0o077)
    os.environ[MULTIPROC_ENV] = path


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """A Flask app with HeatCollector configured from the environment (lists comma-separated).

    The ``flask_heat_collector`` logger writes JSON lines to stderr, and so does every other logger
    (SQLAlchemy, werkzeug, the Flask app's): one JSON object per line, exceptions as a field.
    Unknown ``HEAT_*`` variables (typos) are logged as warnings, even when the start then fails.
    ``HEAT_TRUSTED_PROXIES`` = N wraps the app in werkzeug's ``ProxyFix(x_for=N, x_proto=N)``. Under
    a plain ``gunicorn -w N`` the workers share one Prometheus metrics directory (see
    :func:`_shared_metrics_dir`).
    """
    install_json_handler()
    install_json_handler_for_all_loggers()  # before Flask(): its app logger then adds no plain handler
    _shared_metrics_dir()
    source = os.environ if environ is None else environ
    app = Flask("flask_heat_collector")
    app.config.update(settings_from_environ(source))
    try:
        heat = HeatCollector(app)
    finally:
        warn_unknown_names(source, "the environment")
    proxies = heat.state(app).settings.trusted_proxies
    if proxies:
        # X-Forwarded-For and -Proto only: the documented nginx sets Host itself, not X-Forwarded-Host.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    return app
