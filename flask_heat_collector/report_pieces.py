"""Precomputed report data: what the rows of one path, UTC day and width band add up to for the
paths, elements and scroll map reports (rows, last row, distinct sessions; clicks and sessions per
selector; the sessions at each scroll reach level and the page and viewport heights of scroll rows).

Backend-free, like the heatmap aggregates: ingest writes one fresh piece per key-day and batch (a
batch is one session, so a fresh piece names its session), compaction merges a key-day's pieces into
one whose sessions are a Roaring bitmap of per-project session ordinals. Distinct sessions stay exact
across days and pieces: a report unions the bitmaps and adds the sessions named by fresh pieces and
by the raw rows at the edges of its range, mapped to their ordinals when they have one (a session
without an ordinal is in no bitmap yet).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyroaring import BitMap

from .aggregates import _merged_part, day_of, items, scroll_pct
from .ingest import js_round
from .repositories.base import EventRow, ReportPiece

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# The ``bucket_w`` of the pieces that add up every width band of a path and day (rows, last row,
# sessions; no selectors or scroll data): the paths report reads these, one per key-day instead of
# one per band. Stored bands are never negative.
ALL_WIDTHS = -1


def encode_bitmap(bitmap: BitMap) -> str:
    return base64.b64encode(bitmap.serialize()).decode("ascii")


def decode_bitmap(text: str) -> BitMap:
    return BitMap.deserialize(base64.b64decode(text))


@dataclass
class Sessions:
    """Distinct sessions as ordinals (a bitmap) plus ids not mapped yet; exact when unioned."""

    bitmaps: list[BitMap] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def add_bitmap(self, text: str | None) -> None:
        if text:
            self.bitmaps.append(decode_bitmap(text))

    def count(self, ordinals: dict[str, int]) -> int:
        """The distinct sessions, once the ordinals of ``ids`` (those that have one) are known."""
        extra = BitMap(ordinals[sid] for sid in self.ids if sid in ordinals)
        return len(BitMap.union(extra, *self.bitmaps)) + sum(1 for sid in self.ids if sid not in ordinals)


@dataclass
class Totals:
    """What some pieces and raw rows of one path (or of one selector) add up to."""

    rows: int = 0
    last_ts: int | None = None
    sessions: Sessions = field(default_factory=Sessions)

    def add(self, rows: int, last_ts: int | None) -> None:
        self.rows += rows
        if last_ts is not None and (self.last_ts is None or last_ts > self.last_ts):
            self.last_ts = last_ts


class ReportTotals:
    """Per path and per selector totals of pieces and raw rows (``selectors``: also add clicks)."""

    def __init__(self, *, selectors: bool) -> None:
        self.want_selectors = selectors
        self.paths: dict[str, Totals] = {}
        self.selectors: dict[str, Totals] = {}

    def add_piece(self, piece: ReportPiece) -> None:
        totals = self.paths.setdefault(piece.path, Totals())
        totals.add(piece.n_rows, piece.last_ts)
        if piece.session_id is not None:
            totals.sessions.ids.add(piece.session_id)
        totals.sessions.add_bitmap(piece.sessions)
        if self.want_selectors and piece.selectors:
            for selector, clicks, bitmap in json.loads(piece.selectors):
                entry = self.selectors.setdefault(selector, Totals())
                entry.add(clicks, None)
                if bitmap is None:
                    assert piece.session_id is not None
                    entry.sessions.ids.add(piece.session_id)
                else:
                    entry.sessions.add_bitmap(bitmap)

    def add_row(self, row: EventRow, lo: int, hi: int) -> None:
        """A raw row at an edge: its items inside ``lo..hi`` (a move: its points)."""
        times = [ts for _, ts, _, _ in items(row) if lo <= ts <= hi]
        if not times:
            return
        totals = self.paths.setdefault(row.path, Totals())
        totals.add(len(times), max(times))
        totals.sessions.ids.add(row.session_id)
        if self.want_selectors and row.type == "click" and row.selector:
            entry = self.selectors.setdefault(row.selector, Totals())
            entry.add(1, None)
            entry.sessions.ids.add(row.session_id)

    def unmapped(self) -> set[str]:
        """The session ids whose ordinals the counts need."""
        found: set[str] = set()
        for totals in (*self.paths.values(), *self.selectors.values()):
            found |= totals.sessions.ids
        return found


LEVELS = 21  # reach levels: level k is a reach of at least 5k % of the page


def scroll_reach(row: EventRow) -> tuple[float, int, int] | None:
    """``(reach %, page height H, viewport height h)`` of a scroll row that scrolled (SPEC §4): with
    progress p > 0 and scrollY y on a viewport h, H = y * 100 / p + h and the reach is (y + h) / H.
    ``None`` for a row without progress (it tells nothing of the page) or without the numbers."""
    if row.type != "scroll" or row.scroll_depth is None or scroll_pct(row.scroll_depth) <= 0:
        return None
    try:
        y = json.loads(row.data_json or "{}").get("scrollY")
        h = json.loads(row.meta_json or "{}").get("viewport", {}).get("h")
    except (ValueError, AttributeError):
        return None
    if not isinstance(y, int | float) or not isinstance(h, int | float) or y < 0 or h <= 0:
        return None
    page = y * 100 / scroll_pct(row.scroll_depth) + h
    return min(100.0, 100 * (y + h) / page), js_round(page), js_round(h)


def level_of(reach: float) -> int:
    return min(LEVELS - 1, int(reach // 5))


class _Piece:
    """What one batch's rows add to one key-day, before it is written."""

    def __init__(self, path: str, ts: int) -> None:
        self.path, self.rows, self.last_ts = path, 0, ts
        self.clicks: dict[str, int] = {}
        self.level: int | None = None
        self.pages: dict[int, int] = {}
        self.views: dict[int, int] = {}

    def scroll_json(self) -> str | None:
        if self.level is None and not self.pages:
            return None
        return _JSON.encode({"k": self.level, "H": sorted(self.pages.items()), "h": sorted(self.views.items())})


