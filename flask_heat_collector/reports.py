"""Scroll reach, element and path rankings (SPEC §4), backend-free, from the raw rows of a range.

The frame of a scroll map (bucket, width band, render height) is chosen as the heatmap of all
types chooses it, from the same aggregates; the reach itself and the rankings read the range's
rows once, without their JSON, keeping one entry per session, element or path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .aggregates import PLOTTABLE_TYPES, items, scroll_pct
from .heatmap import Plan, frame_of, other_viewports, render_height
from .listing import stored_events
from .rageclicks import RAGECLICK, in_bursts
from .repositories.base import EventFilter, Reader, Repository, StoredEvent

SCROLL_STEP = 5  # reach is reported at every 5 % of the page


def scrollmap(
    repo: Repository,
    flt: EventFilter,
    *,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> dict[str, Any]:
    """``{reach: [{depth, sessions, pct}], meta}``: of the sessions that scrolled on the path (in the
    width band), how many reached each depth; ``pct`` and ``meta.foldPct`` are percents."""
    return repo.read(lambda reader: _scrollmap(reader, flt, viewports, viewport_bucket, viewport_width))


def _scrollmap(
    reader: Reader, flt: EventFilter, viewports: str, viewport_bucket: str | None, viewport_width: int | None
) -> dict[str, Any]:
    summary = {key: stats for key, stats in Plan(reader, flt).summary().items() if stats.n}
    chosen, vw, vh = frame_of(summary, viewport_bucket, viewport_width)
    width = vw if viewports == "width" else None
    height = render_height(summary, PLOTTABLE_TYPES, width, vh)
    deepest: dict[str, float] = {}  # session -> deepest scroll (percent of the page)
    for row in stored_events(reader, replace(flt, types=("scroll",)), ts_low=flt.ts_from, light=True):
        if row.scroll_depth is None or (width is not None and row.bucket_w != width):
            continue
        pct = min(100.0, scroll_pct(row.scroll_depth))
        if pct > deepest.get(row.session_id, -1.0):
            deepest[row.session_id] = pct
    sessions = len(deepest)
    reach = []
    for depth in range(0, 101, SCROLL_STEP):
        count = sum(1 for pct in deepest.values() if pct >= depth)
        reach.append({"depth": depth, "sessions": count, "pct": 100 * count / sessions if sessions else 0})
    meta = {
        "sessions": sessions,
        "foldPct": 100 * vh / height,
        "viewport": {"w": vw, "h": vh},
        "renderHeight": height,
        "bucket": chosen,
        "viewports": viewports,
        "otherViewports": other_viewports(summary, vw) if width is not None else {},
    }
    return {"reach": reach, "meta": meta}


@dataclass
class _Element:
    clicks: int = 0
    rage: int = 0
    sessions: set[str] = field(default_factory=set)


def elements(repo: Repository, flt: EventFilter, *, requested_type: str, limit: int) -> dict[str, Any]:
    """``{elements: [{selector, clicks, sessions, rageClicks}], meta}``: clicked selectors, most
    clicked first (``rageclick``: only those with rage clicks, most rage clicks first)."""
    return repo.read(lambda reader: _elements(reader, flt, requested_type, limit))


def _elements(reader: Reader, flt: EventFilter, requested_type: str, limit: int) -> dict[str, Any]:
    found: dict[str, _Element] = {}

    def counted(clicks: Iterator[StoredEvent]) -> Iterator[StoredEvent]:
        for click in clicks:
            if click.selector:
                element = found.get(click.selector)
                if element is None:
                    element = found[click.selector] = _Element()
                element.clicks += 1
                element.sessions.add(click.session_id)
            yield click

    clicks = stored_events(reader, replace(flt, types=("click",)), ts_low=flt.ts_from, light=True, text=True)
    for click in in_bursts(counted(clicks)):
        if click.selector:
            found[click.selector].rage += 1
    ranked = sorted(
        (item for item in found.items() if requested_type != RAGECLICK or item[1].rage),
        key=lambda item: (
            ((-item[1].rage, -item[1].clicks) if requested_type == RAGECLICK else (-item[1].clicks,)) + (item[0],)
        ),
    )
    rows = [
        {"selector": selector, "clicks": e.clicks, "sessions": len(e.sessions), "rageClicks": e.rage}
        for selector, e in ranked[:limit]
    ]
    meta = {
        "count": len(rows),
        "total": len(ranked),
        "limit": limit,
        "requestedType": requested_type,
        "path": flt.path,
        "clicks": sum(e.clicks for e in found.values()),
    }
    return {"elements": rows, "meta": meta}


@dataclass
class _Path:
    events: int
    sessions: set[str]
    last_seen: int


def paths(repo: Repository, flt: EventFilter, *, prefix: str | None, limit: int) -> dict[str, Any]:
    """``{paths: [{path, events, sessions, lastSeenAt}], meta}``: paths with rows in the range (those
    starting with ``prefix``), most rows first; a move counts one row per point, as everywhere."""
    return repo.read(lambda reader: _paths(reader, flt, prefix, limit))


def _paths(reader: Reader, flt: EventFilter, prefix: str | None, limit: int) -> dict[str, Any]:
    lo = flt.ts_from
    hi = flt.ts_to
    ts_low = None if lo is None else lo - reader.max_span(flt.project_id)
    found: dict[str, _Path] = {}
    for row in stored_events(reader, flt, ts_low=ts_low, light=True, text=True):
        if row.path is None or (prefix and not row.path.startswith(prefix)):
            continue
        times = [ts for _, ts, _, _ in items(row) if (lo is None or ts >= lo) and (hi is None or ts <= hi)]
        if not times:
            continue
        entry = found.get(row.path)
        if entry is None:
            found[row.path] = _Path(len(times), {row.session_id}, max(times))
        else:
            entry.events += len(times)
            entry.sessions.add(row.session_id)
            entry.last_seen = max(entry.last_seen, *times)
    ranked = sorted(found.items(), key=lambda item: (-item[1].events, item[0]))
    rows = [
        {"path": path, "events": p.events, "sessions": len(p.sessions), "lastSeenAt": p.last_seen}
        for path, p in ranked[:limit]
    ]
    return {"paths": rows, "meta": {"count": len(rows), "total": len(ranked), "limit": limit, "q": prefix}}
