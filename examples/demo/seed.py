"""The demo's own visits, so the viewer has something to show on a fresh start.

Ten sessions of the last hour, sent as the real SDK (0.2.6) sends them — same batch shape, same
selectors (``tag#id``), page coordinates (client + scroll offset), viewport buckets rounded to
100 px — through the demo's own ``POST /ingest`` (``app.test_client()``, the SDK's public path):

- ``desktop-1``: 1280x800, SDK user ``demo-user-1``; ``/`` then ``/pricing``, moves, clicks, scrolls.
- ``desktop-2``: 1280x800; ``/`` then ``/pricing``, scrolls to the bottom of ``/``.
- ``desktop-3``: 1280x800; ``/`` only, types a coupon, then four clicks within 450 ms on the dead
  "Apply coupon" button (rage clicks).
- ``mobile-1``: 390x844 (an iPhone); ``/`` then ``/pricing``, taps and scrolls, no mouse moves.
- ``desktop-crowd-0`` … ``-5``: 1280x800; short visits to ``/`` (two on ``/pricing`` too), one
  click each on "Buy now" and "Apply coupon" (not in bursts), scrolls.

Click points come from layout.py, the same numbers the pages' CSS is made of, so they land on the
elements at these widths (tests/e2e/test_demo.py checks the boxes against Chromium's). Session and
event ids are fixed (uuid5), so sending the visits twice stores them once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, cycle, pairwise
from typing import Any

import layout
from flask import Flask

NAMESPACE = uuid.UUID("6f1d3f4e-9a57-4c1e-8f0b-3d0c5a1e7b21")
SDK = {"name": "@m-software-engineering/heat-sdk", "version": "0.2.6"}
USER = {"id": "demo-user-1", "traits": {"plan": "pro"}}
STEP_MS = (1400, 2100, 900, 1700, 2600, 1200)  # pauses between actions, in turn
RAGE_MS = (0, 140, 290, 450)  # the four clicks of the rage burst
RAGE_JITTER = ((0, 0), (3, -2), (-2, 2), (4, 1))  # px: a burst stays within a few px


@dataclass(frozen=True)
class Device:
    w: int
    h: int
    dpr: float
    ua: str
    platform: str

    @property
    def bucket(self) -> str:
        """``meta.viewportBucket`` as the SDK computes it (rounded to 100 px: 390x844 is 400x800)."""
        return f"{round(self.w / 100) * 100}x{round(self.h / 100) * 100}"


DESKTOP = Device(
    1280,
    800,
    1,
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Linux x86_64",
)
PHONE = Device(
    390,
    844,
    3,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "iPhone",
)

# What a visitor does on one page: ("click", element id, fx, fy) at fractions of the element's box,
# ("move", ((id, fx, fy), ...)) through those points, ("scroll", percent of the scrollable height),
# ("type", input id, characters), ("rage", element id), ("custom", name, props).
Action = tuple[Any, ...]


@dataclass(frozen=True)
class Visit:
    path: str
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Session:
    name: str
    device: Device
    minutes_ago: int
    visits: tuple[Visit, ...]
    user: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, self.name))


SESSIONS: tuple[Session, ...] = (
    Session(
        "desktop-1",
        DESKTOP,
        50,
        (
            Visit(
                "/",
                (
                    ("move", (("hero", 0.2, 0.5), ("buy", 0.5, 0.5), ("cart", 0.5, 0.4), ("plans", 0.4, 0.6))),
                    ("click", "buy", 0.5, 0.5),
                    ("click", "plans", 0.45, 0.55),
                    ("scroll", 25),
                    ("scroll", 50),
                    ("scroll", 0),
                    ("move", (("plans", 0.4, 0.6), ("nav-pricing", 0.5, 0.5))),
                    ("click", "nav-pricing", 0.5, 0.5),
                ),
            ),
            Visit(
                "/pricing",
                (
                    ("move", (("hero", 0.3, 0.5), ("choose-free", 0.5, 0.5), ("choose-pro", 0.5, 0.5))),
                    ("scroll", 40),
                    ("click", "choose-pro", 0.5, 0.5),
                    ("scroll", 85),
                    ("scroll", 100),
                    ("move", (("faq", 0.3, 0.4), ("faq", 0.5, 0.9), ("to-top", 0.5, 0.5))),
                ),
            ),
        ),
        USER,
    ),
    Session(
        "desktop-2",
        DESKTOP,
        38,
        (
            Visit(
                "/",
                (
                    ("move", (("hero", 0.7, 0.4), ("cart", 0.5, 0.5), ("signup", 0.55, 0.5))),
                    ("click", "cart", 0.55, 0.45),
                    ("click", "buy", 0.4, 0.6),
                    ("click", "signup", 0.5, 0.5),
                    ("custom", "signup", {"plan": "pro"}),
                    ("scroll", 30),
                    ("scroll", 60),
                    ("scroll", 100),
                    ("move", (("tall", 0.5, 0.8), ("to-top", 0.3, 0.5))),
                    ("click", "to-top", 0.4, 0.5),
                ),
            ),
            Visit(
                "/pricing",
                (
                    ("move", (("choose-team", 0.5, 0.5), ("choose-free", 0.5, 0.5))),
                    ("click", "choose-team", 0.5, 0.5),
                    ("click", "choose-free", 0.6, 0.5),
                    ("scroll", 50),
                ),
            ),
        ),
    ),
    Session(
        "desktop-3",
        DESKTOP,
        24,
        (
            Visit(
                "/",
                (
                    ("move", (("buy", 0.5, 0.5), ("coupon", 0.3, 0.5))),
                    ("click", "buy", 0.55, 0.5),
                    ("click", "coupon", 0.3, 0.5),
                    ("type", "coupon", 9),
                    ("move", (("coupon", 0.3, 0.5), ("apply-coupon", 0.5, 0.5))),
                    ("rage", "apply-coupon"),
                    ("scroll", 15),
                ),
            ),
        ),
    ),
    Session(
        "mobile-1",
        PHONE,
        10,
        (
            Visit(
                "/",
                (
                    ("click", "buy", 0.5, 0.5),
                    ("click", "help", 0.5, 0.5),
                    ("click", "apply-coupon", 0.5, 0.5),
                    ("scroll", 35),
                    ("scroll", 70),
                    ("scroll", 100),
                    ("click", "to-top", 0.5, 0.5),
                    ("scroll", 0),
                    ("click", "nav-pricing", 0.5, 0.5),
                ),
            ),
            Visit(
                "/pricing",
                (
                    ("scroll", 30),
                    ("click", "choose-pro", 0.5, 0.5),
                    ("scroll", 65),
                    ("scroll", 100),
                    ("click", "to-top", 0.5, 0.5),
                ),
            ),
        ),
    ),
)


def _crowd(i: int) -> Session:
    """A short desktop visit, the ``i``-th of six: the map needs more than four visitors to read well."""
    home: tuple[Action, ...] = (
        ("move", (("hero", 0.15 * i, 0.6), ("buy", 0.3 + 0.08 * i, 0.5), ("apply-coupon", 0.3 + 0.08 * i, 0.5))),
        ("click", "buy", 0.3 + 0.08 * i, 0.35 + 0.06 * (i % 3)),
        ("click", "apply-coupon", 0.35 + 0.06 * i, 0.3 + 0.1 * (i % 4)),
        *((("click", "cart", 0.5, 0.4 + 0.05 * i),) if i % 2 == 0 else ()),
        ("scroll", 20 + 12 * i),
    )
    pricing: tuple[Action, ...] = (
        ("move", (("hero", 0.5, 0.5), ("choose-pro", 0.3 + 0.08 * i, 0.5))),
        ("click", "choose-pro", 0.3 + 0.08 * i, 0.4 + 0.05 * i),
        ("scroll", 30 + 10 * i),
    )
    visits = (Visit("/", home), Visit("/pricing", pricing)) if i % 3 == 0 else (Visit("/", home),)
    return Session(f"desktop-crowd-{i}", DESKTOP, 47 - 6 * i, visits)


SESSIONS += tuple(_crowd(i) for i in range(6))


def _tag(element: str) -> str:
    """The SDK's selector of a demo element: ``tag#id`` (every tracked element has an id)."""
    if element.startswith("nav-") or element == "to-top":
        return f"a#{element}"
    if element in ("name", "coupon"):
        return f"input#{element}"
    return f"button#{element}"


