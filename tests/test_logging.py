"""The package logs to ``flask_heat_collector`` and leaves handlers to the host (SPEC 9).

``init_app`` adds no handler and keeps propagation, so the host's handlers and ``caplog`` get the
records; the ready app (``wsgi.create_app()``) writes them to stderr as JSON lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector import HeatCollector
from flask_heat_collector.log import JsonFormatter, install_json_handler
from flask_heat_collector.wsgi import create_app

from .helpers import batch, headers

PACKAGE = logging.getLogger("flask_heat_collector")


class Collected(logging.Handler):
    """A host's own handler (as Sentry's or a formatter's would be)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def package_logger_restored() -> Iterator[None]:
    """Each test leaves the package logger's level and handlers as it found them."""
    level, handlers = PACKAGE.level, list(PACKAGE.handlers)
    yield
    PACKAGE.setLevel(level)
    PACKAGE.handlers[:] = handlers


@pytest.fixture
def host_handler() -> Iterator[Collected]:
    handler = Collected()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def host_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("host", instance_path=str(tmp_path / "instance"))
    app.config.update(HEAT_DATABASE_URI=f"sqlite:///{tmp_path / 'heat.db'}", HEAT_QUERY_API_KEYS=["q"], **config)
    return app


def post_good_and_broken(client: FlaskClient) -> None:
    """One stored batch (an info line) and one body that is not JSON (a warning line)."""
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 200
    broken = client.post("/ingest", data=b"{", headers=headers(**{"Content-Type": "application/json"}))
    assert broken.status_code == 400


def dispose(app: Flask) -> None:
    app.extensions["heat_collector"].repository.dispose()


def test_the_hosts_handler_and_caplog_receive_the_collectors_records(
    tmp_path: Path, host_handler: Collected, caplog: pytest.LogCaptureFixture
) -> None:
    app = host_app(tmp_path)  # no HEAT_IP_HASH_SECRET: a warning at init
    HeatCollector(app)
    try:
        client = app.test_client()
        post_good_and_broken(client)
    finally:
        dispose(app)
    for records in (host_handler.records, caplog.records):
        mine = [r for r in records if r.name == "flask_heat_collector"]
        messages = [(r.levelno, r.getMessage()) for r in mine]
        assert (logging.INFO, "ingest success") in messages
        assert any(level == logging.WARNING and "HEAT_IP_HASH_SECRET" in msg for level, msg in messages)
        assert any(r.levelno == logging.WARNING and getattr(r, "heat", {}).get("code") == "invalid_json" for r in mine)
    # The structured fields stay on the record for the host's own formatter.
    success = next(r for r in caplog.records if r.getMessage() == "ingest success")
    assert success.heat["accepted"] == 1 and success.heat["requestId"]  # type: ignore[attr-defined]


def test_init_app_adds_no_handler_and_keeps_propagation(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = (list(PACKAGE.handlers), list(root.handlers))
    app = host_app(tmp_path, HEAT_LOG_LEVEL="debug")
    HeatCollector(app)
    dispose(app)
    assert (list(PACKAGE.handlers), list(root.handlers)) == before
    assert PACKAGE.propagate is True
    assert PACKAGE.level == logging.DEBUG
    assert any(isinstance(h, logging.NullHandler) for h in PACKAGE.handlers)


def test_log_level_error_keeps_only_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = host_app(tmp_path, HEAT_LOG_LEVEL="error", HEAT_IP_HASH_SECRET="s")
    heat = HeatCollector(app)

    @heat.before_insert
    def fail_on_a_marker(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["session"]["id"] == "fail":
            raise RuntimeError("hook failed")
        return payload

    try:
        client = app.test_client()
        post_good_and_broken(client)
        assert client.post("/ingest", json=batch(session_id="fail"), headers=headers()).status_code == 500
    finally:
        dispose(app)
    mine = [r for r in caplog.records if r.name == "flask_heat_collector"]
    assert [r.levelno for r in mine] == [logging.ERROR]


def test_the_ready_app_writes_json_lines_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}",
        "HEAT_QUERY_API_KEYS": "q",
        "HEAT_IP_HASH_SECRET": "s",
        "HEAT_QUERY_AUTHH": "none",  # a typo: warned about at start
    }
    capsys.readouterr()
    app = create_app(env)
    create_app(env)  # a second app in the process: still one line per record
    try:
        assert app.test_client().post("/ingest", json=batch(), headers=headers()).status_code == 200
    finally:
        dispose(app)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    success = [line for line in lines if line["msg"] == "ingest success"]
    assert len(success) == 1 and success[0]["level"] == "info" and success[0]["accepted"] == 1
    assert any(line["level"] == "warn" and "HEAT_QUERY_AUTHH" in line["msg"] for line in lines)
    assert [h.get_name() for h in PACKAGE.handlers].count("flask_heat_collector.json") == 1


def test_json_lines_in_your_own_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What docs/logging.md shows: ``install_json_handler()``, or a handler of your own with JsonFormatter."""
    handler = install_json_handler()
    assert isinstance(handler.formatter, JsonFormatter)
    app = host_app(tmp_path, HEAT_IP_HASH_SECRET="s")
    HeatCollector(app)
    try:
        capsys.readouterr()
        assert app.test_client().post("/ingest", json=batch(), headers=headers()).status_code == 200
    finally:
        dispose(app)
    lines = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["accepted"]) for line in lines if line["msg"] == "ingest success"] == [("info", 1)]
