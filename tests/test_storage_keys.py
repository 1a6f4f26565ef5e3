"""Ready to shard (SPEC 6): every key and index of every table or collection leads with the project."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from .helpers import batch, event, headers

# projects is keyed by the project itself, and retired keys share its key namespace (reference tables
# under Citus, unsharded under MongoDB).
PROJECT_TABLES = ("projects", "heat_retired_keys", "retired_keys")


def _sql_keys(engine: sa.Engine) -> dict[str, list[list[str]]]:
    """Every primary key, unique constraint and index per table, as lists of column names."""
    out: dict[str, list[list[str]]] = {}
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in inspector.get_table_names():
            keys = [inspector.get_pk_constraint(table)["constrained_columns"]]
            keys += [u["column_names"] for u in inspector.get_unique_constraints(table)]
            keys += [[c for c in ix["column_names"] if c] for ix in inspector.get_indexes(table)]
            out[table] = [k for k in keys if k]
    return out


def _mongo_keys(db: Any) -> dict[str, list[list[str]]]:
    return {
        name: [[field for field, _ in info["key"]] for ix, info in db[name].index_information().items() if ix != "_id_"]
        for name in db.list_collection_names()
    }


def test_every_key_and_index_leads_with_the_project(app: Flask, client: FlaskClient, backend_name: str) -> None:
    # Some data first, so that every collection exists on MongoDB.
    response = client.post(
        "/ingest",
        json=batch(event("click"), event("move"), user={"id": "u-1"}),
        headers=headers(),
    )
    assert response.status_code == 200, response.get_json()
    repo = app.extensions["heat_collector"].repository
    keys = _mongo_keys(repo.db) if backend_name == "mongodb" else _sql_keys(repo.engine)
    lead = "projectId" if backend_name == "mongodb" else "project_id"
    assert {"users", "sessions", "events", "heat_aggregates"} <= set(keys)
    for table, table_keys in keys.items():
        if table in PROJECT_TABLES:
            continue
        for columns in table_keys:
            assert columns[0] == lead, f"{table}: {columns}"
