"""The projects a query key may read (``GET /api/projects``, SPEC §4) and whether one exists."""

from __future__ import annotations

from typing import Any

from .auth import Scope
from .repositories.base import Repository


def project_list(repo: Repository, scope: Scope) -> list[dict[str, Any]]:
    """``[{id, name, createdAt, lastEventAt}]`` of the projects ``scope`` may read (``None``: all),
    oldest first (``createdAt``, then ``id``). ``lastEventAt`` is the latest item ts of the project's
    stored rows (a move: its latest point), read from the report pieces of its latest day."""
    found = [p for p in repo.list_projects() if scope is None or p.id in scope]
    last = repo.read(lambda reader: {p.id: reader.last_item_ts(p.id) for p in found})
    return [{"id": p.id, "name": p.name, "createdAt": p.created_at, "lastEventAt": last[p.id]} for p in found]


def project_found(repo: Repository, project_id: str) -> bool:
    """Whether the project exists (a lookup by primary key): ``meta.projectFound`` of every project endpoint."""
    return repo.read(lambda reader: reader.project_found(project_id))
