"""gunicorn settings that keep the collector answering while some clients send very slowly.

``gunicorn -c python:flask_heat_collector.gunicorn_conf 'flask_heat_collector.wsgi:create_app()'``

A slow client holds one thread of a threaded (``gthread``) worker, not the whole worker as with
``sync``: fewer than ``GUNICORN_THREADS`` slow clients never delay anyone else. Internet-facing
deployments still need a buffering proxy in front (docs/deployment.md). Command-line options win
over these values.
"""

from __future__ import annotations

import os


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
