"""Frustration signals (SPEC §10, issue 24): dead clicks, error clicks, quick backs and excessive
scrolling, decided per session on the server and corrected by later data, on every backend; hand-made
cases (false positives included) and random data checked against the plain reference in tests/oracle.py."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, PROJECT_KEY, batch, event, headers, ingest_all

T = 1_790_000_000_000
DESKTOP = {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}}
KINDS = ("rage", "dead", "error", "quickback", "scroll")


def ev(kind: str, ts: int, path: str = "/", eid: str | None = None, **fields: Any) -> dict[str, Any]:
    found = event(kind, ts=T + ts, path=path, **DESKTOP, **fields)
    if eid is not None:
        found["eventId"] = eid
    return found


def click(ts: int, selector: str, path: str = "/", x: int = 100, y: int = 100) -> dict[str, Any]:
    return ev("click", ts, path, x=x, y=y, selector=selector)


def get(client: FlaskClient, project: str, endpoint: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/projects/{project}/{endpoint}", query_string=params, headers=API)
    assert response.status_code == 200, response.get_json()
    found: dict[str, Any] = response.get_json()
    return found


def answers(client: FlaskClient, project: str, **params: Any) -> dict[str, Any]:
    """Every signal answer of the API, zeros left out."""
    elements = get(client, project, "elements", limit=500, **params)["elements"]
    paths = get(client, project, "paths", limit=500, **params)["paths"]
    sessions = get(client, project, "sessions", limit=200)["sessions"]
    return {
        "dead": {e["selector"]: e["deadClicks"] for e in elements if e["deadClicks"]},
        "error": {e["selector"]: e["errorClicks"] for e in elements if e["errorClicks"]},
        "paths": {
            p["path"]: (p["rageClicks"], p["deadClicks"], p["quickBacks"], p["excessiveScrolls"])
            for p in paths
            if p["rageClicks"] or p["deadClicks"] or p["quickBacks"] or p["excessiveScrolls"]
        },
        "deadclick": get(client, project, "heatmap", type="deadclick", **params)["meta"]["total"],
        "errorclick": get(client, project, "heatmap", type="errorclick", **params)["meta"]["total"],
        "sessions": {
            s["sessionId"]: {k: n for k, n in s["signals"].items() if n} for s in sessions if any(s["signals"].values())
        },
        "filtered": {
            k: sorted(s["sessionId"] for s in get(client, project, "sessions", limit=200, signal=k)["sessions"])
            for k in KINDS
        },
    }


def expected(
    bodies: list[dict[str, Any]], ts_from: int | None = None, ts_to: int | None = None, **rules: Any
) -> dict[str, Any]:
    """What the API must answer, from the oracle over the bodies posted."""
    rows = oracle.stored_rows(bodies)
    rage_rule = {k: rules.pop(k) for k in ("clicks_needed", "window_ms", "radius_px") if k in rules}
    found = {"rage": oracle.rage_rows(rows, **rage_rule), **oracle.signals(rows, **rules)}

    def inside(r: oracle.Row) -> bool:
        return (ts_from is None or r.ts >= ts_from) and (ts_to is None or r.ts <= ts_to)

    ranged = {k: [r for r in v if inside(r)] for k, v in found.items()}
    per_path: dict[str, list[int]] = {}
    for i, kind in enumerate(("rage", "dead", "quickback", "scroll")):
        for r in ranged[kind]:
            per_path.setdefault(r.path, [0, 0, 0, 0])[i] += 1
    per_session: dict[str, dict[str, int]] = {}
    for kind, found_rows in found.items():
        for r in found_rows:
            mine = per_session.setdefault(r.session_id, {})
            mine[kind] = mine.get(kind, 0) + 1
    return {
        "dead": dict(Counter(r.selector for r in ranged["dead"] if r.selector)),
        "error": dict(Counter(r.selector for r in ranged["error"] if r.selector)),
        "paths": {p: tuple(n) for p, n in per_path.items()},
        "deadclick": len(ranged["dead"]),
        "errorclick": len(ranged["error"]),
        "sessions": per_session,
        "filtered": {k: sorted({r.session_id for r in found[k]}) for k in KINDS},
    }


def test_dead_clicks_and_their_false_positives(client: FlaskClient) -> None:
    first = batch(
        click(0, "#buy"),  # nothing follows: dead
        click(10_000, "a.file[download]"),  # a download link: never dead
        click(20_000, "#nav"),
        ev("pageview", 20_500, "/next"),  # a pageview 500 ms later: not dead
        click(30_000, "#x"),
        click(31_000, "#y"),  # another selector 1 s later: #x is not dead, #y is
        click(40_000, "form > input#q"),  # a form field: never dead
        click(50_000, "#same"),
        click(50_400, "#same"),  # the same selector again is no effect: both dead
        click(60_000, "#late"),
        session_id="s",
    )
    project = ingest_all(client, [first])
    got = answers(client, project)
    assert got["dead"] == {"#buy": 1, "#y": 1, "#same": 2, "#late": 1}
    assert got["deadclick"] == 5 and got == expected([first])
    late = batch(ev("scroll", 61_200, scrollY=300), session_id="s")  # the effect arrives in a later batch
    ingest_all(client, [late])
    got = answers(client, project)
    assert got["dead"] == {"#buy": 1, "#y": 1, "#same": 2}
    assert got == expected([first, late])
    ranged = answers(client, project, **{"from": T + 45_000, "to": T + 70_000})
    assert ranged["dead"] == {"#same": 2} and ranged["deadclick"] == 2


def test_error_clicks(client: FlaskClient) -> None:
    body = batch(
        click(0, "#pay"),
        ev("custom", 800, name="error"),  # within 1 s: an error click
        click(5_000, "#pay"),
        ev("custom", 6_200, name="error"),  # 1.2 s later: none
        click(10_000, "#save"),
        ev("custom", 10_100, name="signup"),  # another name: none
        session_id="e",
    )
    project = ingest_all(client, [body])
    got = answers(client, project)
    assert got["error"] == {"#pay": 1} and got["errorclick"] == 1
    assert got["sessions"]["e"]["error"] == 1 and got["filtered"]["error"] == ["e"]
    assert got == expected([body])
    bad = client.get(f"/api/projects/{project}/sessions", query_string={"signal": "errors"}, headers=API)
    assert bad.status_code == 400, bad.get_json()


def test_quick_backs_count_against_the_page_left(client: FlaskClient) -> None:
    quick = batch(
        ev("pageview", 0, "/"),
        ev("pageview", 1_000, "/b"),
        ev("pageview", 5_000, "/"),  # back to / 4 s after /b: a quick back on /b
        ev("pageview", 20_000, "/c"),
        ev("pageview", 30_000, "/"),  # back after 10 s: none
        ev("pageview", 31_000, "/d"),
        ev("pageview", 32_000, "/e"),  # on to another page: none
        session_id="q",
    )
    project = ingest_all(client, [quick])
    got = answers(client, project)
    assert got["paths"] == {"/b": (0, 0, 1, 0)}
    assert got["filtered"]["quickback"] == ["q"]
    assert got == expected([quick])


def test_excessive_scrolling(client: FlaskClient) -> None:
    def scrolls(start: int, n: int, path: str = "/") -> list[dict[str, Any]]:
        return [ev("scroll", start + 1_000 * i, path, scrollY=100 * (i % 2)) for i in range(n)]

    # 16 rows up and down a second apart: 14 reversals, the 7th and the 14th end an episode.
    many = batch(*scrolls(0, 16), session_id="a")
    # 8 rows (6 reversals) are not excessive; nor 12 with a click in the middle.
    few = batch(*scrolls(0, 8), session_id="b")
    cut = batch(*scrolls(0, 6), click(5_500, "#here"), *scrolls(6_000, 6), session_id="c")
    # slow: a reversal every 11 s, never 7 within a minute
    slow = batch(*[ev("scroll", 11_000 * i, "/slow", scrollY=100 * (i % 2)) for i in range(16)], session_id="d")
    bodies = [many, few, cut, slow]
    project = ingest_all(client, bodies)
    got = answers(client, project)
    assert got["paths"] == {"/": (0, 0, 0, 2)}
    assert got["filtered"]["scroll"] == ["a"]
    assert got == expected(bodies)


def random_bodies(seed: int, sessions: int = 6) -> list[dict[str, Any]]:
    """Sessions wandering over three pages: clicks (some on a download link or a form field), pageviews,
    scroll bursts, inputs and custom events, close in time; each session in three batches posted out of
    order (late data)."""
    rng = random.Random(seed)
    bodies = []
    for s in range(sessions):
        found: list[dict[str, Any]] = []
        ts, path, y = rng.randrange(0, 5_000), "/", 0
        for _ in range(rng.randint(15, 40)):
            ts += rng.choice([50, 200, 400, 900, 1_300, 1_600, 2_500, 6_000])
            kind = rng.choices(["click", "pageview", "scroll", "input", "custom", "burst"], [6, 3, 3, 1, 2, 1])[0]
            if kind == "click":
                selector = rng.choice(["#a", "#b", "#b", "a[download]", "form > input#q"])
                found.append(click(ts, selector, path, rng.randrange(0, 1200), rng.randrange(0, 900)))
                if rng.random() < 0.3:  # a quick repeat, sometimes a rage burst
                    for _ in range(rng.randint(1, 3)):
                        ts += rng.randrange(50, 300)
                        found.append(click(ts, selector, path, 500, 500))
                if rng.random() < 0.25:  # a custom event soon after, sometimes an error
                    ts += rng.randrange(100, 1_500)
                    found.append(ev("custom", ts, path, name=rng.choice(["error", "oops"])))
            elif kind == "pageview":
                path = rng.choice(["/", "/a", "/b"])
                found.append(ev("pageview", ts, path))
            elif kind in ("scroll", "burst"):
                for _ in range(1 if kind == "scroll" else rng.randint(6, 14)):
                    y = max(0, y + rng.choice([-300, -100, 100, 300]))
                    found.append(ev("scroll", ts, path, scrollY=y, scrollDepthPct=min(100, y / 30)))
                    ts += rng.randrange(100, 2_000)
            elif kind == "input":
                found.append(ev("input", ts, path))
            else:
                found.append(ev("custom", ts, path, name=rng.choice(["error", "oops", "signup"])))
        cuts = sorted(rng.sample(range(1, len(found)), 2))
        parts = [found[: cuts[0]], found[cuts[0] : cuts[1]], found[cuts[1] :]]
        rng.shuffle(parts)
        bodies += [batch(*part, session_id=f"r{s}") for part in parts]
    rng.shuffle(bodies)
    return bodies


def test_random_data_against_the_oracle(make_app: Callable[..., Flask]) -> None:
    """Random sessions on every backend: every answer equals the oracle's, in ranges too; then again
    after `flask heat recompute-signals` under other thresholds, and after an erase."""
    bodies = random_bodies(7)
    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    project = ingest_all(client, bodies)
    assert answers(client, project) == expected(bodies)
    window = {"from": T + 8_000, "to": T + 30_000}
    assert answers(client, project, **window) == expected(bodies, window["from"], window["to"])
    rows, end = oracle.stored_rows(bodies), T + 10**6
    for kind, name in (("dead", "deadclick"), ("error", "errorclick")):
        for path, lo in ((None, 0), ("/a", T + 8_000)):
            where = {"path": path} if path else {}
            got = get(client, project, "heatmap", type=name, resolution=64, **{"from": lo, "to": end}, **where)
            want = oracle.signal_heatmap(rows, kind, path=path, ts_from=lo, ts_to=end, resolution=64)
            assert got["points"] == want["points"] and (want["meta"]["total"] or path)
            assert all(got["meta"][k] == want["meta"][k] for k in ("total", "plotted", "viewport", "renderHeight"))

    other = {
        "dead_click_ms": 700,
        "signal_ignore_selectors": ["#b"],
        "error_event_names": ["error", "oops"],
        "quick_back_ms": 3_000,
        "scroll_reversals": 3,
    }
    rules = {"dead_ms": 700, "ignore": ["#b"], "error_names": ["error", "oops"], "quick_back_ms": 3_000, "reversals": 3}
    assert expected(bodies) != expected(bodies, **rules)  # the data tells the thresholds apart
    second = make_app(rate_limit="100000 per second", **other)
    client = second.test_client()
    out = second.test_cli_runner().invoke(args=["heat", "recompute-signals"])
    assert out.exit_code == 0, out.output
    assert answers(client, project) == expected(bodies, **rules)

    cut = T + 12_000
    out = second.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--before", str(cut)])
    assert out.exit_code == 0 and json.loads(out.stdout)["verified"] is True, out.output
    kept = [dict(b, events=[e for e in b["events"] if e["ts"] >= cut]) for b in bodies]
    assert answers(client, project) == expected(kept, **rules)


def test_a_database_without_the_signals_table_is_moved_forward(app: Flask, client: FlaskClient, backend: str) -> None:
    bodies = [
        batch(
            click(0, "#buy"),
            ev("pageview", 100, "/"),
            ev("pageview", 200, "/b"),
            ev("pageview", 300, "/"),
            session_id="m",
        )
    ]
    project = ingest_all(client, bodies)
    want = expected(bodies)
    assert answers(client, project) == want and want["paths"] == {"/b": (0, 0, 1, 0)}
    repo: Any = app.extensions["heat_collector"].repository
    if backend.startswith("mongodb"):
        repo.db.drop_collection("heat_signals")
        repo.db["heat_migrations"].delete_one({"_id": "signals"})
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE heat_signals")
    out = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert out.exit_code == 0, out.output
    assert answers(client, project) == want


def test_signal_thresholds_are_validated() -> None:
    import pytest

    from flask_heat_collector import ConfigurationError, HeatCollector

    for key, value in (("HEAT_DEAD_CLICK_MS", 0), ("HEAT_QUICK_BACK_MS", -1), ("HEAT_SCROLL_REVERSALS", "x"),
                       ("HEAT_SIGNAL_IGNORE_SELECTORS", [""]), ("HEAT_ERROR_EVENT_NAMES", 3)):  # fmt: skip
        app = Flask(__name__)
        app.config.update({"HEAT_DATABASE_URI": "sqlite://", key: value})
        with pytest.raises(ConfigurationError, match=key):
            HeatCollector(app)


def test_purge_corrects_signals(make_app: Callable[..., Flask]) -> None:
    import time

    now = int(time.time() * 1000)
    day = 86_400_000
    cut = (now // day - 2) * day  # the purge's cut: UTC midnight two days ago
    app = make_app(retention_days=2, aggregate_retention_days=400)
    client = app.test_client()

    def at(kind: str, ts: int, **fields: Any) -> dict[str, Any]:
        return dict(ev(kind, 0, **fields), ts=ts)

    # Before the cut: a dead click and the pageview that makes a quick back of the click's page;
    # after it: a click whose only effect (a scroll) is also after it, and a dead one.
    body = batch(
        at("pageview", cut - 9_000, path="/"),
        at("click", cut - 8_000, selector="#old", x=1, y=1),
        at("pageview", cut - 3_000, path="/b"),
        at("pageview", cut - 1_000, path="/"),
        at("click", cut + 100, selector="#new", x=1, y=1),
        at("scroll", cut + 200, scrollY=50),
        at("click", cut + 5_000, selector="#gone", x=1, y=1),
        session_id="p",
    )
    project = ingest_all(client, [body])
    assert answers(client, project) == expected([body])
    assert expected([body])["sessions"]["p"] == {"dead": 2, "quickback": 1}
    out = app.test_cli_runner().invoke(args=["heat", "purge"])
    assert out.exit_code == 0, out.output
    kept = [dict(body, events=[e for e in body["events"] if e["ts"] >= cut])]
    assert answers(client, project) == expected(kept)
    assert expected(kept)["sessions"]["p"] == {"dead": 1}


def test_ignore_patterns_match_the_last_compound_with_star_only() -> None:
    from flask_heat_collector.signals import DEFAULT_IGNORE, selector_ignored

    for selector in ("form > input#q", "input", "textarea.note", "main select#country", "a.file[download]",
                     'a[download="x.pdf"]', "ul li+a[download]"):  # fmt: skip
        assert selector_ignored(selector, DEFAULT_IGNORE), selector
    for selector in ("#inputs", "div.select-box", "input#q > span", "button", "a[href='/dl']", "", None):
        assert not selector_ignored(selector, DEFAULT_IGNORE), selector
    assert selector_ignored("nav [data-x]", ["[data-x]"])  # brackets are plain characters
    assert not selector_ignored("nav d", ["[d]"]) and not selector_ignored("#a", ["#?"])


# Several exact widths in one band (1300x800), and a narrow band beside it.
SIGNAL_VIEWS = [(1320, 790), (1310, 820), (1290, 800), (1310, 820), (400, 800)]
SIGNAL_MAPS = ("rageclick", "deadclick", "errorclick")


def mixed_width_bodies(seed: int) -> list[dict[str, Any]]:
    """Sessions of several exact widths with lone (dead) clicks, rage bursts and clicks followed by an error."""
    rng = random.Random(seed)
    bodies = []
    for s in range(10):
        w, h = SIGNAL_VIEWS[s % len(SIGNAL_VIEWS)]
        found: list[dict[str, Any]] = []
        ts = rng.randrange(0, 5_000)
        for _ in range(rng.randint(6, 14)):
            ts += rng.choice([300, 1_200, 2_000, 4_000])
            x, y, selector = rng.randrange(0, w), rng.randrange(0, 2_000), rng.choice(["#a", "#b", "button.c"])
            for _ in range(rng.choice([1, 1, 3, 4])):  # a lone click or a rage burst
                found.append(event("click", ts=T + ts, x=x, y=y, selector=selector, w=w, h=h))
                ts += 120
            if rng.random() < 0.3:
                found.append(event("custom", ts=T + ts + 200, name="error", w=w, h=h))
        bodies.append(batch(*found, session_id=f"w{s}"))
    return bodies


def signal_maps_match(client: FlaskClient, project: str, rows: list[oracle.Row]) -> list[str]:
    """The rage, dead and error click maps of the data's whole UTC day (no partial day read from the
    events) against the oracle's, in both bands and every anchor."""
    start = T - T % 86_400_000
    end = start + 86_400_000 - 1
    assert max(r.ts for r in rows) < end
    failures = []
    for name in SIGNAL_MAPS:
        for viewports in ("width", "all"):
            for anchor in ("left", "center", "scale"):
                params = {"viewports": viewports, "resolution": 64, "anchor": anchor}
                got = get(client, project, "heatmap", type=name, **{"from": start, "to": end}, **params)
                if name == "rageclick":
                    want = oracle.rage_heatmap(rows, ts_from=start, ts_to=end, **params)
                else:
                    want = oracle.signal_heatmap(rows, name.removesuffix("click"), ts_from=start, ts_to=end, **params)
                keys = ("total", "plotted", "viewport", "otherViewports", "renderHeight", "anchor")
                if got["points"] != want["points"] or any(got["meta"][k] != want["meta"][k] for k in keys):
                    failures.append(f"{name} {params}: {got} != {want}")
    return failures


