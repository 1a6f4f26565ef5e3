"""A set of sessions that filters the sessions list (``visitedPath`` and the width band, SPEC §4),
and how every backend reads the list through it: the set can hold any number of sessions, so it is
read in chunks of :data:`CHUNK` names (under every database's parameter limit), each chunk giving
the first ``offset + limit`` sessions of the list it matches; the page is taken from their union.
The cost is bounded by the set (one query per chunk), never by the project's sessions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

CHUNK = 500  # names per query


@dataclass(frozen=True)
class SessionSet:
    """Sessions named by their report ordinals (``heat_session_ordinals``) or by their ids; one
    session may be named both ways, and is listed once."""

    ordinals: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()

    def chunks(self) -> Iterator[tuple[list[int], list[str]]]:
        """``(ordinals, ids)`` of at most :data:`CHUNK` names each (one of the two empty)."""
        for start in range(0, len(self.ordinals), CHUNK):
            yield list(self.ordinals[start : start + CHUNK]), []
        for start in range(0, len(self.ids), CHUNK):
            yield [], list(self.ids[start : start + CHUNK])


def page_ids(keys: Iterable[tuple[int, str]], *, descending: bool, offset: int, limit: int) -> list[str]:
    """The ids of the page ``offset .. offset + limit`` of the sessions ``(startedAt, id)`` found by
    the chunks, ordered as the list is (by start, then id), each session once."""
    unique = dict((sid, started) for started, sid in keys)
    ordered = sorted(((started, sid) for sid, started in unique.items()), reverse=descending)
    return [sid for _, sid in ordered[offset : offset + limit]]
