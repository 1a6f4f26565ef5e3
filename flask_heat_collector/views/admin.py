"""The admin API (SPEC 8): erase and export a user's data, behind ``HEAT_ADMIN_API_KEYS``.

Admin keys are not query keys and query keys are not admin keys. The audit line of each call names
the key by id (the start of its SHA-256), never by value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from .. import lifecycle
from ..auth import KeyWords, match_key, require_project, require_unscoped
from ..errors import ApiError
from ..repositories.base import Erasure
from ..state import get_state
from . import common

_ADMIN_KEY_WORDS = KeyWords(
    "No admin key is configured on this server (HEAT_ADMIN_API_KEYS).",
    "An admin key is required (Authorization: Bearer or x-api-key).",
    "The admin key is not valid (query keys are not admin keys).",
)


def _require_admin_key() -> None:
    """An admin key that may act on the request's project (or on all of them, for the purge)."""
    given, scope = match_key(request, get_state().admin_keys, _ADMIN_KEY_WORDS)
    project_id = (request.view_args or {}).get("project_id")
    if project_id is None:
        require_unscoped(scope)  # the purge covers every project
    else:
        require_project(scope, str(project_id))
    g.heat_actor = "key:" + hashlib.sha256(given).hexdigest()[:12]


def _ids(project_id: str, user_id: str) -> None:
    common.check_id(project_id, "projectId")
    common.check_id(user_id, "userId")


def erase_user(project_id: str, user_id: str) -> Response:
    _ids(project_id, user_id)
    dry_run = request.args.get("dryRun", "false").lower() in ("1", "true")
    erasure = Erasure(project_id=project_id, user=user_id)
    answer = lifecycle.erase(get_state().repository, erasure, dry_run=dry_run, actor=g.heat_actor)
    return common.no_store(jsonify(answer))


def export_user(project_id: str, user_id: str) -> Response:
    _ids(project_id, user_id)
    chunks = lifecycle.export(get_state().repository, project_id, user_id, actor=g.heat_actor)
    first = next(chunks)  # the user and sessions are read before the answer starts (503 if down)
    response = Response(stream_with_context(_chain(first, chunks)), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="heat-collector-export.json"'
    return common.no_store(response)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def purge() -> Response:
    """What ``flask heat purge`` does, for schedulers that call HTTP rather than run a command."""
    settings = get_state().settings
    if settings.retention_days is None and settings.aggregate_retention_days is None:
        raise ApiError(
            409, "retention_not_configured", "Neither HEAT_RETENTION_DAYS nor HEAT_AGGREGATE_RETENTION_DAYS is set."
        )
    answer = lifecycle.purge(
        get_state().repository,
        raw_days=settings.retention_days,
        aggregate_days=settings.aggregate_retention_days,
        erased_days=settings.erased_user_ttl_days,
        dry_run=request.args.get("dryRun", "false").lower() in ("1", "true"),
        actor=g.heat_actor,
    )
    return common.no_store(jsonify(answer))


def create_admin_blueprint() -> Blueprint:
    bp = Blueprint("heat_admin", __name__)
    common.install(bp)
    bp.before_request(_require_admin_key)
    bp.add_url_rule("/api/projects/<project_id>/users/<user_id>", "erase_user", erase_user, methods=["DELETE"])
    bp.add_url_rule("/api/projects/<project_id>/users/<user_id>/export", "export_user", export_user)
    bp.add_url_rule("/api/purge", "purge", purge, methods=["POST"])
    return bp