def test_signal_maps_read_the_width_stored_with_each_row(app: Flask, client: FlaskClient, backend: str) -> None:
    """Settled rage clicks and signals keep their click's exact width: their maps read no event by id,
    stay exact over rows settled before the width was kept (they read those events), and a recompute
    stores the width again."""
    bodies = mixed_width_bodies(11)
    project = ingest_all(client, bodies)
    rows = oracle.stored_rows(bodies)
    assert oracle.rage_rows(rows) and all(oracle.signals(rows)[k] for k in ("dead", "error"))
    assert len({r.view_w for r in oracle.signals(rows)["dead"] if r.bucket[0] == 1300}) == 3
    repo: Any = app.extensions["heat_collector"].repository

    def events_read() -> tuple[list[str], int]:
        before = repo.tally.events
        failures = signal_maps_match(client, project, rows)
        return failures, repo.tally.events - before

    assert events_read()[0] == []  # settles every session
    assert events_read() == ([], 0)
    if backend.startswith("mongodb"):  # a database settled before the width was kept
        for name in ("heat_rage_clicks", "heat_signals"):
            assert repo.db[name].update_many({}, {"$unset": {"viewW": ""}}).modified_count > 0
    else:
        with repo.engine.begin() as conn:
            for name in ("heat_rage_clicks", "heat_signals"):
                assert conn.exec_driver_sql(f"UPDATE {name} SET view_w = NULL").rowcount > 0
    failures, read = events_read()
    assert failures == [] and read > 0
    out = app.test_cli_runner().invoke(args=["heat", "recompute-signals"])
    assert out.exit_code == 0, out.output
    assert events_read() == ([], 0)


GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DAY = 86_400_000


def counts(client: FlaskClient, project: str, **params: Any) -> dict[str, Any]:
    """The signal counts of the elements and paths reports, zeros left out."""
    elements = get(client, project, "elements", limit=500, **params)["elements"]
    paths = get(client, project, "paths", limit=500, **params)["paths"]
    return {
        "elements": {
            e["selector"]: (e["rageClicks"], e["deadClicks"], e["errorClicks"])
            for e in elements
            if e["rageClicks"] or e["deadClicks"] or e["errorClicks"]
        },
        "paths": {
            p["path"]: (p["rageClicks"], p["deadClicks"], p["quickBacks"], p["excessiveScrolls"])
            for p in paths
            if p["rageClicks"] or p["deadClicks"] or p["quickBacks"] or p["excessiveScrolls"]
        },
    }


def expected_counts(bodies: list[dict[str, Any]], keep: Callable[[oracle.Row], bool]) -> dict[str, Any]:
    rows = oracle.stored_rows(bodies)
    found = {"rage": oracle.rage_rows(rows), **oracle.signals(rows)}
    elements: dict[str, list[int]] = {}
    for i, kind in enumerate(("rage", "dead", "error")):
        for r in found[kind]:
            if keep(r) and r.selector:
                elements.setdefault(r.selector, [0, 0, 0])[i] += 1
    paths: dict[str, list[int]] = {}
    for i, kind in enumerate(("rage", "dead", "quickback", "scroll")):
        for r in found[kind]:
            if keep(r):
                paths.setdefault(r.path, [0, 0, 0, 0])[i] += 1
    return {"elements": {s: tuple(n) for s, n in elements.items()}, "paths": {p: tuple(n) for p, n in paths.items()}}


