"""Demo: a two-page shop that loads the real heat-tracker SDK, with the heatmap viewer switched on.

Run with ``./scripts/demo`` (installs the package and the SDK from npm, then serves
http://127.0.0.1:5000). Data goes to the embedded SQLite file in ``instance/``.

- ``/`` and ``/pricing`` share one layout of plain HTML and CSS (the viewer frames them with scripts
  off) with fixed sizes from ``layout.py``; below 768 px wide they switch to a narrow layout.
  "Apply coupon" on ``/`` is a dead button on purpose: it looks clickable and does nothing.
- ``/viewer`` is the collector's heatmap viewer (``HEAT_VIEWER_ENABLED``). Each page links to it with
  the demo's query key in the link: a demo-only convenience; a real site never publishes that key.
- On start, when the demo project has no events yet, the app sends itself ten recorded sessions
  (``seed.py``: desktop 1280x800 and mobile 390x844 on both pages, rage clicks on the dead button,
  scrolls, an SDK user id) through its own ``/ingest``, and logs one line. ``DEMO_SEED=0`` skips that.

Other environment variables: ``DEMO_QUERY_KEY`` (default ``demo-query-key``), ``DEMO_INSTANCE_PATH``
and ``DEMO_SDK_DIST`` (the tests point them elsewhere).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlencode

import layout
import seed
from flask import Flask, abort, jsonify, render_template, request, send_from_directory
from werkzeug.wrappers import Response

from flask_heat_collector import HeatCollector, get_state

HERE = Path(__file__).resolve().parent
SDK_DIST = Path(
    os.environ.get("DEMO_SDK_DIST", HERE / "node_modules" / "@m-software-engineering" / "heat-sdk" / "dist")
)
INSTANCE = Path(os.environ.get("DEMO_INSTANCE_PATH", HERE / "instance"))
PROJECT_KEY = "demo-project-key"
QUERY_KEY = os.environ.get("DEMO_QUERY_KEY", "demo-query-key")


def create_app() -> Flask:
    app = Flask(__name__, root_path=str(HERE), instance_path=str(INSTANCE))
    app.config.update(
        HEAT_QUERY_API_KEYS=[QUERY_KEY],
        HEAT_IP_HASH_SECRET=os.environ.get("HEAT_IP_HASH_SECRET", "demo-only-secret"),
        HEAT_RATE_LIMIT="1000 per minute",
        HEAT_VIEWER_ENABLED=True,
    )
    HeatCollector(app)

    def project_id() -> str | None:
        found = [p for p in get_state().repository.list_projects() if p.key == PROJECT_KEY]
        return found[0].id if found else None

    def shop_page(template: str) -> str:
        found = project_id()
        fragment = urlencode(
            {"key": QUERY_KEY, **({"project": found} if found else {}), "path": request.path}, safe="/"
        )
        return render_template(
            template,
            layout=layout,
            project_key=PROJECT_KEY,
            query_key=QUERY_KEY,
            viewer_url=f"/viewer#{fragment}",
        )

    @app.get("/")
    def home() -> str:
        return shop_page("demo.html")

    @app.get("/pricing")
    def pricing() -> str:
        return shop_page("pricing.html")

    @app.get("/sdk/<path:name>")
    def sdk(name: str) -> Response:
        if not SDK_DIST.is_dir():
            abort(404, "Run ./scripts/demo (it installs @m-software-engineering/heat-sdk from npm).")
        return send_from_directory(SDK_DIST, name, mimetype="text/javascript")

    @app.get("/demo/project")
    def project() -> Response:
        """The id of the demo project (the SDK does not expose it); ``null`` before the first batch."""
        return jsonify(projectId=project_id())

    if os.environ.get("DEMO_SEED", "1") != "0":
        sent = seed.seed_if_empty(app, PROJECT_KEY, QUERY_KEY)
        if sent:
            app.logger.setLevel(logging.INFO)
            app.logger.info(
                "demo: seeded %d events in %d sessions (desktop 1280x800, mobile 390x844); DEMO_SEED=0 skips this",
                sent,
                len(seed.SESSIONS),
            )
    return app


app = create_app()
