"""gunicorn settings that keep the collector answering while some clients send very slowly.

``gunicorn -c python:flask_heat_collector.gunicorn_conf 'flask_heat_collector.wsgi:create_app()'``

A slow client holds one thread of a threaded (``gthread``) worker, not the whole worker as with
``sync``: fewer than ``GUNICORN_THREADS`` slow clients never delay anyone else. Internet-facing
deployments still need a buffering proxy in front (docs/deployment.md). Command-line options win
over these values.

Its error log (gunicorn's own lines, and the tracebacks of workers that fail) is written as JSON
lines, one object per line like the app's (``JsonErrorLog``), wherever ``--error-logfile`` sends it;
the access log keeps gunicorn's format. In each worker, what C libraries print to stderr (libpq's
server notices) becomes JSON lines too (``log.capture_native_stderr``).

It also sets up prometheus_client's multiprocess mode, so that ``/metrics`` and ``/api/metrics`` add
up every worker: unless ``PROMETHEUS_MULTIPROC_DIR`` is set, loading this module creates a fresh
temporary directory and sets the variable (the master does, before any worker imports
prometheus_client); the directory is removed when the master exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from .log import JsonFormatter, capture_native_stderr


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


worker_class = "gthread"
workers = _env_int("WEB_CONCURRENCY", 2)
threads = _env_int("GUNICORN_THREADS", 16)
# A worker whose main loop stops for this long is restarted (slow clients never stop it).
timeout = 30
graceful_timeout = 30
# Idle kept-alive connections wait in the worker's poller, not in a thread.
keepalive = 5
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


class JsonErrorLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, with its error log formatted as JSON lines (the handlers gunicorn chose stay)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


logger_class = JsonErrorLog

# A directory given by the operator is used as it is (empty it before each start).
_created_dir: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _created_dir = tempfile.mkdtemp(prefix="heat-collector-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_dir


def on_starting(server: Any) -> None:
    server.log.info("Prometheus multiprocess directory: %s", os.environ["PROMETHEUS_MULTIPROC_DIR"])


def post_fork(server: Any, worker: Any) -> None:
    """The worker's fd 2 becomes a pipe whose raw lines are logged as JSON; gunicorn's handlers that
    wrote to stderr write to the original stderr (not into that pipe)."""
    original = capture_native_stderr()
    for handler in server.log.error_log.handlers:
        if isinstance(handler, logging.StreamHandler) and _writes_to_fd_2(handler.stream):
            handler.setStream(original)


def _writes_to_fd_2(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 2)
    except (AttributeError, OSError, ValueError):
        return False


def child_exit(server: Any, worker: Any) -> None:
    """prometheus_client's bookkeeping for a worker that exited (its live gauges are dropped)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _created_dir is not None:
        shutil.rmtree(_created_dir, ignore_errors=True)
