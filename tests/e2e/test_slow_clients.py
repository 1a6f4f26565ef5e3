"""The shipped gunicorn configuration keeps answering while clients send their requests 1 byte/s.

``gunicorn -c python:flask_heat_collector.gunicorn_conf`` with 2 workers: slow clients hold threads,
not workers, so other requests are still answered; a batch cut off mid-body stores nothing.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..helpers import batch, dump_database, event
from .support import ROOT, _stop, _wait_listening, collector_env, http, spawn_gunicorn

pytestmark = pytest.mark.e2e

SLOW_CLIENTS = 8
BOUND = 10.0  # seconds: a generous bound for an answer, not a measurement


@contextmanager
def shipped_gunicorn(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The documented command on a free loopback port with WEB_CONCURRENCY=2; always stopped."""
    env = collector_env(tmp, WEB_CONCURRENCY="2")
    env.pop("GUNICORN_THREADS", None)
    options = ["-c", "python:flask_heat_collector.gunicorn_conf", "-b", "127.0.0.1:0", "--chdir", str(ROOT)]
    process = spawn_gunicorn(options, env, tmp / "gunicorn.log")
    log_path = tmp / "gunicorn.log"
    try:
        url = _wait_listening(process, log_path)
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count("Booting worker") < 2 or not _answers(url):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        log_text = log_path.read_text(errors="replace")
        assert "gthread" in log_text and log_text.count("Booting worker") == 2
        yield url, env
    finally:
        _stop(process)


def _answers(url: str) -> bool:
    try:
        return http("GET", f"{url}/api/openapi.json").status == 200
    except OSError:
        return False


def ingest_request(url: str, body: dict[str, Any], key: str) -> bytes:
    """The bytes of ``POST /ingest`` carrying ``body``."""
    host = url.removeprefix("http://")
    data = json.dumps(body).encode()
    head = (
        f"POST /ingest HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Project-Key: {key}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class SlowClient:
    """Sends ``request`` 1 byte per second (after ``head_start`` bytes at once), never the last byte."""

    def __init__(self, url: str, request: bytes, head_start: int = 0) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.request = request
        self.sent = 0
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.stopped = threading.Event()
        if head_start:
            self.sock.sendall(self.request[:head_start])
            self.sent = head_start
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        while self.sent < len(self.request) - 1 and not self.stopped.is_set():
            try:
                self.sock.sendall(self.request[self.sent : self.sent + 1])
            except OSError:
                return
            self.sent += 1
            self.stopped.wait(1.0)

    def abort(self, reset: bool) -> None:
        """Stop before the last byte: close (FIN) or reset (RST) the connection."""
        self.stopped.set()
        self.thread.join(5)
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def _timed(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[Any, float]:
    started = time.monotonic()
    answer = http(method, url, body, headers)
    return answer, time.monotonic() - started


def test_slow_clients_do_not_stall_the_shipped_config(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    with shipped_gunicorn(tmp_path) as (url, env):
        slow: list[SlowClient] = []
        for index in range(SLOW_CLIENTS):
            body = batch(*(event("click", x=index, y=n) for n in range(20)), session_id=f"slow-{marker}-{index}")
            request = ingest_request(url, body, f"slow-{marker}-{index}")
            # Half dribble from the first byte; half sent all but the last 40 bytes of the body at once.
            slow.append(SlowClient(url, request, head_start=len(request) - 40 if index % 2 else 0))
        time.sleep(3)  # every slow request is in a worker by now, several bytes in

        spec, seconds = _timed("GET", f"{url}/api/openapi.json")
        assert spec.status == 200 and seconds < BOUND, (spec.status, seconds)
        fast = batch(*(event("click", x=1, y=n) for n in range(5)), session_id=f"fast-{marker}")
        ingest, seconds = _timed("POST", f"{url}/ingest", fast, {"x-project-key": f"fast-{marker}"})
        assert ingest.status == 200 and seconds < BOUND, (ingest.status, ingest.text, seconds)
        assert ingest.json()["accepted"] == 5
        assert all(client.thread.is_alive() for client in slow)  # still sending while the others were served

        # Cut off mid-request (half closed, half reset): nothing of those batches is stored.
        for index, client in enumerate(slow):
            client.abort(reset=index % 4 == 0)
        again, seconds = _timed("GET", f"{url}/api/openapi.json")
        assert again.status == 200 and seconds < BOUND
        time.sleep(1)  # time to store what should not be stored
        stored = dump_database(env["HEAT_DATABASE_URI"])
        assert f"fast-{marker}" in stored
        assert f"slow-{marker}" not in stored
