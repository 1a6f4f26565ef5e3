"""PostgreSQL statistics and vacuuming done by this package: after a large settle, and when the
server's autovacuum is off.

The tables' pieces are inserted and deleted all day; without statistics the planner takes a table
for a few rows and reads a whole project where a key lookup was meant (compaction's keyed select
took 34 ms instead of 2 ms at 100,000 events), and without vacuuming the deleted pieces stay in the
tables and their indexes (the paths report read 245,000 index entries for its 1,347 live pieces:
139 ms at 1,000,000 events). With ``autovacuum = off``, the timed compaction does for this package's
tables what autovacuum would have done, by autovacuum's own thresholds: ``VACUUM (ANALYZE)`` those
whose dead rows (or rows inserted since their last vacuum) passed its vacuum threshold, ``ANALYZE``
those whose rows changed past its analyze threshold.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Connection

from .sql_schema import metadata

# Sessions settled by one call after which the signal tables are analyzed (their rows came faster
# than autovacuum looks).
ANALYZE_AFTER = 500
_SIGNAL_TABLES = ("heat_signals", "heat_rage_clicks", "heat_signal_counts", "heat_signal_cells")
# At most one look per process and interval; one process at a time (an advisory lock).
INTERVAL_SECONDS = 60.0
_LOCK_KEY = 0x68656174  # "heat"
_STALE = """
SELECT s.relname,
  s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float
      + current_setting('autovacuum_vacuum_scale_factor')::float * greatest(s.n_live_tup, 0)
  OR s.n_ins_since_vacuum > coalesce(current_setting('autovacuum_vacuum_insert_threshold', true)::float, 'Infinity')
      + coalesce(current_setting('autovacuum_vacuum_insert_scale_factor', true)::float, 0) * greatest(s.n_live_tup, 0),
  s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float
      + current_setting('autovacuum_analyze_scale_factor')::float * greatest(s.n_live_tup, 0)
FROM pg_stat_user_tables s
WHERE current_setting('autovacuum') = 'off'
  AND s.relid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name)
ORDER BY s.relname
"""


class Statistics:
    """When this process last looked for stale tables."""

    def __init__(self) -> None:
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + INTERVAL_SECONDS
        return True


def maintain_stale(conn: Connection) -> list[str]:
    """``VACUUM (ANALYZE)`` or ``ANALYZE`` the stale tables (none while autovacuum is on, or while
    another process is at it); the statements run. ``conn`` autocommits (VACUUM runs in no
    transaction)."""
    if not conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": _LOCK_KEY}).scalar():
        return []
    done: list[str] = []
    try:
        for name, vacuum, analyze in conn.exec_driver_sql(_STALE, {"tables": sorted(metadata.tables)}).all():
            if vacuum or analyze:
                done.append(f'{"VACUUM (ANALYZE)" if vacuum else "ANALYZE"} "{name}"')
                conn.exec_driver_sql(done[-1])
    finally:
        conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": _LOCK_KEY})
    return done


def analyze_signals(conn: Connection) -> None:
    """``ANALYZE`` the signal tables (after a settle of ``ANALYZE_AFTER`` sessions or more)."""
    conn.exec_driver_sql(f"ANALYZE {', '.join(_SIGNAL_TABLES)}")
