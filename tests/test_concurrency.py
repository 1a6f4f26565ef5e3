"""16 threads posting batches of one session at once: every answer 200, every event stored once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .helpers import QUERY_KEY, batch, event, post_batch

THREADS = 16
BATCHES_PER_THREAD = 4


def test_concurrent_batches_of_one_session(make_app: Any, live_server: Any) -> None:
    app = make_app(rate_limit="100000 per second")
    server = live_server(app)
    batches = [
        batch(
            *[event("click", x=t, y=b) for _ in range(5)],
            event("move", points=[{"x": 1, "y": 2, "tsOffset": 0}] * 2),
            session_id="shared-session",
            user={"id": "same-user"},
            last_seen_at=1000 + t * 10 + b,
        )
        for t in range(THREADS)
        for b in range(BATCHES_PER_THREAD)
    ]
    # Every batch is sent twice, racing with itself: the retry must neither fail nor duplicate.
    work = batches + batches
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(lambda body: post_batch(server.url, body, "concurrent-key"), work))
    statuses = [answer.status for answer in answers]
    assert statuses.count(200) == len(work), {s: statuses.count(s) for s in set(statuses)}
    accepted = sum(answer.body["accepted"] for answer in answers)
    duplicates = sum(answer.body["duplicates"] for answer in answers)
    expected_rows = len(batches) * 7
    assert accepted == expected_rows
    assert duplicates == expected_rows

    project = answers[0].body["projectId"]
    client = app.test_client()
    api = {"x-api-key": QUERY_KEY}
    sessions = client.get(f"/api/projects/{project}/sessions", headers=api).get_json()["sessions"]
    assert len(sessions) == 1
    assert sessions[0]["eventCount"] == expected_rows
    assert sessions[0]["lastSeenAt"] == 1000 + (THREADS - 1) * 10 + BATCHES_PER_THREAD - 1
    rows = client.get(f"/api/projects/{project}/events", query_string={"limit": 1000}, headers=api).get_json()
    assert len({r["id"] for r in rows["events"]}) == expected_rows
