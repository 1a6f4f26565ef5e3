"""Rage clicks (SPEC §4): the clicks of one session that make a burst of at least three within
1,000 ms and 30 px of the burst's first click, each click in one burst at most.

Decided once per session, over all its clicks (every path, every time): a batch with clicks marks
its session pending, and settling it (before a report reads them, and after compaction) recomputes
the session's bursts and stores the difference, so late and retried batches correct them exactly.
Reports then read the stored rage clicks of their range, never every click. Backend-free.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .repositories.base import EventRow

RAGECLICK = "rageclick"
_SWEEP_EVERY = 4096  # clicks between sweeps of the bursts of sessions that stopped clicking

Burst = list[EventRow]
T = TypeVar("T")


@dataclass(frozen=True)
class RageRule:
    """What makes a burst: at least ``clicks`` clicks of one session within ``window_ms`` and
    ``radius_px`` of the burst's first click (``HEAT_RAGE_CLICKS``, ``HEAT_RAGE_WINDOW_MS``,
    ``HEAT_RAGE_RADIUS_PX``; SPEC §4's 3, 1,000 ms and 30 px by default)."""

    clicks: int = 3
    window_ms: int = 1000
    radius_px: int = 30


DEFAULT_RULE = RageRule()


_TOKEN_RANDOM_BITS = 20


def new_token() -> int:
    """A fresh mark of a session's pending rage clicks: positive, never repeating in practice, and
    ordered by time (the mark's millisecond in the high bits), so the marks of the sessions that sent
    nothing for longest come first."""
    return (time.time_ns() // 1_000_000) << _TOKEN_RANDOM_BITS | secrets.randbits(_TOKEN_RANDOM_BITS)


def idle_token(idle_ms: int) -> int:
    """The tokens below this one were marked at least ``idle_ms`` ago."""
    return (time.time_ns() // 1_000_000 - idle_ms) << _TOKEN_RANDOM_BITS


def rotated(items: Iterable[T]) -> list[T]:
    """``items`` from a random one on, wrapping around: workers settling at once start at different
    projects."""
    found = list(items)
    start = secrets.randbelow(len(found)) if found else 0
    return found[start:] + found[:start]


def settle(
    clicks: Iterable[EventRow], stored: Iterable[str], rule: RageRule = DEFAULT_RULE
) -> tuple[list[EventRow], list[str]]:
    """What turns the stored rage clicks of a session (``stored``: their event ids) into the bursts of
    its ``clicks`` (all of them, in ``(ts, seq)`` order): the clicks to add and the ids to remove."""
    rage = {click.event_id: click for click in in_bursts(clicks, rule)}
    known = set(stored)
    return [click for event_id, click in rage.items() if event_id not in known], sorted(known - rage.keys())


def rage_row(
    event_id: str,
    seq: int,
    session_id: str,
    ts: int,
    path: str,
    path_key: int,
    selector: str | None,
    x: int,
    y: int,
    bucket_w: int,
    bucket_h: int,
    view_w: int | None = None,
) -> EventRow:
    """A stored rage click as the light event row the reports read; ``view_w`` 0 when not stored (a
    rage click settled before the width was kept: the heatmap reads it from the event)."""
    return EventRow(
        event_id,
        seq,
        session_id,
        "click",
        ts,
        0,
        path,
        path_key,
        selector,
        x,
        y,
        None,
        bucket_w,
        bucket_h,
        view_w or 0,
        1,
        None,
        "",
        None,
    )


def in_bursts(clicks: Iterable[EventRow], rule: RageRule = DEFAULT_RULE) -> Iterator[EventRow]:
    """The clicks, given in ``(ts, seq)`` order, that belong to a burst of at least ``rule.clicks``.

    A click joins the oldest open burst of its session whose first click is at most
    ``rule.window_ms`` earlier and ``rule.radius_px`` away, else opens a burst of its own. A burst
    closes once its window has passed, so memory holds only the last second of each session.
    Clicks without coordinates belong to no burst.
    """
    bursts: dict[str, list[Burst]] = {}
    seen = 0
    for click in clicks:
        x, y = click.x, click.y
        if x is None or y is None:
            continue
        rage, live = _close(bursts.get(click.session_id, []), click.ts, rule)
        yield from rage
        for burst in live:
            first = burst[0]
            assert first.x is not None and first.y is not None
            if (x - first.x) ** 2 + (y - first.y) ** 2 <= rule.radius_px**2:
                burst.append(click)
                break
        else:
            live.append([click])
        bursts[click.session_id] = live
        seen += 1
        if seen % _SWEEP_EVERY == 0:  # forget the sessions that stopped clicking
            for session_id in list(bursts):
                rage, bursts[session_id] = _close(bursts[session_id], click.ts, rule)
                yield from rage
                if not bursts[session_id]:
                    del bursts[session_id]
    for live in bursts.values():
        yield from _close(live, None, rule)[0]


def _close(bursts: list[Burst], now: int | None, rule: RageRule) -> tuple[list[EventRow], list[Burst]]:
    """The clicks of the rage bursts whose window ended before ``now`` (``None``: every burst ends),
    and the bursts still open."""
    rage: list[EventRow] = []
    live: list[Burst] = []
    for burst in bursts:
        if now is None or now - burst[0].ts > rule.window_ms:
            if len(burst) >= rule.clicks:
                rage += burst
        else:
            live.append(burst)
    return rage, live
