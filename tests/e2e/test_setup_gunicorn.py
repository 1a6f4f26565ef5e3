"""gunicorn with the database unreachable at start: the workers stay up and answer 503 until it is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ..helpers import free_port
from .support import QUERY_KEY, _stop, _wait_listening, collector_env, http, spawn_gunicorn

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-pw"


def test_workers_stay_up_when_the_database_is_unreachable_at_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = collector_env(tmp_path, HEAT_DATABASE_URI=f"postgresql+psycopg2://heat:{PASSWORD}@127.0.0.1:{port}/heat")
    log_path = tmp_path / "gunicorn.log"
    process = spawn_gunicorn(["-w", "2", "-b", "127.0.0.1:0", "--graceful-timeout", "5"], env, log_path)
    try:
        url = _wait_listening(process, log_path)
        deadline = time.monotonic() + 30
        while log_path.read_text(errors="replace").count("unreachable at start") < 2:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        for _ in range(4):
            answer = http("GET", f"{url}/api/metrics", headers={"x-api-key": QUERY_KEY})
            assert answer.status in (200, 503), answer.text
        assert answer.status == 503 and answer.json()["code"] == "storage_unavailable"
        time.sleep(0.5)
        assert process.poll() is None  # the arbiter is still up
    finally:
        _stop(process)
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text and "Worker failed to boot" not in text, text[-3000:]
    assert PASSWORD not in text
    assert text.count(f"127.0.0.1:{port}/heat unreachable at start") == 2  # one line per worker
