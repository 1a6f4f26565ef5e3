"""The spread-moves heatmap right after a fill through ``POST /ingest`` (issue 21, item 4).

``python -m bench.spread_ingest URI [POINTS] [COMPACT_BATCHES]``: N move points (1,000 per event,
5 events per batch) spread over 1280 x 3000 on one path are posted to ``/ingest`` in-process
(Flask's test client, responses closed as a server closes them, so the compactor runs as it
does under gunicorn); the heatmap is queried at once with no pause (median of 3), then after
``flask heat compact`` (median of 3). Prints the two times and their ratio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid

from flask import Flask

from flask_heat_collector import HeatCollector

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PATH = "/spread"
PER_EVENT = 1000
PER_BATCH = 5
KEY = "bench-query-key"


def _batch(first: int) -> dict[str, object]:
    events = []
    for e in range(PER_BATCH):
        base = first + e * PER_EVENT
        points = [
            {"x": (i * 7919) % 1280, "y": (i * 104729) % 3000, "tsOffset": (i - base) * 10}
            for i in range(base, base + PER_EVENT)
        ]
        events.append(
            {
                "eventId": str(uuid.uuid4()),
                "sessionId": f"ss-{first // 100_000}",
                "ts": T0 + base * 10,
                "path": PATH,
                "viewport": {"w": 1280, "h": 720},
                "device": {},
                "type": "move",
                "points": points,
            }
        )
    return {"session": {"id": f"ss-{first // 100_000}"}, "events": events}


def _median_ms(app: Flask, project: str) -> float:
    client = app.test_client()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        response = client.get(
            f"/api/projects/{project}/heatmap", query_string={"path": PATH}, headers={"x-api-key": KEY}
        )
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_json()
    return statistics.median(times)


def main(uri: str, points: int, batches: int) -> None:
    app = Flask("bench", instance_path=tempfile.mkdtemp())
    HeatCollector(
        app, database_uri=uri, query_api_keys=[KEY], rate_limit="1000000 per second", aggregate_compact_batches=batches
    )
    client = app.test_client()
    project = ""
    started = time.perf_counter()
    for first in range(0, points, PER_EVENT * PER_BATCH):
        with client.post("/ingest", json=_batch(first), headers={"x-project-key": "bench"}) as response:
            assert response.status_code == 200, response.get_json()
            project = response.get_json()["projectId"]
    filled = time.perf_counter() - started
    fresh = _median_ms(app, project)
    app.test_cli_runner().invoke(args=["heat", "compact"])
    compacted = _median_ms(app, project)
    app.extensions["heat_collector"].repository.dispose()
    print(
        f"{uri.split(':')[0]} points={points} compact_batches={batches} fill={filled:.1f}s "
        f"right after fill={fresh:.1f} ms, after compaction={compacted:.1f} ms, ratio={fresh / compacted:.2f}"
    )


if __name__ == "__main__":
    main(
        sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000, int(sys.argv[3]) if len(sys.argv) > 3 else 8
    )
