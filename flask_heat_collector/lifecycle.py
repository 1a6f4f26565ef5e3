"""Erasure, retention and export as the CLI and the admin API run them, with their audit lines."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any

from .listing import expand
from .log import audit
from .repositories import Repository
from .repositories.base import Erasure, Session, UserData
from .serialize import event_json, session_json


class AuditTrail:
    """The two audit lines of one erase, export or purge (SPEC 8), paired by ``auditId``.

    ``started`` when it begins (what, who); ``ended`` when it ends, however it ends, with
    ``counts`` as far as they got and ``completed`` (false when it failed or, for an export, when
    the client went away before the end). Never personal data: no user or session id.
    """

    def __init__(self, what: str, *, dry_run: bool | None = None, **fields: Any) -> None:
        self.what = what + (" (dry run)" if dry_run else "")
        self.fields: dict[str, Any] = {"audit": what, "auditId": uuid.uuid4().hex}
        if dry_run is not None:
            self.fields["dryRun"] = dry_run
        self.fields.update(fields)
        self.counts: dict[str, Any] = {}

    def __enter__(self) -> AuditTrail:
        audit(f"audit: {self.what} started", phase="start", **self.fields)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _trace: TracebackType | None
    ) -> None:
        ended: dict[str, Any] = {"phase": "end", **self.fields, "completed": kind is None, **self.counts}
        if kind is not None:
            ended["error"] = "closed before the end" if kind is GeneratorExit else kind.__name__
        audit(f"audit: {self.what} ended", **ended)


def erase(repository: Repository, erasure: Erasure, *, dry_run: bool, actor: str) -> dict[str, Any]:
    """Erase (or with ``dry_run`` count) between a start and an end audit line; the JSON answer.

    The audit lines name what was erased by kind, the counts and ``actor`` (a key id or ``cli``),
    never the user or session id (personal data).
    """
    target = "user" if erasure.user is not None else "session" if erasure.session_id is not None else "before"
    trail = AuditTrail(
        "erase", dry_run=dry_run, projectId=erasure.project_id, target=target, before=erasure.before, actor=actor
    )
    with trail:
        counts = repository.erase(erasure, dry_run=dry_run)
        numbers = {"users": counts.users, "sessions": counts.sessions, "events": counts.events}
        trail.counts.update(verified=counts.verified, **numbers)
    if dry_run:
        return {"found": numbers, "dryRun": True}
    return {"erased": numbers, "verified": counts.verified}


EXPORT_PAGE = 1000


def export(repository: Repository, project_id: str, user: str, *, actor: str) -> Generator[str, None, None]:
    """The user's data as one JSON document, in pieces: ``{user, users, sessions, events}``.

    ``user`` is the first user the id names (``null`` when none), ``users`` every one; events are
    the rows of the events API (a move: one per point), read a page at a time, so memory stays
    bounded however many there are. An audit line before the first read, and one at the end with
    the counts sent and whether the document was complete (not when the reader closed it early).
    """
    with AuditTrail("export", projectId=project_id, actor=actor) as trail:
        yield from _document(repository, project_id, user, trail.counts)


def _document(repository: Repository, project_id: str, user: str, counts: dict[str, Any]) -> Iterator[str]:
    """The pieces of :func:`export`'s document; ``counts`` says how many of each were sent so far."""
    counts.update(users=0, sessions=0, events=0)
    data = repository.user_data(project_id, user)
    counts["users"] = len(data.users)
    yield '{"user": ' + _dumps(data.users[0] if data.users else None)
    yield ', "users": ' + _dumps(data.users)
    yield ', "sessions": ['
    for index, session in enumerate(data.sessions):
        session = _as_theirs(session, data)
        yield ("" if index == 0 else ", ") + _dumps(
            session_json(session, {u["id"]: u["externalId"] for u in data.users})
        )
        counts["sessions"] = index + 1
    yield '], "events": ['
    rows = 0
    after: tuple[int, int, str] | None = None
    while data.users:
        page = repository.user_events(project_id, data, after, EXPORT_PAGE)
        for stored in page:
            for row in expand(stored):
                yield ("" if rows == 0 else ", ") + _dumps(event_json(row))
                rows += 1
                counts["events"] = rows
        if len(page) < EXPORT_PAGE:
            break
        after = (page[-1].ts, page[-1].seq, page[-1].event_id)  # unique: events tied on (ts, seq) all come
    yield "]}"


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
    users erased more than ``erased_days`` ago (counted as users), between a start and an end audit
    line; the JSON answer."""
    import time

    from .aggregates import DAY_MS

    now = int(time.time() * 1000) if now_ms is None else now_ms
    raw_before, aggregates_day = retention_cutoffs(now, raw_days, aggregate_days)
    erased_before = now - erased_days * DAY_MS if erased_days is not None else None
    cutoffs = {
        "rawBefore": raw_before,
        "aggregatesBefore": aggregates_day * DAY_MS if aggregates_day is not None else None,
    }
    trail = AuditTrail(
        "purge",
        dry_run=dry_run,
        retentionDays=raw_days,
        aggregateRetentionDays=aggregate_days,
        actor=actor,
        **cutoffs,
    )
    with trail:
        counts = repository.purge(raw_before, aggregates_day, dry_run=dry_run, erased_before=erased_before)
        numbers = {
            "events": counts.events,
            "sessions": counts.sessions,
            "users": counts.users,
            "aggregates": counts.aggregates,
        }
        trail.counts.update(numbers)
    return {"found" if dry_run else "purged": numbers, "dryRun": dry_run, **cutoffs}
