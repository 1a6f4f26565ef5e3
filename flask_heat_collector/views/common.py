"""What every blueprint of the extension shares: request ids, headers and JSON errors."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, StorageUnavailable
from ..log import log, logger
from ..schemas import MAX_ID
from ..state import get_state

STORAGE_RETRY_AFTER_SECONDS = 5
MAX_DETAILS = 50  # entries per level of an error's details, and messages in all (SPEC 5)
MAX_MESSAGE = 500  # characters of one detail message
OMITTED = "_omitted"
# What no database column can hold: NUL and lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# The 500 code of each endpoint (by view function name).
FAILURE_CODES = {
    "ingest": "ingest_failed",
    "heatmap": "heatmap_query_failed",
    "project_events": "events_query_failed",
    "project_sessions": "sessions_query_failed",
    "session_detail": "session_detail_failed",
    "project_session_detail": "session_detail_failed",
}


def request_id() -> str:
    """The id of the current request, made on first use."""
    if "heat_request_id" not in g:
        g.heat_request_id = uuid.uuid4().hex
    rid: str = g.heat_request_id
    return rid


def check_id(value: str, name: str) -> str:
    """``value`` when it is an id of 1 to ``MAX_ID`` characters; 400 ``invalid_query`` otherwise."""
    if not value or len(value) > MAX_ID:
        raise ApiError(400, "invalid_query", f"'{name}' must be 1 to {MAX_ID} characters.")
    return value


BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def flag(name: str) -> bool:
    """The boolean query parameter ``name`` (false when absent): ``true``/``false``/``1``/``0`` only.

    Anything else is a 400 ``invalid_query``, never a default (SPEC 5): ``dryRun=yes`` must not erase.
    """
    value = request.args.get(name)
    if value is None:
        return False
    if value not in BOOLEANS:
        raise ApiError(400, "invalid_query", f"Query param '{name}' must be true, false, 1 or 0.")
    return BOOLEANS[value]


def _logged_path() -> str:
    """The path for a log line: the admin API's route, not its path (which names a user)."""
    if (request.blueprint or "").endswith("heat_admin"):
        return request.url_rule.rule if request.url_rule is not None else ""
    return request.path


def _plain(details: Any, budget: list[int]) -> Any:
    """Field errors with string keys only (marshmallow keys list items by int), bounded.

    At most ``MAX_DETAILS`` entries at each level and ``budget[0]`` messages in all; what is left
    out is counted in a last entry (``OMITTED`` in a mapping, a sentence in a list).
    """
    if isinstance(details, (dict, list, tuple)):
        entries = details.items() if isinstance(details, dict) else enumerate(details)
        room = len(details) if len(details) <= MAX_DETAILS else MAX_DETAILS - 1
        kept: list[tuple[Any, Any]] = []
        for key, value in itertools.islice(entries, room):
            if budget[0] <= 0:
                break
            kept.append((key, _plain(value, budget)))
        left_out = len(details) - len(kept)
        if isinstance(details, dict):
            plain = {str(key): value for key, value in kept}
            if left_out:
                plain[OMITTED] = f"{left_out} more entries left out."
            return plain
        items = [value for _, value in kept]
        return [*items, f"{left_out} more entries left out."] if left_out else items
    budget[0] -= 1
    return details[:MAX_MESSAGE] if isinstance(details, str) else details


def error_response(err: ApiError, cause: BaseException | None = None) -> Response:
    """The JSON error body with its headers, and its one log line."""
    body: dict[str, Any] = {
        "error": err.error,
        "code": err.code,
        "message": err.message,
        "requestId": request_id(),
    }
    if err.details is not None:
        body["details"] = _plain(err.details, [MAX_DETAILS])
    response = jsonify(body)
    response.status_code = err.status
    for name, value in err.headers.items():
        response.headers[name] = value
    logger.log(
        logging.ERROR if err.status >= 500 else logging.WARNING,
        err.message,
        exc_info=cause,
        extra={
            "heat": {
                "requestId": request_id(),
                "status": err.status,
                "code": err.code,
                "method": request.method,
                "path": _logged_path(),
            }
        },
    )
    return response


def _endpoint_name() -> str:
    return (request.endpoint or "").rsplit(".", 1)[-1]


def _handle_api_error(err: ApiError) -> Response:
    return error_response(err)


