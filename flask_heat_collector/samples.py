"""``meta.sample`` of the reports (SPEC §4): how much data an answer rests on.

``sessions`` are the distinct sessions with an event on the report's path (every path when none) in
its range and width band; ``events`` the rows behind the answer (each report says which). Distinct
sessions are counted as the paths report counts them: the report pieces (report_pieces.py) of the
range's whole UTC days, their Roaring bitmaps of session ordinals unioned, and the raw rows of its
partial days at the edges, so the cost is bounded by the keys and days read, never by whole days of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .aggregates import items
from .listing import from_edge
from .report_pieces import ALL_WIDTHS, Sessions
from .repositories.base import EventFilter, EventRow, Reader


@dataclass(frozen=True)
class Sample:
    """The distinct sessions and the rows of a path, range and width band."""

    sessions: int
    rows: int


@dataclass
class EdgeTally:
    """The sessions and rows (a move: its points inside) per bucket width of the raw rows of every
    type at a range's partial days, noted while the heatmap's plan reads them (read once, not twice)."""

    sessions: dict[int, set[str]] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)

    def note(self, found: Iterable[EventRow], lo: int, hi: int) -> Iterator[EventRow]:
        """``found`` as it is, noting the rows with items in ``lo..hi``."""
        for row in found:
            inside = sum(1 for _, ts, _, _ in items(row) if lo <= ts <= hi)
            if inside:
                self.sessions.setdefault(row.bucket_w, set()).add(row.session_id)
                self.rows[row.bucket_w] = self.rows.get(row.bucket_w, 0) + inside
            yield row


def edge_tally(reader: Reader, flt: EventFilter, edges: Iterable[tuple[int, int]]) -> EdgeTally:
    """The tally of the raw rows of ``flt``'s path (every type) at ``edges``, read for it alone."""
    tally = EdgeTally()
    for lo, hi in edges:
        for _ in tally.note(from_edge(reader, replace(flt, types=None, ts_from=lo, ts_to=hi), light=True), lo, hi):
            pass
    return tally


def band_sample(
    reader: Reader,
    flt: EventFilter,
    days: tuple[int, int] | None,
    edges: Iterable[tuple[int, int]],
    width: int | None,
    *,
    tally: EdgeTally | None = None,
) -> Sample:
    """The sessions with a row of ``flt``'s path (``None``: every path) in its range (whole ``days``
    plus the partial ``edges``), of bucket width ``width`` (``None``: every width), and those rows
    (a move: its points inside the range). Types are not filtered: every row counts. ``tally``: the
    edges' rows as already noted (else they are read here)."""
    sessions, rows = band_members(reader, flt, days, edges, width, tally=tally)
    return Sample(sessions.count(reader.session_ordinals(flt.project_id, sessions.ids)), rows)


def band_members(
    reader: Reader,
    flt: EventFilter,
    days: tuple[int, int] | None,
    edges: Iterable[tuple[int, int]],
    width: int | None,
    *,
    tally: EdgeTally | None = None,
) -> tuple[Sessions, int]:
    """The sessions of :func:`band_sample` themselves (ordinals of the pieces' bitmaps, and the ids
    that fresh pieces and the edges' rows name) and the number of rows."""
    sessions = Sessions()
    rows = 0
    if days is not None:
        every = ALL_WIDTHS if width is None else width  # every band: one piece per path and day
        for piece in reader.report_pieces(flt.project_id, flt.path_set, days, width=every):
            rows += piece.n_rows
            if piece.session_id is not None:
                sessions.ids.add(piece.session_id)
            sessions.add_bitmap(piece.sessions)
    if tally is None:
        tally = edge_tally(reader, flt, edges)
    for bucket_w, ids in tally.sessions.items():
        if width is None or bucket_w == width:
            sessions.ids |= ids
            rows += tally.rows[bucket_w]
    return sessions, rows


def union_count(parts: Iterable[Sessions], ordinals: dict[str, int]) -> int:
    """The distinct sessions of several :class:`Sessions` (the listed paths of the paths report), once
    the ordinals of the ids they name are known."""
    whole = Sessions()
    for part in parts:
        whole.bitmaps += part.bitmaps
        whole.ids |= part.ids
    return whole.count(ordinals)


def sample_json(sessions: int, events: int) -> dict[str, Any]:
    """``meta.sample`` (``small`` is added by :func:`mark_small`, which knows the app's threshold)."""
    return {"sessions": sessions, "events": events}


def mark_small(sample: dict[str, Any], min_sessions: int) -> None:
    """``sample.small``: fewer sessions than ``HEAT_MIN_SAMPLE_SESSIONS`` (0: never small)."""
    sample["small"] = sample["sessions"] < min_sessions
