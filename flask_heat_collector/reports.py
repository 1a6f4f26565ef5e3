"""Scroll reach, element and path rankings (SPEC §4), backend-free on top of the Reader.

The frame of a scroll map (bucket, width band, render height) is chosen as the heatmap of all
types chooses it, from the same aggregates; each session's deepest scroll and each path's totals
are grouped by the database; the moves cut by an edge of the range are added from their points.
Element rankings read the range's clicks once (without their JSON) for the rage-click bursts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .aggregates import PLOTTABLE_TYPES, items
from .heatmap import Plan, frame_of, other_viewports, render_height
from .listing import from_edge, stored_events
from .rageclicks import RAGECLICK, rage_clicks
from .repositories.base import LONG_MOVE_MS, EventFilter, EventRow, Reader, Repository, Scan

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
    deepest = [min(100.0, pct) for pct in reader.deepest_scrolls(flt, width)]
    sessions = len(deepest)
    reach = []
    for depth in range(0, 101, SCROLL_STEP):
        count = sum(1 for pct in deepest if pct >= depth)
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


def elements(repo: Repository, flt: EventFilter, *, requested_type: str, limit: int) -> dict[str, Any]:
    """``{elements: [{selector, clicks, sessions, rageClicks}], meta}``: clicked selectors, most
    clicked first (``rageclick``: only those with rage clicks, most rage clicks first)."""
    return repo.read(lambda reader: _elements(reader, flt, requested_type, limit))


def _elements(reader: Reader, flt: EventFilter, requested_type: str, limit: int) -> dict[str, Any]:
    rage: dict[str, int] = {}
    for click in rage_clicks(reader, flt, text=True):
        if click.selector:
            rage[click.selector] = rage.get(click.selector, 0) + 1
    found = [
        (selector, clicks, sessions, rage.get(selector, 0))
        for selector, clicks, sessions in reader.selector_totals(flt)
    ]
    if requested_type == RAGECLICK:
        found = sorted((e for e in found if e[3]), key=lambda e: (-e[3], -e[1], e[0]))
    else:
        found.sort(key=lambda e: (-e[1], e[0]))
    rows = [{"selector": s, "clicks": c, "sessions": n, "rageClicks": r} for s, c, n, r in found[:limit]]
    meta = {"count": len(rows), "total": len(found), "limit": limit, "requestedType": requested_type, "path": flt.path}
    return {"elements": rows, "meta": meta}


def paths(repo: Repository, flt: EventFilter, *, prefix: str | None, limit: int) -> dict[str, Any]:
    """``{paths: [{path, events, sessions, lastSeenAt}], meta}``: paths with rows in the range (those
    starting with ``prefix``), most rows first; a move counts one row per point, as everywhere."""
    return repo.read(lambda reader: _paths(reader, flt, prefix, limit))


def _paths(reader: Reader, flt: EventFilter, prefix: str | None, limit: int) -> dict[str, Any]:
    lo, hi = flt.ts_from, flt.ts_to
    found = {t.path: [t.rows, t.sessions, t.last_seen] for t in reader.path_totals(flt.project_id, lo, hi)}
    # Moves cut by an edge of the range count their points inside it, and their session once.
    pairs: set[tuple[str, str]] = set()
    for move in _cut_moves(reader, flt):
        assert move.path is not None
        times = [ts for _, ts, _, _ in items(move) if (lo is None or ts >= lo) and (hi is None or ts <= hi)]
        if times:
            entry = found.setdefault(move.path, [0, 0, times[0]])
            entry[0] += len(times)
            entry[2] = max(entry[2], *times)
            pairs.add((move.path, move.session_id))
    counted = reader.session_paths(flt.project_id, lo, hi, sorted({s for _, s in pairs}))
    for path, _ in pairs - counted:
        found[path][1] += 1
    ranked = sorted(
        (item for item in found.items() if not prefix or item[0].startswith(prefix)),
        key=lambda item: (-item[1][0], item[0]),
    )
    rows = [{"path": path, "events": n, "sessions": s, "lastSeenAt": last} for path, (n, s, last) in ranked[:limit]]
    return {"paths": rows, "meta": {"count": len(rows), "total": len(ranked), "limit": limit, "q": prefix}}


def _cut_moves(reader: Reader, flt: EventFilter) -> Iterator[EventRow]:
    """The moves with points on both sides of ``from`` or of ``to`` (each move once)."""
    lo, hi = flt.ts_from, flt.ts_to
    if lo is None and hi is None:
        return
    span = reader.max_span(flt.project_id)
    if not span:
        return
    moves = replace(flt, types=("move",))
    if lo is not None:  # starting before lo, ending at or after it
        before = replace(moves, ts_to=lo - 1)
        yield from (m for m in from_edge(reader, before, light=True, text=True) if m.ts + m.span >= lo)
    if hi is not None:  # starting inside the range (or after lo's moves), ending after hi
        low = hi - min(span, LONG_MOVE_MS)
        what = Scan(moves, low if lo is None else max(lo, low), light=True, text=True)
        yield from (m for m in stored_events(reader, what) if m.ts + m.span > hi)
        if span > LONG_MOVE_MS and (lo is None or lo < low):
            found = reader.long_moves(what, low, hi + 1)
            yield from (m for m in found if lo is None or m.ts >= lo)
