"""Demo: a page that loads the real heat-tracker SDK and draws its own heatmap.

Run with ``./scripts/demo`` (installs the package and the SDK from npm, then serves
http://127.0.0.1:5000). Data goes to the embedded SQLite file in ``instance/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, abort, jsonify, render_template, send_from_directory
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
    )
    HeatCollector(app)

    @app.get("/")
    def page() -> str:
        return render_template("demo.html", project_key=PROJECT_KEY, query_key=QUERY_KEY)

    @app.get("/sdk/<path:name>")
    def sdk(name: str) -> Response:
        if not SDK_DIST.is_dir():
            abort(404, "Run ./scripts/demo (it installs @m-software-engineering/heat-sdk from npm).")
        return send_from_directory(SDK_DIST, name, mimetype="text/javascript")

    @app.get("/demo/project")
    def project() -> Response:
        """The id of the demo project (the SDK does not expose it); ``null`` before the first batch."""
        found = [p for p in get_state().repository.list_projects() if p.key == PROJECT_KEY]
        return jsonify(projectId=found[0].id if found else None)

    return app


app = create_app()
