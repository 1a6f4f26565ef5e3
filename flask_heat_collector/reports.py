"""Scroll reach, element and path rankings (SPEC §4), backend-free on top of the Reader.

The frame of a scroll map (bucket, width band, render height) is chosen as the heatmap of all
types chooses it, from the same aggregates; each session's deepest scroll is grouped by the database.
Paths and elements add up the report pieces (report_pieces.py) of the range's whole UTC days and the
raw rows of its partial days; rage clicks are the range's settled ones (rageclicks.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .aggregates import DAY_MS, PLOTTABLE_TYPES
from .heatmap import Plan, frame_of, other_viewports, render_height, split_range
from .listing import stored_events
from .rageclicks import RAGECLICK
from .report_pieces import ReportTotals
from .repositories.base import EventFilter, Reader, Repository, Scan

SCROLL_STEP = 5  # reach is reported at every 5 % of the page
_FIRST_DAY, _LAST_DAY = -(10**8), 10**8  # an open end of a range: every stored day


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
    repo.settle_rage(flt.project_id)
    return repo.read(lambda reader: _elements(reader, flt, requested_type, limit))


def _elements(reader: Reader, flt: EventFilter, requested_type: str, limit: int) -> dict[str, Any]:
    rage: dict[str, int] = {}
    for click in reader.rage_clicks(flt):
        if click.selector:
            rage[click.selector] = rage.get(click.selector, 0) + 1
    totals, ordinals = _totals(reader, flt, selectors=True)
    found = [
        (selector, t.rows, t.sessions.count(ordinals), rage.get(selector, 0))
        for selector, t in totals.selectors.items()
        if t.rows
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
    totals, ordinals = _totals(reader, flt, selectors=False)
    ranked = sorted(
        (
            (path, t.rows, t.sessions.count(ordinals), t.last_ts)
            for path, t in totals.paths.items()
            if t.rows and (not prefix or path.startswith(prefix))
        ),
        key=lambda item: (-item[1], item[0]),
    )
    rows = [{"path": path, "events": n, "sessions": s, "lastSeenAt": last} for path, n, s, last in ranked[:limit]]
    return {"paths": rows, "meta": {"count": len(rows), "total": len(ranked), "limit": limit, "q": prefix}}


def _totals(reader: Reader, flt: EventFilter, *, selectors: bool) -> tuple[ReportTotals, dict[str, int]]:
    """Per path (and per selector) totals of ``flt``'s range: the report pieces of its whole days, the
    raw rows of its partial days at the edges; and the ordinals of the sessions they name."""
    lo = flt.ts_from if flt.ts_from is not None else _FIRST_DAY * DAY_MS
    hi = flt.ts_to if flt.ts_to is not None else (_LAST_DAY + 1) * DAY_MS - 1
    totals = ReportTotals(selectors=selectors)
    days, edges = split_range(lo, hi)
    if days is not None:
        for piece in reader.report_pieces(flt.project_id, flt.path, days, selectors=selectors):
            totals.add_piece(piece)
    if edges:
        span = reader.max_span(flt.project_id)
        for edge_lo, edge_hi in edges:
            edge = replace(flt, types=("click",) if selectors else None, ts_from=edge_lo, ts_to=edge_hi)
            for row in stored_events(reader, Scan(edge, edge_lo - span, light=True, text=True)):
                totals.add_row(row, edge_lo, edge_hi)
    return totals, reader.session_ordinals(flt.project_id, totals.unmapped())
