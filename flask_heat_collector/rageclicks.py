"""Rage clicks (SPEC §4): the clicks of one session that make a burst of at least three within
1,000 ms and 30 px of the burst's first click, each click in one burst at most. Backend-free, from
the raw click rows of a range."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from .listing import stored_events
from .repositories.base import EventFilter, EventRow, Reader, Scan

RAGECLICK = "rageclick"
MIN_CLICKS = 3
WINDOW_MS = 1000
RADIUS_PX = 30
_SWEEP_EVERY = 4096  # clicks between sweeps of the bursts of sessions that stopped clicking

Burst = list[EventRow]


def rage_clicks(reader: Reader, flt: EventFilter, *, text: bool = False) -> Iterator[EventRow]:
    """The clicks of ``flt`` (path, ``from``..``to``) that belong to rage bursts, from one read of
    the range's clicks in time order. ``text`` reads each click's path and selector too (never its JSON).
    """
    clicks = stored_events(reader, Scan(replace(flt, types=("click",)), flt.ts_from, light=True, text=text))
    return in_bursts(clicks)


def in_bursts(clicks: Iterable[EventRow]) -> Iterator[EventRow]:
    """The clicks, given in ``(ts, seq)`` order, that belong to a burst of at least :data:`MIN_CLICKS`.

    A click joins the oldest open burst of its session whose first click is at most
    :data:`WINDOW_MS` earlier and :data:`RADIUS_PX` away, else opens a burst of its own. A burst
    closes once its window has passed, so memory holds only the last second of each session.
    Clicks without coordinates belong to no burst.
    """
    bursts: dict[str, list[Burst]] = {}
    seen = 0
    for click in clicks:
        x, y = click.x, click.y
        if x is None or y is None:
            continue
        rage, live = _close(bursts.get(click.session_id, []), click.ts)
        yield from rage
        for burst in live:
            first = burst[0]
            assert first.x is not None and first.y is not None
            if (x - first.x) ** 2 + (y - first.y) ** 2 <= RADIUS_PX**2:
                burst.append(click)
                break
        else:
            live.append([click])
        bursts[click.session_id] = live
        seen += 1
        if seen % _SWEEP_EVERY == 0:  # forget the sessions that stopped clicking
            for session_id in list(bursts):
                rage, bursts[session_id] = _close(bursts[session_id], click.ts)
                yield from rage
                if not bursts[session_id]:
                    del bursts[session_id]
    for live in bursts.values():
        yield from _close(live, None)[0]


def _close(bursts: list[Burst], now: int | None) -> tuple[list[EventRow], list[Burst]]:
    """The clicks of the rage bursts whose window ended before ``now`` (``None``: every burst ends),
    and the bursts still open."""
    rage: list[EventRow] = []
    live: list[Burst] = []
    for burst in bursts:
        if now is None or now - burst[0].ts > WINDOW_MS:
            if len(burst) >= MIN_CLICKS:
                rage += burst
        else:
            live.append(burst)
    return rage, live
