"""Exact counts of the settled signals and rage clicks per path, UTC day and width band, so that the
paths and elements reports count a range's signals at a cost bounded by its keys and days, not by its
signals (SPEC §6).

Backend-free. A count is keyed by ``(path_key, day, bucket_w, kind, selector_key)``: per path and day
one count per kind of every band (``bucket_w`` :data:`ALL_WIDTHS`, ``selector_key`` 0) for the paths
report, and per band one per kind and selector for the elements. The counts hold the human sessions'
signals only, as the aggregates do: whatever stores or deletes a signal row of a human session (a
settle, a forget before events are deleted or a session changes class) adds the difference, in the
same transaction. A report reads the counts of its range's whole days and counts the raw signal rows
of its partial days (and, for bots, of every day).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

from .aggregates import DAY_MS, OPEN_FROM, OPEN_TO, day_of, split_range
from .ingest import path_key
from .report_pieces import ALL_WIDTHS
from .repositories.base import EventFilter
from .traffic import BOT, HUMAN


class CountKey(NamedTuple):
    path_key: int
    day: int
    bucket_w: int
    kind: str
    selector_key: int


class Counted(NamedTuple):
    """What a count keeps of one signal row: its path, time, band and selector."""

    kind: str
    path: str
    path_key: int
    ts: int
    bucket_w: int
    selector: str | None


class Change(NamedTuple):
    """The change of one count: its key, the names it counts, and the difference."""

    key: CountKey
    path: str
    selector: str | None
    n: int


def selector_key(selector: str) -> int:
    """A fixed-size key of a selector (never 0: the key of the per-path counts)."""
    return path_key(selector) or 1


def changes(added: Iterable[Counted], removed: Iterable[Counted]) -> list[Change]:
    """The count changes of these signal rows stored and deleted, non-zero ones only, in key order
    (concurrent writers take the rows' locks in the same order)."""
    diff: dict[CountKey, int] = {}
    names: dict[CountKey, tuple[str, str | None]] = {}
    for sign, rows in ((1, added), (-1, removed)):
        for row in rows:
            day = day_of(row.ts)
            keys: list[tuple[CountKey, str | None]] = [(CountKey(row.path_key, day, ALL_WIDTHS, row.kind, 0), None)]
            if row.selector:
                own = CountKey(row.path_key, day, row.bucket_w, row.kind, selector_key(row.selector))
                keys.append((own, row.selector))
            for key, selector in keys:
                diff[key] = diff.get(key, 0) + sign
                names.setdefault(key, (row.path, selector))
    return [Change(key, *names[key], n) for key, n in sorted(diff.items()) if n]


Counts = dict[tuple[str, str], int]


def in_range(
    flt: EventFilter, stored: Callable[[tuple[int, int]], Counts], raw: Callable[[EventFilter], Counts]
) -> Counts:
    """The counts of ``flt``'s range and class: ``stored(days)`` (the human sessions' counts of whole
    days) for its whole days, ``raw(flt)`` (a count of the signal rows of a filter) for its partial
    days and for the bot sessions of its whole days."""
    lo = flt.ts_from if flt.ts_from is not None else OPEN_FROM
    hi = flt.ts_to if flt.ts_to is not None else OPEN_TO
    days, edges = split_range(lo, hi)
    found: Counter[tuple[str, str]] = Counter()
    if days is not None:
        if flt.traffic != BOT:
            found.update(stored(days))
        if flt.traffic != HUMAN:
            found.update(raw(whole_days(flt, days, BOT)))
    for edge_lo, edge_hi in edges:
        found.update(raw(replace(flt, ts_from=edge_lo, ts_to=edge_hi)))
    return {key: n for key, n in found.items() if n}


def whole_days(flt: EventFilter, days: tuple[int, int], traffic: str) -> EventFilter:
    """``flt`` over the whole days ``days``, of the sessions of class ``traffic``."""
    return replace(flt, traffic=traffic, ts_from=days[0] * DAY_MS, ts_to=(days[1] + 1) * DAY_MS - 1)
