"""The real heat SDK in Chromium with a crawler's user agent (Googlebot): the collector stores the
visit as a bot session, every report leaves it out by default and says so in ``meta.excluded``, and
``traffic=bot`` shows it (docs/traffic.md)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from .support import QUERY_KEY, register_project, run_collector, sdk_visit, wait_until

pytestmark = pytest.mark.e2e

PAGE_PATH = "/index.html"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_a_crawler_visit_is_excluded_by_default(browser: Any, site: str, tmp_path: Path) -> None:
    assert QUERY_KEY
    project_key = f"e2e-bot-{uuid.uuid4().hex[:12]}"
    with run_collector(tmp_path) as collector:
        project_id = register_project(collector.env, project_key)
        with sdk_visit(
            browser,
            f"{collector.url}/ingest",
            project_key,
            f"{site}{PAGE_PATH}",
            flush_interval_ms=2000,
            viewport={"width": 1300, "height": 700},
            user_agent=GOOGLEBOT,
        ) as page:
            page.mouse.move(200, 200, steps=5)
            page.click("#buy")
            page.click("#cart")
            page.evaluate("async () => { await window.tracker.flush(); }")
            wait_until(
                lambda: page.evaluate("window.tracker.queue.length + window.tracker.movePoints.length") == 0,
                30,
                "the SDK did not deliver its queue",
                page=page,
            )
        pid = project_id
        wait_until(
            lambda: (
                collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="click", traffic="bot")["meta"][
                    "total"
                ]
                == 2
            ),
            30,
            "the bot's clicks were not stored",
        )
        human = collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="click")
        assert human["meta"]["total"] == 0
        assert human["meta"]["excluded"]["sessions"] == 1
        assert human["meta"]["excluded"]["events"] == 2
        every = collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="click", traffic="all")
        assert every["meta"]["total"] == 2 and every["meta"]["excluded"] == {"sessions": 0, "events": 0}
        sessions = collector.api_json(f"/projects/{pid}/sessions")
        assert sessions["sessions"] == [] and sessions["meta"]["excluded"]["sessions"] == 1
        bots = collector.api_json(f"/projects/{pid}/sessions", traffic="bot")
        assert len(bots["sessions"]) == 1
        detail = collector.api_json(f"/projects/{pid}/sessions/{bots['sessions'][0]['sessionId']}")
        assert detail["session"]["traffic"] == "bot"
        assert detail["session"]["trafficReason"] == "user_agent:Googlebot"
