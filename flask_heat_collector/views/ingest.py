"""``POST /ingest``: authenticate, limit, validate and store one SDK batch."""

from __future__ import annotations

import json
import re
import time
import zlib
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from ..addresses import client_address, limit_unit
from ..auth import bearer_token, project_key
from ..errors import ApiError, RetiredProjectKey, StorageUnavailable, UnknownProject
from ..ingest import prepare_batch
from ..log import log
from ..privacy import DNT_DROP_REASON, anonymous, clean_payload, opted_out
from ..prometheus import EventCounts
from ..repositories.base import Batch, IngestResult
from ..state import HeatState, get_state
from ..traffic import BOT
from . import common

_ALLOWED_TYPES = ("application/json", "text/plain", "")
_ALLOWED_ENCODINGS = ("", "identity", "gzip", "x-gzip")
_GZIP_MAX_RATIO = 100  # SPEC 9: a body expanding more than this is refused like an oversized one
_SUSPECT_ESCAPES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_EXPOSED = "X-Request-Id, X-Ingested-Events, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN/Infinity are not JSON


def _check_strings(data: Any) -> None:
    """Refuse NUL and lone surrogates anywhere in the document (databases cannot store them)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL characters are not accepted in strings")
            item.encode("utf-8")


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body piece by piece, stopping past ``max_bytes`` or a 100:1 ratio (413).

    Members are inflated in turn (RFC 1952 allows several); a truncated or corrupt stream, or
    anything after the last member, is 400 ``invalid_gzip``.
    """
    limit = min(max_bytes, _GZIP_MAX_RATIO * len(data))
    pieces: list[bytes] = []
    size = 0
    pending = data
    try:
        while True:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while True:
                # At most one byte past the limit is ever inflated, whatever the stream claims.
                piece = inflater.decompress(pending, limit + 1 - size)
                pieces.append(piece)
                size += len(piece)
                if size > limit:
                    if limit == max_bytes:
                        raise ApiError(
                            413, "payload_too_large", f"Request body exceeds {max_bytes} bytes once decompressed."
                        )
                    raise ApiError(
                        413, "payload_too_large", f"The gzip body expands more than {_GZIP_MAX_RATIO}:1; refused."
                    )
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
                if not pending:
                    raise zlib.error("the gzip stream ends before its last block")
            pending = inflater.unused_data
            if not pending:
                return b"".join(pieces)
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", "The gzip body is truncated or corrupt.") from exc


