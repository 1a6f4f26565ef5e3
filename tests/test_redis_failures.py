"""A Redis that hangs or goes away: ingest stays fast, fails open, logs once per interval, recovers.

A hung Redis is a real TCP server that accepts connections and never answers; recovery goes through
a TCP proxy in front of the real Redis that can be switched between forwarding and hanging.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector import HeatCollector
from flask_heat_collector.breaker import OPEN_SECONDS
from flask_heat_collector.ratelimit import IngestRateLimiter

from .conftest import unavailable
from .helpers import QUERY_KEY, ListHandler, batch, event, headers

REDIS_URI = os.environ.get("HEAT_TEST_REDIS", "redis://127.0.0.1:6379/11")
LIMITER_DOWN = "rate limit storage unavailable, requests not limited"
METRICS_DOWN = "metrics storage unavailable, counting in this worker only"
METRICS_READ_DOWN = "metrics storage unavailable, reporting this worker only"


class HungRedis:
    """A loopback TCP server that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self.listener.getsockname()[1]
        self.uri = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client, self.upstream = client, upstream
        self.frozen = upstream is None

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class SwitchableProxy:
    """A TCP proxy to ``upstream`` that forwards, or hangs: holds every open and new connection silent."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.forwarding = True
        self.closed = False
        self.pairs: list[_Pair] = []
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.forwarding = False
        for pair in self.pairs:
            pair.frozen = True

    def forward(self) -> None:
        self.forwarding = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream) if self.forwarding else None
            pair = _Pair(client, upstream)
            self.pairs.append(pair)
            if upstream is not None:
                threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
                threading.Thread(target=self._pump, args=(pair, upstream, client), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        while not self.closed:
            if pair.frozen:
                time.sleep(0.02)
                continue
            try:
                readable, _, _ = select.select([src], [], [], 0.05)
                if not readable or pair.frozen:
                    continue
                data = src.recv(65536)
                if data:
                    dst.sendall(data)
                    continue
            except (OSError, ValueError):
                pass
            pair.close()
            return

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for pair in self.pairs:
            pair.close()


@pytest.fixture
def hung_redis() -> Iterator[HungRedis]:
    server = HungRedis()
    yield server
    server.close()


@pytest.fixture
def real_redis() -> Any:
    """A client of the test Redis (database 11 unless ``HEAT_TEST_REDIS``); unreachable skips locally."""
    import redis

    client = redis.Redis.from_url(REDIS_URI, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - reported as skip/fail
        unavailable(f"Redis at {REDIS_URI} is unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Apps on one SQLite file: what is tested here does not depend on the database."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = Flask("heat_redis_test", instance_path=str(tmp_path / "instance"))
        app.config["TESTING"] = True
        options: dict[str, Any] = {
            "database_uri": f"sqlite:///{tmp_path / 'heat.db'}",
            "query_api_keys": [QUERY_KEY],
            "ip_hash_secret": "test-secret",
        }
        HeatCollector(app, **(options | overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["heat_collector"].repository.dispose()


def _ingest(client: FlaskClient, key: str) -> Any:
    return client.post("/ingest", json=batch(event("click")), headers=headers(key))


def _lines(logs: ListHandler, msg: str) -> list[dict[str, Any]]:
    return [record for record in logs.records() if record["msg"] == msg]


def test_hung_redis_is_skipped_by_the_breaker(sqlite_app: Callable[..., Flask], hung_redis: HungRedis) -> None:
    """50 ingests against a Redis that never answers: each fails open and stores its event, and Redis
    is tried a few times, not on every request (each try costs a timeout; bench/ times them)."""
    client = sqlite_app(rate_limit_storage_uri=hung_redis.uri).test_client()
    key = f"hung-{uuid.uuid4().hex}"
    for _ in range(50):
        response = _ingest(client, key)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["accepted"] == 1
        assert "X-RateLimit-Limit" not in response.headers  # not limited, not refused
    metrics = client.get("/api/metrics", headers={"x-api-key": QUERY_KEY})
    assert metrics.status_code == 200
    assert metrics.get_json()["metrics"]["ingestCount"] == 50  # this worker's own counters
    # Without the breaker every request opened a connection (the limiter's, the metrics' writes).
    assert 1 <= len(hung_redis.accepted) < 10, len(hung_redis.accepted)


def test_hung_redis_is_logged_once_per_interval(
    sqlite_app: Callable[..., Flask], hung_redis: HungRedis, logs: ListHandler
) -> None:
    client = sqlite_app(rate_limit_storage_uri=hung_redis.uri).test_client()
    key = f"hung-{uuid.uuid4().hex}"
    for _ in range(20):
        assert _ingest(client, key).status_code == 200
        client.get("/api/metrics", headers={"x-api-key": QUERY_KEY})
    first = {msg: _lines(logs, msg) for msg in (LIMITER_DOWN, METRICS_DOWN, METRICS_READ_DOWN)}
    assert {msg: len(lines) for msg, lines in first.items()} == {LIMITER_DOWN: 1, METRICS_DOWN: 1, METRICS_READ_DOWN: 1}
    line = first[LIMITER_DOWN][0]
    assert line["level"] == "error"
    assert line["dependency"] == f"redis://127.0.0.1:{hung_redis.port}"
    assert line["error"] == "TimeoutError"

    # The next interval: one trial call times out again, and each message is logged once more.
    time.sleep(OPEN_SECONDS + 0.3)
    for _ in range(20):
        assert _ingest(client, key).status_code == 200
        client.get("/api/metrics", headers={"x-api-key": QUERY_KEY})
    assert [len(_lines(logs, msg)) for msg in (LIMITER_DOWN, METRICS_DOWN, METRICS_READ_DOWN)] == [2, 2, 2]
    assert _lines(logs, LIMITER_DOWN)[1]["calls"] >= 20  # the requests let through since the first line


def test_limits_are_enforced_again_when_redis_answers(
    sqlite_app: Callable[..., Flask], real_redis: Any, logs: ListHandler
) -> None:
    address = real_redis.connection_pool.connection_kwargs
    proxy = SwitchableProxy((address.get("host", "127.0.0.1"), address.get("port", 6379)))
    db = address.get("db", 0)
    app = sqlite_app(rate_limit="3 per hour", rate_limit_storage_uri=f"redis://127.0.0.1:{proxy.port}/{db}")
    client = app.test_client()
    # An address of its own: the new-project limiter counts per IP in the shared Redis.
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    client.environ_base["REMOTE_ADDR"] = ip
    key = f"recover-{uuid.uuid4().hex}"
    metrics_key = app.extensions["heat_collector"].metrics.key
    try:
        statuses = [_ingest(client, key).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]

        proxy.hang()
        hung = [_ingest(client, key) for _ in range(5)]
        assert [response.status_code for response in hung] == [200] * 5  # fails open: no event lost
        assert len(_lines(logs, LIMITER_DOWN)) == 1

        proxy.forward()
        deadline = time.monotonic() + OPEN_SECONDS + 10
        while True:
            response = _ingest(client, key)
            if response.status_code == 429:
                break
            assert response.status_code == 200
            assert time.monotonic() < deadline, "limits were not enforced again after Redis answered"
            time.sleep(0.2)
        assert response.get_json()["code"] == "rate_limited"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert [r["dependency"] for r in _lines(logs, "dependency available again")] == [
            f"redis://127.0.0.1:{proxy.port}"
        ]

        # The shared counters are written to Redis again as well.
        before = int(real_redis.hget(metrics_key, "ingestCount") or 0)
        assert _ingest(client, f"{key}-other").status_code == 200
        assert int(real_redis.hget(metrics_key, "ingestCount")) == before + 1
    finally:
        proxy.close()
        real_redis.delete(metrics_key, *real_redis.keys(f"*{key}*"), *real_redis.keys(f"*/{ip}/*"))


def test_limiter_namespaces_keep_separate_windows(real_redis: Any) -> None:
    """Two limiters on one Redis (ingest, new projects) count the same key in separate windows."""
    uri = REDIS_URI
    key = f"ns-{uuid.uuid4().hex}"
    ingest = IngestRateLimiter("2 per hour", uri)
    new_projects = IngestRateLimiter("2 per hour", uri, namespace="heat-new-project")
    try:
        assert [status.allowed for status in (ingest.hit(key), ingest.hit(key), ingest.hit(key)) if status] == [
            True,
            True,
            False,
        ]
        status = new_projects.hit(key)
        assert status is not None and status.allowed and status.remaining == 1
        assert any("heat-new-project" in name.decode() for name in real_redis.keys(f"*{key}*"))
    finally:
        for name in real_redis.keys(f"*{key}*"):
            real_redis.delete(name)
