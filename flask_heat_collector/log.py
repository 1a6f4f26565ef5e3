"""Logging of the package: the ``flask_heat_collector`` logger and its JSON-lines formatter.

The package only logs to that logger (with a ``NullHandler``, as libraries do): the host's handlers
get its records by propagation. ``install_json_handler()`` writes them as JSON lines to stderr, as
the ready app in ``wsgi.py`` does. Audit lines (erase, export, purge) go to the child logger
``flask_heat_collector.audit``, whose level is ``INFO`` whatever ``HEAT_LOG_LEVEL`` says.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

logger = logging.getLogger("flask_heat_collector")
logger.addHandler(logging.NullHandler())
# Its own level: HEAT_LOG_LEVEL sets the package logger's, which this child does not inherit.
audit_logger = logging.getLogger("flask_heat_collector.audit")
audit_logger.setLevel(logging.INFO)

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}
_FRAMES = 30  # the innermost frames of an exception's traceback that a line keeps
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, msg, ts and the record's ``heat`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        }
        if not record.name.startswith(logger.name):  # another library's record (SQLAlchemy, gunicorn, ...)
            payload["logger"] = record.name
        payload.update(getattr(record, "heat", {}))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = traceback.extract_tb(exc.__traceback__)[-_FRAMES:]
            payload["exception"] = {
                "type": type(exc).__name__,
                "message": str(exc)[:500],
                # Where, not what: file:line in function (no source lines, no values).
                "frames": [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames],
            }
        line = json.dumps(payload, default=str, ensure_ascii=False)
        # Line separators that JSON leaves raw would split the line for splitlines() and JS readers.
        return line.translate(_LINE_BREAKS)


def set_level(level: str) -> None:
    """Set the package logger's level (HEAT_LOG_LEVEL); handlers and propagation are the host's."""
    logger.setLevel(LEVELS[level])


# Where JSON lines go once ``capture_native_stderr()`` has taken file descriptor 2 over.
_original_stderr: TextIO | None = None
_RAW_LINE_CHARS = 4000  # a raw line longer than this is cut into several records


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time (a server or test runner may replace it), or to
    the original stderr once ``capture_native_stderr()`` has run."""

    def write(self, text: str) -> int:
        return (_original_stderr or sys.stderr).write(text)

    def flush(self) -> None:
        (_original_stderr or sys.stderr).flush()


def capture_native_stderr() -> TextIO:
    """Turn every raw line written to file descriptor 2 into a JSON line (logger ``stderr``, level warn).

    C libraries print there behind Python's back: libpq prints a server's notice that arrives while a
    connection is being opened ("terminating connection due to immediate shutdown command"). fd 2
    becomes a pipe that a daemon thread reads; the JSON handlers, and the stream returned (for other
    handlers to write to), go to the original stderr. For a server process that owns its stderr (the
    shipped gunicorn settings call it in each worker); once per process.
    """
    global _original_stderr
    if _original_stderr is not None:
        return _original_stderr
    sys.stderr.flush()
    original = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    _original_stderr = original
    threading.Thread(target=_relay, args=(read_end, original), name="heat-stderr", daemon=True).start()
    return original


def _relay(read_end: int, out: TextIO) -> None:
    formatter = JsonFormatter()
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.readline(_RAW_LINE_CHARS):
            text = chunk.decode("utf-8", "replace").rstrip("\r\n")
            if text.strip():
                record = logging.LogRecord("stderr", logging.WARNING, __file__, 0, text, None, None)
                out.write(formatter.format(record) + "\n")


_JSON_HANDLER_NAME = "flask_heat_collector.json"


def _json_handler_once(
    target: logging.Logger, name: str, *filters: Callable[[logging.LogRecord], bool]
) -> tuple[logging.Handler, bool]:
    """``target``'s JSON-lines handler to stderr called ``name``: the one it has, else a new one added
    with ``filters``; and whether it is new."""
    for existing in target.handlers:
        if existing.get_name() == name:
            return existing, False
    handler: logging.StreamHandler[_Stderr] = logging.StreamHandler(_Stderr())
    handler.set_name(name)
    handler.setFormatter(JsonFormatter())
    for keep in filters:
        handler.addFilter(keep)
    target.addHandler(handler)
    return handler, True


def install_json_handler() -> logging.Handler:
    """Write the package's records to stderr as JSON lines; once per process (returns that handler)."""
    handler, _ = _json_handler_once(logger, _JSON_HANDLER_NAME)
    return handler


def log(level: str, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured fields."""
    logger.log(LEVELS[level], msg, extra={"heat": fields})


def audit(msg: str, **fields: Any) -> None:
    """Write an audit line (``info`` on ``flask_heat_collector.audit``), whatever HEAT_LOG_LEVEL says."""
    audit_logger.info(msg, extra={"heat": fields})


_ROOT_HANDLER_NAME = "flask_heat_collector.json.others"


def _not_the_package(record: logging.LogRecord) -> bool:
    """The package's records have their own handler (``install_json_handler``)."""
    return record.name != logger.name and not record.name.startswith(f"{logger.name}.")


def install_json_handler_for_all_loggers() -> logging.Handler:
    """Write every other logger's records (SQLAlchemy's pool, werkzeug, Flask's app logger, warnings)
    as JSON lines to stderr too, through a root handler: nothing writes a plain traceback. For the
    ready app only (a library leaves the root logger to the host); once per process."""
    handler, new = _json_handler_once(logging.getLogger(), _ROOT_HANDLER_NAME, _not_the_package)
    if new:
        logging.captureWarnings(True)  # warnings.warn() lines go through the py.warnings logger
    return handler
