"""The admin API (SPEC 8): erase and export a user's data, behind ``HEAT_ADMIN_API_KEYS``.

Admin keys are not query keys and query keys are not admin keys. The audit lines of each call name
the key by id (an HMAC of the key keyed with ``HEAT_IP_HASH_SECRET``), never by value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator, Iterator
from contextlib import closing

from flask import Blueprint, Response, g, jsonify, request, stream_with_context
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter

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
    g.heat_actor = actor_id(given, get_state().settings.ip_hash_secret)


def actor_id(key: bytes, secret: str) -> str:
    """The audit lines' name of an admin key: ``key:`` and 16 hex digits of an HMAC-SHA256 keyed with the
    server's secret, so that a weak key cannot be guessed offline from the log."""
    digest = hmac.new(secret.encode(), b"heat-collector admin key\x00" + key, hashlib.sha256).hexdigest()
    return "key:" + digest[:16]


class UserIdConverter(PathConverter):
    """A user id in a URL: any characters, ``/`` included (``tenant%2Falice`` is ``tenant/alice``)."""

    regex = r"[\s\S]+?"  # newlines too
    part_isolating = False


_CONVERTER = "heat_user_id"


def _add_converter(state: BlueprintSetupState) -> None:
    """The user id converter, on every app the blueprint serves (the host's own converters are kept)."""
    state.app.url_map.converters.setdefault(_CONVERTER, UserIdConverter)


def _ids(project_id: str, user_id: str) -> None:
    common.check_id(project_id, "projectId")
    common.check_id(user_id, "userId")


def erase_user(project_id: str, user_id: str) -> Response:
    _ids(project_id, user_id)
    dry_run = common.flag("dryRun")
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


def _chain(first: str, rest: Generator[str, None, None]) -> Iterator[str]:
    with closing(rest):  # a client gone before the end closes the export too: its end audit line says so
        yield first
        yield from rest


def purge() -> Response:
    """What ``flask heat purge`` does, for schedulers that call HTTP rather than run a command."""
    dry_run = common.flag("dryRun")
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
        dry_run=dry_run,
        actor=g.heat_actor,
    )
    return common.no_store(jsonify(answer))


def create_admin_blueprint() -> Blueprint:
    bp = Blueprint("heat_admin", __name__)
    common.install(bp)
    bp.before_request(_require_admin_key)
    bp.record(_add_converter)  # before the rules that use it
    users = f"/api/projects/<project_id>/users/<{_CONVERTER}:user_id>"
    bp.add_url_rule(users, "erase_user", erase_user, methods=["DELETE"], merge_slashes=False)
    bp.add_url_rule(f"{users}/export", "export_user", export_user, merge_slashes=False)
    bp.add_url_rule("/api/purge", "purge", purge, methods=["POST"])
    return bp
