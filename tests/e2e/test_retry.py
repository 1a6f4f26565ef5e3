"""The SDK's retry against a collector whose storage is down, then back: every event stored once.

The SDK (0.2.6) keeps a failed batch at the head of its queue and retries after 1 s, then 2 s, 4 s ...
(doubling up to 30 s, plus up to 300 ms jitter); while a retry is pending, its periodic and explicit
flushes send nothing. ``tests/e2e/failing_app.py`` answers 503 ``storage_unavailable`` while a flag
file exists.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .support import init_script, rows_of, run_collector, stored_rows, wait_until

pytestmark = pytest.mark.e2e

PAGE_PATH = "/index.html"


def _ingested(page: Any) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = page.evaluate("window.__ingest")
    return answers


def test_batches_refused_during_an_outage_are_retried_and_stored_once(browser: Any, site: str, tmp_path: Path) -> None:
    flag, attempts = tmp_path / "outage", tmp_path / "outage-attempts"
    flag.touch()
    attempts.touch()
    project_key = f"e2e-retry-{uuid.uuid4().hex[:12]}"
    with run_collector(
        tmp_path,
        app="tests.e2e.failing_app:create_app()",
        HEAT_TEST_E2E_OUTAGE_FLAG=str(flag),
        HEAT_TEST_E2E_OUTAGE_LOG=str(attempts),
    ) as collector:
        ingest_url = f"{collector.url}/ingest"
        context = browser.new_context(viewport={"width": 1300, "height": 700})
        try:
            page = context.new_page()
            bodies: list[dict[str, Any]] = []
            page.on(
                "request",
                lambda r: bodies.append(r.post_data_json) if r.url == ingest_url and r.method == "POST" else None,
            )
            config = {"endpoint": ingest_url, "projectKey": project_key, "flushIntervalMs": 2000}
            page.add_init_script(script=init_script(config))
            page.goto(f"{site}{PAGE_PATH}")
            page.wait_for_function("window.heatReady === true")

            # During the outage: activity, then an explicit flush that meets a 503.
            page.mouse.move(100, 100)
            page.mouse.move(900, 300, steps=10)
            for selector in ("#buy", "#cart"):
                page.click(selector)
            page.evaluate("async () => { window.tracker.track('signup', { step: 1 }); await window.tracker.flush(); }")
            wait_until(lambda: len(_ingested(page)) >= 1, 20, "the first flush got no answer", page=page)
            first = _ingested(page)[0]
            assert first["status"] == 503
            assert first["body"]["code"] == "storage_unavailable"
            assert first["retryAfter"] == "5"
            assert page.evaluate("window.tracker.queue.length") > 0  # kept for the retry

            # The SDK retries by itself (after about 1 s): still down, refused again.
            wait_until(lambda: len(_ingested(page)) >= 2, 20, "the SDK did not retry", page=page)
            assert [a["status"] for a in _ingested(page)] == [503, 503]
            page.click("#info")
            page.evaluate("() => window.tracker.track('signup', { step: 2 })")

            # Recovery: the next retry (about 2 s later) and the rest of the queue go through.
            flag.unlink()
            wait_until(
                lambda: (
                    page.evaluate("window.tracker.queue.length + window.tracker.movePoints.length") == 0
                    and len(_ingested(page)) == len(bodies)
                    and _ingested(page)[-1]["status"] == 200
                ),
                30,
                "the SDK did not deliver its queue after the outage",
                page=page,
            )
            page.evaluate("() => window.tracker.track('signup', { step: 3 })")
            page.evaluate("async () => { await window.tracker.flush(); }")
            wait_until(lambda: len(_ingested(page)) == len(bodies), 20, "the last flush got no answer", page=page)
            answers = _ingested(page)
        finally:
            context.close()

        statuses = [a["status"] for a in answers]
        assert statuses[:2] == [503, 503] and set(statuses[2:]) == {200}
        # Each refused attempt reached the collector and was refused there, by the workers.
        assert len(attempts.read_text().splitlines()) == statuses.count(503)
        # Each retry resent the refused events (same eventIds), with what was queued meanwhile.
        refused_ids = {e["eventId"] for e in bodies[0]["events"]}
        assert refused_ids <= {e["eventId"] for e in bodies[1]["events"]}
        assert refused_ids <= {e["eventId"] for e in bodies[2]["events"]}

        project_id = answers[-1]["body"]["projectId"]
        events = collector.all_events(project_id)
        stored = stored_rows(events)
        expected = rows_of(bodies)
        assert len(stored) == len(set(stored)) == len(expected)
        assert set(stored) == set(expected)
        accepted = [a["body"]["accepted"] for a in answers if a["status"] == 200]
        assert sum(accepted) == len(stored)
        assert sum(a["body"]["duplicates"] for a in answers if a["status"] == 200) == 0

        # What the page generated: 3 clicks, 3 custom events, 1 page view, the mouse path.
        types = Counter(e["type"] for e in events)
        assert types["click"] == 3
        assert types["pageview"] == 1
        assert sorted(e["data"]["props"]["step"] for e in events if e["type"] == "custom") == [1, 2, 3]
        assert types["move"] == sum(len(e["points"]) for e in _unique_events(bodies) if e["type"] == "move")


def _unique_events(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for event in body["events"]:
            seen.setdefault(event["eventId"], event)
    return list(seen.values())
