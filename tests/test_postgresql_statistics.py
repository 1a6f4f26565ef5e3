"""PostgreSQL with autovacuum off: the timed compaction analyzes the tables whose rows changed past
autovacuum's own threshold, so that the planner does not take them for empty (sql_statistics.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from .helpers import TS, batch, event, ingest_all

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _stat(engine: sa.Engine, column: str, table: str) -> int:
    with engine.connect() as conn:
        stmt = sa.text(f"SELECT {column} FROM pg_stat_user_tables WHERE relname = :t")
        return int(conn.execute(stmt, {"t": table}).scalar() or 0)


def _wait(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 10
    while not check() and time.monotonic() < deadline:  # the statistics are reported at idle
        time.sleep(0.2)
    return check()


def test_compaction_analyzes_stale_tables_when_autovacuum_is_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(aggregate_compact_seconds=0, rate_limit="100000 per second")
    repo = app.extensions["heat_collector"].repository
    with repo.engine.connect() as conn:
        if conn.execute(sa.text("SELECT current_setting('autovacuum')")).scalar() != "off":
            pytest.skip("the server's autovacuum is on: it analyzes the tables itself")
    client = app.test_client()
    bodies = [
        batch(*(event("click", ts=TS + 1000 * i + k, x=k, y=i) for k in range(10)), session_id=f"s-{i}")
        for i in range(30)
    ]
    ingest_all(client, bodies)
    assert _wait(lambda: _stat(repo.engine, "n_mod_since_analyze", "events") >= 300)
    before = _stat(repo.engine, "analyze_count", "events")
    repo.compact()
    assert _wait(lambda: _stat(repo.engine, "analyze_count", "events") == before + 1)
    assert _wait(lambda: _stat(repo.engine, "n_mod_since_analyze", "events") == 0)
    ingest_all(client, [batch(*(event("click", ts=TS + k, x=k, y=1) for k in range(300)), session_id="late")])
    repo.compact()  # within the interval: no second look
    time.sleep(1.5)
    assert _stat(repo.engine, "analyze_count", "events") == before + 1


def test_compaction_vacuums_the_pieces_it_deleted_when_autovacuum_is_off(make_app: Callable[..., Flask]) -> None:
    """Merging deletes the fresh pieces; with autovacuum off their dead rows stayed in the table and
    its indexes for good (a report then read every dead index entry)."""
    app = make_app(aggregate_compact_seconds=0, rate_limit="100000 per second")
    repo = app.extensions["heat_collector"].repository
    with repo.engine.connect() as conn:
        if conn.execute(sa.text("SELECT current_setting('autovacuum')")).scalar() != "off":
            pytest.skip("the server's autovacuum is on: it vacuums the tables itself")
    ingest_all(app.test_client(), [batch(event("click", ts=TS + i, x=i, y=1), session_id=f"s-{i}") for i in range(120)])
    repo.compact()  # 120 pieces of one key-day merged into one
    assert _wait(lambda: _stat(repo.engine, "n_dead_tup", "heat_aggregates") >= 100)
    before = _stat(repo.engine, "vacuum_count", "heat_aggregates")
    fresh = make_app(aggregate_compact_seconds=0).extensions["heat_collector"].repository  # its first look is due
    fresh.compact()
    assert _wait(lambda: _stat(repo.engine, "vacuum_count", "heat_aggregates") == before + 1)
    assert _stat(repo.engine, "n_dead_tup", "heat_aggregates") == 0
