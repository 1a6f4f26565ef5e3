"""The optional heatmap viewer page (``HEAT_VIEWER_ENABLED``); the SDK-driven browser run is in tests/e2e."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_heat_collector import ConfigurationError, HeatCollector
from flask_heat_collector.config import unknown_names

from .helpers import Server, batch, event, headers

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
    assert 'data-page-base=""' in page  # the host app's own pages, at the path chosen
    assert '<canvas id="heatmap"' in page
    controls = ("api-key", "project-id", "path", "path-options", "type", "band", "from", "to", "resolution")
    for control in (*controls, "show-page", "export", "elements", "sessions", "sessions-next", "timeline"):
        assert f'id="{control}"' in page, control
    assert '<option value="rageclick">' in page
    assert 'name="view" value="scroll"' in page
    # The framed page may not run scripts (its SDK would record the viewer's visits).
    assert '<iframe id="page-frame"' in page and 'sandbox="allow-same-origin"' in page
    # The page carries no data and no key: everything comes through the key-protected API.
    assert QUERY_KEY not in page
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Heat-Collector"] == "heat-collector"
    assert response.headers["X-Request-Id"]


def csp(response: Any) -> dict[str, str]:
    """The Content-Security-Policy header as {directive: sources}."""
    directives = (part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    return {name: sources for name, sources in directives}


def test_viewer_content_security_policy(make_viewer_app: Callable[..., Flask]) -> None:
    policy = csp(make_viewer_app(HEAT_VIEWER_ENABLED=True).test_client().get("/viewer"))
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self'",
        "img-src": "'self' data:",
        "frame-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }


def test_viewer_site_url_frames_the_site(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(
        HEAT_VIEWER_ENABLED=True, HEAT_VIEWER_SITE_URL="https://shop.example.com:8443/"
    ).test_client()
    response = client.get("/viewer")
    assert 'data-page-base="https://shop.example.com:8443"' in response.get_data(as_text=True)
    policy = csp(response)
    # Only the site's origin is added, and only as a frame source.
    assert policy["frame-src"] == "'self' https://shop.example.com:8443"
    assert policy["connect-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"


def test_viewer_site_url_is_a_known_key(make_viewer_app: Callable[..., Flask]) -> None:
    app = make_viewer_app(HEAT_VIEWER_SITE_URL="http://localhost:5000")
    assert app.extensions["heat_collector"].settings.viewer_site_url == "http://localhost:5000"
    assert unknown_names(["HEAT_VIEWER_SITE_URL"]) == {}
    assert make_viewer_app(HEAT_VIEWER_SITE_URL="").extensions["heat_collector"].settings.viewer_site_url is None


@pytest.mark.parametrize(
    "value",
    [
        "shop.example.com",
        "/pricing",
        "ftp://shop.example.com",
        "javascript:alert(1)",
        "https://",
        "https://shop.example.com/?utm=1",
        "https://shop.example.com/#top",
        "https://user:secret@shop.example.com",
        "https://shop.example.com:99999",
        42,
        # Only an origin: nothing that could add a source or a directive to the viewer's CSP.
        "https://shop.example.com/store/",
        "https://shop.example.com;script-src *",
        "https://shop.example.com; frame-src *",
        "https://shop .example.com",
        "https://*.example.com",
        "https://*",
        "https://shop.example.com https://evil.example",
        "https://[::1;]",
        "https://user@shop.example.com",
    ],
)
def test_viewer_site_url_is_validated(make_viewer_app: Callable[..., Flask], value: Any) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_VIEWER_SITE_URL"):
        make_viewer_app(HEAT_VIEWER_SITE_URL=value)


def test_viewer_assets_are_served(make_viewer_app: Callable[..., Flask]) -> None:
    client = make_viewer_app(HEAT_VIEWER_ENABLED=True).test_client()
    page = client.get("/viewer").get_data(as_text=True)
    assert 'href="/viewer/static/viewer.css"' in page
    for name in ("viewer.js", "viewer-frame.js", "viewer-export.js", "viewer-compare.js", "viewer-app.js"):
        assert f'src="/viewer/static/{name}"' in page
        script = client.get(f"/viewer/static/{name}")
        assert script.status_code == 200, name
        assert script.mimetype == "text/javascript"
        script.close()
    app_script = client.get("/viewer/static/viewer-app.js")
    assert b"x-api-key" in app_script.data
    app_script.close()
    assert client.get("/viewer/static/viewer.css").status_code == 200


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


# Saturation of the canvas pixel at each (x, y): the backdrop and grid are near-grey, heat is not.
_SATURATION = """(spots) => {
    const ctx = document.getElementById("heatmap").getContext("2d");
    return spots.map(([x, y]) => {
        const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
        return Math.max(r, g, b) - Math.min(r, g, b);
    });
}"""


def test_viewer_draws_an_answer_ten_million_pixels_tall(
    make_viewer_app: Callable[..., Flask], live_server: Callable[[Flask], Server], browser: Any
) -> None:
    """One click at y = 10,000,000 made the page fail (getImageData: out of memory); now it is left out and said."""
    app = make_viewer_app(HEAT_VIEWER_ENABLED=True)
    app.add_url_rule("/", "home", lambda: "<!doctype html><title>Home</title><p>The page under the map.</p>")
    normal = [event("click", x=300, y=200), event("click", x=900, y=600), event("click", x=600, y=1500)]
    tall = batch(event("click", x=600, y=10_000_000), *normal)
    answer = app.test_client().post("/ingest", json=tall, headers=headers())
    project = answer.get_json()["projectId"]
    heatmap = app.test_client().get(f"/api/projects/{project}/heatmap", headers={"x-api-key": QUERY_KEY}).get_json()
    assert heatmap["meta"]["renderHeight"] == 10_000_000 and len(heatmap["points"]) == 4
    drawn = [(p["x"], p["y"]) for p in heatmap["points"] if p["y"] < 20_000]
    assert len(drawn) == 3

    server = live_server(app)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []

    def console(message: Any) -> None:
        if message.type == "error" and "favicon" not in message.location["url"]:  # the browser's own 404
            errors.append(message.text)

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", console)
    page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={project}")
    page.wait_for_function("() => document.body.dataset.heatmapPoints !== undefined")
    assert page.get_attribute("body", "data-heatmap-points") == "4", page.inner_text("#status")
    assert errors == []
    width, height = page.eval_on_selector("#heatmap", "canvas => [canvas.width, canvas.height]")
    assert width == 1200 and 1500 < height <= 20_000
    assert page.is_visible("#cut-note")
    assert page.inner_text("#cut-note") == "1 point (1 event) below 20,000 px is not drawn."
    assert all(saturation > 60 for saturation in page.evaluate(_SATURATION, drawn)), drawn

    # Too wide: the canvas keeps to 10,000 px and says what lies right of it (below: room for the
    # lowest spots, a kernel radius of 1.5 cells of 30,000 / 128 px).
    wide = {
        "points": [{"x": 100, "y": 100, "value": 2}, {"x": 25_000, "y": 100, "value": 4}],
        "meta": {"viewport": {"w": 30_000, "h": 800}, "renderHeight": 800, "resolution": 128},
    }
    size = page.evaluate(
        """(heatmap) => {
            const canvas = document.createElement("canvas");
            window.HeatViewer.drawHeatmap(canvas, heatmap);
            return [canvas.width, canvas.height, window.HeatViewer.describeCut(heatmap)];
        }""",
        wide,
    )
    assert size == [10_000, 800 + 352, "1 point (4 events) right of 10,000 px is not drawn."]
    assert errors == []
