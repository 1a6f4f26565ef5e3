"""Month pieces on the SQL backends when day pieces are taken away (erase, purge).

A month piece is the sum of its key's rolled day pieces (aggregates.roll_month). Whoever deletes or
replaces a rolled day piece drops the month pieces it is counted in and marks the month's rolled day
pieces not rolled, in the same transaction; compaction rolls the month again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import MONTH_BASE, ROLLED, month_code, month_of
from .sql_schema import heat_aggregates

_KEY = ("path_key", "type", "bucket_w", "bucket_h", "view_w")


def unroll_month(conn: Connection, project_id: str, day: int, *key: Any) -> int:
    """Drop the month pieces of the month holding ``day`` (of one ``(path_key, type, bucket_w,
    bucket_h, view_w)`` key when given, else of every key) and mark its rolled day pieces not rolled; the
    month pieces dropped."""
    t = heat_aggregates.c
    first, last = month_of(day)
    match = [t.project_id == project_id]
    match += [t[name] == value for name, value in zip(_KEY, key, strict=False)]
    gone = conn.execute(sa.delete(heat_aggregates).where(*match, t.day == month_code(first))).rowcount
    conn.execute(
        sa.update(heat_aggregates)
        .where(*match, t.day >= first, t.day <= last, t.part <= ROLLED)
        .values(part=t.part - ROLLED)
    )
    return int(gone)


def drop_months_before(conn: Connection, project_id: str, before_day: int) -> int:
    """Delete the month pieces of the months wholly before ``before_day`` and unroll the month
    holding it; the month pieces deleted. The day pieces are left to the caller."""
    t = heat_aggregates.c
    first = month_of(before_day)[0]
    gone = unroll_month(conn, project_id, before_day) if first < before_day else 0
    doomed = (t.project_id == project_id, t.day >= MONTH_BASE, t.day < month_code(first))
    return gone + int(conn.execute(sa.delete(heat_aggregates).where(*doomed)).rowcount)
