"""The sessions list on the map's slice (SPEC §4, ``GET /sessions``): the sessions with a row on a
path (``visitedPath``) and/or in a width band (``viewportWidth``/``viewportBucket``) in a range.

Found as the reports' ``meta.sample`` finds them (samples.band_members): the report pieces of the
range's whole UTC days (Roaring bitmaps of session ordinals) and the raw rows of its partial days, so
the cost is bounded by the days and the sessions found, never by the project's rows. A session with
rows on several days (across midnight) is one member of the set, and is listed once.
"""

from __future__ import annotations

from pyroaring import BitMap

from .aggregates import OPEN_FROM, OPEN_TO, split_range
from .repositories.base import EventFilter, Repository
from .repositories.session_sets import SessionSet
from .samples import band_members
from .traffic_reader import by_traffic


def visited_sessions(
    repo: Repository,
    project_id: str,
    path: str | None,
    ts_from: int | None,
    ts_to: int | None,
    width: int | None,
    traffic: str = "human",
) -> SessionSet:
    """The sessions (of traffic class ``traffic``) with a row (any type; a move: a point) of ``path``
    (``None``: any path) whose time lies in ``ts_from..ts_to`` (``None``: open), of bucket width
    ``width`` (``None``: any width)."""
    lo = OPEN_FROM if ts_from is None else ts_from
    hi = OPEN_TO if ts_to is None else ts_to
    if lo > hi:
        return SessionSet()
    flt = EventFilter(project_id=project_id, path=path, ts_from=lo, ts_to=hi, traffic=traffic)
    days, edges = split_range(lo, hi)
    members, _ = by_traffic(repo, traffic).read(lambda reader: band_members(reader, flt, days, edges, width))
    ordinals = BitMap.union(BitMap(), *members.bitmaps)
    return SessionSet(ordinals=tuple(ordinals), ids=tuple(sorted(members.ids)))
