"""The optional heatmap viewer page at ``<HEAT_URL_PREFIX>/viewer`` (``HEAT_VIEWER_ENABLED``).

The page is static HTML and JavaScript that holds neither data nor keys: it asks the user for a
query key and reads everything through the key-protected query API, so the page itself is public.
It frames the tracked page under the map: the host app's own page at the chosen path, or the page
of ``HEAT_VIEWER_SITE_URL`` when that is set (see docs/viewer.md).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from flask import Blueprint, Response, make_response, render_template, request

from ..state import get_state
from . import common

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The viewer's scripts: the drawing library first (window.HeatViewer), then the page's parts.
SCRIPTS = ("viewer.js", "viewer-frame.js", "viewer-export.js", "viewer-compare.js", "viewer-app.js")


def site_origin(site_url: str) -> str:
    """``scheme://host[:port]`` of a validated ``HEAT_VIEWER_SITE_URL``."""
    parts = urllib.parse.urlsplit(site_url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(site_url: str | None) -> str:
    """Scripts and styles only from the package's own files; data only from this origin's query API;
    frames only of this origin and of the tracked site; the viewer itself is never framed."""
    frames = "'self'" if site_url is None else f"'self' {site_origin(site_url)}"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            f"frame-src {frames}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def viewer() -> Response:
    """The viewer page; it calls the query API mounted next to it (``<prefix>/api``)."""
    site_url = get_state().settings.viewer_site_url
    api_base = f"{request.script_root}{request.path.removesuffix('/viewer')}/api"
    page = render_template(
        "heat_collector/viewer.html",
        api_base=api_base,
        # Where the framed pages live: ``<page_base><path>``.
        page_base=site_url or request.script_root,
        # Set or not: without it the viewer hints at HEAT_VIEWER_SITE_URL when a framed page is missing.
        site_url=site_url,
        scripts=SCRIPTS,
    )
    response = make_response(page)
    response.headers["Content-Security-Policy"] = content_security_policy(site_url)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return common.no_store(response)


def create_viewer_blueprint() -> Blueprint:
    """``GET /viewer`` and its scripts and stylesheet under ``/viewer/static/``."""
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
