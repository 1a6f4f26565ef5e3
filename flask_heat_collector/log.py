"""JSON-lines logging for the ``flask_heat_collector`` logger."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger("flask_heat_collector")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, msg, ts and the record's ``heat`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        }
        payload.update(getattr(record, "heat", {}))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            payload["exception"] = {"type": type(exc).__name__, "message": str(exc)[:500]}
        line = json.dumps(payload, default=str, ensure_ascii=False)
        # Line separators that JSON leaves raw would split the line for splitlines() and JS readers.
        return line.translate(_LINE_BREAKS)


def configure(level: str) -> None:
    """Attach the JSON handler once and set the level."""
    if not any(getattr(h, "_heat_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._heat_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(LEVELS[level])


def log(level: str, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured fields."""
    logger.log(LEVELS[level], msg, extra={"heat": fields})
