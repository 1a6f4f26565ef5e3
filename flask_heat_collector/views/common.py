"""What every blueprint of the extension shares: request ids, headers and JSON errors."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, StorageUnavailable
from ..log import log, logger

STORAGE_RETRY_AFTER_SECONDS = 5

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


def _plain(details: Any) -> Any:
    """Field errors with string keys only (marshmallow keys list items by int)."""
    if isinstance(details, dict):
        return {str(key): _plain(value) for key, value in details.items()}
    if isinstance(details, list):
        return [_plain(item) for item in details]
    return details


def error_response(err: ApiError, cause: BaseException | None = None) -> Response:
    """The JSON error body with its headers, and its one log line."""
    body: dict[str, Any] = {
        "error": err.error,
        "code": err.code,
        "message": err.message,
        "requestId": request_id(),
    }
    if err.details is not None:
        body["details"] = _plain(err.details)
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
                "path": request.path,
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
            path=request.path,
            status=response.status_code,
            durationMs=round((time.perf_counter() - started) * 1000, 2) if started else None,
        )
    return response


def install(bp: Blueprint) -> None:
    """Give ``bp`` the shared request hooks and error handlers (never app-wide)."""
    bp.before_request(_start)
    bp.after_request(_finish)
    bp.register_error_handler(ApiError, _handle_api_error)
    bp.register_error_handler(StorageUnavailable, _handle_storage)
    bp.register_error_handler(HTTPException, _handle_http)
    bp.register_error_handler(Exception, _handle_unexpected)


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
