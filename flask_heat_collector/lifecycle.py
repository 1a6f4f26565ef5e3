"""Erasure (and later retention and export) as the CLI and the admin API run them, with the audit line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .listing import expand
from .log import log
from .repositories import Repository
from .repositories.base import Erasure, Session, UserData
from .serialize import event_json, session_json


def erase(repository: Repository, erasure: Erasure, *, dry_run: bool, actor: str) -> dict[str, Any]:
    """Erase (or with ``dry_run`` count) and write one audit line; the JSON answer.

    The audit line names what was erased by kind, the counts and ``actor`` (a key id or ``cli``),
    never the user or session id (personal data).
    """
    counts = repository.erase(erasure, dry_run=dry_run)
    numbers = {"users": counts.users, "sessions": counts.sessions, "events": counts.events}
    target = "user" if erasure.user is not None else "session" if erasure.session_id is not None else "before"
    log(
        "info",
        "audit: erase" + (" (dry run)" if dry_run else ""),
        audit="erase",
        dryRun=dry_run,
        projectId=erasure.project_id,
        target=target,
        before=erasure.before,
        actor=actor,
        verified=counts.verified,
        **numbers,
    )
    if dry_run:
        return {"found": numbers, "dryRun": True}
    return {"erased": numbers, "verified": counts.verified}


EXPORT_PAGE = 1000


def export(repository: Repository, project_id: str, user: str, *, actor: str) -> Iterator[str]:
    """The user's data as one JSON document, in pieces: ``{user, users, sessions, events}``.

    ``user`` is the first user the id names (``null`` when none), ``users`` every one; events are
    the rows of the events API (a move: one per point), read a page at a time, so memory stays
    bounded however many there are. One audit line when the document is complete.
    """
    data = repository.user_data(project_id, user)
    yield '{"user": ' + _dumps(data.users[0] if data.users else None)
    yield ', "users": ' + _dumps(data.users)
    yield ', "sessions": ['
    for index, session in enumerate(data.sessions):
        session = _as_theirs(session, data)
        yield ("" if index == 0 else ", ") + _dumps(
            session_json(session, {u["id"]: u["externalId"] for u in data.users})
        )
    yield '], "events": ['
    rows = 0
    after: tuple[int, int, str] | None = None
    while data.users:
        page = repository.user_events(project_id, data, after, EXPORT_PAGE)
        for stored in page:
            for row in expand(stored):
                yield ("" if rows == 0 else ", ") + _dumps(event_json(row))
                rows += 1
        if len(page) < EXPORT_PAGE:
            break
        after = (page[-1].ts, page[-1].seq, page[-1].event_id)  # unique: events tied on (ts, seq) all come
    yield "]}"
    log(
        "info",
        "audit: export",
        audit="export",
        projectId=project_id,
        actor=actor,
        users=len(data.users),
        sessions=len(data.sessions),
        events=rows,
    )


def _as_theirs(session: Session, data: UserData) -> Session:
    """A session as the user's export shows it: another user's id is not theirs to see, nor what another
    user's batch put in the row (agent, device, IP hash)."""
    if session.user_id not in data.user_ids:
        session = replace(session, user_id=None)
    if session.id in data.foreign:
        session = replace(session, user_agent=None, device_json=None, ip_hash=None)
    return session


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def retention_cutoffs(now_ms: int, raw_days: int | None, aggregate_days: int | None) -> tuple[int | None, int | None]:
    """``(raw_before, aggregates_before_day)``: UTC midnight ``raw_days`` days ago (unix ms) and the UTC
    day number ``aggregate_days`` days ago; ``None`` for a tier kept for ever. Whole days only, so a
    day keeps all its raw rows or none."""
    from .aggregates import DAY_MS

    today = now_ms // DAY_MS
    raw_before = (today - raw_days) * DAY_MS if raw_days is not None else None
    return raw_before, (today - aggregate_days if aggregate_days is not None else None)


def purge(
    repository: Repository,
    *,
    raw_days: int | None,
    aggregate_days: int | None,
    dry_run: bool,
    actor: str,
    now_ms: int | None = None,
    erased_days: int | None = None,
) -> dict[str, Any]:
    """Purge (or with ``dry_run`` count) what is older than the retention days, and the tombstones of
    users erased more than ``erased_days`` ago (counted as users); one audit line; the JSON answer."""
    import time

    from .aggregates import DAY_MS

    now = int(time.time() * 1000) if now_ms is None else now_ms
    raw_before, aggregates_day = retention_cutoffs(now, raw_days, aggregate_days)
    erased_before = now - erased_days * DAY_MS if erased_days is not None else None
    counts = repository.purge(raw_before, aggregates_day, dry_run=dry_run, erased_before=erased_before)
    numbers = {
        "events": counts.events,
        "sessions": counts.sessions,
        "users": counts.users,
        "aggregates": counts.aggregates,
    }
    cutoffs = {
        "rawBefore": raw_before,
        "aggregatesBefore": aggregates_day * DAY_MS if aggregates_day is not None else None,
    }
    log(
        "info",
        "audit: purge" + (" (dry run)" if dry_run else ""),
        audit="purge",
        dryRun=dry_run,
        retentionDays=raw_days,
        aggregateRetentionDays=aggregate_days,
        actor=actor,
        **cutoffs,
        **numbers,
    )
    return {"found" if dry_run else "purged": numbers, "dryRun": dry_run, **cutoffs}