def test_counts_over_days_and_classes_against_the_oracle(make_app: Callable[..., Flask], backend: str) -> None:
    """Signals over four UTC days (sessions across midnight too), two sessions bots: the paths and
    elements reports count whole days from the stored counts, the dead-click and error-click maps
    take them from their pieces, and the rest from the signal rows; every range and class equals the
    oracle, after a bot becomes human and after a session is erased."""
    rng = random.Random(11)
    bodies = random_bodies(5, sessions=10)
    midnight = T - T % DAY + DAY
    shifts = {f"r{s}": s * 10 * 3_600_000 for s in range(10)}
    shifts["r3"] = midnight - 40_000 - T  # across midnight
    shifts["r8"] = midnight + 2 * DAY - 25_000 - T
    for body in bodies:
        for e in body["events"]:
            e["ts"] += shifts[body["session"]["id"]]
    bots = {"r1", "r6"}
    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    project = ""
    for i, body in enumerate(bodies):
        agent = GOOGLEBOT if body["session"]["id"] in bots else "TestAgent/1.0"
        response = client.post("/ingest", json=body, headers={"X-Project-Key": PROJECT_KEY, "User-Agent": agent})
        assert response.status_code == 200, response.get_json()
        project = response.get_json()["projectId"]
        if i % 7 == 6:  # settled now and then: later batches add to the stored counts, or un-dead clicks
            get(client, project, "heatmap", type="deadclick")
    first, last = T, T + 4 * DAY
    ranges: list[dict[str, int]] = [{}, {"from": midnight, "to": midnight + 2 * DAY - 1}]
    ranges += [dict(zip(("from", "to"), sorted(rng.sample(range(first, last), 2)), strict=True)) for _ in range(4)]

    def check(kept: list[dict[str, Any]], bots: set[str]) -> None:
        for window in ranges:
            for traffic in ("human", "bot", "all"):

                def keep(r: oracle.Row, window: dict[str, int] = window, traffic: str = traffic) -> bool:
                    inside = window.get("from", r.ts) <= r.ts <= window.get("to", r.ts)
                    return inside and (traffic == "all" or (r.session_id in bots) == (traffic == "bot"))

                got = counts(client, project, traffic=traffic, **window)
                assert got == expected_counts(kept, keep), (window, traffic)
                classed = [b for b in kept if traffic == "all" or (b["session"]["id"] in bots) == (traffic == "bot")]
                rows = oracle.stored_rows(classed)
                lo, hi = window.get("from", 0), window.get("to", last + DAY)
                for kind, name in (("dead", "deadclick"), ("error", "errorclick")):
                    for resolution in (64, 50):  # 50: not a divisor of the pieces' 128 (rows instead)
                        query = {"from": lo, "to": hi, "traffic": traffic, "resolution": resolution}
                        got_map = get(client, project, "heatmap", type=name, **query)
                        want = oracle.signal_heatmap(rows, kind, ts_from=lo, ts_to=hi, resolution=resolution)
                        assert got_map["points"] == want["points"], (kind, window, traffic, resolution)
                        for key in ("total", "plotted", "viewport", "renderHeight"):
                            assert got_map["meta"][key] == want["meta"][key], (key, kind, window, traffic)

    assert expected_counts(bodies, lambda r: r.session_id in bots)["paths"]  # the bots have signals
    check(bodies, bots)
    repo: Any = app.extensions["heat_collector"].repository
    if backend.startswith("mongodb"):
        repo.db["sessions"].update_one({"id": "r1"}, {"$set": {"userAgent": "TestAgent/1.0"}})
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE sessions SET user_agent = 'TestAgent/1.0' WHERE id = 'r1'")
    out = app.test_cli_runner().invoke(args=["heat", "reclassify"])
    assert out.exit_code == 0 and "0 became bot, 1 became human" in out.output, out.output
    check(bodies, {"r6"})
    out = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--session-id", "r3"])
    assert out.exit_code == 0, out.output
    check([b for b in bodies if b["session"]["id"] != "r3"], {"r6"})


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_large_settle_refreshes_postgresql_statistics(make_app: Callable[..., Flask]) -> None:
    """Settling many sessions at once on PostgreSQL analyzes the signal tables, so that the reports
    that follow are planned for their rows, not for empty tables."""
    import time

    import sqlalchemy as sa

    from flask_heat_collector.repositories.sql_statistics import ANALYZE_AFTER

    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    engine = app.extensions["heat_collector"].repository.engine

    def analyzed() -> int:
        with engine.connect() as conn:
            stmt = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'heat_signals'"
            return int(conn.execute(sa.text(stmt)).scalar() or 0)

    project = ingest_all(client, [batch(click(i, "#a", "/d")) for i in range(1)])
    get(client, project, "paths")  # one session settled: no ANALYZE
    time.sleep(1)
    before = analyzed()
    many = ANALYZE_AFTER + 50  # a worker's timed compaction may settle a few of them first
    bodies = [batch(click(10 * i, "#a", "/d"), session_id=f"many-{i}") for i in range(many)]
    ingest_all(client, bodies)
    assert get(client, project, "paths")["paths"][0]["deadClicks"] == many + 1
    deadline = time.monotonic() + 10
    while analyzed() == before and time.monotonic() < deadline:  # the statistics are reported at idle
        time.sleep(0.2)
    assert analyzed() == before + 1


