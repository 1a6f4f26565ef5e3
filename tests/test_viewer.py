"""The optional heatmap viewer page (``HEAT_VIEWER_ENABLED``); its behaviour in a browser is in tests/e2e."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_heat_collector import HeatCollector

QUERY_KEY = "viewer-query-key"


@pytest.fixture
def make_viewer_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Apps on a SQLite file; the viewer needs no particular backend."""
    apps: list[Flask] = []

    def factory(heat: HeatCollector | None = None, **config: Any) -> Flask:
        app = Flask(f"viewer_test_{len(apps)}", instance_path=str(tmp_path / "instance"))
        app.config.update(
            HEAT_DATABASE_URI=f"sqlite:///{tmp_path / 'heat.db'}",
            HEAT_QUERY_API_KEYS=[QUERY_KEY],
            HEAT_IP_HASH_SECRET="test-secret",
            **config,
        )
        (heat or HeatCollector()).init_app(app)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["heat_collector"].repository.dispose()


def test_viewer_is_off_by_default(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app().test_client()
    assert client.get("/viewer").status_code == 404
    assert client.get("/viewer/static/viewer.js").status_code == 404


def test_viewer_disabled_explicitly_is_404(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED="false").test_client()
    assert client.get("/viewer").status_code == 404


def test_viewer_page_when_enabled(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED=True).test_client()
    response = client.get("/viewer")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'data-api-base="/api"' in page
    assert '<canvas id="heatmap"' in page
    for control in ('id="api-key"', 'id="project-id"', 'id="path"', 'id="type"', 'id="resolution"'):
        assert control in page
    # The page carries no data and no key: everything comes through the key-protected API.
    assert QUERY_KEY not in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Heat-Collector"] == "heat-collector"
    assert response.headers["X-Request-Id"]


def test_viewer_assets_are_served(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED=True).test_client()
    page = client.get("/viewer").get_data(as_text=True)
    assert 'src="/viewer/static/viewer.js"' in page
    assert 'href="/viewer/static/viewer.css"' in page
    script = client.get("/viewer/static/viewer.js")
    assert script.status_code == 200
    assert script.mimetype == "text/javascript"
    assert b"x-api-key" in script.data
    assert client.get("/viewer/static/viewer.css").status_code == 200
    script.close()


def test_viewer_follows_the_url_prefix(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED=True, HEAT_URL_PREFIX="/heat").test_client()
    response = client.get("/heat/viewer")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-api-base="/heat/api"' in page
    assert 'src="/heat/viewer/static/viewer.js"' in page
    assert client.get("/viewer").status_code == 404


def test_viewer_data_still_needs_the_query_key(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED=True).test_client()
    assert client.get("/viewer").status_code == 200
    refused = client.get("/api/projects/p/sessions")
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "missing_api_key"
    allowed = client.get("/api/projects/p/sessions", headers={"x-api-key": QUERY_KEY})
    assert allowed.status_code == 200


def test_one_collector_enables_the_viewer_per_app(make_viewer_app: Callable[..., Flask]) -> None:
    heat = HeatCollector()
    with_viewer = make_viewer_app(heat, HEAT_VIEWER_ENABLED=True).test_client()
    without_viewer = make_viewer_app(heat).test_client()
    assert with_viewer.get("/viewer").status_code == 200
    assert without_viewer.get("/viewer").status_code == 404


def test_viewer_can_be_mounted_by_hand(tmp_path: Path) -> None:
    app = Flask("viewer_manual", instance_path=str(tmp_path / "instance"))
    app.config.update(
        HEAT_DATABASE_URI=f"sqlite:///{tmp_path / 'manual.db'}", HEAT_VIEWER_ENABLED=True, HEAT_IP_HASH_SECRET="s"
    )
    heat = HeatCollector()
    heat.init_app(app, register_blueprint=False)
    try:
        assert "heat_viewer" not in app.blueprints
        app.register_blueprint(heat.api_blueprint, url_prefix="/internal")
        app.register_blueprint(heat.viewer_blueprint, url_prefix="/internal")
        response = app.test_client().get("/internal/viewer")
        assert response.status_code == 200
        assert 'data-api-base="/internal/api"' in response.get_data(as_text=True)
        assert app.test_client().get("/viewer").status_code == 404
    finally:
        app.extensions["heat_collector"].repository.dispose()
