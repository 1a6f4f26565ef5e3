"""Scroll reach, element and path rankings (SPEC §4), backend-free on top of the Reader.

The frame of a scroll map (bucket, width band, render height) is chosen as the heatmap of all
types chooses it, from the same aggregates; each session's deepest scroll is grouped by the database.
Paths and elements add up the report pieces (report_pieces.py) of the range's whole UTC days and the
raw rows of its partial days; rage clicks are the range's settled ones (rageclicks.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .aggregates import OPEN_FROM, OPEN_TO, PLOTTABLE_TYPES, Stats, items, split_range
from .heatmap import Bucket, Plan, frame_of, other_viewports, render_height
from .listing import from_edge
from .page_groups import MAX_GROUP_PATHS, Template, matching
from .rageclicks import RAGECLICK
from .report_pieces import ALL_WIDTHS, ReportTotals, ScrollTotals, median
from .repositories.base import EventFilter, EventRow, Reader, Repository
from .samples import band_sample, sample_json, union_count
from .signals import DEAD, ERROR, QUICK_BACK, RAGE, SCROLL

_PATH_SIGNALS = (("rageClicks", RAGE), ("deadClicks", DEAD), ("quickBacks", QUICK_BACK), ("excessiveScrolls", SCROLL))
SCROLL_STEP = 5  # reach is reported at every 5 % of the page


def scrollmap(
    repo: Repository,
    flt: EventFilter,
    *,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> dict[str, Any]:
    """``{reach: [{depth, sessions, pct}], meta}``: of the sessions with an event on the path (in the
    width band), how many saw each depth of the page: the bottom edge of their viewport (SPEC §4);
    a session that never scrolled saw the fold. ``pct`` and ``meta.foldPct`` are percents."""
    return repo.read(lambda reader: _scrollmap(reader, flt, viewports, viewport_bucket, viewport_width))


def _band(
    reader: Reader, flt: EventFilter, viewports: str, viewport_bucket: str | None, viewport_width: int | None
) -> tuple[Plan, dict[Bucket, Stats], str, int, int, int | None]:
    """The frame of the heatmap of all types (its plan, summary, bucket, ``(w, h)``) and the bucket
    width of its band (``None`` with ``viewports=all``): what the scroll map and the elements count in."""
    plan = Plan(reader, flt)
    summary = {key: stats for key, stats in plan.summary().items() if stats.n}
    chosen, vw, vh = frame_of(summary, viewport_bucket, viewport_width)
    return plan, summary, chosen, vw, vh, vw if viewports == "width" else None


def _scrollmap(
    reader: Reader, flt: EventFilter, viewports: str, viewport_bucket: str | None, viewport_width: int | None
) -> dict[str, Any]:
    _, summary, chosen, vw, vh, width = _band(reader, flt, viewports, viewport_bucket, viewport_width)
    height = render_height(summary, PLOTTABLE_TYPES, width, vh)
    totals = ScrollTotals()
    counted = 0  # the rows of the band: meta.sample.events
    days, edges = _split(flt)
    if days is not None:
        for piece in reader.report_pieces(flt.project_id, flt.path_set, days, scroll=True, width=width):
            totals.add_piece(piece)
            counted += piece.n_rows
    for edge_lo, edge_hi, rows in _edge_rows(reader, flt, edges, None, light=False):
        for row in rows:
            if width is None or row.bucket_w == width:
                totals.add_row(row, edge_lo, edge_hi)
                counted += sum(1 for _, ts, _, _ in items(row) if edge_lo <= ts <= edge_hi)
    ordinals = reader.session_ordinals(flt.project_id, totals.unmapped())
    sessions = totals.sessions.count(ordinals)
    page, view = median(totals.pages), median(totals.views)
    if page and view:  # the median page and viewport of the rows that scrolled
        fold, page_height = 100 * view / page, page
    else:  # nobody scrolled: the frame over the lowest plotted row, as the heatmap draws it
        fold, page_height = 100 * vh / height, float(height)
    reach = []
    for depth in range(0, 101, SCROLL_STEP):
        count = sessions if depth <= fold else totals.levels[depth // SCROLL_STEP].count(ordinals)
        reach.append({"depth": depth, "sessions": count, "pct": 100 * count / sessions if sessions else 0})
    meta = {
        "sessions": sessions,
        "foldPct": fold,
        "pageHeight": page_height,
        "viewport": {"w": vw, "h": vh},
        "renderHeight": height,
        "bucket": chosen,
        "viewports": viewports,
        "otherViewports": other_viewports(summary, vw) if width is not None else {},
        "sample": sample_json(sessions, counted),
    }
    return {"reach": reach, "meta": meta}


def elements(
    repo: Repository,
    flt: EventFilter,
    *,
    requested_type: str,
    limit: int,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> dict[str, Any]:
    """``{elements: [{selector, clicks, sessions, rageClicks, deadClicks, errorClicks}], meta}``: clicked
    selectors, most clicked first (``rageclick``: only those with rage clicks, most rage clicks first),
    counted in the width band of the map (SPEC §4: the frame of the heatmap of all types, as the scroll
    map's)."""
    repo.settle_rage(flt.project_id)
    band = (viewports, viewport_bucket, viewport_width)
    return repo.read(lambda reader: _elements(reader, flt, requested_type, limit, band))


def _elements(
    reader: Reader, flt: EventFilter, requested_type: str, limit: int, band: tuple[str, str | None, int | None]
) -> dict[str, Any]:
    days, edges = _split(flt)
    plan, summary, chosen, vw, vh, width = _band(reader, _bounded(flt), *band)
    signals = reader.signal_selector_counts(flt, width)
    totals, ordinals = _totals(reader, flt, selectors=True, width=width)
    found = [
        (
            selector,
            t.rows,
            t.sessions.count(ordinals),
            signals.get((selector, RAGE), 0),
            signals.get((selector, DEAD), 0),
            signals.get((selector, ERROR), 0),
        )
        for selector, t in totals.selectors.items()
        if t.rows
    ]
    clicks = sum(e[1] for e in found)  # every click with a selector in the range: meta.sample.events
    if requested_type == RAGECLICK:
        found = sorted((e for e in found if e[3]), key=lambda e: (-e[3], -e[1], e[0]))
    else:
        found.sort(key=lambda e: (-e[1], e[0]))
    rows = [
        {"selector": s, "clicks": c, "sessions": n, "rageClicks": r, "deadClicks": d, "errorClicks": e}
        for s, c, n, r, d, e in found[:limit]
    ]
    meta = {
        "count": len(rows),
        "total": len(found),
        "limit": limit,
        "requestedType": requested_type,
        "path": flt.path,
        "viewport": {"w": vw, "h": vh},
        "bucket": chosen,
        "viewports": band[0],
        "otherViewports": other_viewports(summary, vw) if width is not None else {},
        "sample": sample_json(band_sample(reader, flt, days, edges, width, tally=plan.tally).sessions, clicks),
    }
    return {"elements": rows, "meta": meta}


def paths(
    repo: Repository,
    flt: EventFilter,
    *,
    prefix: str | None,
    limit: int,
    group: Template | None = None,
    groups: tuple[Template, ...] | None = None,
) -> dict[str, Any]:
    """``{paths: [{path, events, sessions, lastSeenAt, rageClicks, deadClicks, quickBacks,
    excessiveScrolls}], meta}``: paths with rows in the range (those starting with ``prefix``, those
    ``group`` matches), most rows first; a move counts one row per point, as everywhere. The signals
    are the settled ones whose row lies in the range, counted by the database. With ``groups``, also
    ``groups: [{template, paths, events, sessions, lastSeenAt}]`` in their order (see :func:`_groups`)."""
    repo.settle_rage(flt.project_id)
    return repo.read(lambda reader: _paths(reader, flt, prefix, limit, group, groups))


def _paths(
    reader: Reader,
    flt: EventFilter,
    prefix: str | None,
    limit: int,
    group: Template | None,
    groups: tuple[Template, ...] | None,
) -> dict[str, Any]:
    totals, ordinals = _totals(reader, flt, selectors=False)
    ranked = sorted(
        (
            (path, t.rows, t.sessions.count(ordinals), t.last_ts)
            for path, t in totals.paths.items()
            if t.rows and (not prefix or path.startswith(prefix)) and (group is None or group.matches(path))
        ),
        key=lambda item: (-item[1], item[0]),
    )
    signals = reader.signal_path_counts(flt) if ranked else {}
    listed = ranked[:limit]
    rows = [
        {
            "path": path,
            "events": n,
            "sessions": s,
            "lastSeenAt": last,
            **{name: signals.get((path, kind), 0) for name, kind in _PATH_SIGNALS},
        }
        for path, n, s, last in listed
    ]
    sessions = union_count((totals.paths[path].sessions for path, _, _, _ in listed), ordinals)
    sample = sample_json(sessions, sum(n for _, n, _, _ in listed))
    meta: dict[str, Any] = {"count": len(rows), "total": len(ranked), "limit": limit, "q": prefix, "sample": sample}
    if group is not None:
        meta["group"] = {"template": group.text, "paths": len(ranked)}
    body: dict[str, Any] = {"paths": rows, "meta": meta}
    if groups is not None:
        body["groups"] = [_group_totals(totals, ordinals, template) for template in groups]
    return body


def _group_totals(totals: ReportTotals, ordinals: dict[str, int], template: Template) -> dict[str, Any]:
    """What the paths ``template`` matches add up to: their count, rows, distinct sessions (unioned
    across the paths, never summed) and latest row."""
    members = [t for path, t in totals.paths.items() if t.rows and template.matches(path)]
    seen = [t.last_ts for t in members if t.last_ts is not None]
    return {
        "template": template.text,
        "paths": len(members),
        "events": sum(t.rows for t in members),
        "sessions": union_count((t.sessions for t in members), ordinals),
        "lastSeenAt": max(seen) if seen else None,
    }


def group_paths(repo: Repository, flt: EventFilter, template: Template) -> tuple[str, ...]:
    """The paths with rows in ``flt``'s range (of any type) that ``template`` matches, sorted: the
    report pieces of the range's whole days (one per path and day, of every band) and the raw rows of
    its partial days, read without their sessions counted."""
    return repo.read(lambda reader: _group_paths(reader, flt, template))


def _group_paths(reader: Reader, flt: EventFilter, template: Template) -> tuple[str, ...]:
    every = replace(flt, path=None, paths=None)
    days, edges = _split(every)
    found: set[str] = set()
    if days is not None:
        found.update(p.path for p in reader.report_pieces(flt.project_id, None, days, width=ALL_WIDTHS) if p.n_rows)
    for edge_lo, edge_hi, rows in _edge_rows(reader, every, edges, None, light=True):
        found.update(row.path for row in rows if any(edge_lo <= ts <= edge_hi for _, ts, _, _ in items(row)))
    return matching(template, found)


def group_preview(repo: Repository, flt: EventFilter, template: Template, *, limit: int) -> dict[str, Any]:
    """``{template, paths: [{path, events, sessions, lastSeenAt}], total: {paths, events, sessions,
    lastSeenAt}, meta}``: the paths with rows in the range that ``template`` would cover, most rows
    first, and what the group adds up to (sessions unioned across its paths)."""
    return repo.read(lambda reader: _group_preview(reader, flt, template, limit))


def _group_preview(reader: Reader, flt: EventFilter, template: Template, limit: int) -> dict[str, Any]:
    matched = _group_paths(reader, flt, template)  # then only their pieces and sessions are read
    where = matched if len(matched) <= MAX_GROUP_PATHS else None
    totals, ordinals = _totals(reader, replace(flt, path=None, paths=where), selectors=False)
    ranked = sorted(
        (
            (path, t.rows, t.sessions.count(ordinals), t.last_ts)
            for path, t in totals.paths.items()
            if t.rows and template.matches(path)
        ),
        key=lambda item: (-item[1], item[0]),
    )
    listed = [{"path": p, "events": n, "sessions": s, "lastSeenAt": last} for p, n, s, last in ranked[:limit]]
    total = _group_totals(totals, ordinals, template)
    del total["template"]
    sample = sample_json(total["sessions"], total["events"])
    meta = {"count": len(listed), "total": len(ranked), "limit": limit, "sample": sample}
    return {"template": template.text, "paths": listed, "total": total, "meta": meta}


def _split(flt: EventFilter) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The whole UTC days of ``flt``'s range (open ends: every stored day) and its partial days."""
    bounded = _bounded(flt)
    assert bounded.ts_from is not None and bounded.ts_to is not None
    return split_range(bounded.ts_from, bounded.ts_to)


def _bounded(flt: EventFilter) -> EventFilter:
    """``flt`` with its open ends closed at the first and last stored day (a Plan needs both)."""
    lo = flt.ts_from if flt.ts_from is not None else OPEN_FROM
    hi = flt.ts_to if flt.ts_to is not None else OPEN_TO
    return replace(flt, ts_from=lo, ts_to=hi)


def _edge_rows(
    reader: Reader, flt: EventFilter, edges: list[tuple[int, int]], types: tuple[str, ...] | None, *, light: bool
) -> Iterator[tuple[int, int, Iterator[EventRow]]]:
    """The stored rows that may hold items in each edge (moves reaching into it from before too, found
    as every scan from a time finds them: listing.from_edge)."""
    for edge_lo, edge_hi in edges:
        edge = replace(flt, types=types, ts_from=edge_lo, ts_to=edge_hi)
        yield edge_lo, edge_hi, from_edge(reader, edge, light=light, text=True)


def _totals(
    reader: Reader, flt: EventFilter, *, selectors: bool, width: int | None = None
) -> tuple[ReportTotals, dict[str, int]]:
    """Per path (and per selector) totals of ``flt``'s range (of bucket width ``width`` when given):
    the report pieces of its whole days, the raw rows of its partial days at the edges; and the
    ordinals of the sessions they name."""
    totals = ReportTotals(selectors=selectors)
    days, edges = _split(flt)
    if days is not None:
        # A path's totals over every band: one piece per day.
        pieces_of = ALL_WIDTHS if width is None and not selectors else width
        for piece in reader.report_pieces(flt.project_id, flt.path_set, days, selectors=selectors, width=pieces_of):
            totals.add_piece(piece)
    for edge_lo, edge_hi, rows in _edge_rows(reader, flt, edges, ("click",) if selectors else None, light=True):
        for row in rows:
            if width is None or row.bucket_w == width:
                totals.add_row(row, edge_lo, edge_hi)
    return totals, reader.session_ordinals(flt.project_id, totals.unmapped())
