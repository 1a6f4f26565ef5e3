"""The optional heatmap viewer page at ``<HEAT_URL_PREFIX>/viewer`` (``HEAT_VIEWER_ENABLED``).

The page is static HTML and JavaScript that holds neither data nor keys: it asks the user for a
query key and reads everything through the key-protected query API, so the page itself is public.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, make_response, render_template, request

from . import common

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Scripts and styles only from the package's own files; data only from this origin's query API.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def viewer() -> Response:
    """The viewer page; it calls the query API mounted next to it (``<prefix>/api``)."""
    api_base = f"{request.script_root}{request.path.removesuffix('/viewer')}/api"
    response = make_response(render_template("heat_collector/viewer.html", api_base=api_base))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return common.no_store(response)


def create_viewer_blueprint() -> Blueprint:
    """``GET /viewer`` and its script and stylesheet under ``/viewer/static/``."""
    bp = Blueprint(
        "heat_viewer",
        __name__,
        template_folder=str(PACKAGE_DIR / "templates"),
        static_folder=str(PACKAGE_DIR / "static" / "heat_collector"),
        static_url_path="/viewer/static",
    )
    common.install(bp)
    bp.add_url_rule("/viewer", "viewer", viewer)
    return bp
