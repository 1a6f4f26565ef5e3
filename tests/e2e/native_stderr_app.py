"""The ready app, for a test: its factory also writes a raw line to fd 2, as a C library would."""

from __future__ import annotations

import os

from flask import Flask

from flask_heat_collector.wsgi import create_app as ready_app

RAW_LINE = "WARNING:  a line a C library printed to fd 2"


def create_app() -> Flask:
    app = ready_app()
    os.write(2, f"{RAW_LINE}\n".encode())
    return app
