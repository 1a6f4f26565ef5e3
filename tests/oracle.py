"""A plain reference implementation of SPEC §3 (storage) and §4 (heatmap, events, sessions).

It works on the ingest bodies a test posted, in posting order, and answers what the HTTP API
must answer. Nothing here imports the package: the rules are re-derived from the SPEC text, in
the most direct (slow, obviously correct) way, so that property tests can compare against it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

DEFAULT_FRAME = (1280, 720)
PLOTTABLE_TYPES = ["click", "move", "scroll"]
# Type-specific fields kept in an event's ``data`` (SPEC §3).
TYPE_FIELDS = ("name", "props", "action", "category", "from", "to", "button", "scrollY", "inputType", "length")
_BUCKET = re.compile(r"^(\d{1,6})x(\d{1,6})$")


def js_round(value: float) -> int:
    """JavaScript ``Math.round``: halves go up, also for negatives (-2.5 -> -2)."""
    return math.floor(value + 0.5)


def parse_bucket(value: Any) -> tuple[int, int] | None:
    """``"WxH"`` with both parts positive as ``(w, h)``, else ``None``."""
    match = _BUCKET.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) <= 0 or int(match[2]) <= 0:
        return None
    return int(match[1]), int(match[2])


def row_bucket(event: dict[str, Any]) -> tuple[int, int]:
    """The viewport bucket of an event's rows: ``meta.viewportBucket`` or the viewport rounded to 100 px."""
    explicit = parse_bucket((event.get("meta") or {}).get("viewportBucket"))
    if explicit is not None:
        return explicit
    viewport = event["viewport"]
    return js_round(viewport["w"] / 100) * 100, js_round(viewport["h"] / 100) * 100


@dataclass(frozen=True)
class Row:
    """One stored row as the SPEC describes it; ``seq`` is its storage order."""

    seq: int
    event_id: str
    point_index: int
    session_id: str
    type: str
    ts: int
    path: str
    selector: str | None
    x: int | None
    y: int | None
    scroll_depth: int | None
    bucket: tuple[int, int]
    data: dict[str, Any] | None
    viewport_h: float | None = None
    view_w: int | None = None  # the exact viewport width, rounded (SPEC §4 1b: the frame)


def is_dropped(event: dict[str, Any]) -> bool:
    """An ``input`` event whose ``masked`` holds any character other than ``*``."""
    masked = event.get("masked")
    return event["type"] == "input" and isinstance(masked, str) and any(c != "*" for c in masked)


