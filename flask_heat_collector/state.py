"""The per-app state of the extension, in ``app.extensions["heat_collector"]``.

A leaf of the package: the views, the CLI and the extension read the state through
:func:`get_state` without importing the extension that registers them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .compactor import Compactor
from .ingest import SeqClock

if TYPE_CHECKING:
    from .auth import JwtVerifier, Scope
    from .config import Settings
    from .metrics import Metrics
    from .ratelimit import IngestRateLimiter
    from .repositories import Repository
    from .repositories.base import Migration
    from .schemas import IngestSchema
    from .startup import PendingMigration

EXTENSION_KEY = "heat_collector"
Hook = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class HeatState:
    """Everything the extension keeps for one app, in ``app.extensions["heat_collector"]``."""

    settings: Settings
    repository: Repository
    limiter: IngestRateLimiter
    new_projects: IngestRateLimiter
    metrics: Metrics
    ingest_schema: IngestSchema
    jwt: JwtVerifier | None
    hooks: list[Hook] = field(default_factory=list)
    seq: SeqClock = field(default_factory=SeqClock)
    compactor: Compactor = field(default_factory=lambda: Compactor(0))
    query_keys: tuple[tuple[bytes, Scope], ...] = ()
    admin_keys: tuple[tuple[bytes, Scope], ...] = ()
    new_project_lock: threading.Lock = field(default_factory=threading.Lock)
    # Set when the database was unreachable at start: requests retry the migration (views/common.py).
    pending_migration: PendingMigration | None = None
    # What the migration at start did, until `flask heat migrate` has said it (cli.py).
    start_migration: Migration | None = None
    # The OpenAPI document, built at its first request (views/query.py).
    openapi: dict[str, Any] | None = None


def get_state(app: Flask | None = None) -> HeatState:
    """The state of ``app`` (default: the current app); RuntimeError when not initialised."""
    target = app or current_app
    try:
        state: HeatState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("HeatCollector.init_app() has not been called for this app.") from None
    return state
