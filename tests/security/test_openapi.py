"""The OpenAPI document covers the whole surface, and a schemathesis run finds no 5xx and no drift."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.core.parameters import ParameterLocation

from flask_heat_collector.views.query import parse_time

from ..helpers import QUERY_KEY, backend_free, batch, event, headers

AUTH = {"x-api-key": QUERY_KEY, "x-project-key": "fuzz-project-key"}


@backend_free
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
        .replace("{heat_user_id:user_id}", "{userId}")
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
    loaded = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    # No NUL in generated strings: the server refuses it everywhere (no database stores it), which the
    # document cannot say of the keys and values of free-form objects.
    loaded.config.generation.update(allow_x00=False)
    loaded.hook("filter_case")(documented_case)
    return loaded


def documented_case(context: Any, case: Any) -> bool:
    """``filter_case``: the rules across two parameters that JSON Schema cannot state (below, and
    ``path`` with ``group``: 400 ``group_with_path``)."""
    query = case.query or {}
    in_order = ordered_time_range(context, case) and compare_sides_in_order(context, case)
    return in_order and not ("path" in query and "group" in query)


def ordered_time_range(context: Any, case: Any) -> bool:
    """``filter_case``: ``from`` after ``to`` is refused (400), a rule across two parameters that
    JSON Schema cannot state. The maps default ``from`` to 0 and ``to`` to now before comparing."""
    given = [(case.query or {}).get(name) for name in ("from", "to")]
    start, end = (None if value in (None, "") else parse_time(str(value)) for value in given)
    if context.operation is not None and context.operation.path.endswith(("/heatmap", "/scrollmap", "/compare")):
        start = 0 if start is None else start
        end = int(time.time() * 1000) if end is None else end
    return start is None or end is None or start <= end


def compare_sides_in_order(context: Any, case: Any) -> bool:
    """``filter_case``: each side of ``/compare`` has its range in order once its own ``from``/``to``
    (unix ms items of the slice), else the shared ones, else 0 and now, fill it in (docs/compare.md)."""
    if context.operation is None or not context.operation.path.endswith("/compare"):
        return True
    query = case.query or {}
    shared = [None if query.get(name) in (None, "") else parse_time(str(query[name])) for name in ("from", "to")]
    for side in ("a", "b"):
        text = query.get(side)
        if not isinstance(text, str):
            continue
        items = dict(item.split("=", 1) for item in text.split(";") if "=" in item)
        own = [int(items[k]) if re.fullmatch(r"-?[0-9]{1,15}", items.get(k, "")) else None for k in ("from", "to")]
        lo = own[0] if own[0] is not None else shared[0] if shared[0] is not None else 0
        hi = own[1] if own[1] is not None else shared[1] if shared[1] is not None else int(time.time() * 1000)
        if lo > hi:
            return False
    return True


schema = schemathesis.pytest.from_fixture("api_schema")
# The same examples at every run (derandomize), so that a run never depends on luck;
# HEAT_TEST_FUZZ_EXAMPLES=N runs N random examples per operation instead (docs/security.md).
FUZZ_EXAMPLES = int(os.environ.get("HEAT_TEST_FUZZ_EXAMPLES") or 0)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES or 25,
    derandomize=not FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_responses_match(case: Any) -> None:
    # Every check runs: no 5xx, documented statuses, content types, headers and bodies, and the drift
    # checks: what the document allows is accepted (positive_data_acceptance), what it forbids is
    # refused (negative_data_rejection).
    case.call_and_validate(headers=credentials(case))


def credentials(case: Any) -> dict[str, str]:
    """The keys to send: all of them, but for a case whose headers were made to break the document
    with its own ``Authorization``, which the valid ``x-api-key`` would otherwise outrank (the server
    takes either), so that a malformed bearer token is what the server sees."""
    headers = case.headers or {}
    meta = case.meta
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER) and "Authorization" in headers:
        return {name: value for name, value in AUTH.items() if name != "x-api-key"}
    return AUTH