def batch_pieces(rows: Iterable[EventRow], session_id: str, part: int) -> list[ReportPiece]:
    """The fresh report pieces of one batch's newly stored rows: one per path, day and band, and one
    per path and day for every band (:data:`ALL_WIDTHS`)."""
    found: dict[tuple[int, int, int], _Piece] = {}
    for row in rows:
        day = day_of(row.ts)
        if day == day_of(row.ts + row.span):  # every item on one day (nearly every row)
            own = found.get((row.path_key, day, row.bucket_w))
            if own is None:
                own = found[(row.path_key, day, row.bucket_w)] = _Piece(row.path, row.ts)
            own.rows += row.row_count
            own.last_ts = max(own.last_ts, row.ts + row.span)
        else:
            for _, ts, _, _ in items(row):
                key = (row.path_key, day_of(ts), row.bucket_w)
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = _Piece(row.path, ts)
                entry.rows += 1
                entry.last_ts = max(entry.last_ts, ts)
            own = found[(row.path_key, day, row.bucket_w)]
        if row.type == "click" and row.selector:
            own.clicks[row.selector] = own.clicks.get(row.selector, 0) + 1
        reach = scroll_reach(row)
        if reach is not None:
            own.level = max(level_of(reach[0]), -1 if own.level is None else own.level)
            own.pages[reach[1]] = own.pages.get(reach[1], 0) + 1
            own.views[reach[2]] = own.views.get(reach[2], 0) + 1
    every: dict[tuple[int, int], _Piece] = {}
    for (pkey, day, _), piece in found.items():
        total = every.get((pkey, day))
        if total is None:
            total = every[(pkey, day)] = _Piece(piece.path, piece.last_ts)
        total.rows += piece.rows
        total.last_ts = max(total.last_ts, piece.last_ts)
    found.update(((pkey, day, ALL_WIDTHS), total) for (pkey, day), total in every.items())
    return [
        ReportPiece(
            path_key=key[0],
            day=key[1],
            bucket_w=key[2],
            part=part,
            path=piece.path,
            n_rows=piece.rows,
            last_ts=piece.last_ts,
            session_id=session_id,
            sessions=None,
            selectors=_JSON.encode([[s, c, None] for s, c in sorted(piece.clicks.items())]) if piece.clicks else None,
            scroll=piece.scroll_json(),
        )
        for key, piece in found.items()
    ]


def _add_pairs(into: dict[int, int], pairs: list[list[int]]) -> None:
    for value, count in pairs:
        into[value] = into.get(value, 0) + count


