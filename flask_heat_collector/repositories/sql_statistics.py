"""PostgreSQL planner statistics refreshed by this package: after a large settle, and when the
server's autovacuum is off.

The tables' pieces are inserted and deleted all day; without statistics the planner takes a table
for a few rows and reads a whole project where a key lookup was meant (compaction's keyed select
took 34 ms instead of 2 ms at 100,000 events). With ``autovacuum = off``, the timed compaction
analyzes those of this package's tables whose rows changed by more than autovacuum's own analyze
threshold since their last ``ANALYZE``: what autovacuum would have done.
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
SELECT s.relname FROM pg_stat_user_tables s
WHERE current_setting('autovacuum') = 'off'
  AND s.relid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name)
  AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float
      + current_setting('autovacuum_analyze_scale_factor')::float * greatest(s.n_live_tup, 0)
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


def analyze_stale(conn: Connection) -> list[str]:
    """``ANALYZE`` the stale tables (none while autovacuum is on, or while another process is at it);
    the tables analyzed. Runs in the caller's transaction."""
    if not conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%(k)s)", {"k": _LOCK_KEY}).scalar():
        return []
    tables = [str(name) for name in conn.exec_driver_sql(_STALE, {"tables": sorted(metadata.tables)}).scalars()]
    for name in tables:
        conn.exec_driver_sql(f'ANALYZE "{name}"')
    return tables


def analyze_signals(conn: Connection) -> None:
    """``ANALYZE`` the signal tables (after a settle of ``ANALYZE_AFTER`` sessions or more)."""
    conn.exec_driver_sql(f"ANALYZE {', '.join(_SIGNAL_TABLES)}")
