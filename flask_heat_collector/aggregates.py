"""Heatmap aggregates: what stored events add up to per day, path, type, viewport bucket and exact width.

Backend-free: ingest builds one piece per key and batch from the rows it stored, the heatmap
adds pieces of whole days to the raw rows at the edges of its range, compaction merges pieces.
Every count is a sum, ``first_seq`` a minimum and ``max_y`` a maximum, so pieces of the same key
combine exactly in any order. Compaction also rolls the merged day pieces of finished months into
month pieces (:func:`roll_month`), so a long range reads one piece per key and month. Cells are
square at :data:`RESOLUTION` per exact viewport width (``view_w``), so they serve every heatmap
resolution that divides it (cell ``b`` at 128 is cell ``b // (128 // r)`` at r) on a frame of that width.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .ingest import path_key
from .repositories.base import AggregateRow, Blobs, EventRow

DAY_MS = 86_400_000
RESOLUTION = 128
# A month piece is stored with ``day = MONTH_BASE + the month's first day``: ranges of days never
# meet it. A day piece whose part is at most ``ROLLED`` is counted in its key's month piece too, so
# a read of the whole month takes the month pieces and only the day pieces above ``ROLLED``.
MONTH_BASE = 1_000_000_000
ROLLED = -(2**62)
PLOTTABLE_TYPES = ("click", "move", "scroll")
Key = tuple[int, str, int, int, int]  # (day, type, bucket_w, bucket_h, view_w)
K = TypeVar("K")

_JSON = json.JSONEncoder(separators=(",", ":"))


def day_of(ts: int) -> int:
    return ts // DAY_MS


# The ends of a range left open: every stored day.
OPEN_FROM, OPEN_TO = -(10**8) * DAY_MS, (10**8 + 1) * DAY_MS - 1


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


def cell_index(value: int, width: int, resolution: int) -> int:
    """floor(value / side) with side = width / resolution, in integers (exact, floors negatives)."""
    return value * resolution // width


def cell_of(x: int, y: int, width: int, resolution: int) -> tuple[int, int]:
    """``(cy, cx)`` of a point on a ``width``-wide frame: cx clamped to the columns, cy at least 0."""
    return max(0, cell_index(y, width, resolution)), min(resolution - 1, max(0, cell_index(x, width, resolution)))


ANCHORS = ("left", "center", "scale")


def anchored_cell(x: int, y: int, width: int, frame: int, resolution: int, anchor: str) -> tuple[int, int]:
    """``(cy, cx)`` of a point of a ``width``-wide viewport on a ``frame``-wide map (square cells of
    side frame / resolution), its x placed by ``anchor``: ``left`` x, ``center`` x + (frame - width) / 2,
    ``scale`` x * frame / width; in integers (exact). y is never moved."""
    if anchor == "center":
        cx = (2 * x + frame - width) * resolution // (2 * frame)
    elif anchor == "scale" and width > 0:
        cx = x * resolution // width
    else:
        cx = cell_index(x, frame, resolution)
    return max(0, cell_index(y, frame, resolution)), min(resolution - 1, max(0, cx))


def fine_cell(x: int, y: int, width: int) -> int:
    """The aggregate cell of a point of a ``width``-wide bucket: ``cy * RESOLUTION + cx``."""
    cy, cx = cell_of(x, y, width, RESOLUTION)
    return cy * RESOLUTION + cx


def scroll_pct(depth: int) -> float:
    """A stored scroll depth as a percent of the page (depths above 100 are hundredths of a percent)."""
    return depth / 100 if depth > 100 else depth


def add_counts(into: dict[int, int], counts: dict[int, int]) -> None:
    """Add ``counts`` to ``into``, key by key."""
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def encode_pairs(counts: dict[int, int]) -> str | None:
    """``{k: n}`` as the JSON list ``[k, n, k, n, ...]`` (zero counts left out); ``None`` when empty."""
    flat: list[int] = []
    for key, count in counts.items():
        if count:
            flat.append(key)
            flat.append(count)
    return _JSON.encode(flat) if flat else None


def add_pairs(into: dict[int, int], text: str | None) -> None:
    """Add the counts of an :func:`encode_pairs` text to ``into``."""
    if not text:
        return
    flat: list[int] = json.loads(text)
    get = into.get
    for i in range(0, len(flat), 2):
        key = flat[i]
        into[key] = get(key, 0) + flat[i + 1]


def items(row: EventRow) -> Iterator[tuple[int, int, int | None, int | None]]:
    """``(point_index, ts, x, y)`` of each row the event answers as (a move: one per point)."""
    if row.points is None:
        yield 0, row.ts, row.x, row.y
        return
    flat: list[int] = json.loads(row.points)
    ts = row.ts
    for index in range(len(flat) // 3):
        yield index, ts + flat[3 * index], flat[3 * index + 1], flat[3 * index + 2]


@dataclass
class Stats:
    """What the rows of one key add up to."""

    n: int = 0
    first_seq: int | None = None
    max_y: int | None = None
    cells: dict[int, int] = field(default_factory=dict)
    depths: dict[int, int] = field(default_factory=dict)

    def add_row(self, seq: int, kind: str, width: int, x: int | None, y: int | None, depth: int | None) -> None:
        self.n += 1
        if self.first_seq is None or seq < self.first_seq:
            self.first_seq = seq
        if kind == "scroll":
            if depth is not None:
                self.depths[depth] = self.depths.get(depth, 0) + 1
        elif x is not None and y is not None:
            if self.max_y is None or y > self.max_y:
                self.max_y = y
            if width > 0:
                cell = fine_cell(x, y, width)
                self.cells[cell] = self.cells.get(cell, 0) + 1

    def combine(self, n: int, first_seq: int | None, max_y: int | None) -> None:
        self.n += n
        if first_seq is not None and (self.first_seq is None or first_seq < self.first_seq):
            self.first_seq = first_seq
        if max_y is not None and (self.max_y is None or max_y > self.max_y):
            self.max_y = max_y

    def add_piece(self, piece: AggregateRow, *, blobs: bool = True) -> None:
        self.combine(piece.n, piece.first_seq, piece.max_y)
        if blobs:
            add_pairs(self.cells, piece.cells)
            add_pairs(self.depths, piece.depths)

    def merge(self, other: Stats) -> None:
        self.combine(other.n, other.first_seq, other.max_y)
        add_counts(self.cells, other.cells)
        add_counts(self.depths, other.depths)


def merge_into(totals: dict[K, Stats], key: K, stats: Stats) -> None:
    """Add ``stats`` to ``totals[key]`` (taking ``stats`` itself when the key is new)."""
    if key in totals:
        totals[key].merge(stats)
    else:
        totals[key] = stats


def add_event(
    into: dict[Key, Stats], row: EventRow, *, ts_range: tuple[int, int] | None = None, by_day: bool = True
) -> None:
    """Add the rows of one stored event to ``into`` (see :func:`rollup`)."""
    kind, bw, bh, vw, seq = row.type, row.bucket_w, row.bucket_h, row.view_w, row.seq
    for _, ts, x, y in items(row):
        if ts_range is not None and (ts < ts_range[0] or ts > ts_range[1]):
            continue
        key = (day_of(ts) if by_day else 0, kind, bw, bh, vw)
        stats = into.get(key)
        if stats is None:
            stats = into[key] = Stats()
        stats.add_row(seq, kind, vw, x, y, row.scroll_depth)


def rollup(
    rows: Iterable[EventRow],
    *,
    ts_range: tuple[int, int] | None = None,
    by_day: bool = True,
) -> dict[Key, Stats]:
    """Stats per (day, type, bucket, exact width) of the rows' items (only items inside ``ts_range`` when given).

    With ``by_day=False`` every key has day 0 (the heatmap adds raw edges regardless of the day).
    """
    out: dict[Key, Stats] = {}
    for row in rows:
        add_event(out, row, ts_range=ts_range, by_day=by_day)
    return out


def fresh_part() -> int:
    """The ``part`` of a piece written by ingest: positive, so compaction finds the pieces to merge."""
    return secrets.randbits(62) + 1


def _merged_part() -> int:
    """The ``part`` of a merged piece: negative (not looked at again until a fresh piece joins it)."""
    return -(secrets.randbits(61) + 2**20)


def is_rolled(part: int) -> bool:
    """Whether a piece with this ``part`` is counted in its key's month piece (a month piece is, too)."""
    return part <= ROLLED