def _handle_storage(err: StorageUnavailable) -> Response:
    return error_response(
        ApiError(
            503,
            "storage_unavailable",
            "The database is unavailable; retry later. Nothing of this request was stored.",
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
        ),
        err,
    )


def _handle_http(err: HTTPException) -> Response:
    status = err.code or 500
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(status, "http_error")
    return error_response(ApiError(status, code, err.description or err.name))


def _handle_unexpected(err: Exception) -> Response:
    code = FAILURE_CODES.get(_endpoint_name(), "internal_error")
    return error_response(ApiError(500, code, "Unexpected error; the request id identifies it in the server log."), err)


def _start() -> None:
    g.heat_started = time.perf_counter()
    request_id()


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _raw_path_and_params() -> list[bytes]:
    """The path and each query name and value as the client sent them, percent-decoded.

    Some servers (werkzeug's, its test client) put U+FFFD in ``PATH_INFO`` for bytes that are not
    UTF-8; the request line they keep in ``RAW_URI``/``REQUEST_URI`` still has them.
    """
    environ = request.environ
    sent = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0]
    parts = []
    for text, decode in ((environ.get("PATH_INFO", ""), False), (sent, True)):
        try:
            raw = str(text).encode("latin-1")
        except UnicodeEncodeError:  # a server that already decoded the path to text
            continue
        parts.append(unquote_to_bytes(raw) if decode else raw)
    for pair in request.query_string.split(b"&"):
        parts.extend(unquote_to_bytes(piece.replace(b"+", b" ")) for piece in pair.split(b"=", 1))
    return parts


def _refuse_unstorable() -> None:
    """Refuse what no database can store (NUL, lone surrogates, bytes that are not UTF-8) before any view.

    Header values get ``invalid_header``; path segments and query parameters ``invalid_query``.
    """
    for name, value in request.headers.items():
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
            shown = name if name.isascii() and name.isprintable() and len(name) <= 64 else "a"
            message = f"The {shown} header holds a NUL or another character that cannot be stored."
            raise ApiError(400, "invalid_header", message)
    texts = [value for value in (request.view_args or {}).values() if isinstance(value, str)]
    texts.extend(text for pair in request.args.items(multi=True) for text in pair)
    if any(_UNSTORABLE.search(text) for text in texts) or not all(map(_is_utf8, _raw_path_and_params())):
        raise ApiError(
            400,
            "invalid_query",
            "Path segments and query parameters must be UTF-8 without NUL or other characters that cannot be stored.",
        )


def _refuse_repeated() -> None:
    """A query parameter given twice is a 400 ``invalid_query``: no endpoint guesses which one was meant."""
    names = [name for name, values in request.args.lists() if len(values) > 1]
    if names:
        shown = names[0] if names[0].isprintable() and len(names[0]) <= 64 else "a parameter"
        raise ApiError(400, "invalid_query", f"Query param '{shown}' is given more than once.")


def _await_migration() -> None:
    """While the start's migration is pending (database unreachable), retry it when due, else 503."""
    pending = get_state().pending_migration
    if pending is not None and request.method != "OPTIONS":  # preflights need no database
        pending.check()


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = request_id()
    response.headers["X-Heat-Collector"] = "heat-collector"
    response.headers["X-Content-Type-Options"] = "nosniff"
    started = g.get("heat_started")
    if response.status_code < 400:
        log(
            "debug",
            "request completed",
            requestId=request_id(),
            method=request.method,
            path=_logged_path(),
            status=response.status_code,
            durationMs=round((time.perf_counter() - started) * 1000, 2) if started else None,
        )
    return response


def install(bp: Blueprint, *, needs_database: bool = True) -> None:
    """Give ``bp`` the shared request hooks and error handlers (never app-wide).

    Without ``needs_database`` its requests are served while the start's migration is pending.
    """
    bp.before_request(_start)
    bp.before_request(_refuse_unstorable)
    bp.before_request(_refuse_repeated)
    if needs_database:
        bp.before_request(_await_migration)
    bp.after_request(_finish)
    bp.register_error_handler(ApiError, _handle_api_error)
    bp.register_error_handler(StorageUnavailable, _handle_storage)
    bp.register_error_handler(HTTPException, _handle_http)
    bp.register_error_handler(Exception, _handle_unexpected)


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
