"""The extension's blueprints: ingest-only, query-only, and the whole that nests both."""

from __future__ import annotations

from flask import Blueprint

from .admin import create_admin_blueprint
from .ingest import create_ingest_blueprint
from .query import create_api_blueprint


def create_blueprints() -> tuple[Blueprint, Blueprint, Blueprint]:
    """``(whole, ingest, api)``; the whole blueprint nests the other two."""
    ingest = create_ingest_blueprint()
    api = create_api_blueprint()
    whole = Blueprint("heat_collector", __name__)
    whole.register_blueprint(ingest)
    whole.register_blueprint(api)
    whole.register_blueprint(create_admin_blueprint())
    return whole, ingest, api
