"""Three gunicorn workers sharing rate limits and metrics through Redis.

Every request goes on a fresh connection; the access log names the worker (pid) that answered it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from .support import WORKERS, Answer, Collector, run_collector

pytestmark = pytest.mark.e2e

LIMIT = 120  # the default HEAT_RATE_LIMIT, "120 per 10 seconds"


def _batch(index: int = 0, events: int = 1) -> dict[str, Any]:
    return {
        "session": {"id": f"s-{index}"},
        "events": [
            {
                "eventId": str(uuid.uuid4()),
                "sessionId": f"s-{index}",
                "ts": 1_795_672_217_000,
                "path": "/",
                "viewport": {"w": 1280, "h": 720},
                "device": {},
                "type": "click",
                "x": 10,
                "y": 20,
            }
            for _ in range(events)
        ],
    }


def _parallel(calls: list[Callable[[], Answer]], threads: int = 6) -> list[Answer]:
    """Run the calls on ``threads`` threads, each request on its own connection."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def _ingests(collector: Collector, key: str, count: int, events: int = 1) -> list[Answer]:
    """``count`` batches (sessions s-0 ...) sent in parallel with ``key``."""
    return _parallel([partial(collector.ingest, key, _batch(i, events)) for i in range(count)])


@pytest.fixture
def shared_collector(redis_uri: str, tmp_path: Path) -> Iterator[Collector]:
    """gunicorn -w 3 with limits and metrics in Redis; its metrics hash is removed afterwards."""
    with run_collector(tmp_path, HEAT_RATE_LIMIT_STORAGE_URI=redis_uri) as collector:
        yield collector
    import redis

    namespace = hashlib.sha256(collector.env["HEAT_DATABASE_URI"].encode()).hexdigest()[:16]
    client = redis.Redis.from_url(redis_uri)
    client.delete(f"heat_collector:metrics:{namespace}")
    client.close()


def test_rate_limit_holds_across_workers(shared_collector: Collector) -> None:
    collector = shared_collector
    key = f"e2e-limit-{uuid.uuid4().hex}"  # a fresh key: a window of its own in Redis
    allowed = _ingests(collector, key, LIMIT)
    assert [a.status for a in allowed] == [200] * LIMIT, {a.status for a in allowed}
    # The window was used up exactly (the header is read after the count, so racing requests may repeat a value).
    assert min(int(a.headers["x-ratelimit-remaining"]) for a in allowed) == 0
    assert {a.headers["x-ratelimit-limit"] for a in allowed} == {str(LIMIT)}
    served_by = {collector.worker_of(a.headers["x-request-id"]) for a in allowed}
    assert len(served_by) == WORKERS  # every worker counted into the same window

    # Request 121 and after are refused whichever worker takes them.
    refused: list[Answer] = []
    refusing_workers: set[int] = set()
    for _ in range(10):
        answers = _ingests(collector, key, 6)
        refused += answers
        refusing_workers |= {collector.worker_of(a.headers["x-request-id"]) for a in answers}
        if refusing_workers == served_by:
            break
    assert {a.status for a in refused} == {429}
    assert all(a.json()["code"] == "rate_limited" and int(a.headers["retry-after"]) >= 1 for a in refused)
    assert all(a.headers["x-ratelimit-remaining"] == "0" for a in refused)
    assert refusing_workers == served_by

    # Another key keeps its own window.
    assert collector.ingest(f"{key}-other", _batch()).status == 200


def test_metrics_are_the_same_on_every_worker(shared_collector: Collector) -> None:
    collector = shared_collector
    key = f"e2e-metrics-{uuid.uuid4().hex}"
    stored = _ingests(collector, key, 9, events=2)
    assert {a.status for a in stored} == {200}
    invalid = _batch(99, events=3)
    del invalid["session"]
    assert collector.ingest(key, invalid).status == 400

    # Ask over fresh connections until every worker has answered at least once.
    answers: list[Answer] = []
    workers: set[int] = set()
    for _ in range(80):  # sync workers race for accept(); one can win many rounds in a row
        answers += _parallel([partial(collector.api, "/metrics")] * 9)
        workers = {collector.worker_of(a.headers["x-request-id"]) for a in answers}
        if len(workers) == WORKERS:
            break
    assert len(workers) == WORKERS
    snapshots = [a.json()["metrics"] for a in answers]
    assert all(snapshot == snapshots[0] for snapshot in snapshots)
    assert snapshots[0]["ingestCount"] == 9
    assert snapshots[0]["rejectedEventCount"] == 3
    assert snapshots[0]["ingestErrorCount"] == 0
    assert isinstance(snapshots[0]["lastIngestMs"], int)


def test_metrics_namespace_is_one_per_database(tmp_path: Path) -> None:
    """Apps on one database share the Redis counters; another database (or Mongo database) does not."""
    from flask import Flask

    from flask_heat_collector.config import load_config
    from flask_heat_collector.extension import _metrics_for
    from flask_heat_collector.metrics import RedisMetrics

    def key(**overrides: Any) -> str:
        app = Flask("namespace", instance_path=str(tmp_path))
        metrics = _metrics_for(load_config(app, {"rate_limit_storage_uri": "redis://127.0.0.1:6379/11", **overrides}))
        assert isinstance(metrics, RedisMetrics)
        return metrics.key

    sqlite_a = f"sqlite:///{tmp_path / 'a.db'}"
    assert key(database_uri=sqlite_a) == key(database_uri=sqlite_a)
    assert key(database_uri=sqlite_a) != key(database_uri=f"sqlite:///{tmp_path / 'b.db'}")
    mongo = "mongodb://127.0.0.1:27017"
    assert key(database_uri=mongo, mongo_database="a") != key(database_uri=mongo, mongo_database="b")
