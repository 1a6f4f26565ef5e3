"""The heatmap contract: type fallback, bucket choice, width band, square cells, point shaping.

Whole UTC days of the range come from the aggregates (aggregates.py), the partial days at its
edges from the raw rows; both add up exactly. Resolutions that do not divide the aggregates' and
``viewports=all`` bin the raw rows of the range instead (the counts above them still come from
the aggregates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from .aggregates import (
    DAY_MS,
    PLOTTABLE_TYPES,
    RESOLUTION,
    Stats,
    add_counts,
    add_pairs,
    cell_index,
    cell_of,
    items,
    merge_into,
    rollup,
    scroll_pct,
)
from .ingest import js_round, parse_bucket
from .listing import from_edge
from .rageclicks import RAGECLICK
from .repositories.base import EventFilter, EventRow, Reader, Repository
from .samples import EdgeTally, band_sample, sample_json
from .signals import HEATMAP_KINDS, Signal

DEFAULT_VIEWPORT = (1280, 720)
SIGNAL_PLOTS = (RAGECLICK, *HEATMAP_KINDS)  # heatmap types plotted from settled signal rows
NOT_PLOTTABLE_WARNING = (
    "Events matched the filter but none are plottable. "
    "Use type=click|move|scroll or inspect /api/projects/:projectId/events."
)
Bucket = tuple[str, int, int]  # (type, bucket_w, bucket_h)
Cells = tuple[dict[int, int], dict[int, int]]  # (cy * resolution + cx -> rows, scroll depth -> rows)


@dataclass(frozen=True)
class Heatmap:
    """The answer: ``(x, y, value)`` points (cell centres, by row then column) and the meta object."""

    points: list[tuple[int, int, int]]
    meta: dict[str, Any]


def split_range(ts_from: int, ts_to: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The whole days inside ``[ts_from, ts_to]`` and the (at most two) partial ranges around them."""
    first = -(-ts_from // DAY_MS)  # the first day starting at or after ts_from
    last = (ts_to + 1) // DAY_MS - 1  # the last day ending at or before ts_to
    if first > last:
        return None, [(ts_from, ts_to)]
    edges = []
    if ts_from < first * DAY_MS:
        edges.append((ts_from, first * DAY_MS - 1))
    if ts_to >= (last + 1) * DAY_MS:
        edges.append(((last + 1) * DAY_MS, ts_to))
    return (first, last), edges


def _raw(reader: Reader, flt: EventFilter, lo: int, hi: int, tally: EdgeTally) -> dict[Bucket, Stats]:
    rows = tally.note(from_edge(reader, replace(flt, types=None, ts_from=lo, ts_to=hi), light=True), lo, hi)
    return {(kind, bw, bh): stats for (_, kind, bw, bh), stats in rollup(rows, ts_range=(lo, hi), by_day=False).items()}


class Plan:
    """What one heatmap request reads: whole days from aggregates, edges from raw rows."""

    def __init__(self, reader: Reader, flt: EventFilter) -> None:
        assert flt.ts_from is not None and flt.ts_to is not None
        self.reader, self.flt = reader, flt
        self.days, self.edges = split_range(flt.ts_from, flt.ts_to)
        self.edge_stats: dict[Bucket, Stats] = {}
        self.tally = EdgeTally()  # the edges' sessions and rows per width: meta.sample
        for lo, hi in self.edges:
            for key, stats in _raw(reader, flt, lo, hi, self.tally).items():
                merge_into(self.edge_stats, key, stats)

    def summary(self) -> dict[Bucket, Stats]:
        """Rows, first stored row and largest y per (type, bucket): aggregates plus edges."""
        out: dict[Bucket, Stats] = {}
        if self.days is not None:
            for piece in self.reader.aggregates(self.flt.project_id, self.flt.path_set, self.days):
                stats = Stats()
                stats.add_piece(piece, blobs=False)
                merge_into(out, (piece.type, piece.bucket_w, piece.bucket_h), stats)
        for key, stats in self.edge_stats.items():
            summary = Stats(n=stats.n, first_seq=stats.first_seq, max_y=stats.max_y)
            merge_into(out, key, summary)
        return out

    def cells(self, types: tuple[str, ...], width: int | None, frame_w: int, resolution: int) -> Cells:
        """Cells at ``resolution`` (``cy * resolution + cx``) and scroll depths of ``types`` rows
        ``width`` wide (``None``: every width) on a ``frame_w`` frame."""
        if width is None or RESOLUTION % resolution:
            return self.raw_cells(types, width, frame_w, resolution)
        fine, depths = self.fine_cells(types, width)
        step = RESOLUTION // resolution
        if step == 1:  # the aggregates' own cells
            return fine, depths
        counts: dict[int, int] = {}
        for cell, count in fine.items():
            cy, cx = divmod(cell, RESOLUTION)
            key = cy // step * resolution + cx // step
            counts[key] = counts.get(key, 0) + count
        return counts, depths

    def fine_cells(self, types: tuple[str, ...], width: int) -> Cells:
        """Cells at the aggregate resolution and scroll depths of ``types`` rows ``width`` wide."""
        cells: dict[int, int] = {}
        depths: dict[int, int] = {}
        if self.days is not None:
            for piece in self.reader.aggregates(
                self.flt.project_id, self.flt.path_set, self.days, blobs=(types, width)
            ):
                add_pairs(cells, piece.cells)
                add_pairs(depths, piece.depths)
        for (kind, bw, _), stats in self.edge_stats.items():
            if kind in types and bw == width:
                add_counts(cells, stats.cells)
                add_counts(depths, stats.depths)
        return cells, depths

    def raw_cells(self, types: tuple[str, ...], width: int | None, frame_w: int, resolution: int) -> Cells:
        """Cells at ``resolution`` on a ``frame_w`` frame and scroll depths, binned from the raw rows."""
        cells: dict[int, int] = {}
        depths: dict[int, int] = {}
        lo, hi = self.flt.ts_from, self.flt.ts_to
        assert lo is not None and hi is not None
        for kind in types:
            for row in from_edge(self.reader, replace(self.flt, types=(kind,)), light=True):
                if width is not None and row.bucket_w != width:
                    continue
                for _, ts, x, y in items(row):
                    if ts < lo or ts > hi:
                        continue
                    if kind == "scroll":
                        if row.scroll_depth is not None:
                            depths[row.scroll_depth] = depths.get(row.scroll_depth, 0) + 1
                    elif x is not None and y is not None:
                        cy, cx = cell_of(x, y, frame_w, resolution)
                        cells[cy * resolution + cx] = cells.get(cy * resolution + cx, 0) + 1
        return cells, depths


class _RagePlan:
    """A ``type=rageclick`` (``deadclick``, ``errorclick``) request: the settled rage clicks (signals)
    of the range (rageclicks.py, signals.py)."""

    def __init__(self, reader: Reader, flt: EventFilter, kind: str = RAGECLICK) -> None:
        self.kind = kind
        self.clicks: list[EventRow] | list[Signal] = (
            reader.rage_clicks(flt) if kind == RAGECLICK else reader.signals(flt, HEATMAP_KINDS[kind])
        )

    def summary(self) -> dict[Bucket, Stats]:
        out: dict[Bucket, Stats] = {}
        for click in self.clicks:
            key = (self.kind, click.bucket_w, click.bucket_h)
            stats = out.get(key)
            if stats is None:
                stats = out[key] = Stats()
            stats.combine(1, click.seq, click.y)
        return out

    def cells(self, types: tuple[str, ...], width: int | None, frame_w: int, resolution: int) -> Cells:
        counts: dict[int, int] = {}
        for click in self.clicks:
            if click.x is not None and click.y is not None and (width is None or click.bucket_w == width):
                cy, cx = cell_of(click.x, click.y, frame_w, resolution)
                counts[cy * resolution + cx] = counts.get(cy * resolution + cx, 0) + 1
        return counts, {}


def choose_bucket(summary: dict[Bucket, Stats], width: int | None = None) -> str | None:
    """The most common bucket (of ``width`` when given); a tie goes to the bucket of the earliest stored row."""
    buckets: dict[tuple[int, int], tuple[int, int]] = {}  # bucket -> (rows, first seq)
    for (_, bw, bh), stats in summary.items():
        if not stats.n or (width is not None and bw != width):
            continue
        rows, first = buckets.get((bw, bh), (0, stats.first_seq or 0))
        buckets[(bw, bh)] = (rows + stats.n, min(first, stats.first_seq or 0))
    if not buckets:
        return None
    bw, bh = min(buckets, key=lambda b: (-buckets[b][0], buckets[b][1]))
    return f"{bw}x{bh}"


def frame_of(
    summary: dict[Bucket, Stats], viewport_bucket: str | None, viewport_width: int | None
) -> tuple[str, int, int]:
    """The chosen bucket text and the frame ``(w, h)``: the bucket asked for, else the most common one
    (of ``viewport_width`` when given; a width no row has gets the default height), else 1280x720."""
    chosen = viewport_bucket or choose_bucket(summary, viewport_width)
    parsed = parse_bucket(chosen)
    if parsed is None and viewport_width is not None:
        parsed = (viewport_width, DEFAULT_VIEWPORT[1])
    vw, vh = parsed or DEFAULT_VIEWPORT
    return chosen or f"{vw}x{vh}", vw, vh


def other_viewports(summary: dict[Bucket, Stats], width: int) -> dict[str, int]:
    """Rows per bucket width other than ``width`` (``meta.otherViewports``)."""
    other: dict[str, int] = {}
    for (_, bw, _), stats in summary.items():
        if bw != width:
            other[str(bw)] = other.get(str(bw), 0) + stats.n
    return other


def render_height(summary: dict[Bucket, Stats], types: tuple[str, ...], width: int | None, frame_h: int) -> int:
    """The frame's height, or the largest y of the plotted non-scroll rows when lower on the page."""
    tops = [
        s.max_y
        for (kind, bw, _), s in summary.items()
        if kind in types and kind != "scroll" and (width is None or bw == width) and s.max_y is not None
    ]
    return max([frame_h, *tops])


def build_heatmap(
    repo: Repository,
    flt: EventFilter,
    *,
    requested_type: str | None,
    resolution: int,
    viewport_bucket: str | None,
    viewports: str = "width",
    viewport_width: int | None = None,
) -> Heatmap:
    """Aggregate the heatmap and shape the response body (memory bounded by the cells)."""
    if requested_type in SIGNAL_PLOTS:
        repo.settle_rage(flt.project_id)
    return repo.read(
        lambda reader: _build(reader, flt, requested_type, resolution, viewport_bucket, viewports, viewport_width)
    )


def _build(
    reader: Reader,
    flt: EventFilter,
    requested_type: str | None,
    resolution: int,
    viewport_bucket: str | None,
    viewports: str,
    viewport_width: int | None,
) -> Heatmap:
    plan: Plan | _RagePlan = (
        _RagePlan(reader, flt, requested_type) if requested_type in SIGNAL_PLOTS else Plan(reader, flt)
    )
    everything = plan.summary()
    requested = requested_type or "click"
    resolved = requested
    if requested_type is None and not any(s.n for (kind, _, _), s in everything.items() if kind == "click"):
        if any(s.n for s in everything.values()):
            resolved = "all"
    summary = {key: s for key, s in everything.items() if s.n and (resolved == "all" or key[0] == resolved)}
    by_type: dict[str, int] = {}
    for (kind, _, _), stats in summary.items():
        by_type[kind] = by_type.get(kind, 0) + stats.n
    total = sum(by_type.values())

    chosen, vw, vh = frame_of(summary, viewport_bucket, viewport_width)
    width = vw if viewports == "width" else None
    plottable = (*PLOTTABLE_TYPES, *SIGNAL_PLOTS)
    plotted_types = PLOTTABLE_TYPES if resolved == "all" else (resolved,) if resolved in plottable else ()
    height = render_height(summary, plotted_types, width, vh)
    other = other_viewports(summary, vw) if width is not None else {}

    counts: dict[int, int] = {}  # cy * resolution + cx -> rows
    depths: dict[int, int] = {}
    if total and plotted_types:
        counts, depths = plan.cells(plotted_types, width, vw, resolution)
    for depth, count in depths.items():
        if not count:
            continue
        key = max(0, cell_index(js_round(scroll_pct(depth) / 100 * height), vw, resolution)) * resolution
        counts[key] = counts.get(key, 0) + count

    side = vw / resolution
    xs = [js_round((cx + 0.5) * side) for cx in range(resolution)]  # cell centres, once per column
    ys: dict[int, int] = {}
    points: list[tuple[int, int, int]] = []
    plotted = 0
    for key in sorted(counts):
        value = counts[key]
        if not value:
            continue
        cy, cx = divmod(key, resolution)
        y = ys.get(cy)
        if y is None:
            y = ys[cy] = js_round((cy + 0.5) * side)
        points.append((xs[cx], y, value))
        plotted += value
    meta: dict[str, Any] = {
        "resolution": resolution,
        "viewport": {"w": vw, "h": vh},
        "renderHeight": height,
        "cell": {"w": side, "h": side},
        "total": total,
        "plotted": plotted,
        "ignored": max(0, total - plotted),
        "otherViewports": other,
        "requestedType": requested,
        "resolvedType": resolved,
        "bucket": chosen,
        "plottableTypes": list(PLOTTABLE_TYPES),
        "typeBreakdown": by_type,
        "sample": _sample(reader, flt, width, total, plan.tally if isinstance(plan, Plan) else None),
    }
    if total and not plotted:
        meta["warning"] = NOT_PLOTTABLE_WARNING
    return Heatmap(points=points, meta=meta)


def _sample(reader: Reader, flt: EventFilter, width: int | None, total: int, tally: EdgeTally | None) -> dict[str, Any]:
    """``meta.sample``: the sessions with any row on the path in the range and the map's width band
    (the edges' rows as the plan noted them, when it read them); the events are ``meta.total`` (the
    rows of the resolved type, of every width)."""
    assert flt.ts_from is not None and flt.ts_to is not None
    days, edges = split_range(flt.ts_from, flt.ts_to)
    return sample_json(band_sample(reader, flt, days, edges, width, tally=tally).sessions, total)


_META_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def heatmap_json(heatmap: Heatmap) -> str:
    """The response body ``{"points": [{x, y, value}, ...], "meta": {...}}``, written directly (a map
    has up to tens of thousands of points: formatting them is several times faster than encoding dicts)."""
    points = ",".join(['{"x":%d,"y":%d,"value":%d}' % point for point in heatmap.points])  # noqa: UP031
    return '{"points":[' + points + '],"meta":' + _META_JSON.encode(heatmap.meta) + "}"
