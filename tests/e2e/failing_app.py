"""``gunicorn 'tests.e2e.failing_app:create_app()'``: the real wsgi app, storage "down" while a file exists.

While the file named by ``HEAT_TEST_E2E_OUTAGE_FLAG`` exists, every batch is refused with 503
``storage_unavailable`` (as when the database is down) and a line is appended to the file named by
``HEAT_TEST_E2E_OUTAGE_LOG``, so the test can see the SDK's attempts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from flask_heat_collector import HeatCollector, StorageUnavailable
from flask_heat_collector.wsgi import create_app as create_heat_app


def create_app() -> Flask:
    app = create_heat_app()
    flag = Path(os.environ["HEAT_TEST_E2E_OUTAGE_FLAG"])
    attempts = Path(os.environ["HEAT_TEST_E2E_OUTAGE_LOG"])

    def outage(payload: dict[str, Any]) -> dict[str, Any]:
        if flag.exists():
            with attempts.open("a") as out:
                out.write(f"{os.getpid()} {len(payload['events'])}\n")
            raise StorageUnavailable("simulated database outage")
        return payload

    HeatCollector.state(app).hooks.append(outage)
    return app
