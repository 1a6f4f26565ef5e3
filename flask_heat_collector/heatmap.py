"""The heatmap contract: type fallback, bucket choice, cell size and point shaping."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .ingest import js_round, parse_bucket
from .repositories.base import EventFilter, Repository

PLOTTABLE_TYPES = ("click", "move", "scroll")
DEFAULT_VIEWPORT = (1280, 720)
NOT_PLOTTABLE_WARNING = (
    "Events matched the filter but none are plottable. "
    "Use type=click|move|scroll or inspect /api/projects/:projectId/events."
)


def build_heatmap(
    repo: Repository,
    flt: EventFilter,
    *,
    requested_type: str | None,
    resolution: int,
    viewport_bucket: str | None,
) -> dict[str, Any]:
    """Aggregate the heatmap in the database and shape the response body.

    Memory is bounded by the number of cells (``resolution``²), never by rows.
    """
    requested = requested_type or "click"
    summary = repo.heatmap_summary(replace(flt, types=None if requested == "all" else (requested,)))
    resolved = requested
    if requested_type is None and not summary.by_type:
        everything = repo.heatmap_summary(replace(flt, types=None))
        if everything.by_type:
            summary, resolved = everything, "all"
    by_type = summary.by_type
    frame = summary.frame
    flt = replace(flt, types=None if resolved == "all" else (resolved,))
    total = sum(by_type.values())

    chosen = viewport_bucket or (f"{frame.bucket[0]}x{frame.bucket[1]}" if frame and frame.bucket else None)
    vw, vh = parse_bucket(chosen) or DEFAULT_VIEWPORT
    render_height = max(vh, frame.max_y if frame and frame.max_y is not None else vh)
    cell_w, cell_h = vw / resolution, render_height / resolution

    counts: dict[tuple[int, int], int] = {}
    if total:
        for cell in repo.heatmap_cells(flt, vw, render_height, resolution):
            key = (cell.cy, cell.cx)
            counts[key] = counts.get(key, 0) + cell.count
        if resolved in ("all", "scroll"):
            for depth, count in repo.scroll_depths(flt):
                pct = (depth / 100 if depth > 100 else depth) / 100
                y = js_round(pct * render_height)
                key = (min(resolution - 1, max(0, y * resolution // render_height)), 0)
                counts[key] = counts.get(key, 0) + count
    plotted = sum(counts.values())
    # Cell centres, computed once per column and row (a heatmap has up to resolution² points).
    xs = [js_round((cx + 0.5) * cell_w) for cx in range(resolution)]
    ys = [js_round((cy + 0.5) * cell_h) for cy in range(resolution)]
    points = [{"x": xs[cx], "y": ys[cy], "value": value} for (cy, cx), value in sorted(counts.items())]
    meta: dict[str, Any] = {
        "resolution": resolution,
        "viewport": {"w": vw, "h": vh},
        "renderHeight": render_height,
        "total": total,
        "plotted": plotted,
        "ignored": max(0, total - plotted),
        "requestedType": requested,
        "resolvedType": resolved,
        "bucket": chosen or f"{vw}x{vh}",
        "plottableTypes": list(PLOTTABLE_TYPES),
        "typeBreakdown": by_type,
    }
    if total and not plotted:
        meta["warning"] = NOT_PLOTTABLE_WARNING
    return {"points": points, "meta": meta}
