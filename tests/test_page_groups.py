"""Page groups (SPEC §10): ``group=<template>`` on every report and the preview endpoint, on every
backend, against the plain reference in tests/oracle.py on random paths over several UTC days."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector import ConfigurationError
from flask_heat_collector.wsgi import create_app

from . import oracle
from .helpers import API, TS, backend_free, batch, event, ingest_all

DAY = 86_400_000
T0 = 1_790_000_000_000 // DAY * DAY  # a UTC midnight in the past
VIEWS = [
    {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}},
    {"w": 390, "h": 844},
    {"w": 1280, "h": 720, "meta": {"viewportBucket": "1280x720"}},
]
SELECTORS = ("#buy", "#a", "button.c", "a.next")
TEMPLATES = (
    "/product/:id",
    "/product/*/reviews",
    "/blog/*",
    "/blog/:slug/:part",
    "/docs/**",
    "/**",
    "/",
    "/product",
    "/nothing/:here",
)


def get(client: FlaskClient, url: str, **params: Any) -> dict[str, Any]:
    response = client.get(url, query_string={k: v for k, v in params.items() if v is not None}, headers=API)
    assert response.status_code == 200, (url, params, response.get_json())
    body: dict[str, Any] = response.get_json()
    return body


def random_path(rng: random.Random) -> str:
    return rng.choice(
        [
            f"/product/{rng.randint(1, 6)}",
            f"/product/{rng.randint(1, 3)}/reviews",
            f"/product/{rng.randint(1, 3)}/",
            "/product",
            f"/blog/{rng.choice(['hello', 'world', 'x-y'])}",
            f"/blog/{rng.choice(['hello', 'world'])}/{rng.choice(['1', 'comments'])}",
            f"/blog/{rng.choice(['hello', 'world'])}/",
            "/docs",
            "/docs/",
            "/docs/a/b/c",
            f"/docs/{rng.choice(['intro', 'api'])}",
            "/docsearch",
            "/",
            "/about",
        ]
    )


def random_bodies(seed: int) -> list[dict[str, Any]]:
    """Sessions over three UTC days (some across a midnight): clicks (in bursts, some followed by an
    error event), scrolls, moves, pageviews, on random paths and viewports."""
    rng = random.Random(seed)
    bodies = []
    for s in range(14):
        view = rng.choice(VIEWS)
        ts = T0 + rng.randint(0, 2) * DAY + rng.choice([rng.randint(0, DAY - 1), DAY - rng.randint(1, 90_000)])
        found: list[dict[str, Any]] = []
        path = random_path(rng)
        for _ in range(rng.randint(6, 30)):
            ts += rng.choice([50, 300, 700, 1_100, 3_000, 20_000])
            if rng.random() < 0.25:
                path = random_path(rng)
            kind = rng.random()
            if kind < 0.5:
                x, y = rng.choice([(100, 100), (400, 300), (5, 900)])
                for _ in range(rng.choice([1, 1, 2, 3, 4])):
                    ts += rng.choice([0, 100, 300])
                    jitter = rng.choice([5, 40])
                    spot = {"x": x + rng.randint(-jitter, jitter), "y": y + rng.randint(-jitter, jitter)}
                    found.append(event("click", ts=ts, path=path, selector=rng.choice(SELECTORS), **spot, **view))
                if rng.random() < 0.2:
                    found.append(event("custom", ts=ts + 200, path=path, name="error", props={}, **view))
            elif kind < 0.75:
                depth = rng.choice([0, 12.5, 40, 55.5, 100])
                found.append(event("scroll", ts=ts, path=path, scrollY=int(depth * 10), scrollDepthPct=depth, **view))
            elif kind < 0.88:
                offsets = sorted(rng.sample(range(0, 120_000), 3))
                points = [{"x": 10 + i, "y": 20 + 7 * i, "tsOffset": off} for i, off in enumerate(offsets)]
                found.append(event("move", ts=ts, path=path, points=points, **view))
            else:
                found.append(event("pageview", ts=ts, path=path, to=path, **view))
        bodies.append(batch(*found, session_id=f"g{s}"))
    return bodies


def windows(rng: random.Random, rows: list[oracle.Row]) -> list[tuple[int | None, int | None]]:
    """No bounds, whole days, and random bounds inside the data (partial days at both ends)."""
    first, last = min(r.ts for r in rows), max(r.ts for r in rows)
    found: list[tuple[int | None, int | None]] = [(None, None), (T0, T0 + 3 * DAY - 1)]
    found += [tuple(sorted(rng.sample(range(first, last + 1), 2))) for _ in range(3)]  # type: ignore[misc]
    found.append((T0 + DAY + rng.randint(1, DAY // 2), T0 + 2 * DAY + rng.randint(DAY // 2, DAY - 1)))
    return found


EVENT_KEYS = ("id", "eventId", "sessionId", "type", "ts", "path", "selector", "x", "y", "scrollDepth", "data")
HEATMAP_KEYS = ("total", "plotted", "viewport", "otherViewports", "renderHeight", "typeBreakdown", "resolvedType")


def test_group_reports_match_oracle(client: FlaskClient) -> None:
    bodies = random_bodies(20261207)
    project = ingest_all(client, bodies)
    rows = oracle.stored_rows(bodies)
    assert len(oracle.rage_rows(rows)) >= 5 and oracle.signals(rows)["error"]  # the data holds signals
    assert len({r.ts // DAY for r in rows}) >= 3
    rng = random.Random(11)
    url = f"/api/projects/{project}"
    failures: list[str] = []
    for lo, hi in windows(rng, rows):
        span = {"from": lo, "to": hi}
        hm_lo, hm_hi = (lo or 0), (hi or max(r.ts for r in rows) + 1)
        for template in TEMPLATES:
            where = oracle.group_paths(rows, template, ts_from=lo, ts_to=hi)
            label = f"{template} {span}"
            for kind in ("click", "all", "move", "scroll", "rageclick", "deadclick", "errorclick"):
                if rng.random() < 0.5:  # every type over the windows, not each in every window
                    continue
                viewports = rng.choice(["width", "all"])
                got = get(
                    client,
                    f"{url}/heatmap",
                    group=template,
                    type=kind,
                    viewports=viewports,
                    resolution=64,
                    **{"from": hm_lo, "to": hm_hi},
                )
                params = {"path": where, "ts_from": hm_lo, "ts_to": hm_hi, "viewports": viewports, "resolution": 64}
                if kind == "rageclick":
                    want = oracle.rage_heatmap(rows, **params)
                elif kind in ("deadclick", "errorclick"):
                    want = oracle.signal_heatmap(rows, kind.removesuffix("click"), **params)
                else:
                    want = oracle.heatmap(rows, type=kind, **params)
                if got["points"] != want["points"] or any(got["meta"][k] != want["meta"][k] for k in HEATMAP_KEYS):
                    failures.append(f"heatmap {kind} {viewports} {label}: {got} != {want}")
                if got["meta"]["group"] != {"template": template, "paths": len(where)}:
                    failures.append(f"heatmap meta.group {label}: {got['meta']['group']} ({len(where)} paths)")
                width = oracle.band_width(got["meta"]) if viewports == "width" else None  # the bucket's band
                sessions = oracle.band_sessions(rows, path=where, ts_from=hm_lo, ts_to=hm_hi, width=width)
                if got["meta"]["sample"]["sessions"] != sessions:
                    failures.append(f"heatmap sample {kind} {label}: {got['meta']['sample']} != {sessions}")
            got = get(client, f"{url}/scrollmap", group=template, **{"from": hm_lo, "to": hm_hi})
            want = oracle.scrollmap(rows, path=where, ts_from=hm_lo, ts_to=hm_hi)
            if (
                got["reach"] != pytest.approx(want["reach"])
                or got["meta"]["sessions"] != want["meta"]["sessions"]
                or got["meta"]["foldPct"] != pytest.approx(want["meta"]["foldPct"])
            ):
                failures.append(f"scrollmap {label}: {got} != {want}")
            kind = rng.choice(["click", "rageclick"])
            got = get(client, f"{url}/elements", group=template, type=kind, **span)
            want_elements = oracle.elements(rows, path=where, ts_from=lo, ts_to=hi, type=kind)
            if got["elements"] != want_elements:
                failures.append(f"elements {kind} {label}: {got['elements']} != {want_elements}")
            offset = rng.choice([0, 0, 7])
            got = get(client, f"{url}/events", group=template, limit=25, offset=offset, **span)
            want_events = oracle.events_page(rows, path=where, ts_from=lo, ts_to=hi, limit=25, offset=offset)
            if [{k: e[k] for k in EVENT_KEYS} for e in got["events"]] != want_events:
                failures.append(f"events {label}: {got['events']} != {want_events}")
            got = get(client, f"{url}/paths", group=template, limit=500, **span)
            want_paths = oracle.paths(rows, ts_from=lo, ts_to=hi, group=template, limit=500)
            if got["paths"] != want_paths or got["meta"]["group"]["paths"] != len(where):
                failures.append(f"paths {label}: {got} != {want_paths}")
            preview = get(client, f"{url}/page-groups/preview", template=template, **span)
            listed = [{k: p[k] for k in ("path", "events", "sessions", "lastSeenAt")} for p in want_paths[:100]]
            total = oracle.group_total(rows, template, ts_from=lo, ts_to=hi)
            if preview["paths"] != listed or preview["total"] != total or preview["template"] != template:
                failures.append(f"preview {label}: {preview} != {listed} {total}")
    assert not failures, "\n".join(failures[:5])


def test_paths_lists_the_configured_groups(make_app: Any) -> None:
    bodies = random_bodies(7)
    project = ingest_all(make_app().test_client(), bodies)  # stored before any group was configured
    configured = ["/blog/*", "/product/:id", "/nothing/:here", "/**"]
    app: Flask = make_app(page_groups=configured)
    client = app.test_client()
    rows = oracle.stored_rows(bodies)
    lo, hi = T0 + DAY // 3, T0 + 2 * DAY + DAY // 2
    body = get(client, f"/api/projects/{project}/paths", groups=1, **{"from": lo, "to": hi})
    want = [{"template": t, **oracle.group_total(rows, t, ts_from=lo, ts_to=hi)} for t in configured]
    assert body["groups"] == want
    summed = sum(p["sessions"] for p in oracle.paths(rows, ts_from=lo, ts_to=hi, group="/**", limit=500))
    assert want[-1]["sessions"] < summed  # sessions are unioned across paths, not summed
    assert "groups" not in get(client, f"/api/projects/{project}/paths")
    # Any valid template may be queried, configured or not; the preview says which.
    assert get(client, f"/api/projects/{project}/page-groups/preview", template="/blog/*")["meta"]["configured"]
    other = get(client, f"/api/projects/{project}/page-groups/preview", template="/blog/:slug/:part")
    assert other["meta"]["configured"] is False and other["total"]["paths"] > 0


# Paths a single session visits, and for each template the ones it covers (docs/api.md, page groups).
RULE_PATHS = (
    "/",
    "/about",
    "/product",
    "/product/",
    "/product/1",
    "/product/1/",
    "/product/1/reviews",
    "/product/abc:def",
    "/blog/hello",
    "/blog/hello/1",
    "/docs",
    "/docs/",
    "/docs/a/b/c",
    "/docsearch",
    "/Product/1",
    "/product/2?variant=b",
    "/app#/product/3",
)
RULES = {
    "/": {"/"},
    "/product/:id": {"/product/1", "/product/1/", "/product/abc:def", "/product/2?variant=b"},
    "/product/*": {"/product/1", "/product/1/", "/product/abc:def", "/product/2?variant=b"},
    "/product/:id/": {"/product/1", "/product/1/", "/product/abc:def", "/product/2?variant=b"},
    "/product": {"/product", "/product/"},
    "/product/**": {
        "/product",
        "/product/",
        "/product/1",
        "/product/1/",
        "/product/1/reviews",
        "/product/abc:def",
        "/product/2?variant=b",
    },
    "/app#/product/:id": {"/app#/product/3"},
    "/product/*/reviews": {"/product/1/reviews"},
    "/docs/**": {"/docs", "/docs/", "/docs/a/b/c"},
    "/docs/*/*/*": {"/docs/a/b/c"},
    "/blog/*": {"/blog/hello"},
    "/**": set(RULE_PATHS),
    "/product/abc:def": {"/product/abc:def"},
}


def test_matching_rule_through_the_preview(make_app: Any) -> None:
    client = make_app(path_query_allowlist=["variant"], hash_routes=True).test_client()
    project = ingest_all(client, [batch(*(event("pageview", path=p, to=p) for p in RULE_PATHS), session_id="r")])
    stored = {p["path"] for p in get(client, f"/api/projects/{project}/paths", limit=500)["paths"]}
    assert stored == set(RULE_PATHS)  # stored as sent
    for template, covered in RULES.items():
        body = get(client, f"/api/projects/{project}/page-groups/preview", template=template)
        assert {p["path"] for p in body["paths"]} == covered, template
        assert {p for p in RULE_PATHS if oracle.route_matches(template, p)} == covered, template
        assert body["total"] == {"paths": len(covered), "events": len(covered), "sessions": 1, "lastSeenAt": TS}
    empty = get(client, f"/api/projects/{project}/heatmap", group="/nothing/*", type="all")
    assert empty["points"] == [] and empty["meta"]["total"] == 0
    assert empty["meta"]["group"] == {"template": "/nothing/*", "paths": 0}


BAD_TEMPLATES = ("product/:id", "/a//b", "/docs/**/x", "/a/b*", "/a/:", "/a/:1x", "/a/**x", "/a?x=1", "", "//")


@backend_free
@pytest.mark.parametrize("template", BAD_TEMPLATES)
@pytest.mark.parametrize("endpoint", ["heatmap", "scrollmap", "elements", "events", "paths"])
def test_invalid_group_is_a_stable_400(client: FlaskClient, endpoint: str, template: str) -> None:
    response = client.get(f"/api/projects/p/{endpoint}", query_string={"group": template}, headers=API)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_group"


@backend_free
@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_invalid_preview_template_is_a_stable_400(client: FlaskClient, template: str) -> None:
    response = client.get("/api/projects/p/page-groups/preview", query_string={"template": template}, headers=API)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_group"


@backend_free
@pytest.mark.parametrize("endpoint", ["heatmap", "scrollmap", "elements", "events"])
def test_group_and_path_together_is_a_stable_400(client: FlaskClient, endpoint: str) -> None:
    params = {"group": "/product/:id", "path": "/product/1"}
    response = client.get(f"/api/projects/p/{endpoint}", query_string=params, headers=API)
    assert response.status_code == 400 and response.get_json()["code"] == "group_with_path"


@backend_free
def test_preview_needs_a_template_and_the_key(client: FlaskClient) -> None:
    missing = client.get("/api/projects/p/page-groups/preview", headers=API)
    assert missing.status_code == 400 and missing.get_json()["code"] == "invalid_query"
    keyless = client.get("/api/projects/p/page-groups/preview", query_string={"template": "/"})
    assert keyless.get_json()["code"] == "missing_api_key"


@pytest.mark.parametrize("value", ["/blog/*,/docs//x", ["/blog/*", "blog"], ["/a/**/b"], ["/x", "/x"], [3]])
def test_bad_configured_template_names_the_key(tmp_path: Path, value: Any) -> None:
    environ = {"HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}"}
    if isinstance(value, str):  # through the environment, as a deployment sets it
        with pytest.raises(ConfigurationError, match="HEAT_PAGE_GROUPS"):
            create_app({**environ, "HEAT_PAGE_GROUPS": value})
        return
    from flask_heat_collector import HeatCollector

    app = Flask("groups", instance_path=str(tmp_path / "instance"))
    app.config.update(HEAT_DATABASE_URI=environ["HEAT_DATABASE_URI"], HEAT_PAGE_GROUPS=value)
    with pytest.raises(ConfigurationError, match="HEAT_PAGE_GROUPS"):
        HeatCollector(app)


def test_configured_templates_from_the_environment(tmp_path: Path) -> None:
    environ = {"HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}", "HEAT_PAGE_GROUPS": "/product/:id, /docs/**"}
    from flask_heat_collector import get_state

    app = create_app(environ)
    with app.app_context():
        assert get_state().settings.page_groups == ("/product/:id", "/docs/**")


def test_a_group_matching_too_many_paths_is_refused(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_heat_collector.views import query

    monkeypatch.setattr(query, "MAX_GROUP_PATHS", 2)  # the real bound (5,000 paths) is too many to store here
    paths = ("/product/1", "/product/2", "/product/3", "/blog/a")
    project = ingest_all(client, [batch(*(event("click", path=p) for p in paths), session_id="m")])
    url = f"/api/projects/{project}/heatmap"
    refused = client.get(url, query_string={"group": "/product/*"}, headers=API)
    assert refused.status_code == 400 and refused.get_json()["code"] == "group_too_broad"
    assert get(client, url, group="/blog/*", type="all")["meta"]["group"] == {"template": "/blog/*", "paths": 1}
    earlier = get(client, url, group="/product/*", **{"from": 0, "to": TS - 1})  # the bound counts the range's paths
    assert earlier["meta"]["group"] == {"template": "/product/*", "paths": 0}


@backend_free
def test_the_documented_pattern_is_the_syntax(client: FlaskClient) -> None:
    """The pattern the OpenAPI document states for ``group``/``template`` accepts exactly what the
    server accepts, on random strings of the characters that matter."""
    document = client.get("/api/openapi.json").get_json()
    params = document["paths"]["/api/projects/{projectId}/page-groups/preview"]["get"]["parameters"]
    pattern = next(p for p in params if p["name"] == "template")["schema"]["pattern"]
    rng = random.Random(5)
    samples = [*BAD_TEMPLATES, *RULES, "/**/", "/a/*/**", "/:_x1/*", "/é/x y/#"]
    samples += ["/" + "".join(rng.choice("/:*ab_1#") for _ in range(rng.randint(0, 7))) for _ in range(300)]
    for template in samples:
        response = client.get("/api/projects/p/page-groups/preview", query_string={"template": template}, headers=API)
        documented = re.fullmatch(pattern, template) is not None
        assert (response.status_code == 200) == documented, (template, response.get_json())
        if not documented:
            assert response.get_json()["code"] == "invalid_group", template


def test_whole_days_of_a_group_read_no_rows(make_app: Any) -> None:
    """A group over whole UTC days is answered from the precomputed data of its paths' keys: no stored
    row is read, however many rows the days hold (the cost is the matched keys and days)."""
    app: Flask = make_app()
    client = app.test_client()
    project = ingest_all(client, random_bodies(3))
    get(client, f"/api/projects/{project}/elements")  # rage clicks and signals settled first
    tally = app.extensions["heat_collector"].repository.tally
    days = {"from": T0, "to": T0 + 3 * DAY - 1}
    before = tally.events
    for report, params in (("heatmap", {"type": "all"}), ("scrollmap", {}), ("elements", {})):
        body = get(client, f"/api/projects/{project}/{report}", group="/blog/*", **params, **days)
        assert body["meta"]["group"]["paths"] > 0 and body["meta"]["sample"]["events"] > 0, report
    assert tally.events == before
