"""A rotated project key is refused at once by every gunicorn worker, and never makes a project."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .support import WORKERS, Answer, Collector, register_project, run_collector

pytestmark = pytest.mark.e2e


def _batch() -> dict[str, Any]:
    event = {
        "eventId": str(uuid.uuid4()),
        "sessionId": "s-rotate",
        "ts": 1_795_672_217_000,
        "path": "/",
        "viewport": {"w": 1280, "h": 720},
        "device": {},
        "type": "click",
        "x": 1,
        "y": 2,
    }
    return {"session": {"id": "s-rotate"}, "events": [event]}


def _on_every_worker(collector: Collector, key: str) -> list[Answer]:
    """Ingests with ``key`` over fresh connections until each worker has answered at least one."""
    answers: list[Answer] = []
    for _ in range(60):
        with ThreadPoolExecutor(6) as pool:
            answers += list(pool.map(lambda _: collector.ingest(key, _batch()), range(6)))
        if len({collector.worker_of(a.headers["x-request-id"]) for a in answers}) == WORKERS:
            return answers
    raise AssertionError("not every worker answered")


def test_rotated_key_is_refused_by_every_worker_at_once(tmp_path: Path) -> None:
    from flask_heat_collector.wsgi import create_app

    with run_collector(tmp_path) as collector:
        project_id = register_project(collector.env, "rotate-old")
        assert {a.status for a in _on_every_worker(collector, "rotate-old")} == {200}

        admin = create_app(collector.env)
        try:
            runner = admin.test_cli_runner()
            rotated = runner.invoke(args=["heat", "project", "rotate-key", project_id, "--key", "rotate-new"])
            assert rotated.exit_code == 0, rotated.output
            refused = _on_every_worker(collector, "rotate-old")
            assert {a.status for a in refused} == {403}
            assert {a.json()["code"] for a in refused} == {"retired_project_key"}
            assert {a.status for a in _on_every_worker(collector, "rotate-new")} == {200}
            listed = runner.invoke(args=["heat", "project", "list"]).output.splitlines()
            assert [line.split("\t")[:2] for line in listed] == [[project_id, "rotate-new"]]
        finally:
            admin.extensions["heat_collector"].repository.dispose()