def _moves(boxes: dict[str, layout.Box], stops: tuple[tuple[str, float, float], ...]) -> list[dict[str, int]]:
    """Points every 50 ms along straight lines through ``stops`` (the SDK's move throttle)."""
    corners = [boxes[name].at(fx, fy) for name, fx, fy in stops]
    points = [corners[0]]
    for (x0, y0), (x1, y1) in pairwise(corners):
        points += [(round(x0 + (x1 - x0) * i / 6), round(y0 + (y1 - y0) * i / 6)) for i in range(1, 7)]
    return [{"x": x, "y": y, "tsOffset": 50 * i} for i, (x, y) in enumerate(points)]


def _events(session: Session, visit: Visit, clock: Iterator[int]) -> list[dict[str, Any]]:
    """The events of one page load, as the SDK records them."""
    device = session.device
    boxes = layout.boxes(visit.path, device.w)
    scrollable = boxes["page"].h - device.h
    events: list[dict[str, Any]] = []

    def event(kind: str, ts: int, **fields: Any) -> None:
        events.append(
            {
                "eventId": str(uuid.uuid5(NAMESPACE, f"{session.name}{visit.path}#{len(events)}")),
                "sessionId": session.id,
                "ts": ts,
                "path": visit.path,
                "viewport": {"w": device.w, "h": device.h, "dpr": device.dpr},
                "device": {"ua": device.ua, "platform": device.platform, "language": "en-US"},
                "meta": {"viewportBucket": device.bucket},
                "type": kind,
                **fields,
            }
        )

    event("pageview", next(clock), to=visit.path)
    for action in visit.actions:
        ts = next(clock)
        kind = action[0]
        if kind == "click":
            x, y = boxes[action[1]].at(action[2], action[3])
            event("click", ts, x=x, y=y, selector=_tag(action[1]), button=0)
        elif kind == "move":
            event("move", ts, points=_moves(boxes, action[1]))
        elif kind == "scroll":
            scroll_y = round(action[1] / 100 * scrollable)
            event("scroll", ts, scrollY=scroll_y, scrollDepthPct=scroll_y / scrollable * 100)
        elif kind == "type":  # focus, then the masked value on change and blur (the SDK's "masked" mode)
            field = {"selector": _tag(action[1]), "inputType": "text"}
            typed = {"length": action[2], "masked": "*" * action[2]}
            event("input", ts, action="focus", **field, length=0, masked="")
            event("input", ts + 2500, action="change", **field, **typed)
            event("input", ts + 2600, action="blur", **field, **typed)
        elif kind == "rage":
            x, y = boxes[action[1]].at(0.5, 0.5)
            for offset, (dx, dy) in zip(RAGE_MS, RAGE_JITTER, strict=True):
                event("click", ts + 3000 + offset, x=x + dx, y=y + dy, selector=_tag(action[1]), button=0)
        elif kind == "custom":
            event("custom", ts, name=action[1], props=action[2])
    return events


