"""The OpenAPI document covers the whole surface, and a schemathesis run finds no 5xx and no drift."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from ..conftest import QUERY_KEY
from ..helpers import batch, event, headers

AUTH = {"x-api-key": QUERY_KEY, "x-project-key": "fuzz-project-key"}


def test_document_is_valid_and_lists_every_route(client: Any, app: Any) -> None:
    response = client.get("/api/openapi.json")  # public: it describes the API, it holds no data
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    routes = {
        rule.rule.replace("<", "{")
        .replace(">", "}")
        .replace("{project_id}", "{projectId}")
        .replace("{session_id}", "{sessionId}")
        .replace("{user_id}", "{userId}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("heat_collector.", "heat_prometheus."))
    }
    assert routes == set(document["paths"])


@pytest.fixture
def api_schema(make_app: Any, live_server: Any) -> Any:
    # Registered projects only, so that the "wrong credentials are refused" check holds for /ingest too.
    app = make_app(rate_limit="100000 per minute", registered_projects_only=True)
    created = app.test_cli_runner().invoke(args=["heat", "project", "create", "--key", AUTH["x-project-key"]])
    assert created.exit_code == 0, created.output
    server = live_server(app)
    seeded = app.test_client().post(
        "/ingest", json=batch(event("click"), event("move")), headers=headers(AUTH["x-project-key"])
    )
    assert seeded.status_code == 200
    return schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match(case: Any) -> None:
    # Checked: no 5xx, documented status codes, content types, headers and bodies. Not checked: whether the
    # server's acceptance matches the document exactly, which it cannot state: `from`/`to` also take date
    # strings (like the original) and `from > to` is refused (a rule across two parameters).
    case.call_and_validate(
        headers=AUTH,
        excluded_checks=[schemathesis.checks.negative_data_rejection, schemathesis.checks.positive_data_acceptance],
    )
