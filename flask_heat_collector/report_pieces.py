"""Precomputed report data: what the rows of one path, UTC day and width band add up to for the
paths and elements reports (rows, last row, distinct sessions; clicks and sessions per selector).

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

from .aggregates import _merged_part, day_of, items
from .repositories.base import EventRow, ReportPiece

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_bitmap(bitmap: BitMap) -> str:
    return base64.b64encode(bitmap.serialize()).decode("ascii")


def decode_bitmap(text: str) -> BitMap:
    return BitMap.deserialize(base64.b64decode(text))


@dataclass
class Sessions:
    """Distinct sessions as ordinals (a bitmap) plus ids not mapped yet; exact when unioned."""

    bitmap: BitMap = field(default_factory=BitMap)
    ids: set[str] = field(default_factory=set)

    def add_bitmap(self, text: str | None) -> None:
        if text:
            self.bitmap |= decode_bitmap(text)

    def count(self, ordinals: dict[str, int]) -> int:
        """The distinct sessions, once the ordinals of ``ids`` (those that have one) are known."""
        extra = BitMap(ordinals[sid] for sid in self.ids if sid in ordinals)
        return len(self.bitmap | extra) + sum(1 for sid in self.ids if sid not in ordinals)


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


def _day_key(row: EventRow, day: int) -> tuple[int, int, int]:
    return row.path_key, day, row.bucket_w


def batch_pieces(rows: Iterable[EventRow], session_id: str, part: int) -> list[ReportPiece]:
    """The fresh report pieces of one batch's newly stored rows (one per path, day and band)."""
    found: dict[tuple[int, int, int], list[object]] = {}  # key -> [path, rows, last_ts, {selector: clicks}]
    for row in rows:
        for _, ts, _, _ in items(row):
            key = _day_key(row, day_of(ts))
            entry = found.get(key)
            if entry is None:
                entry = found[key] = [row.path, 0, ts, {}]
            entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
            entry[2] = max(int(entry[2]), ts)  # type: ignore[call-overload]
        if row.type == "click" and row.selector:
            clicks: dict[str, int] = found[_day_key(row, day_of(row.ts))][3]  # type: ignore[assignment]
            clicks[row.selector] = clicks.get(row.selector, 0) + 1
    return [
        ReportPiece(
            path_key=key[0],
            day=key[1],
            bucket_w=key[2],
            part=part,
            path=str(path),
            n_rows=int(n),  # type: ignore[call-overload]
            last_ts=int(last),  # type: ignore[call-overload]
            session_id=session_id,
            sessions=None,
            selectors=_JSON.encode([[s, c, None] for s, c in sorted(clicks.items())]) if clicks else None,  # type: ignore[attr-defined]
        )
        for key, (path, n, last, clicks) in found.items()
    ]


def merge(group: list[ReportPiece], ordinal: Callable[[str], int]) -> ReportPiece | None:
    """One key-day's pieces as one merged piece (``ordinal`` maps a fresh piece's session to its
    ordinal); ``None`` when they add up to nothing."""
    rows, last = 0, None
    sessions = BitMap()
    selectors: dict[str, list[object]] = {}  # selector -> [clicks, bitmap]
    for piece in group:
        rows += piece.n_rows
        if piece.last_ts is not None and (last is None or piece.last_ts > last):
            last = piece.last_ts
        own = ordinal(piece.session_id) if piece.session_id is not None else None
        if own is not None:
            sessions.add(own)
        if piece.sessions:
            sessions |= decode_bitmap(piece.sessions)
        for selector, clicks, bitmap in json.loads(piece.selectors) if piece.selectors else []:
            entry = selectors.setdefault(selector, [0, BitMap()])
            entry[0] = int(entry[0]) + clicks  # type: ignore[call-overload]
            members: BitMap = entry[1]  # type: ignore[assignment]
            if bitmap is None:
                assert own is not None
                members.add(own)
            else:
                members |= decode_bitmap(bitmap)
    if not rows:
        return None
    first = group[0]
    encoded = [[s, c, encode_bitmap(b)] for s, (c, b) in sorted(selectors.items()) if c]  # type: ignore[arg-type]
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