def batches(now_ms: int) -> list[dict[str, Any]]:
    """Every visit's batch, timestamps counted back from ``now_ms``."""
    out = []
    for session in SESSIONS:
        start = now_ms - session.minutes_ago * 60_000
        # 3 s more per action: room for what one spreads over (typing, a burst).
        clock = accumulate((step + 3000 for step in cycle(STEP_MS)), initial=start)
        for visit in session.visits:
            events = _events(session, visit, clock)
            body: dict[str, Any] = {
                "sdk": SDK,
                "app": {},
                "session": {"id": session.id, "startedAt": start, "lastSeenAt": max(e["ts"] for e in events)},
                "events": events,
            }
            if session.user:
                body["user"] = session.user
            out.append(body)
    return out


def seed_if_empty(app: Flask, project_key: str, query_key: str, now_ms: int | None = None) -> int:
    """Send the visits when the demo project has no events yet; the number of events sent (0: none)."""
    client = app.test_client()
    project_id = client.get("/demo/project").get_json()["projectId"]
    if project_id:
        answer = client.get(f"/api/projects/{project_id}/events?limit=1", headers={"x-api-key": query_key})
        if answer.status_code != 200:
            raise RuntimeError(f"the demo's own query API refused: {answer.status_code} {answer.get_data(True)}")
        if answer.get_json()["events"]:
            return 0
    agents = {session.id: session.device.ua for session in SESSIONS}
    sent = 0
    for body in batches(now_ms if now_ms is not None else int(time.time() * 1000)):
        agent = agents[body["session"]["id"]]
        headers = {"X-Project-Key": project_key, "Origin": "http://127.0.0.1:5000", "User-Agent": agent}
        answer = client.post("/ingest", json=body, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"the demo's own /ingest refused its seed: {answer.status_code} {answer.get_data(True)}")
        sent += len(body["events"])
    return sent
