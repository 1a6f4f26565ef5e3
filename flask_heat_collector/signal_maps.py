"""Precomputed dead-click and error-click maps (SPEC §10): per path, UTC day, kind, bucket and exact
viewport width, what the human sessions' stored signals of that kind add up to, as a heatmap
aggregate does (rows, first stored row, largest y, cells at the aggregate resolution on the row's
own width), so that a signal map reads its range's whole days at a cost bounded by keys and days.

Backend-free. A piece is an :class:`~.repositories.base.AggregateRow` whose ``type`` is the signal
kind. A settle that only adds signals adds their piece to the stored one; a path-day-kind that loses
a signal (a settle that un-deads a click, a forget before erase or purge, a session changing class)
is computed again from its stored signals, in the same transaction, since a first row and a largest
y cannot be taken back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .aggregates import Stats, add_pairs, day_of, encode_pairs, fine_cell
from .repositories.base import AggregateRow
from .signals import DEAD, ERROR

MAP_KINDS = (DEAD, ERROR)  # the signals plotted as maps from pieces (rage clicks are few: rows)


class Mapped(NamedTuple):
    """What a map piece keeps of one stored signal (``view_w``: its event's exact width)."""

    kind: str
    path_key: int
    ts: int
    seq: int
    x: int | None
    y: int | None
    bucket_w: int
    bucket_h: int
    view_w: int


MapKey = tuple[int, int, str]  # (path_key, day, kind): what is computed again when a signal goes


def map_key(kind: str, path_key: int, ts: int) -> MapKey:
    return path_key, day_of(ts), kind


def pieces(rows: Iterable[Mapped]) -> list[AggregateRow]:
    """The pieces of these signals (of kinds :data:`MAP_KINDS`, others left out), one per key."""
    stats: dict[tuple[int, int, str, int, int, int], tuple[Stats, dict[int, int]]] = {}
    for row in rows:
        if row.kind not in MAP_KINDS:
            continue
        key = (row.path_key, day_of(row.ts), row.kind, row.bucket_w, row.bucket_h, row.view_w)
        found = stats.get(key)
        if found is None:
            found = stats[key] = (Stats(), {})
        found[0].combine(1, row.seq, row.y)
        if row.x is not None and row.y is not None:
            cell = fine_cell(row.x, row.y, row.view_w)
            found[1][cell] = found[1].get(cell, 0) + 1
    return [
        AggregateRow(*key[:2], key[2], *key[3:], 0, s.n, s.first_seq, s.max_y, encode_pairs(cells), None)
        for key, (s, cells) in sorted(stats.items())
    ]


def stored_piece(
    path_key: Any,
    day: Any,
    kind: Any,
    bucket_w: Any,
    bucket_h: Any,
    view_w: Any,
    n: Any,
    first_seq: Any,
    max_y: Any,
    cells: str | None,
) -> AggregateRow:
    """A stored map piece as read from a database (numbers of any integer type)."""
    return AggregateRow(
        int(path_key),
        int(day),
        str(kind),
        int(bucket_w),
        int(bucket_h),
        int(view_w),
        0,
        int(n),
        None if first_seq is None else int(first_seq),
        None if max_y is None else int(max_y),
        cells,
        None,
    )


def combined(stored: AggregateRow | None, added: AggregateRow) -> AggregateRow:
    """A stored piece with ``added`` (of the same key) added."""
    if stored is None or not stored.n:
        return added
    stats = Stats(stored.n, stored.first_seq, stored.max_y)
    stats.combine(added.n, added.first_seq, added.max_y)
    cells: dict[int, int] = {}
    for piece in (stored, added):
        add_pairs(cells, piece.cells)
    return added._replace(n=stats.n, first_seq=stats.first_seq, max_y=stats.max_y, cells=encode_pairs(cells))


def decode_cells(text: str | None) -> dict[int, int]:
    found: dict[int, int] = {}
    add_pairs(found, text)
    return found
