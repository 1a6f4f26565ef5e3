"""``GET /metrics``: the collector's Prometheus metrics (``HEAT_PROMETHEUS_ENABLED``).

Behind the query key like ``/api/metrics`` (a project-scoped key is refused: the totals cover every
project) unless ``HEAT_PROMETHEUS_PUBLIC``. Served while the database is down, so that its errors
can be seen.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..auth import check_query_key, require_unscoped
from ..state import get_state
from . import common


def metrics() -> Response:
    body, content_type = get_state().metrics.prometheus.exposition(request.headers.get("Accept", ""))
    return common.no_store(Response(body, content_type=content_type))


def _require_key() -> None:
    state = get_state()
    if not state.settings.prometheus_public:
        require_unscoped(check_query_key(request, state.settings, state.query_keys))


def create_prometheus_blueprint() -> Blueprint:
    """``GET /metrics``, mounted by ``init_app`` at ``HEAT_URL_PREFIX`` when ``HEAT_PROMETHEUS_ENABLED``."""
    bp = Blueprint("heat_prometheus", __name__)
    common.install(bp, needs_database=False)
    bp.before_request(_require_key)
    bp.add_url_rule("/metrics", "metrics", metrics)
    return bp