def month_of(day: int) -> tuple[int, int]:
    """The first and last day of the UTC month holding ``day``."""
    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    following = date.replace(day=28) + datetime.timedelta(days=4)  # a day of the next month
    first = day - date.day + 1
    return first, day + (following - datetime.timedelta(days=following.day) - date).days


def month_code(first_day: int) -> int:
    """The ``day`` a month piece is stored with (see :data:`MONTH_BASE`)."""
    return MONTH_BASE + first_day


_LAST_MONTH_DAY = (datetime.date(9999, 12, 1) - datetime.date(1970, 1, 1)).days - 1  # months end before it
_FIRST_MONTH_DAY = (datetime.date(1, 2, 1) - datetime.date(1970, 1, 1)).days


def whole_months(days: tuple[int, int]) -> tuple[int, int] | None:
    """The days ``(first, last)`` of the whole months inside ``days``, ``None`` when there are none
    (only months of years 1 to 9999 count: outside them days are read one by one)."""
    first, last = max(days[0], _FIRST_MONTH_DAY), min(days[1], _LAST_MONTH_DAY)
    if first > last:
        return None
    start = month_of(first)[0]
    if start != first:
        start = month_of(first)[1] + 1
    end = month_of(last)[1]
    if end != last:
        end = month_of(last)[0] - 1
    return (start, end) if start <= end else None