def _parse_body(max_bytes: int) -> Any:
    """The JSON body (gzip inflated), size-capped; ApiError for anything that is not one JSON document."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"Request body exceeds {max_bytes} bytes.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    mimetype = request.mimetype
    if encoding not in _ALLOWED_ENCODINGS or not (mimetype in _ALLOWED_TYPES or mimetype.endswith("+json")):
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the batch as an application/json body, uncompressed or with Content-Encoding: gzip.",
        )
    body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ApiError(413, "payload_too_large", f"Request body exceeds {max_bytes} bytes.")
    if request.content_length is not None and len(body) < request.content_length:
        # The client went away mid-body (a server may hand over a short read): nothing is stored.
        raise ApiError(400, "incomplete_body", "The request body ended before its Content-Length; send it again.")
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body, max_bytes)
    try:
        data = _DECODER.decode(body.decode("utf-8"))
        if _SUSPECT_ESCAPES.search(body):
            _check_strings(data)
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", "Request body must be valid JSON (UTF-8, finite numbers, no NUL).") from exc
    return data


def _count_events(data: Any, cap: int) -> int:
    """Events of a rejected batch, counted up to ``cap`` (HEAT_MAX_EVENTS_PER_BATCH)."""
    events = data.get("events") if isinstance(data, dict) else None
    return min(len(events), cap) if isinstance(events, list) else 0


def _validate(data: Any, code: str) -> dict[str, Any]:
    state = get_state()
    try:
        result = state.ingest_schema.load_payload(data if isinstance(data, dict) else {"": data})
    except ValidationError as exc:
        state.metrics.events_rejected(code, _count_events(data, state.settings.max_events_per_batch))
        message = (
            "Request body did not match the expected ingestion schema."
            if code == "invalid_payload"
            else "before_insert must return a valid ingestion payload."
        )
        raise ApiError(400, code, message, details=exc.messages) from exc
    return result


def _error_code(response: Response) -> str:
    """The ``code`` of an error answer (every error of the blueprint is JSON with one)."""
    body = response.get_json(silent=True)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else "http_error"


def _finish(response: Response) -> Response:
    """Rate-limit headers and failure count on every ingest answer, then CORS."""
    for name, value in g.get("heat_rate_headers", {}).items():
        response.headers.setdefault(name, value)
    if response.status_code >= 400 and request.method == "POST":
        get_state().metrics.batch_rejected(_error_code(response), response.status_code)
    origin = request.headers.get("Origin")
    allowed = get_state().settings.allowed_origins
    if "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    else:
        return response
    response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    return response


def preflight() -> Response:
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Project-Key, Authorization"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def _store(state: HeatState, batch: Batch) -> IngestResult:
    """Store ``batch``; 403 ``retired_project_key`` for a key replaced by rotate-key."""
    try:
        return _store_or_create(state, batch)
    except RetiredProjectKey as exc:
        raise ApiError(
            403,
            "retired_project_key",
            "This project key was replaced by a new one (rotate-key); it is refused for good.",
        ) from exc


def _store_or_create(state: HeatState, batch: Batch) -> IngestResult:
    """An unknown key becomes a project unless registered-only (403) or over the per-IP limit (429)."""
    try:
        return state.repository.ingest(batch)
    except UnknownProject as exc:
        if state.settings.registered_projects_only:
            raise ApiError(403, "unknown_project_key", "The project key is not registered.") from exc
    # One new project at a time per process: racing first batches of one key count once here.
    with state.new_project_lock:
        try:
            return state.repository.ingest(batch)
        except UnknownProject:
            pass
        client = client_address(request.environ, state.settings.trusted_proxies)
        status = state.new_projects.hit(limit_unit(client))
        if status is not None and not status.allowed:
            raise ApiError(
                429,
                "too_many_new_projects",
                "This client made too many new projects (unknown project keys) in the current window "
                "(HEAT_NEW_PROJECTS_PER_IP).",
                headers={"Retry-After": status.headers()["Retry-After"]},
            )
        state.repository.ensure_project(batch.project_key)
    return state.repository.ingest(batch)


def _classify(state: HeatState, result: IngestResult, session_id: str) -> IngestResult:
    """Apply the behaviour rules to a session whose batch is already committed.

    The batch is stored whatever happens here, so a database error does not fail the answer (which
    would say nothing was stored): it is logged, and the session is decided again at its next batch
    with a click or by ``flask heat reclassify``.
    """
    try:
        if state.repository.classify_sessions(result.project_id, session_ids=[session_id]).to_bot:
            return replace(result, traffic=BOT)  # its rows now count as a bot's
    except StorageUnavailable as exc:
        log("warn", "ingest stored; classifying its session failed", sessionId=session_id, error=str(exc)[:200])
    return result


def ingest() -> Response:
    state = get_state()
    settings = state.settings
    started = time.perf_counter()
    key = project_key(request)
    client = client_address(request.environ, settings.trusted_proxies)

    rate = state.limiter.hit(f"{key}:{limit_unit(client)}")
    if rate is not None:
        g.heat_rate_headers = rate.headers()
        if not rate.allowed:
            raise ApiError(
                429,
                "rate_limited",
                "Too many ingest requests for this project key and IP in the current window.",
                headers=g.heat_rate_headers,
            )

    jwt_sub: str | None = None
    if settings.auth_mode in ("jwt", "both"):
        token = bearer_token(request)
        if token is None and settings.auth_mode == "jwt":
            raise ApiError(401, "missing_jwt", "Request rejected because Authorization: Bearer <jwt> is required.")
        if token is not None:
            assert state.jwt is not None
            jwt_sub = state.jwt.verify(token).get("sub")

    payload = _validate(_parse_body(settings.max_body_bytes), "invalid_payload")
    for hook in state.hooks:
        payload = _validate(hook(payload), "invalid_hook_payload")

    untracked = settings.honor_dnt != "off" and opted_out(request.headers)
    if untracked and settings.honor_dnt == "drop":  # nothing of it is stored (HEAT_HONOR_DNT)
        state.metrics.batch_received(EventCounts.of(payload["events"], drop=DNT_DROP_REASON))
        return _untracked(payload)
    payload = clean_payload(payload, frozenset(settings.path_query_allowlist), settings.hash_routes)
    if untracked:  # stored without user id, traits and ip hash
        payload, jwt_sub, client = anonymous(payload), None, None

    counts = EventCounts.of(payload["events"])
    state.metrics.batch_received(counts)
    prepared = prepare_batch(
        payload,
        project_key=key,
        jwt_sub=jwt_sub,
        user_agent=request.headers.get("User-Agent"),
        ip=client,
        ip_secret=settings.ip_hash_secret,
        now_ms=int(time.time() * 1000),
        seq=state.seq.take(len(payload["events"])),
    )
    result = _store(state, prepared.batch)
    batch = prepared.batch
    clicked = any(row.type == "click" for row in batch.events)
    if result.accepted and result.bot_suspect and batch.session.traffic != BOT and clicked:
        # the behaviour rules (traffic.py) over the session's stored clicks and moves
        result = _classify(state, result, batch.session.id)

    elapsed = time.perf_counter() - started
    elapsed_ms = round(elapsed * 1000)
    state.metrics.batch_stored(counts, result, elapsed)
    outcome = {
        "requestId": common.request_id(),
        "projectId": result.project_id,
        "sessionId": prepared.batch.session.id,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        # A batch of an erased user is dropped whole (SPEC 8: erased stays erased).
        "dropped": len(payload["events"]) if result.erased_user else prepared.dropped,
    }
    log("info", "ingest success", **outcome, durationMs=elapsed_ms)
    response = jsonify(ok=True, **outcome)
    response.headers["X-Ingested-Events"] = str(result.accepted)
    events = prepared.batch.events

    def compact() -> None:
        if result.accepted and result.traffic != BOT:  # a bot's rows wrote no piece
            state.compactor.note(result.project_id, events)
        state.compactor.maybe_run(state.repository)

    response.call_on_close(compact)
    return common.no_store(response)


def _untracked(payload: dict[str, Any]) -> Response:
    """The answer to a batch dropped for Do Not Track: 200, every event in ``dropped``."""
    outcome = {
        "requestId": common.request_id(),
        "projectId": None,
        "sessionId": payload["session"]["id"],
        "accepted": 0,
        "duplicates": 0,
        "dropped": len(payload["events"]),
    }
    log("info", "ingest dropped: do not track", **outcome)
    response = jsonify(ok=True, **outcome)
    response.headers["X-Ingested-Events"] = "0"
    return common.no_store(response)


def create_ingest_blueprint() -> Blueprint:
    bp = Blueprint("heat_ingest", __name__)
    common.install(bp)
    bp.after_request(_finish)
    bp.add_url_rule("/ingest", "ingest", ingest, methods=["POST"], provide_automatic_options=False)
    bp.add_url_rule("/ingest", "preflight", preflight, methods=["OPTIONS"], provide_automatic_options=False)
    return bp
