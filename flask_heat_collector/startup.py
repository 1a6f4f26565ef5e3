"""The migration at start when the database is unreachable: one log line, then retries with backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .errors import StorageUnavailable
from .log import log
from .repositories import Repository, display_uri
from .repositories.base import Migration

CAUSE_CHARS = 200


def describe_cause(exc: BaseException, uri: str) -> str:
    """``Type: first line of the message`` of the driver error behind ``exc``, bounded, password hidden."""
    cause = exc.__cause__ or exc
    cause = getattr(cause, "orig", None) or cause  # SQLAlchemy wraps the driver's exception
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    password = urlsplit(uri).password
    if password:
        text = text.replace(unquote(password), "***").replace(password, "***")
    return text if len(text) <= CAUSE_CHARS else text[: CAUSE_CHARS - 1] + "…"


@dataclass
class PendingMigration:
    """The migration that failed at start because the database was unreachable.

    Requests call :meth:`check`: it answers 503 (StorageUnavailable) until a retry succeeds; retries
    run when due, one thread at a time, ``base_seconds`` after the failure, doubling up to ``max_seconds``.
    """

    repository: Repository
    database: str  # the URI as logged, password hidden
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    done: bool = False
    delay: float = field(init=False)
    due: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.delay = self.base_seconds
        self.due = self.clock() + self.delay

    def check(self) -> None:
        """Return once migrated; otherwise retry when due (one thread at a time) or raise StorageUnavailable."""
        if self.done:
            return
        if self.clock() < self.due or not self._lock.acquire(blocking=False):
            raise StorageUnavailable(f"database {self.database} was unreachable at start; migration pending")
        try:
            if not self.done:
                self._retry()
        finally:
            self._lock.release()

    def _retry(self) -> None:
        try:
            self.repository.migrate()
        except StorageUnavailable:
            self.delay = min(self.delay * 2, self.max_seconds)
            self.due = self.clock() + self.delay
            raise
        self.done = True
        log("info", f"database {self.database} reachable: migration done, requests are served", database=self.database)


def migrate_at_start(repository: Repository, uri: str) -> Migration | PendingMigration:
    """Migrate now and return what was done; when the database is unreachable, log one error line and
    return the pending retry.

    Anything but StorageUnavailable (a configuration or programming error) still raises.
    """
    try:
        return repository.migrate()
    except StorageUnavailable as exc:
        shown = display_uri(uri)
        log(
            "error",
            f"database {shown} unreachable at start ({describe_cause(exc, uri)}); migration will be retried "
            "with backoff, requests answer 503 storage_unavailable until then",
            database=shown,
        )
        return PendingMigration(repository, shown)
    finally:
        # Pooled connections opened before a gunicorn fork must not be shared by workers.
        repository.dispose()