def pieces_of_rows(rows: Iterable[EventRow], part: int) -> list[AggregateRow]:
    """The aggregate pieces (numbered ``part``) that ``rows`` make, path by path (built at read time
    by the readers that answer from raw rows: compare's segments, the bot sessions)."""
    by_key: dict[int, list[EventRow]] = {}
    for row in rows:
        by_key.setdefault(row.path_key, []).append(row)
    return [p for key, group in by_key.items() for p in pieces(key, rollup(group), part)]


def piece_wanted(piece: AggregateRow, days: tuple[int, int], blobs: Blobs | None) -> bool:
    """Whether ``piece`` is one that ``Reader.aggregates(…, days, blobs=blobs)`` answers."""
    return days[0] <= piece.day <= days[1] and (
        blobs is None
        or (
            piece.type in blobs[0]
            and (blobs[1] is None or piece.bucket_w == blobs[1])
            and (blobs[2] is None or piece.view_w == blobs[2])
        )
    )


def finished_before(now_ms: int) -> int:
    """The first day of the current UTC month: months before it are finished and may be rolled."""
    return month_of(day_of(now_ms))[0]


def pieces(path_key: int, stats: dict[Key, Stats], part: int) -> list[AggregateRow]:
    """The aggregate rows storing ``stats`` of one path (``part`` tells pieces of a key apart)."""
    return [
        # AggregateRow's fields start with the path and the key: (day, type, bucket_w, bucket_h, view_w).
        AggregateRow(
            path_key,
            *key,
            part=part,
            n=s.n,
            first_seq=s.first_seq,
            max_y=s.max_y,
            cells=encode_pairs(s.cells),
            depths=encode_pairs(s.depths),
        )
        for key, s in stats.items()
        if s.n
    ]


def batch_pieces(rows: Iterable[EventRow], part: int) -> list[AggregateRow]:
    """The aggregate pieces of newly stored rows, one per (path, day, type, bucket, exact width)."""
    by_path: dict[int, list[EventRow]] = {}
    for row in rows:
        by_path.setdefault(row.path_key, []).append(row)
    out: list[AggregateRow] = []
    for key, path_rows in by_path.items():
        out.extend(pieces(key, rollup(path_rows), part))
    return out


def rebuild_pieces(rows: Iterable[EventRow]) -> tuple[list[AggregateRow], int]:
    """The merged pieces of every key of ``rows`` (all events of one project, streamed once) and
    the number of events read."""
    keys: dict[str, int] = {}
    totals: dict[int, dict[Key, Stats]] = {}
    read = 0
    for row in rows:
        read += 1
        key = keys.get(row.path)
        if key is None:
            key = keys[row.path] = path_key(row.path)
        add_event(totals.setdefault(key, {}), row)
    merged = [m for key, stats in totals.items() for piece in pieces(key, stats, 0) for m in merge_pieces([piece])]
    return merged, read


MAX_MERGED_CELLS = 200_000  # cells per merged piece: keeps one row far below MySQL's max_allowed_packet