def _pending(app: Flask) -> int:
    """Sessions whose signals wait for a settle (the pending marks of every backend)."""
    repo = app.extensions["heat_collector"].repository
    if hasattr(repo, "db"):
        return int(repo.db.heat_rage_pending.count_documents({}))
    import sqlalchemy as sa

    with repo.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM heat_rage_pending")).scalar() or 0)


def test_workers_settle_as_they_ingest(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker settles as many pending sessions as it stored batches with signal rows, every
    compactor.SETTLE_EVERY such batches (compactor.SETTLE_STEP after each answer): the first report
    after a burst does not settle the burst."""
    from flask_heat_collector import compactor

    SETTLE_EVERY = 40  # (500) fewer batches, the same rule
    monkeypatch.setattr(compactor, "SETTLE_EVERY", SETTLE_EVERY)
    sessions = SETTLE_EVERY + 30
    bodies = [batch(click(1000 * i, "#a", "/d"), session_id=f"burst-{i}") for i in range(sessions)]
    # HEAT_SIGNAL_SETTLE_IDLE_MS: 0 settles any session; a minute settles none of these live ones
    for idle_ms, left in ((0, sessions - SETTLE_EVERY), (60_000, sessions)):
        app = make_app(aggregate_compact_seconds=0, rate_limit="100000 per second", signal_settle_idle_ms=idle_ms)
        client = app.test_client()
        key = f"k-idle-{idle_ms}"
        project = ""
        for body in bodies:
            with client.post("/ingest", json=body, headers=headers(key)) as response:  # closed: as a server does
                assert response.status_code == 200
                project = response.get_json()["projectId"]
        assert _pending(app) == left
        assert get(client, project, "paths")["paths"][0]["deadClicks"] == sessions
        assert _pending(app) == 0
