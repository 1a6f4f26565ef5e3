"""The shipped gunicorn settings: what a C library prints to a worker's stderr becomes a JSON line.

libpq prints a PostgreSQL notice that arrives while a connection opens (an immediate shutdown's
"terminating connection" warning) straight to fd 2; the log must stay one JSON object per line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .native_stderr_app import RAW_LINE
from .support import ROOT, _stop, _wait_listening, collector_env, http, spawn_gunicorn

pytestmark = pytest.mark.e2e


def test_raw_lines_on_a_workers_fd_2_are_logged_as_json(tmp_path: Path) -> None:
    env = collector_env(tmp_path)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "gunicorn.log"
    options = ["-c", "python:flask_heat_collector.gunicorn_conf", "-w", "2", "-b", "127.0.0.1:0", "--chdir", str(ROOT)]
    process = spawn_gunicorn(options, env, log_path, "tests.e2e.native_stderr_app:create_app()")
    try:
        url = _wait_listening(process, log_path)
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count(RAW_LINE) < 2:  # one per worker
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        assert http("GET", f"{url}/api/openapi.json").status == 200
    finally:
        _stop(process)
    lines = log_path.read_text(errors="replace").splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    raw = [r for r in records if r.get("logger") == "stderr"]
    assert [r["msg"] for r in raw] == [RAW_LINE, RAW_LINE]
    assert all(r["level"] == "warn" and r["ts"] for r in raw)
    # gunicorn's own lines are still written once each, as JSON, not wrapped a second time.
    booting = [r for r in records if r.get("logger") == "gunicorn.error" and "Booting worker" in r["msg"]]
    assert len(booting) == 2