def merge(group: list[ReportPiece], ordinal: Callable[[str], int]) -> ReportPiece | None:
    """One key-day's pieces as one merged piece (``ordinal`` maps a fresh piece's session to its
    ordinal); ``None`` when they add up to nothing."""
    rows, last = 0, None
    sessions = BitMap()
    clicks: dict[str, int] = {}
    members: dict[str, BitMap] = {}
    levels = [BitMap() for _ in range(LEVELS)]
    pages: dict[int, int] = {}
    views: dict[int, int] = {}
    for piece in group:
        rows += piece.n_rows
        if piece.last_ts is not None and (last is None or piece.last_ts > last):
            last = piece.last_ts
        own = ordinal(piece.session_id) if piece.session_id is not None else None
        if own is not None:
            sessions.add(own)
        if piece.sessions:
            sessions |= decode_bitmap(piece.sessions)
        for selector, count, bitmap in json.loads(piece.selectors) if piece.selectors else []:
            clicks[selector] = clicks.get(selector, 0) + count
            mine = members.setdefault(selector, BitMap())
            if bitmap is None:
                assert own is not None
                mine.add(own)
            else:
                mine |= decode_bitmap(bitmap)
        if piece.scroll:
            scroll = json.loads(piece.scroll)
            if scroll.get("k") is not None:
                assert own is not None
                for k in range(scroll["k"] + 1):
                    levels[k].add(own)
            for k, bitmap in scroll.get("r", []):
                levels[k] |= decode_bitmap(bitmap)
            _add_pairs(pages, scroll["H"])
            _add_pairs(views, scroll["h"])
    if not rows:
        return None
    first = group[0]
    encoded = [[s, c, encode_bitmap(members[s])] for s, c in sorted(clicks.items()) if c]
    reach = [[k, encode_bitmap(b)] for k, b in enumerate(levels) if b]
    scroll_text = (
        _JSON.encode({"r": reach, "H": sorted(pages.items()), "h": sorted(views.items())}) if reach or pages else None
    )
    return ReportPiece(
        path_key=first.path_key,
        day=first.day,
        bucket_w=first.bucket_w,
        part=_merged_part(),
        path=first.path,
        n_rows=rows,
        last_ts=last,
        session_id=None,
        sessions=encode_bitmap(sessions),
        selectors=_JSON.encode(encoded) if encoded else None,
        scroll=scroll_text,
    )


class ScrollTotals:
    """Scroll reach of some pieces and raw rows: the sessions (all, and at each reach level) and the
    page and viewport heights of the rows that scrolled."""

    def __init__(self) -> None:
        self.sessions = Sessions()
        self.levels = [Sessions() for _ in range(LEVELS)]
        self.pages: dict[int, int] = {}
        self.views: dict[int, int] = {}

    def add_piece(self, piece: ReportPiece) -> None:
        if piece.session_id is not None:
            self.sessions.ids.add(piece.session_id)
        self.sessions.add_bitmap(piece.sessions)
        if not piece.scroll:
            return
        scroll = json.loads(piece.scroll)
        if scroll.get("k") is not None:
            assert piece.session_id is not None
            for k in range(scroll["k"] + 1):
                self.levels[k].ids.add(piece.session_id)
        for k, bitmap in scroll.get("r", []):
            self.levels[k].add_bitmap(bitmap)
        _add_pairs(self.pages, scroll["H"])
        _add_pairs(self.views, scroll["h"])

    def add_row(self, row: EventRow, lo: int, hi: int) -> None:
        if not any(lo <= ts <= hi for _, ts, _, _ in items(row)):
            return
        self.sessions.ids.add(row.session_id)
        reach = scroll_reach(row)
        if reach is not None:
            for k in range(level_of(reach[0]) + 1):
                self.levels[k].ids.add(row.session_id)
            self.pages[reach[1]] = self.pages.get(reach[1], 0) + 1
            self.views[reach[2]] = self.views.get(reach[2], 0) + 1

    def unmapped(self) -> set[str]:
        found = set(self.sessions.ids)
        for level in self.levels:
            found |= level.ids
        return found


def median(counts: dict[int, int]) -> float | None:
    """The median of a multiset given as ``{value: count}`` (the mean of the two middle values)."""
    total = sum(counts.values())
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]
    found: list[int] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while len(found) < 2 and seen > wanted[len(found)]:
            found.append(value)
    return (found[0] + found[1]) / 2


def piece_wanted(piece: ReportPiece, days: tuple[int, int], width: int | None) -> bool:
    """Whether ``piece`` is one that ``Reader.report_pieces(…, days, width=width)`` answers, its path
    aside (the per-band pieces for ``width=None``)."""
    return days[0] <= piece.day <= days[1] and (
        piece.bucket_w != ALL_WIDTHS if width is None else piece.bucket_w == width
    )


def rebuild(rows: Iterable[EventRow], ordinal: Callable[[str], int]) -> list[ReportPiece]:
    """Merged pieces of every key-day of ``rows`` (stored events, streamed once)."""
    fresh: dict[tuple[int, int, int], list[ReportPiece]] = {}
    by_session: dict[str, list[EventRow]] = {}
    for row in rows:
        by_session.setdefault(row.session_id, []).append(row)
        if len(by_session) > 512:
            _flush(by_session, fresh, ordinal)
    _flush(by_session, fresh, ordinal)
    return [piece for group in fresh.values() if (piece := merge(group, ordinal)) is not None]


def _flush(
    by_session: dict[str, list[EventRow]],
    fresh: dict[tuple[int, int, int], list[ReportPiece]],
    ordinal: Callable[[str], int],
) -> None:
    for session_id, session_rows in by_session.items():
        for piece in batch_pieces(session_rows, session_id, 1):
            key = (piece.path_key, piece.day, piece.bucket_w)
            group = fresh.setdefault(key, [])
            group.append(piece)
            if len(group) > 64:  # keep memory per key bounded
                merged = merge(group, ordinal)
                group.clear()
                if merged is not None:
                    group.append(merged)
    by_session.clear()
