"""The ready app's log is JSON lines only: other loggers' records too, with exceptions as a field."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .processes import run_script

# A process of its own: logging is configured once per process, as in a gunicorn worker.
_SCRIPT = """
import logging, sys, warnings
import sqlalchemy as sa
from werkzeug.serving import make_server
import threading, urllib.request
from flask_heat_collector.wsgi import create_app

app = create_app({"HEAT_DATABASE_URI": sys.argv[1], "HEAT_IP_HASH_SECRET": "s", "HEAT_QUERY_AUTH": "none"})

@app.route("/boom")
def boom():
    raise RuntimeError("a view of the host failed")

# Flask's app logger (the ready app's is the package's logger): an unhandled exception of a route.
assert app.test_client().get("/boom").status_code == 500
# werkzeug: the development server's request line.
server = make_server("127.0.0.1", 0, app)
threading.Thread(target=server.handle_request).start()
urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/metrics").read()
# SQLAlchemy's pool: what it writes when a connection dies under it (database outage).
try:
    sa.create_engine("sqlite://").connect().exec_driver_sql("SELECT * FROM gone")
except sa.exc.OperationalError:
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception during reset or similar", exc_info=True)
warnings.warn("a library's warning")
"""


def test_every_line_of_the_ready_apps_log_is_one_json_object(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEAT_", "PROMETHEUS_"))}
    result = run_script(_SCRIPT, f"sqlite:///{tmp_path / 'heat.db'}", env=env)
    lines = result.stderr.splitlines()
    records = []
    for line in lines:
        record = json.loads(line)  # a plain-text line (a traceback) fails here
        assert isinstance(record, dict) and {"level", "msg", "ts"} <= set(record), line
        records.append(record)
    by_logger = {record.get("logger"): record for record in records}
    pool = by_logger["sqlalchemy.pool.impl.QueuePool"]
    assert pool["level"] == "error" and pool["exception"]["type"] == "OperationalError"
    assert "no such table" in pool["exception"]["message"] and pool["exception"]["frames"]
    assert "GET /api/metrics" in by_logger["werkzeug"]["msg"]
    assert "a library's warning" in by_logger["py.warnings"]["msg"]
    boom = [r for r in records if r["msg"].startswith("Exception on /boom")]
    assert len(boom) == 1 and boom[0]["exception"]["type"] == "RuntimeError"