def event_rows(event: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    """The rows one SDK event becomes (without storage order): one per move point, else one."""
    data = {k: event[k] for k in TYPE_FIELDS if k in event} or None
    common: dict[str, Any] = {
        "event_id": event["eventId"],
        "session_id": session_id,
        "type": event["type"],
        "path": event["path"],
        "selector": event.get("selector"),
        "bucket": row_bucket(event),
        "data": data,
        "viewport_h": event["viewport"]["h"],
        "view_w": js_round(event["viewport"]["w"]),
    }
    if event["type"] == "move":
        return [
            dict(
                common,
                point_index=i,
                ts=js_round(event["ts"] + p["tsOffset"]),
                x=js_round(p["x"]),
                y=js_round(p["y"]),
                scroll_depth=None,
            )
            for i, p in enumerate(event["points"])
        ]
    x = y = depth = None
    if event["type"] == "click":
        x, y = js_round(event["x"]), js_round(event["y"])
    elif event["type"] == "scroll":
        depth = js_round(event["scrollDepthPct"])
    return [dict(common, point_index=0, ts=js_round(event["ts"]), x=x, y=y, scroll_depth=depth)]


def stored_rows(bodies: Iterable[dict[str, Any]]) -> list[Row]:
    """The rows of one project after posting ``bodies`` in order; a repeated (eventId, point) keeps the first."""
    rows: list[Row] = []
    seen: set[tuple[str, int]] = set()
    for body in bodies:
        session_id = body["session"]["id"]
        for event in body["events"]:
            if is_dropped(event):
                continue
            for fields in event_rows(event, session_id):
                key = (fields["event_id"], fields["point_index"])
                if key not in seen:
                    seen.add(key)
                    rows.append(Row(seq=len(rows), **fields))
    return rows


Paths = str | frozenset[str] | None  # one path, any of a page group's paths, or every path


def _path_ok(row: Row, path: Paths) -> bool:
    if path is None:
        return True
    return row.path == path if isinstance(path, str) else row.path in path


def _matches(row: Row, path: Paths, ts_from: int | None, ts_to: int | None, kind: str | None) -> bool:
    return (
        _path_ok(row, path)
        and (ts_from is None or row.ts >= ts_from)
        and (ts_to is None or row.ts <= ts_to)
        and (kind in (None, "all") or row.type == kind)
    )


def choose_bucket(matched: list[Row]) -> tuple[int, int] | None:
    """The most common bucket; a tie goes to the bucket of the earliest stored row."""
    counts: Counter[tuple[int, int]] = Counter()
    first: dict[tuple[int, int], int] = {}
    for row in matched:
        counts[row.bucket] += 1
        first.setdefault(row.bucket, row.seq)
    if not counts:
        return None
    return max(counts, key=lambda b: (counts[b], -first[b]))


def bucket_tied(matched: list[Row]) -> bool:
    """Whether several buckets share the highest count (the tie-break decides)."""
    counts = Counter(row.bucket for row in matched).most_common(2)
    return len(counts) == 2 and counts[0][1] == counts[1][1]


def heatmap_rows(
    rows: list[Row],
    *,
    path: Paths,
    ts_from: int,
    ts_to: int,
    type: str | None,
) -> tuple[list[Row], str]:
    """The rows a heatmap aggregates and its resolved type (no ``type`` and no click: all rows)."""
    requested = type or "click"
    matched = [r for r in rows if _matches(r, path, ts_from, ts_to, requested)]
    if type is None and not matched:
        everything = [r for r in rows if _matches(r, path, ts_from, ts_to, "all")]
        if everything:
            return everything, "all"
    return matched, requested


def heatmap(
    rows: list[Row],
    *,
    path: Paths = None,
    ts_from: int = 0,
    ts_to: int,
    type: str | None = None,
    resolution: int = 128,
    viewport_bucket: str | None = None,
    viewports: str = "width",
    viewport_width: int | None = None,
    anchor: str = "left",
) -> dict[str, Any]:
    """The body of ``GET /heatmap`` for these parameters (SPEC §4, square cells, width band;
    ``viewport_width``: the bucket is the most common one of that width, else that width x 720; the
    frame is the most common exact width of the bucket width's plotted rows, rows of other exact
    widths placed by ``anchor``)."""
    requested = type or "click"
    matched, resolved = heatmap_rows(rows, path=path, ts_from=ts_from, ts_to=ts_to, type=type)
    breakdown = dict(Counter(r.type for r in matched))
    total = len(matched)

    if viewport_bucket is not None:
        chosen: str | None = viewport_bucket
    else:
        top = choose_bucket([r for r in matched if viewport_width is None or r.bucket[0] == viewport_width])
        chosen = f"{top[0]}x{top[1]}" if top else None
    if chosen is None and viewport_width is not None:
        chosen = f"{viewport_width}x{DEFAULT_FRAME[1]}"
    bw, fh = parse_bucket(chosen) or DEFAULT_FRAME
    plottable = [*PLOTTABLE_TYPES, "rageclick", "deadclick", "errorclick"]
    plotted_types = PLOTTABLE_TYPES if resolved == "all" else [resolved] if resolved in plottable else []
    widths: Counter[int] = Counter()
    first: dict[int, int] = {}
    for r in matched:
        if r.type in plotted_types and r.bucket[0] == bw and r.view_w is not None and r.view_w > 0:
            widths[r.view_w] += 1
            first.setdefault(r.view_w, r.seq)
    fw = max(widths, key=lambda w: (widths[w], -first[w])) if widths else bw

    def in_band(row: Row) -> bool:
        return viewports == "all" or row.bucket[0] == bw

    def placed_x(row: Row) -> Fraction:
        """x on the fw-wide frame (SPEC §4 1b), as an exact fraction."""
        assert row.x is not None and row.view_w is not None
        w = row.view_w
        if anchor == "center":
            return row.x + Fraction(fw - w, 2)
        if anchor == "scale" and w > 0:
            return Fraction(row.x * fw, w)
        return Fraction(row.x)

    other: Counter[str] = Counter(str(r.bucket[0]) for r in matched if not in_band(r))
    with_xy = [r for r in matched if in_band(r) and r.type != "scroll" and r.x is not None and r.y is not None]
    scrolls = [r for r in matched if in_band(r) and r.type == "scroll" and r.scroll_depth is not None]
    render_height = max([fh, *(r.y for r in with_xy if r.y is not None)])

    cells: Counter[tuple[int, int]] = Counter()  # (cy, cx) -> rows
    for r in with_xy:
        assert r.x is not None and r.y is not None
        cx = min(resolution - 1, max(0, math.floor(placed_x(r) / Fraction(fw, resolution))))
        cy = max(0, r.y * resolution // fw)
        cells[(cy, cx)] += 1
    for r in scrolls:
        assert r.scroll_depth is not None
        depth = r.scroll_depth
        # Mirrors flask_heat_collector/heatmap.py: a depth above 100 is read as hundredths of a percent.
        pct = (depth / 100 if depth > 100 else depth) / 100
        y = js_round(pct * render_height)
        cells[(max(0, y * resolution // fw), 0)] += 1

    def centre(index: int) -> int:
        # js_round((index + 0.5) * fw / resolution), exactly, in integers.
        return ((2 * index + 1) * fw + resolution) // (2 * resolution)

    points = [{"x": centre(cx), "y": centre(cy), "value": n} for (cy, cx), n in sorted(cells.items())]
    plotted = sum(cells.values())
    side = fw / resolution
    meta: dict[str, Any] = {
        "resolution": resolution,
        "viewport": {"w": fw, "h": fh},
        "renderHeight": render_height,
        "cell": {"w": side, "h": side},
        "total": total,
        "plotted": plotted,
        "ignored": total - plotted,
        "otherViewports": dict(other),
        "requestedType": requested,
        "resolvedType": resolved,
        "bucket": chosen or f"{bw}x{fh}",
        "plottableTypes": list(PLOTTABLE_TYPES),
        "typeBreakdown": breakdown,
        "anchor": anchor,
    }
    if total and not plotted:
        meta["warning"] = "Events matched the filter but none are plottable."
    return {"points": points, "meta": meta}


def event_item(row: Row) -> dict[str, Any]:
    """The fields of an event item of the events API that the oracle knows."""
    return {
        "id": f"{row.event_id}:{row.point_index}",
        "eventId": row.event_id,
        "sessionId": row.session_id,
        "type": row.type,
        "ts": row.ts,
        "path": row.path,
        "selector": row.selector,
        "x": row.x,
        "y": row.y,
        "scrollDepth": row.scroll_depth,
        "data": row.data,
    }


def events_page(
    rows: list[Row],
    *,
    path: Paths = None,
    ts_from: int | None = None,
    ts_to: int | None = None,
    type: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of ``GET /events``: ordered by ts, ties in storage order."""
    found = sorted((r for r in rows if _matches(r, path, ts_from, ts_to, type)), key=lambda r: (r.ts, r.seq))
    return [event_item(r) for r in found[offset : offset + limit]]


def session_event_counts(rows: list[Row]) -> dict[str, int]:
    """``eventCount`` of each session in the sessions list: its stored rows (a move counts its points)."""
    return dict(Counter(r.session_id for r in rows))


def _distance_ok(a: Row, b: Row, radius: int) -> bool:
    assert a.x is not None and a.y is not None and b.x is not None and b.y is not None
    return math.hypot(a.x - b.x, a.y - b.y) <= radius


def rage_rows(rows: list[Row], clicks_needed: int = 3, window_ms: int = 1000, radius_px: int = 30) -> list[Row]:
    """Clicks in a burst of >= 3 clicks of one session within 1,000 ms and 30 px of the burst's first
    click (SPEC §4; the HEAT_RAGE_* settings change the numbers). Each click, in (ts, storage) order,
    joins the earliest burst of its session whose first click is close enough in time and space, else
    starts one."""
    bursts: dict[str, list[list[Row]]] = {}
    clicks = sorted(
        (r for r in rows if r.type == "click" and r.x is not None and r.y is not None), key=lambda r: (r.ts, r.seq)
    )
    for click in clicks:
        mine = bursts.setdefault(click.session_id, [])
        for burst in mine:
            if click.ts - burst[0].ts <= window_ms and _distance_ok(click, burst[0], radius_px):
                burst.append(click)
                break
        else:
            mine.append([click])
    return [r for mine in bursts.values() for burst in mine if len(burst) >= clicks_needed for r in burst]


def rage_heatmap(rows: list[Row], *, path: Paths = None, ts_from: int = 0, ts_to: int, **params: Any) -> dict[str, Any]:
    """``GET /heatmap?type=rageclick``: the heatmap of the range's rage clicks (decided per session
    over all its clicks, then filtered by path and range)."""
    found = [r for r in rage_rows(rows) if _matches(r, path, ts_from, ts_to, "click")]
    rage = [dataclasses.replace(r, type="rageclick") for r in found]
    return heatmap(rage, path=path, ts_from=ts_from, ts_to=ts_to, type="rageclick", **params)


def scroll_reach(row: Row) -> tuple[float, float, float] | None:
    """``(reach %, page height H, viewport height h)`` of a scroll row with progress p > 0 (SPEC §4):
    H = y * 100 / p + h, reach = (y + h) / H; the heights as whole pixels (JS rounding)."""
    if row.type != "scroll" or row.scroll_depth is None or row.viewport_h is None:
        return None
    p = row.scroll_depth / 100 if row.scroll_depth > 100 else row.scroll_depth
    y = (row.data or {}).get("scrollY")
    h = row.viewport_h
    if p <= 0 or not isinstance(y, int | float) or y < 0 or h <= 0:
        return None
    page = y * 100 / p + h
    return min(100.0, 100 * (y + h) / page), js_round(page), js_round(h)


def scrollmap(
    rows: list[Row],
    *,
    path: Paths = None,
    ts_from: int = 0,
    ts_to: int,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> dict[str, Any]:
    """``GET /scrollmap``: of the sessions with any row on the path in the band, the share whose
    viewport's bottom edge reached each 5 % of the page (SPEC §4, revised). The frame is the heatmap's
    of type ``all``; a session's reach is its deepest row's, and one that never scrolled reached the
    fold, so every depth up to the fold counts every session; the page is the median H of the rows
    that scrolled, the fold 100 * median h / H (without such rows: frame height / renderHeight)."""
    band = {"viewport_bucket": viewport_bucket, "viewport_width": viewport_width}
    frame = heatmap(rows, path=path, ts_from=ts_from, ts_to=ts_to, type="all", viewports=viewports, **band)["meta"]
    fw = band_width(frame)  # the bucket's width (the scrollmap's frame is the bucket)
    band = [r for r in rows if _matches(r, path, ts_from, ts_to, None) and (viewports != "width" or r.bucket[0] == fw)]
    sessions = {r.session_id for r in band}
    deepest: dict[str, float] = {}
    pages: list[float] = []
    views: list[float] = []
    for r in band:
        found = scroll_reach(r)
        if found is not None:
            deepest[r.session_id] = max(deepest.get(r.session_id, 0.0), found[0])
            pages.append(found[1])
            views.append(found[2])
    if pages:
        page_height, fold = statistics.median(pages), 100 * statistics.median(views) / statistics.median(pages)
    else:
        page_height, fold = frame["renderHeight"], 100 * frame["viewport"]["h"] / frame["renderHeight"]
    total = len(sessions)
    reach = []
    for depth in range(0, 101, 5):
        n = total if depth <= fold else len([s for s, pct in deepest.items() if pct >= depth])
        reach.append({"depth": depth, "sessions": n, "pct": 100 * n / total if total else 0})
    viewport = {"w": fw, "h": frame["viewport"]["h"]}
    meta = {"sessions": total, "foldPct": fold, "pageHeight": page_height, "viewport": viewport}
    return {"reach": reach, "meta": meta}


def elements(
    rows: list[Row],
    *,
    path: Paths = None,
    ts_from: int | None = None,
    ts_to: int | None = None,
    type: str = "click",
    limit: int = 50,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> list[dict[str, Any]]:
    """``GET /elements``: clicked selectors with clicks, sessions, rage, dead and error clicks, counted
    in the width band of the map: with ``viewports=width`` the clicks (and signals) of the bucket width
    of the frame of the heatmap of all types (as the scroll map's)."""
    width = elements_band(
        rows,
        path=path,
        ts_from=ts_from,
        ts_to=ts_to,
        viewports=viewports,
        viewport_bucket=viewport_bucket,
        viewport_width=viewport_width,
    )

    def counted(r: Row) -> bool:
        return _matches(r, path, ts_from, ts_to, "click") and (width is None or r.bucket[0] == width)

    clicks = [r for r in rows if counted(r)]
    rage = Counter(r.selector for r in rage_rows(rows) if counted(r))
    found_signals = signals(rows)
    dead = Counter(r.selector for r in found_signals["dead"] if counted(r))
    error = Counter(r.selector for r in found_signals["error"] if counted(r))
    found = []
    for selector in {r.selector for r in clicks if r.selector}:
        mine = [r for r in clicks if r.selector == selector]
        found.append(
            {
                "selector": selector,
                "clicks": len(mine),
                "sessions": len({r.session_id for r in mine}),
                "rageClicks": rage[selector],
                "deadClicks": dead[selector],
                "errorClicks": error[selector],
            }
        )
    if type == "rageclick":
        found = [e for e in found if e["rageClicks"]]
        found.sort(key=lambda e: (-e["rageClicks"], -e["clicks"], e["selector"]))
    else:
        found.sort(key=lambda e: (-e["clicks"], e["selector"]))
    return found[:limit]


def elements_band(
    rows: list[Row],
    *,
    path: Paths,
    ts_from: int | None,
    ts_to: int | None,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
) -> int | None:
    """The bucket width the elements count in (``None``: every width): the frame's of the heatmap of
    all types of the path and range (open ends: every row)."""
    if viewports != "width":
        return None
    frame = heatmap(
        rows,
        path=path,
        ts_from=ts_from if ts_from is not None else -(10**18),
        ts_to=ts_to if ts_to is not None else 10**18,
        type="all",
        viewport_bucket=viewport_bucket,
        viewport_width=viewport_width,
    )
    return band_width(frame["meta"])


def band_width(meta: dict[str, Any]) -> int:
    """The bucket width of a heatmap's band (its chosen bucket's width; the frame may be narrower)."""
    return (parse_bucket(meta["bucket"]) or DEFAULT_FRAME)[0]


def paths(
    rows: list[Row],
    *,
    ts_from: int | None = None,
    ts_to: int | None = None,
    q: str | None = None,
    limit: int = 100,
    group: str | None = None,
) -> list[dict[str, Any]]:
    """``GET /paths``: paths with rows in the range (starting with ``q``; matched by the template
    ``group``), most rows first, with the signals (SPEC §10) whose row lies in the range."""
    matched = [
        r
        for r in rows
        if _matches(r, None, ts_from, ts_to, None)
        and (not q or r.path.startswith(q))
        and (group is None or route_matches(group, r.path))
    ]
    found_signals = {"rage": rage_rows(rows), **signals(rows)}
    per_path = {
        kind: Counter(r.path for r in found_signals[kind] if _matches(r, None, ts_from, ts_to, None))
        for kind in found_signals
    }
    found = []
    for path in {r.path for r in matched}:
        mine = [r for r in matched if r.path == path]
        found.append(
            {
                "path": path,
                "events": len(mine),
                "sessions": len({r.session_id for r in mine}),
                "lastSeenAt": max(r.ts for r in mine),
                "rageClicks": per_path["rage"][path],
                "deadClicks": per_path["dead"][path],
                "quickBacks": per_path["quickback"][path],
                "excessiveScrolls": per_path["scroll"][path],
            }
        )
    found.sort(key=lambda p: (-p["events"], p["path"]))
    return found[:limit]


# Frustration signals (SPEC §10), each decided per session over all its rows in (ts, storage) order.
SIGNAL_IGNORE = ("input*", "textarea*", "select*", "*[download]*", "*[download=*")


def _ignored(selector: str | None, patterns: Iterable[str]) -> bool:
    """A pattern (``*``: any run of characters, nothing else special) matches the selector's last
    compound (after its last space, ``>``, ``+`` or ``~``)."""
    if not selector:
        return False
    last = re.split(r"[\s>+~]+", selector.strip())[-1]
    return any(re.fullmatch(".*".join(map(re.escape, p.split("*"))), last, re.DOTALL) for p in patterns)


def _after(mine: list[Row], i: int, within: int) -> list[Row]:
    """The rows after ``mine[i]`` (its session's rows in (ts, storage) order) at most ``within`` ms later."""
    return [r for r in mine[i + 1 :] if r.ts - mine[i].ts <= within]


def signals(
    rows: list[Row],
    *,
    dead_ms: int = 1500,
    ignore: Iterable[str] = SIGNAL_IGNORE,
    error_names: Iterable[str] = ("error",),
    quick_back_ms: int = 7000,
    reversals: int = 6,
) -> dict[str, list[Row]]:
    """``{kind: rows}``: dead and error clicks, quick backs (B's pageview), and the scroll rows ending an
    episode of excessive scrolling."""
    ignore, names = tuple(ignore), set(error_names)
    found: dict[str, list[Row]] = {"dead": [], "error": [], "quickback": [], "scroll": []}
    by_session: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: (r.ts, r.seq)):
        by_session.setdefault(r.session_id, []).append(r)
    for mine in by_session.values():
        for i, c in enumerate(mine):
            if c.type != "click":
                continue
            effect = any(
                r.type in ("pageview", "scroll", "input") or (r.type == "click" and r.selector != c.selector)
                for r in _after(mine, i, dead_ms)
            )
            if not effect and not _ignored(c.selector, ignore):
                found["dead"].append(c)
            if any(r.type == "custom" and (r.data or {}).get("name") in names for r in _after(mine, i, 1000)):
                found["error"].append(c)
    for session in by_session:
        views = sorted(
            (r for r in rows if r.session_id == session and r.type == "pageview"), key=lambda r: (r.ts, r.seq)
        )
        for a, b, back in zip(views, views[1:], views[2:], strict=False):
            if a.path != b.path and back.path == a.path and back.ts - b.ts <= quick_back_ms:
                found["quickback"].append(b)
        for path in {r.path for r in rows if r.session_id == session}:
            mine = sorted(
                (r for r in rows if r.session_id == session and r.path == path and r.type in ("scroll", "click")),
                key=lambda r: (r.ts, r.seq),
            )
            last_y: float | None = None
            going = 0  # +1 down the page, -1 up, 0 not known
            turns: list[int] = []
            for r in mine:
                if r.type == "click":
                    going, turns = 0, []
                    continue
                y = (r.data or {}).get("scrollY")
                if not isinstance(y, int | float):
                    continue
                if last_y is not None and y != last_y:
                    way = 1 if y > last_y else -1
                    if going and way != going:
                        turns = [t for t in turns if t >= r.ts - 60_000] + [r.ts]
                        if len(turns) > reversals:
                            found["scroll"].append(r)
                            turns = []
                    going = way
                last_y = y
    return found


def signal_heatmap(
    rows: list[Row], kind: str, *, path: Paths = None, ts_from: int = 0, ts_to: int, **params: Any
) -> dict[str, Any]:
    """``GET /heatmap?type=deadclick|errorclick``: the range's dead (error) clicks, plotted as rage clicks are."""
    name = {"dead": "deadclick", "error": "errorclick"}[kind]
    found = [
        dataclasses.replace(r, type=name) for r in signals(rows)[kind] if _matches(r, path, ts_from, ts_to, "click")
    ]
    return heatmap(found, path=path, ts_from=ts_from, ts_to=ts_to, type=name, **params)


def band_rows(rows: list[Row], *, path: Paths, ts_from: int | None, ts_to: int | None, width: int | None) -> list[Row]:
    """Every row (any type) of the path (every path when ``None``) in the range, of bucket width
    ``width`` (every width when ``None``)."""
    return [r for r in rows if _matches(r, path, ts_from, ts_to, None) and (width is None or r.bucket[0] == width)]


def band_sessions(rows: list[Row], *, path: Paths, ts_from: int | None, ts_to: int | None, width: int | None) -> int:
    """``meta.sample.sessions`` of a report (SPEC §4): the distinct sessions with a row on the path in
    the range and width band."""
    return len({r.session_id for r in band_rows(rows, path=path, ts_from=ts_from, ts_to=ts_to, width=width)})


def paths_sample(listed: list[dict[str, Any]], rows: list[Row], *, ts_from: int | None, ts_to: int | None) -> Any:
    """``meta.sample`` of ``GET /paths``: the rows and distinct sessions of the listed paths."""
    names = {p["path"] for p in listed}
    mine = [r for r in rows if r.path in names and _matches(r, None, ts_from, ts_to, None)]
    return {"sessions": len({r.session_id for r in mine}), "events": len(mine)}


def visited_sessions(
    rows: list[Row], *, path: str | None, ts_from: int | None, ts_to: int | None, width: int | None
) -> set[str]:
    """``GET /sessions?visitedPath=&viewportWidth=``'s set: the sessions with a stored row (any type;
    each move point is a row) on ``path`` (any path when ``None``) whose ts lies in the range, of
    bucket width ``width`` (any width when ``None``)."""
    return {r.session_id for r in band_rows(rows, path=path, ts_from=ts_from, ts_to=ts_to, width=width)}


def sessions_list(
    bodies: Iterable[dict[str, Any]],
    *,
    ts_from: int | None = None,
    ts_to: int | None = None,
    user: str | None = None,
    first_path: str | None = None,
    among: set[str] | None = None,
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[str]:
    """The session ids of ``GET /sessions``'s page: a session's startedAt and firstPath are its first
    batch's (``session.startedAt``, the first event's path), lastSeenAt the largest sent, its user the
    last one sent (SDK id); startedAt >= from, lastSeenAt <= to; ``among``: only those sessions."""
    found: dict[str, dict[str, Any]] = {}
    for body in bodies:
        session = body["session"]
        mine = found.get(session["id"])
        if mine is None:
            mine = found[session["id"]] = {
                "started": session["startedAt"],
                "last": session["lastSeenAt"],
                "first_path": body["events"][0]["path"],
                "user": None,
            }
        mine["last"] = max(mine["last"], session["lastSeenAt"])
        if body.get("user"):
            mine["user"] = body["user"]["id"]
    kept = [
        (s["started"], sid)
        for sid, s in found.items()
        if (ts_from is None or s["started"] >= ts_from)
        and (ts_to is None or s["last"] <= ts_to)
        and (user is None or s["user"] == user)
        and (first_path is None or s["first_path"] == first_path)
        and (among is None or sid in among)
    ]
    return [sid for _, sid in sorted(kept, reverse=descending)[offset : offset + limit]]


def route_matches(template: str, path: str) -> bool:
    """The page-group rule (docs/api.md), segment by segment: a literal segment equals, ``*`` and
    ``:name`` take one non-empty segment, a last ``**`` takes the rest (zero or more segments), both
    ends anchored, one trailing slash ignored on either side; a path not starting with ``/`` never."""

    def trim(text: str) -> str:
        return text[:-1] if len(text) > 1 and text.endswith("/") else text

    if not path.startswith("/"):
        return False
    path = path.partition("?")[0]  # a query kept by HEAT_PATH_QUERY_ALLOWLIST takes no part
    wanted, given = trim(template).split("/")[1:], trim(path).split("/")[1:]
    if wanted == [""]:  # the root template
        return given == [""]
    for index, segment in enumerate(wanted):
        if segment == "**":
            return True
        if index >= len(given):
            return False
        if segment == "*" or segment.startswith(":"):
            if not given[index]:
                return False
        elif segment != given[index]:
            return False
    return len(given) == len(wanted)


def group_paths(rows: list[Row], template: str, *, ts_from: int | None, ts_to: int | None) -> frozenset[str]:
    """The paths with a row (any type) in the range that ``template`` matches."""
    return frozenset(
        r.path for r in rows if _matches(r, None, ts_from, ts_to, None) and route_matches(template, r.path)
    )


def group_total(rows: list[Row], template: str, *, ts_from: int | None, ts_to: int | None) -> dict[str, Any]:
    """What a group's paths add up to in the range: paths, rows, distinct sessions, latest row."""
    mine = [r for r in rows if _matches(r, None, ts_from, ts_to, None) and route_matches(template, r.path)]
    return {
        "paths": len({r.path for r in mine}),
        "events": len(mine),
        "sessions": len({r.session_id for r in mine}),
        "lastSeenAt": max((r.ts for r in mine), default=None),
    }


# Compare (SPEC §10, docs/compare.md): two slices of one report, their per-session differences and tests.
ALPHA = 0.05


def prop_text(value: Any) -> str | None:
    """A custom event's property as a segment value compares it: a string as it is, a number or
    boolean as JavaScript's String() writes it; null, objects and arrays match nothing."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else repr(value)
    return value if isinstance(value, str) else None


def segment_members(rows: list[Row], event: str, prop: str, value: str, *, ts_from: int, ts_to: int) -> set[str]:
    """The sessions with a custom row (any path, any width) in the range named ``event`` whose
    ``props[prop]`` is ``value``."""
    return {
        r.session_id
        for r in rows
        if r.type == "custom"
        and ts_from <= r.ts <= ts_to
        and (r.data or {}).get("name") == event
        and isinstance((r.data or {}).get("props"), dict)
        and prop_text((r.data or {})["props"].get(prop)) == value
    }


def _z_proportions(x1: int, n1: int, x2: int, n2: int) -> float | None:
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return None if se == 0 else (x2 / n2 - x1 / n1) / se


def _z_rates(c1: int, n1: int, c2: int, n2: int) -> float | None:
    rate = (c1 + c2) / (n1 + n2)
    return None if rate == 0 else (c2 / n2 - c1 / n1) / math.sqrt(rate / n1 + rate / n2)


def _verdict(z: float | None) -> dict[str, Any]:
    p = None if z is None else 2 * (1 - statistics.NormalDist().cdf(abs(z)))
    return {"z": z, "pValue": p, "significant": p is not None and p < ALPHA}


def _cell_of_centre(centre: int, fw: int, resolution: int) -> int:
    """The first grid index whose centre (as the heatmap writes it) is ``centre``."""
    index = 0
    while ((2 * index + 1) * fw + resolution) // (2 * resolution) != centre:
        index += 1
    return index


def compare_side(
    rows: list[Row],
    report: str,
    *,
    path: Paths,
    ts_from: int,
    ts_to: int,
    viewports: str = "width",
    viewport_bucket: str | None = None,
    viewport_width: int | None = None,
    segment: tuple[str, str, str] | None = None,
    type: str = "click",
    resolution: int = 128,
) -> dict[str, Any]:
    """One side: ``sessions`` (the report's sample, of the segment's rows alone when it has one) and
    ``items`` (heatmap: {(cx, cy): rows}; elements: {selector: (clicks, sessions)}; scrollmap:
    {depth: sessions})."""
    if segment is not None:
        members = segment_members(rows, *segment, ts_from=ts_from, ts_to=ts_to)
        rows = [r for r in rows if r.session_id in members]
    band = {"viewport_bucket": viewport_bucket, "viewport_width": viewport_width}
    if report == "heatmap":
        params = {"path": path, "ts_from": ts_from, "ts_to": ts_to, "resolution": resolution, "viewports": viewports}
        if type == "rageclick":
            found = rage_heatmap(rows, **params, **band)
        elif type in ("deadclick", "errorclick"):
            found = signal_heatmap(rows, type.removesuffix("click"), **params, **band)
        else:
            found = heatmap(rows, type=type, **params, **band)
        fw = found["meta"]["viewport"]["w"]
        items: dict[Any, Any] = Counter()
        for p in found["points"]:
            items[(_cell_of_centre(p["x"], fw, resolution), _cell_of_centre(p["y"], fw, resolution))] += p["value"]
        width = band_width(found["meta"]) if viewports == "width" else None  # the band is the bucket's width
    elif report == "elements":
        listed = elements(rows, path=path, ts_from=ts_from, ts_to=ts_to, limit=10**9, viewports=viewports, **band)
        items = {e["selector"]: (e["clicks"], e["sessions"]) for e in listed}
        width = elements_band(rows, path=path, ts_from=ts_from, ts_to=ts_to, viewports=viewports, **band)
    else:
        found = scrollmap(rows, path=path, ts_from=ts_from, ts_to=ts_to, viewports=viewports, **band)
        items = {r["depth"]: r["sessions"] for r in found["reach"]}
        width = found["meta"]["viewport"]["w"] if viewports == "width" else None
    sessions = band_sessions(rows, path=path, ts_from=ts_from, ts_to=ts_to, width=width)
    return {"sessions": sessions, "items": items}


def compare_differences(report: str, a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The differences of ``GET /compare`` (b - a, per session), in the answer's order, with the test
    of each: heatmap cells by a pooled Poisson rate z-test, elements (sessions that clicked) and depths
    (sessions that reached) by a pooled two-proportion z-test; two-sided at 0.05."""
    na, nb = a["sessions"], b["sessions"]
    out: list[dict[str, Any]] = []
    if report == "heatmap":
        for cx, cy in sorted(set(a["items"]) | set(b["items"]), key=lambda k: (k[1], k[0])):
            va, vb = a["items"].get((cx, cy), 0), b["items"].get((cx, cy), 0)
            out.append(
                {
                    "cx": cx,
                    "cy": cy,
                    "a": {"value": va, "perSession": va / na},
                    "b": {"value": vb, "perSession": vb / nb},
                    "diff": vb / nb - va / na,
                    **_verdict(_z_rates(va, na, vb, nb)),
                }
            )
    elif report == "elements":
        for selector in set(a["items"]) | set(b["items"]):
            (ca, sa), (cb, sb) = a["items"].get(selector, (0, 0)), b["items"].get(selector, (0, 0))
            out.append(
                {
                    "selector": selector,
                    "a": {"clicks": ca, "sessions": sa, "clicksPerSession": ca / na, "share": sa / na},
                    "b": {"clicks": cb, "sessions": sb, "clicksPerSession": cb / nb, "share": sb / nb},
                    "diff": {"clicksPerSession": cb / nb - ca / na, "share": sb / nb - sa / na},
                    **_verdict(_z_proportions(sa, na, sb, nb)),
                }
            )
        out.sort(key=lambda d: (-(d["a"]["clicks"] + d["b"]["clicks"]), d["selector"]))
    else:
        for depth in range(0, 101, 5):
            sa, sb = a["items"][depth], b["items"][depth]
            out.append(
                {
                    "depth": depth,
                    "a": {"sessions": sa, "share": sa / na},
                    "b": {"sessions": sb, "share": sb / nb},
                    "diff": sb / nb - sa / na,
                    **_verdict(_z_proportions(sa, na, sb, nb)),
                }
            )
    return out
