"""The heatmap contract: type fallback, bucket choice, width band, exact-width frame, anchors,
square cells, point shaping.

The frame is the most common exact viewport width of the chosen bucket's rows. Rows that wide come
from the aggregates (aggregates.py: whole UTC days; the partial days at the range's edges from the
raw rows), which bin cells on the exact width; rows of other exact widths are binned from the raw
rows of the range, placed on the frame by the anchor. Resolutions that do not divide the
aggregates' bin every raw row of the range instead (the counts above them still come from the
aggregates). All of it adds up exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from .aggregates import (
    PLOTTABLE_TYPES,
    RESOLUTION,
    Stats,
    add_counts,
    add_pairs,
    anchored_cell,
    cell_index,
    items,
    merge_into,
    rollup,
    scroll_pct,
    split_range,
)
from .ingest import js_round, parse_bucket
from .listing import from_edge
from .rageclicks import RAGECLICK
from .repositories.base import AggregateRow, EventFilter, EventRow, Reader, Repository
from .samples import EdgeTally, band_sample, sample_json
from .signal_counts import whole_days
from .signals import HEATMAP_KINDS, Signal
from .traffic import BOT, HUMAN

DEFAULT_VIEWPORT = (1280, 720)
SIGNAL_PLOTS = (RAGECLICK, *HEATMAP_KINDS)  # heatmap types plotted from settled signal rows
NOT_PLOTTABLE_WARNING = (
    "Events matched the filter but none are plottable. "
    "Use type=click|move|scroll or inspect /api/projects/:projectId/events."
)
Bucket = tuple[str, int, int, int]  # (type, bucket_w, bucket_h, view_w)
Cells = tuple[dict[int, int], dict[int, int]]  # (cy * resolution + cx -> rows, scroll depth -> rows)


@dataclass(frozen=True)
class Heatmap:
    """The answer: ``(x, y, value)`` points (cell centres, by row then column) and the meta object."""

    points: list[tuple[int, int, int]]
    meta: dict[str, Any]


def _raw(reader: Reader, flt: EventFilter, lo: int, hi: int, tally: EdgeTally) -> dict[Bucket, Stats]:
    rows = tally.note(from_edge(reader, replace(flt, types=None, ts_from=lo, ts_to=hi), light=True), lo, hi)
    return {key[1:]: stats for key, stats in rollup(rows, ts_range=(lo, hi), by_day=False).items()}


def _in_band(bucket_w: int, width: int | None) -> bool:
    return width is None or bucket_w == width


def _others(summary: dict[Bucket, Stats], types: tuple[str, ...], width: int | None, frame: int) -> tuple[str, ...]:
    """The ``types`` with rows in the band (``width``; ``None``: every width) of an exact width other
    than ``frame``: the rows a map reads raw, to place them with the anchor."""
    found = {kind for (kind, bw, _, vw), s in summary.items() if s.n and vw != frame and _in_band(bw, width)}
    return tuple(kind for kind in types if kind in found)


class Plan:
    """What one heatmap request reads: whole days from aggregates, edges from raw rows."""

    def __init__(self, reader: Reader, flt: EventFilter) -> None:
        assert flt.ts_from is not None and flt.ts_to is not None
        self.reader, self.flt = reader, flt
        self.days, self.edges = split_range(flt.ts_from, flt.ts_to)
        self.edge_stats: dict[Bucket, Stats] = {}
        self.tally = EdgeTally()  # the edges' sessions and rows per width: meta.sample
        self.totals: dict[Bucket, Stats] = {}
        for lo, hi in self.edges:
            for key, stats in _raw(reader, flt, lo, hi, self.tally).items():
                merge_into(self.edge_stats, key, stats)

    def summary(self) -> dict[Bucket, Stats]:
        """Rows, first stored row and largest y per (type, bucket, exact width): aggregates plus edges."""
        out: dict[Bucket, Stats] = {}
        if self.days is not None:
            for piece in self.reader.aggregates(self.flt.project_id, self.flt.path_set, self.days):
                stats = Stats()
                stats.add_piece(piece, blobs=False)
                merge_into(out, (piece.type, piece.bucket_w, piece.bucket_h, piece.view_w), stats)
        for key, stats in self.edge_stats.items():
            summary = Stats(n=stats.n, first_seq=stats.first_seq, max_y=stats.max_y)
            merge_into(out, key, summary)
        self.totals = out
        return out

    def cells(
        self, types: tuple[str, ...], width: int | None, frame: int, resolution: int, anchor: str = "left"
    ) -> Cells:
        """Cells at ``resolution`` (``cy * resolution + cx``) and scroll depths of ``types`` rows in the
        band ``width`` (``None``: every width) on a ``frame``-wide map: rows ``frame`` wide from the
        aggregates (and the edges), rows of other exact widths binned raw, placed by ``anchor``
        (which types have such rows: the :meth:`summary` read before)."""
        if RESOLUTION % resolution:
            return self.raw_cells(types, width, frame, resolution, anchor)
        fine, depths = self.fine_cells(types, width, frame)
        counts = rebinned(fine, resolution)
        others = _others(self.totals, types, width, frame)
        if "scroll" in others:  # a scroll row's depth does not depend on its width: aggregates too
            add_counts(depths, self.other_depths(width, frame))
        placed = tuple(kind for kind in others if kind != "scroll")
        if placed:
            raw, _ = self.raw_cells(placed, width, frame, resolution, anchor, other_width=frame)
            add_counts(counts, raw)
        return counts, depths

    def fine_cells(self, types: tuple[str, ...], width: int | None, frame: int) -> Cells:
        """Cells at the aggregate resolution and scroll depths of ``types`` rows of the band ``width``
        exactly ``frame`` wide."""
        cells: dict[int, int] = {}
        depths: dict[int, int] = {}
        if self.days is not None:
            blobs = (types, width, frame)
            for piece in self.reader.aggregates(self.flt.project_id, self.flt.path_set, self.days, blobs=blobs):
                add_pairs(cells, piece.cells)
                add_pairs(depths, piece.depths)
        for (kind, bw, _, vw), stats in self.edge_stats.items():
            if kind in types and _in_band(bw, width) and vw == frame:
                add_counts(cells, stats.cells)
                add_counts(depths, stats.depths)
        return cells, depths

    def other_depths(self, width: int | None, frame: int) -> dict[int, int]:
        """Scroll depths of the rows of the band ``width`` of exact widths other than ``frame``."""
        depths: dict[int, int] = {}
        if self.days is not None:
            blobs = (("scroll",), width, None)
            for piece in self.reader.aggregates(self.flt.project_id, self.flt.path_set, self.days, blobs=blobs):
                if piece.view_w != frame:
                    add_pairs(depths, piece.depths)
        for (kind, bw, _, vw), stats in self.edge_stats.items():
            if kind == "scroll" and _in_band(bw, width) and vw != frame:
                add_counts(depths, stats.depths)
        return depths

    def raw_cells(
        self,
        types: tuple[str, ...],
        width: int | None,
        frame: int,
        resolution: int,
        anchor: str,
        other_width: int | None = None,
    ) -> Cells:
        """Cells at ``resolution`` on a ``frame``-wide map (x placed by ``anchor``) and scroll depths,
        binned from the raw rows (only those not ``other_width`` wide, when given)."""
        cells: dict[int, int] = {}
        depths: dict[int, int] = {}
        lo, hi = self.flt.ts_from, self.flt.ts_to
        assert lo is not None and hi is not None
        for kind in types:
            flt = replace(self.flt, types=(kind,), other_width=other_width)
            for row in from_edge(self.reader, flt, light=True):
                if not _in_band(row.bucket_w, width) or row.view_w == other_width:
                    continue
                for _, ts, x, y in items(row):
                    if ts < lo or ts > hi:
                        continue
                    if kind == "scroll":
                        if row.scroll_depth is not None:
                            depths[row.scroll_depth] = depths.get(row.scroll_depth, 0) + 1
                    elif x is not None and y is not None:
                        cy, cx = anchored_cell(x, y, row.view_w, frame, resolution, anchor)
                        cells[cy * resolution + cx] = cells.get(cy * resolution + cx, 0) + 1
        return cells, depths


def rebinned(fine: dict[int, int], resolution: int) -> dict[int, int]:
    """Cells at the aggregate resolution (``cy * RESOLUTION + cx``) binned at ``resolution``, a divisor
    of it (floors of floors: exact)."""
    step = RESOLUTION // resolution
    if step == 1:  # the aggregates' own cells
        return fine
    counts: dict[int, int] = {}
    for cell, count in fine.items():
        cy, cx = divmod(cell, RESOLUTION)
        key = cy // step * resolution + cx // step
        counts[key] = counts.get(key, 0) + count
    return counts


_FETCH_CHUNK = 500


class _RagePlan:
    """A ``type=rageclick`` (``deadclick``, ``errorclick``) request: the settled rage clicks (signals)
    of the range (rageclicks.py, signals.py), each with the exact width of its event (stored with it).
    A dead-click or error-click map takes its range's whole days from the map pieces
    (signal_maps.py) and reads the signal rows of its partial days (and the bots' of every day)."""

    def __init__(self, reader: Reader, flt: EventFilter, kind: str = RAGECLICK) -> None:
        assert flt.ts_from is not None and flt.ts_to is not None
        self.reader, self.flt, self.kind = reader, flt, kind
        self.pieces: list[AggregateRow] = []
        self.days: tuple[int, int] | None = None
        self.clicks: list[EventRow | Signal] = []
        self.widths: dict[str, int] = {}
        ranges = [flt]
        days, edges = split_range(flt.ts_from, flt.ts_to)
        if kind != RAGECLICK and days is not None and flt.traffic != BOT:
            pieces = reader.signal_maps(flt.project_id, flt.path_set, days, HEATMAP_KINDS[kind])
            if pieces is not None:
                self.pieces, self.days = pieces, days
                ranges = [replace(flt, ts_from=lo, ts_to=hi) for lo, hi in edges]
                if flt.traffic != HUMAN:
                    ranges.append(whole_days(flt, days, BOT))
        for part in ranges:
            self._read(part)

    def _read(self, flt: EventFilter) -> None:
        found = (
            self.reader.rage_clicks(flt)
            if self.kind == RAGECLICK
            else self.reader.signals(flt, HEATMAP_KINDS[self.kind])
        )
        self.clicks += found
        # Rows settled before their exact width was kept: the width read from their events.
        ids = sorted({click.event_id for click in found if not click.view_w})
        for start in range(0, len(ids), _FETCH_CHUNK):
            for row in self.reader.fetch(flt.project_id, ids[start : start + _FETCH_CHUNK]):
                self.widths[row.event_id] = row.view_w

    def _width(self, click: EventRow | Signal) -> int:
        return click.view_w or self.widths.get(click.event_id, click.bucket_w)

    def summary(self) -> dict[Bucket, Stats]:
        out: dict[Bucket, Stats] = {}
        for piece in self.pieces:
            key = (self.kind, piece.bucket_w, piece.bucket_h, piece.view_w)
            merge_into(out, key, Stats(piece.n, piece.first_seq, piece.max_y))
        for click in self.clicks:
            key = (self.kind, click.bucket_w, click.bucket_h, self._width(click))
            stats = out.get(key)
            if stats is None:
                stats = out[key] = Stats()
            stats.combine(1, click.seq, click.y)
        return out

    def cells(
        self, types: tuple[str, ...], width: int | None, frame: int, resolution: int, anchor: str = "left"
    ) -> Cells:
        placed = RESOLUTION % resolution == 0 and all(
            p.view_w == frame for p in self.pieces if _in_band(p.bucket_w, width)
        )
        if self.pieces and not placed and self.days is not None:
            # Rows of another exact width in the band (placed by the anchor), or a resolution the
            # pieces' cells do not divide: the whole days' rows instead.
            self.pieces = []
            self._read(whole_days(self.flt, self.days, HUMAN))
        fine: dict[int, int] = {}
        for piece in self.pieces:
            if _in_band(piece.bucket_w, width):
                add_pairs(fine, piece.cells)
        counts = rebinned(fine, resolution) if fine else {}  # pieces are kept only when placed
        for click in self.clicks:
            if click.x is not None and click.y is not None and _in_band(click.bucket_w, width):
                cy, cx = anchored_cell(click.x, click.y, self._width(click), frame, resolution, anchor)
                counts[cy * resolution + cx] = counts.get(cy * resolution + cx, 0) + 1
        return counts, {}


def choose_bucket(summary: dict[Bucket, Stats], width: int | None = None) -> str | None:
    """The most common bucket (of ``width`` when given); a tie goes to the bucket of the earliest stored row."""
    buckets: dict[tuple[int, int], tuple[int, int]] = {}  # bucket -> (rows, first seq)
    for (_, bw, bh, _), stats in summary.items():
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
    """The chosen bucket text and its ``(w, h)``: the bucket asked for, else the most common one
    (of ``viewport_width`` when given; a width no row has gets the default height), else 1280x720."""
    chosen = viewport_bucket or choose_bucket(summary, viewport_width)
    parsed = parse_bucket(chosen)
    if parsed is None and viewport_width is not None:
        parsed = (viewport_width, DEFAULT_VIEWPORT[1])
    vw, vh = parsed or DEFAULT_VIEWPORT
    return chosen or f"{vw}x{vh}", vw, vh


def frame_width(summary: dict[Bucket, Stats], types: tuple[str, ...], bucket_w: int) -> int:
    """The map's width: the most common exact width of the ``types`` rows of bucket width ``bucket_w``
    (a tie goes to the width of the earliest stored row); ``bucket_w`` when there are none."""
    widths: dict[int, tuple[int, int]] = {}  # exact width -> (rows, first seq)
    for (kind, bw, _, vw), stats in summary.items():
        if not stats.n or kind not in types or bw != bucket_w or vw <= 0:
            continue
        rows, first = widths.get(vw, (0, stats.first_seq or 0))
        widths[vw] = (rows + stats.n, min(first, stats.first_seq or 0))
    if not widths:
        return bucket_w
    return min(widths, key=lambda w: (-widths[w][0], widths[w][1]))


def other_viewports(summary: dict[Bucket, Stats], width: int) -> dict[str, int]:
    """Rows per bucket width other than ``width`` (``meta.otherViewports``)."""
    other: dict[str, int] = {}
    for (_, bw, _, _), stats in summary.items():
        if bw != width:
            other[str(bw)] = other.get(str(bw), 0) + stats.n
    return other


def render_height(summary: dict[Bucket, Stats], types: tuple[str, ...], width: int | None, frame_h: int) -> int:
    """The frame's height, or the largest y of the plotted non-scroll rows when lower on the page."""
    tops = [
        s.max_y
        for (kind, bw, _, _), s in summary.items()
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
    anchor: str = "left",
) -> Heatmap:
    """Aggregate the heatmap and shape the response body (memory bounded by the cells)."""
    if requested_type in SIGNAL_PLOTS:
        repo.settle_rage(flt.project_id)
    return repo.read(
        lambda reader: _build(
            reader, flt, requested_type, resolution, viewport_bucket, viewports, viewport_width, anchor
        )
    )


def _build(
    reader: Reader,
    flt: EventFilter,
    requested_type: str | None,
    resolution: int,
    viewport_bucket: str | None,
    viewports: str,
    viewport_width: int | None,
    anchor: str,
) -> Heatmap:
    plan: Plan | _RagePlan = (
        _RagePlan(reader, flt, requested_type) if requested_type in SIGNAL_PLOTS else Plan(reader, flt)
    )
    everything = plan.summary()
    requested = requested_type or "click"
    resolved = requested
    if requested_type is None and not any(s.n for (kind, _, _, _), s in everything.items() if kind == "click"):
        if any(s.n for s in everything.values()):
            resolved = "all"
    summary = {key: s for key, s in everything.items() if s.n and (resolved == "all" or key[0] == resolved)}
    by_type: dict[str, int] = {}
    for (kind, _, _, _), stats in summary.items():
        by_type[kind] = by_type.get(kind, 0) + stats.n
    total = sum(by_type.values())

    chosen, bucket_w, vh = frame_of(summary, viewport_bucket, viewport_width)
    width = bucket_w if viewports == "width" else None
    plottable = (*PLOTTABLE_TYPES, *SIGNAL_PLOTS)
    plotted_types = PLOTTABLE_TYPES if resolved == "all" else (resolved,) if resolved in plottable else ()
    vw = frame_width(summary, plotted_types, bucket_w)  # the frame: the width visitors had
    height = render_height(summary, plotted_types, width, vh)
    other = other_viewports(summary, bucket_w) if width is not None else {}

    counts: dict[int, int] = {}  # cy * resolution + cx -> rows
    depths: dict[int, int] = {}
    if total and plotted_types:
        counts, depths = plan.cells(plotted_types, width, vw, resolution, anchor)
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
        "anchor": anchor,
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
