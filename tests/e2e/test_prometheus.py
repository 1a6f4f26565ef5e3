"""The shipped gunicorn configuration with 3 workers and no Redis: every worker reports the same totals.

``gunicorn -c python:flask_heat_collector.gunicorn_conf -w 3``: the configuration makes a
``PROMETHEUS_MULTIPROC_DIR`` in the master, the workers write their metrics there, and ``/metrics``
and ``/api/metrics`` add them up whichever worker answers. Every request goes on a fresh connection;
the access log names the worker (pid) that answered it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support import (
    QUERY_KEY,
    WORKERS,
    Answer,
    Collector,
    http,
    run_collector,
)

pytestmark = pytest.mark.e2e

VALID = 45
RESENT = 15
INVALID = 10
KEYLESS = 5
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def shipped_collector(tmp: Path, shipped: bool = True) -> Any:
    """The documented command with 3 workers, default storage (no Redis); always stopped.

    ``shipped=False``: a plain ``gunicorn -w 3`` without the configuration (SPEC 7's command).
    The configuration's metrics directory goes under ``tmp`` (``TMPDIR``).
    """
    config = ["-c", "python:flask_heat_collector.gunicorn_conf"] if shipped else []
    return run_collector(tmp, config=config, TMPDIR=str(tmp))


def _batch(index: int) -> dict[str, Any]:
    """A click and a move of two points; every fifth batch also has an unmasked input (dropped)."""
    session = f"s-{index}"
    common = {"sessionId": session, "ts": 1_795_672_217_000, "path": "/", "viewport": {"w": 1280, "h": 720}}
    events: list[dict[str, Any]] = [
        {**common, "eventId": str(uuid.uuid4()), "device": {}, "type": "click", "x": 10, "y": 20},
        {
            **common,
            "eventId": str(uuid.uuid4()),
            "device": {},
            "type": "move",
            "points": [{"x": 1, "y": 2, "tsOffset": 0}, {"x": 3, "y": 4, "tsOffset": 16}],
        },
    ]
    if index % 5 == 0:
        events.append(
            {**common, "eventId": str(uuid.uuid4()), "device": {}, "type": "input", "action": "change", "masked": "a"}
        )
    return {"session": {"id": session}, "events": events}


def _parallel(calls: list[Callable[[], Answer]], threads: int = 8) -> list[Answer]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"heat_collector_{name}", tuple(sorted(labels.items()))), 0.0)


def _until_every_worker(collector: Collector, call: Callable[[], Answer]) -> list[Answer]:
    """``call()`` over fresh connections until each worker has answered at least once."""
    answers: list[Answer] = []
    for _ in range(80):  # workers race for accept(); one can win many rounds in a row
        answers += _parallel([call] * 9)
        if len({collector.worker_of(a.headers["x-request-id"]) for a in answers}) == WORKERS:
            return answers
    raise AssertionError("not every worker answered")


@pytest.mark.parametrize("shipped", [True, False], ids=["shipped-config", "plain-gunicorn"])
def test_metrics_add_up_every_worker_without_redis(tmp_path: Path, shipped: bool) -> None:
    with shipped_collector(tmp_path, shipped) as collector:
        bodies = [_batch(i) for i in range(VALID)]
        keys = [f"e2e-prom-{n}-{uuid.uuid4().hex}" for n in range(3)]
        invalid = {"events": [{"type": "click"}, {"type": "scroll"}]}  # no session, invalid events
        calls = [partial(collector.ingest, keys[i % 3], body) for i, body in enumerate(bodies)]
        calls += [partial(collector.ingest, keys[0], invalid)] * INVALID
        calls += [partial(http, "POST", f"{collector.url}/ingest", bodies[0])] * KEYLESS
        first = _parallel(calls)
        assert sorted(a.status for a in first) == [200] * VALID + [400] * INVALID + [401] * KEYLESS
        again = _parallel([partial(collector.ingest, keys[i % 3], bodies[i]) for i in range(RESENT)])
        assert [(a.status, a.json()["accepted"]) for a in again] == [(200, 0)] * RESENT
        stored = [a for a in first + again if a.status == 200]
        served_by = {collector.worker_of(a.headers["x-request-id"]) for a in stored}
        assert len(served_by) > 1, "every batch went to one worker: nothing to add up"

        scrapes = _until_every_worker(
            collector, partial(http, "GET", f"{collector.url}/metrics", None, {"x-api-key": QUERY_KEY})
        )
        assert {a.status for a in scrapes} == {200}
        parsed = [_samples(a.text) for a in scrapes]
        samples = parsed[0]
        for other in parsed[1:]:
            assert {k: v for k, v in other.items() if not k[0].endswith("_created")} == {
                k: v for k, v in samples.items() if not k[0].endswith("_created")
            }

        dropped_first, dropped_again = VALID // 5, (RESENT + 4) // 5
        assert _value(samples, "ingest_duration_seconds_count") == VALID + RESENT
        assert _value(samples, "events_accepted_total", type="click") == VALID
        assert _value(samples, "events_accepted_total", type="move") == 2 * VALID
        assert _value(samples, "events_duplicate_total", type="click") == RESENT
        assert _value(samples, "events_duplicate_total", type="move") == 2 * RESENT
        assert _value(samples, "events_accepted_total", type="mixed") == 0
        assert _value(samples, "events_dropped_total", type="input", reason="unmasked_input") == (
            dropped_first + dropped_again
        )
        assert _value(samples, "events_received_total", type="move") == 2 * (VALID + RESENT)
        assert _value(samples, "events_rejected_total", code="invalid_payload") == 2 * INVALID
        assert _value(samples, "batches_rejected_total", code="invalid_payload", status="400") == INVALID
        assert _value(samples, "batches_rejected_total", code="missing_project_key", status="401") == KEYLESS
        assert _value(samples, "storage_errors_total") == 0
        assert _value(samples, "rate_limited_total", limit="ingest") == 0

        answers = _until_every_worker(collector, partial(collector.api, "/metrics"))
        snapshots = [a.json()["metrics"] for a in answers]
        assert all(snapshot == snapshots[0] for snapshot in snapshots)
        assert snapshots[0] == {
            "ingestCount": VALID + RESENT,
            "ingestErrorCount": 0,
            "rejectedEventCount": 2 * INVALID,
            "lastIngestMs": round(_value(samples, "last_ingest_duration_seconds") * 1000),
        }

    log_text = collector.log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
    if not shipped:  # the ready app made one directory for the master's workers, under TMPDIR
        assert len(list(tmp_path.glob("heat-collector-metrics-*"))) == 1
        return
    match = re.search(r'Prometheus multiprocess directory: ([^"\s]+)', log_text)  # a JSON line's msg
    assert match and match.group(1).startswith(str(tmp_path))
    assert not Path(match.group(1)).exists()  # removed when the master exited