def merge_pieces(group: list[AggregateRow], *, day: int | None = None, rolled: bool = False) -> list[AggregateRow]:
    """One key's pieces merged into one (or a few, when its cells are very many), marked merged
    (``rolled``: marked counted in the month piece too); stored with ``day`` when given."""
    part = _merged_part() + (ROLLED if rolled else 0)
    total = Stats()
    for piece in group:
        total.add_piece(piece)
    if not total.n and not any(total.cells.values()) and not any(total.depths.values()):
        return []  # the key netted to zero
    first = group[0]
    cells = list(total.cells.items())
    chunks = [dict(cells[i : i + MAX_MERGED_CELLS]) for i in range(0, len(cells), MAX_MERGED_CELLS)] or [{}]
    merged: list[AggregateRow] = []
    for i, chunk in enumerate(chunks):
        merged.append(
            AggregateRow(
                path_key=first.path_key,
                day=first.day if day is None else day,
                type=first.type,
                bucket_w=first.bucket_w,
                bucket_h=first.bucket_h,
                view_w=first.view_w,
                part=part - i,
                n=total.n if i == 0 else 0,
                first_seq=total.first_seq if i == 0 else None,
                max_y=total.max_y if i == 0 else None,
                cells=encode_pairs(chunk),
                depths=encode_pairs(total.depths) if i == 0 else None,
            )
        )
    return merged


def roll_month(group: list[AggregateRow], first_day: int) -> tuple[list[AggregateRow], list[AggregateRow]]:
    """Roll the merged day pieces of one key and month into its month piece: ``(replaced, new)``.

    ``group`` holds merged pieces (no fresh one) of the month's days and the key's month pieces.
    What the day pieces not rolled yet hold is added to the month piece and to the rolled piece of
    their day, so the month pieces stay the sum of the rolled day pieces (adding only: exact).
    """
    fresh = [p for p in group if p.day < MONTH_BASE and not is_rolled(p.part)]
    if not fresh:
        return [], []
    days = {p.day for p in fresh}
    old_months = [p for p in group if p.day >= MONTH_BASE]
    old_days = [p for p in group if p.day in days and is_rolled(p.part)]
    new: list[AggregateRow] = []
    for day in sorted(days):
        new += merge_pieces([p for p in old_days + fresh if p.day == day], rolled=True)
    new += merge_pieces(old_months + fresh, day=month_code(first_day), rolled=True)
    return fresh + old_days + old_months, new


ROLL_PASSES = 30  # a timed compaction rolls finished months on the first pass of every 30
BURST_SHARE = 4  # a burst's pieces stay apart from the key's big piece until a quarter of its size


def _size(group: list[AggregateRow]) -> int:
    return sum(len(p.cells or "") + len(p.depths or "") for p in group)


def compaction(group: list[AggregateRow], *, full: bool = True) -> tuple[list[AggregateRow], list[AggregateRow]]:
    """``(replaced, new)`` for a compaction of one key-day: ``group`` holds the key-day's pieces not
    rolled, merged into one. A finished month's month piece is not read: :func:`roll_month` adds the
    merged day pieces to it later, so a merge costs what the day holds.

    Not ``full`` (a compaction by count right after ingest, or a worker's timed one): while the
    pieces written since the last full one are small beside the key-day's biggest piece, they are
    merged apart from it, so a burst into a dense key-day costs in proportion to what it wrote, not
    to the key-day's cells.
    """
    if not full:
        merged = sorted((p for p in group if p.part < 0), key=lambda p: _size([p]))
        big = merged[-1:]
        rest = [p for p in group if not big or p.part != big[-1].part]
        if big and _size(rest) * BURST_SHARE < _size(big):
            return rest, merge_pieces(rest)
    return group, merge_pieces(group)


def piece_ranges(days: tuple[int, int]) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """What a read of the pieces of ``days`` takes: every piece of the returned day ranges, and for
    the whole months (first, last day) their month pieces and their day pieces not rolled yet."""
    days = (days[0], min(days[1], MONTH_BASE - 1))  # no day piece lies beyond; month pieces do
    months = whole_months(days)
    if months is None:
        return [days], None
    edges = [(lo, hi) for lo, hi in ((days[0], months[0] - 1), (months[1] + 1, days[1])) if lo <= hi]
    return edges, months
