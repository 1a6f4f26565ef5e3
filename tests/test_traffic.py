"""Traffic classes (SPEC §10, issue 24, docs/traffic.md): each session is human or bot, every report
leaves bots out by default and says what it left out, ``traffic=bot|all`` shows them, and
``flask heat reclassify`` moves a session's contributions exactly.

The random-data test compares a project holding humans and bots with reference projects holding one
class each (the bots sent with a person's agent, so they count as people there): every report of the
mixed project under ``traffic=human|bot|all`` must equal the reference's default answer, and
``meta.excluded`` the other reference's ``meta.sample``; the events list's ``meta.excluded`` is also
counted from the posted bodies (tests/oracle.py's stored rows)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.errors import ConfigurationError, StorageUnavailable
from flask_heat_collector.traffic import (
    DEFAULT_RULES,
    FAST_CLICKS,
    REGULAR_CLICKS,
    TrafficRules,
    agent_verdict,
    behaviour_reason,
)

from . import oracle
from .helpers import API, PROJECT_KEY, backend_free, batch, event, without_ids

T = 1_790_000_000_000
DAY = 86_400_000
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"
)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
# The behaviour rules at their defaults (tests/helpers.Apps turns them off for the other tests).
OPTIONS: dict[str, Any] = {
    "rate_limit": "100000 per second",
    "new_projects_per_ip": "1000 per hour",
    "bot_regular_clicks": DEFAULT_RULES.regular_clicks,
    "bot_fast_clicks": DEFAULT_RULES.fast_clicks,
}
VIEW: dict[str, Any] = {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}}


# -- rules, without a database ---------------------------------------------------------------------


def test_agents_from_the_crawler_list_and_headless_markers() -> None:
    assert agent_verdict(GOOGLEBOT, None) == ("bot", "user_agent:Googlebot")
    assert agent_verdict(HEADLESS, None) == ("bot", "headless")
    assert agent_verdict(CHROME, json.dumps({"ua": HEADLESS})) == ("bot", "headless")  # the SDK's device.ua
    assert agent_verdict(CHROME, json.dumps({"ua": CHROME, "webdriver": True})) == ("bot", "headless")
    assert agent_verdict(CHROME, json.dumps({"ua": CHROME, "platform": "Linux"})) == ("human", None)
    assert agent_verdict(None, None) == ("human", None)


def test_behaviour_rules_and_their_false_positives() -> None:
    rules = DEFAULT_RULES  # 8 regular clicks within 10 ms of jitter; 20 clicks within 1,000 ms
    timer = [i * 500 for i in range(8)]
    assert behaviour_reason(timer, [], rules) == REGULAR_CLICKS
    assert behaviour_reason(timer[:7], [], rules) is None  # one click short
    assert behaviour_reason(timer, [1_600], rules) is None  # the pointer moved during the run
    jitter = [0, 500, 1_003, 1_505, 2_008, 2_510, 3_013, 3_515]  # gaps 500..503: within 10 ms
    assert behaviour_reason(jitter, [], rules) == REGULAR_CLICKS
    # A person clicking a stepper fast (touch: no pointer moves): gaps of 150..260 ms are not a timer.
    stepper = [0, 180, 410, 560, 790, 1_000, 1_260, 1_450, 1_690, 1_880, 2_100]
    assert behaviour_reason(stepper, [], rules) is None

    def clicks(n: int, gaps: tuple[int, int]) -> list[int]:
        return [sum(gaps[j % 2] for j in range(i)) for i in range(n)]

    burst = clicks(20, (20, 70))  # 20 clicks in 830 ms, irregular
    assert behaviour_reason(burst, [], rules) == FAST_CLICKS
    assert behaviour_reason(burst[:19], [], rules) is None
    assert behaviour_reason(clicks(20, (30, 80)), [], rules) is None  # 1,020 ms: not within 1,000
    looser = TrafficRules(regular_clicks=11, regular_jitter_ms=300)
    assert behaviour_reason(stepper, [], looser) == REGULAR_CLICKS
    off = TrafficRules(regular_clicks=0, fast_clicks=0)  # 0 turns a rule off
    assert behaviour_reason(timer, [], off) is None and behaviour_reason(burst, [], off) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEAT_BOT_REGULAR_CLICKS", 2),
        ("HEAT_BOT_REGULAR_JITTER_MS", -1),
        ("HEAT_BOT_FAST_CLICKS", 1),
        ("HEAT_BOT_FAST_WINDOW_MS", 0),
    ],
)
def test_thresholds_are_validated(key: str, value: int) -> None:
    from flask_heat_collector import HeatCollector

    app = Flask("bad")
    app.config.update({key: value, "HEAT_DATABASE_URI": "sqlite://"})
    with pytest.raises(ConfigurationError, match=key):
        HeatCollector(app)


# -- through the API, on every backend -------------------------------------------------------------


def post(client: FlaskClient, body: dict[str, Any], key: str = PROJECT_KEY, agent: str = "TestAgent/1.0") -> str:
    response = client.post("/ingest", json=body, headers={"X-Project-Key": key, "User-Agent": agent})
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["projectId"])


def get(client: FlaskClient, project: str, endpoint: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/projects/{project}/{endpoint}", query_string=params, headers=API)
    assert response.status_code == 200, response.get_json()
    found: dict[str, Any] = response.get_json()
    return found


def ev(kind: str, ts: int, path: str = "/a", **fields: Any) -> dict[str, Any]:
    return event(kind, ts=ts, path=path, **VIEW, **fields)


def random_sessions(seed: int) -> list[tuple[bool, dict[str, Any]]]:
    """``(is_bot, body)`` batches of a few sessions over three UTC days, in posting order."""
    rnd = random.Random(seed)
    found: list[tuple[bool, dict[str, Any]]] = []
    for s in range(8):
        bot = s % 3 == 1
        start = T + rnd.randrange(0, 3 * DAY - 60_000)
        for part in range(rnd.randint(1, 2)):
            events = []
            ts = start + part * 20_000
            for _ in range(rnd.randint(3, 9)):
                ts += rnd.randrange(50, 3_000)
                path = rnd.choice(("/a", "/b", "/p/1", "/p/2"))
                kind = rnd.choice(("click", "click", "move", "scroll", "pageview"))
                if kind == "click":
                    x, y = rnd.randrange(0, 1280), rnd.randrange(0, 2000)
                    events.append(ev("click", ts, path, x=x, y=y, selector=rnd.choice(("#a", "#b", "#c"))))
                elif kind == "move":
                    points = [
                        {"x": rnd.randrange(0, 1280), "y": rnd.randrange(0, 900), "tsOffset": i * 40} for i in range(3)
                    ]
                    events.append(ev("move", ts, path, points=points))
                elif kind == "scroll":
                    events.append(
                        ev("scroll", ts, path, scrollY=rnd.randrange(0, 3000), scrollDepthPct=rnd.randrange(1, 101))
                    )
                else:
                    events.append(ev("pageview", ts, path))
            found.append((bot, batch(*events, session_id=f"s{s}", started_at=start, last_seen_at=ts)))
    return found


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("heatmap", {}),
    ("heatmap", {"type": "move", "resolution": 64}),
    ("heatmap", {"type": "scroll"}),
    ("heatmap", {"type": "all", "path": "/a"}),
    ("heatmap", {"type": "rageclick"}),
    ("heatmap", {"type": "deadclick"}),
    ("scrollmap", {"path": "/a"}),
    ("elements", {"limit": 500}),
    ("paths", {"limit": 500}),
    ("page-groups/preview", {"template": "/p/:id"}),
    ("events", {"limit": 1000}),
    ("events", {"limit": 1000, "path": "/a", "type": "click"}),
    ("sessions", {"limit": 200}),
    ("sessions", {"limit": 200, "visitedPath": "/b"}),
]
_SPAN = {"from": T, "to": T + 4 * DAY}  # (compare's `to` defaults to now)
COMPARES: list[dict[str, Any]] = [
    {"report": "heatmap", "a": "path=/a", "b": "path=/b", **_SPAN},
    {"report": "elements", "a": "", "b": f"path=/a;from={T + DAY // 2}", **_SPAN},
    {"report": "scrollmap", "a": "path=/a", "b": "path=/p/1", **_SPAN},
]


def answer(client: FlaskClient, project: str, endpoint: str, **params: Any) -> tuple[Any, dict[str, Any]]:
    """The answer without ids and ``meta.excluded``, and ``meta.excluded``."""
    found = get(client, project, endpoint, **params)
    excluded = found["meta"].pop("excluded")
    return without_ids(found, {}), excluded


def test_reports_by_traffic_class_against_single_class_projects(make_app: Callable[..., Flask]) -> None:
    app = make_app(**OPTIONS)
    client = app.test_client()
    sessions = random_sessions(11)
    mixed = humans = bots = every = ""
    for bot, body in sessions:
        mixed = post(client, body, agent=GOOGLEBOT if bot else "TestAgent/1.0")
        every = post(client, body, key="k-every")
        if bot:
            bots = post(client, body, key="k-bots")
        else:
            humans = post(client, body, key="k-humans")
    rows = oracle.stored_rows(body for _, body in sessions)
    bot_ids = {body["session"]["id"] for bot, body in sessions if bot}
    started: dict[str, int] = {}
    seen: dict[str, int] = {}
    for _, body in sessions:
        sid = body["session"]["id"]
        started.setdefault(sid, body["session"]["startedAt"])
        seen[sid] = max(seen.get(sid, 0), body["session"]["lastSeenAt"])
    counts = oracle.session_event_counts(rows)
    ranges = [{}, {"from": T + DAY // 2, "to": T + 2 * DAY + DAY // 3}]  # whole days and partial ones
    for window in ranges:
        for endpoint, params in QUERIES:
            query = {**params, **window}
            mine = {t: answer(client, mixed, endpoint, traffic=t, **query) for t in ("human", "bot", "all")}
            refs = {
                t: answer(client, p, endpoint, **query)[0]
                for t, p in (("human", humans), ("bot", bots), ("all", every))
            }
            for traffic in ("human", "bot", "all"):
                assert mine[traffic][0] == refs[traffic], (endpoint, query, traffic)
            assert mine["all"][1] == {"sessions": 0, "events": 0}
            lo, hi = window.get("from", 0), window.get("to", 10**15)
            if endpoint == "events" and len(params) == 1:  # the rows (a move: its points) of the bots, from the bodies
                shown = [r for r in rows if lo <= r.ts <= hi and r.session_id in bot_ids]
                assert mine["human"][1] == {"sessions": len({r.session_id for r in shown}), "events": len(shown)}
            elif endpoint == "sessions" and len(params) == 1:  # the bot sessions within from..to, their rows
                inside = [s for s in bot_ids if lo <= started[s] and seen[s] <= hi]
                assert mine["human"][1] == {"sessions": len(inside), "events": sum(counts[s] for s in inside)}
            elif endpoint not in ("events", "sessions"):
                for traffic, other in (("human", "bot"), ("bot", "human")):
                    sample = refs[other]["meta"]["sample"]
                    assert mine[traffic][1] == {"sessions": sample["sessions"], "events": sample["events"]}
    assert get(client, mixed, "sessions", limit=200)["meta"]["excluded"]["sessions"] == len(bot_ids)
    for params in COMPARES:  # each side by class, and what it left out
        sides = {t: get(client, mixed, "compare", traffic=t, **params) for t in ("human", "bot", "all")}
        refs = {t: get(client, p, "compare", **params) for t, p in (("human", humans), ("bot", bots), ("all", every))}
        pairs: list[tuple[str, str | None]] = [("human", "bot"), ("bot", "human"), ("all", None)]
        for asked, rest in pairs:
            for side in ("a", "b"):
                excluded = sides[asked][side]["report"]["meta"].pop("excluded")
                refs[asked][side]["report"]["meta"].pop("excluded")
                if rest is None:
                    assert excluded == {"sessions": 0, "events": 0}
                else:
                    sample = refs[rest][side]["report"]["meta"]["sample"]
                    assert excluded == {"sessions": sample["sessions"], "events": sample["events"]}
            assert without_ids(sides[asked], {}) == without_ids(refs[asked], {}), (params, asked)
    bad = client.get(f"/api/projects/{mixed}/heatmap", query_string={"traffic": "robots"}, headers=API)
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_query"


def regular_clicks(start: int, n: int, gap: int = 500) -> list[dict[str, Any]]:
    return [ev("click", start + i * gap, x=100, y=100, selector="#next") for i in range(n)]


def test_a_behaviour_rule_firing_on_a_later_batch_moves_the_session(make_app: Callable[..., Flask]) -> None:
    app = make_app(**OPTIONS)
    client = app.test_client()
    person = batch(ev("click", T + 5, x=10, y=10, selector="#a"), ev("move", T + 6), session_id="person")
    first = batch(*regular_clicks(T, 4), session_id="script")  # 4 clicks: not yet a rule
    second = batch(*regular_clicks(T + 2_000, 4), session_id="script")  # 8 at 500 ms, no move: a timer
    project = post(client, person)
    post(client, first)
    assert get(client, project, "heatmap")["meta"]["total"] == 5
    app.extensions["heat_collector"].repository.compact()  # the human pieces merged before the change
    post(client, second)
    reference = post(client, person, key="k-person")
    assert answer(client, project, "heatmap")[0] == answer(client, reference, "heatmap")[0]
    assert answer(client, project, "elements")[0] == answer(client, reference, "elements")[0]
    assert answer(client, project, "paths")[0] == answer(client, reference, "paths")[0]
    assert get(client, project, "heatmap")["meta"]["excluded"] == {"sessions": 1, "events": 8}
    assert get(client, project, "heatmap", traffic="bot")["meta"]["total"] == 8
    detail = client.get(f"/api/projects/{project}/sessions/script", headers=API).get_json()
    assert detail["session"]["traffic"] == "bot" and detail["session"]["trafficReason"] == REGULAR_CLICKS


INGEST = {"X-Project-Key": PROJECT_KEY, "User-Agent": "TestAgent/1.0"}


@backend_free
def test_a_failed_classification_after_the_commit_does_not_fail_the_batch(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, logs: Any
) -> None:
    """The batch is committed before its session is classified: a database error there is logged,
    the answer stays 200 with what was stored, and the next clicking batch decides the session."""
    app = make_app(**OPTIONS)
    client = app.test_client()
    repository = app.extensions["heat_collector"].repository
    decide = repository.classify_sessions

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("could not serialize access due to concurrent update")

    monkeypatch.setattr(repository, "classify_sessions", down)
    stored = client.post("/ingest", json=batch(*regular_clicks(T, 8), session_id="script"), headers=INGEST)
    assert stored.status_code == 200 and stored.get_json()["accepted"] == 8
    assert any("classifying its session failed" in line for line in logs.lines)
    project = stored.get_json()["projectId"]
    assert get(client, project, "heatmap", traffic="all")["meta"]["total"] == 8
    monkeypatch.setattr(repository, "classify_sessions", decide)
    post(client, batch(*regular_clicks(T + 4_000, 1), session_id="script"))
    assert get(client, project, "heatmap")["meta"]["excluded"] == {"sessions": 1, "events": 9}


def test_reclassify_after_a_threshold_change_equals_a_fresh_ingest(make_app: Callable[..., Flask]) -> None:
    bodies = [
        batch(*regular_clicks(T, 8), session_id="timer"),  # a bot under the defaults
        # 9 clicks at gaps of 700 and 730 ms: 30 ms of jitter
        batch(
            *[ev("click", T + DAY + i * 715 + (15 if i % 2 else 0), x=9, y=9, selector="#n") for i in range(9)],
            session_id="clicker",
        ),
        batch(ev("click", T + 3, x=5, y=5, selector="#x"), session_id="person"),
    ]
    app = make_app(**OPTIONS)
    client = app.test_client()
    project = ""
    for body in bodies:
        project = post(client, body)
    assert get(client, project, "heatmap")["meta"]["excluded"]["sessions"] == 1
    stricter = {"bot_regular_clicks": 9, "bot_regular_jitter_ms": 40}  # "timer" is no bot now, "clicker" is
    second = make_app(**{**OPTIONS, **stricter})
    out = second.test_cli_runner().invoke(args=["heat", "reclassify", "--project-id", project])
    assert out.exit_code == 0, out.output
    assert "1 became bot, 1 became human" in out.output
    client = second.test_client()
    fresh = ""
    for body in bodies:
        fresh = post(client, body, key="k-fresh")
    for endpoint, params in QUERIES:
        for traffic in ("human", "bot", "all"):
            got = get(client, project, endpoint, traffic=traffic, **params)
            want = get(client, fresh, endpoint, traffic=traffic, **params)
            assert without_ids(got, {}) == without_ids(want, {}), (endpoint, traffic)
    again = second.test_cli_runner().invoke(args=["heat", "reclassify", "--since", str(T)])
    assert "0 became bot, 0 became human" in again.output


def test_erase_and_purge_stay_exact_with_bots(make_app: Callable[..., Flask]) -> None:
    app = make_app(**OPTIONS)
    client = app.test_client()
    sessions = random_sessions(5)
    project = ""
    for bot, body in sessions:
        project = post(client, body, agent=GOOGLEBOT if bot else "TestAgent/1.0")
    cut = T + DAY + DAY // 2
    out = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--before", str(cut)])
    assert out.exit_code == 0 and json.loads(out.stdout)["verified"] is True, out.output
    reference = ""
    for bot, body in sessions:
        kept = dict(body, events=[e for e in body["events"] if e["ts"] >= cut])
        if kept["events"]:
            reference = post(client, kept, key="k-kept", agent=GOOGLEBOT if bot else "TestAgent/1.0")
    for endpoint, params in QUERIES:
        for traffic in ("human", "bot", "all"):
            got = get(client, project, endpoint, traffic=traffic, **params)
            want = get(client, reference, endpoint, traffic=traffic, **params)
            assert without_ids(got, {}) == without_ids(want, {}), (endpoint, traffic)


def test_an_older_database_gains_the_traffic_columns(make_app: Callable[..., Flask], backend: str) -> None:
    """A database of the layout before the traffic classes (its sessions aggregated, whatever their
    agent) is moved forward by `flask heat migrate`: every session is human until `reclassify`."""
    app = make_app(**OPTIONS)
    client = app.test_client()
    crawler = batch(ev("click", T, x=10, y=10, selector="#a"), session_id="crawler")
    person = batch(ev("click", T + 5, x=20, y=20, selector="#b"), session_id="person")
    project = post(client, crawler)
    post(client, person)
    repo: Any = app.extensions["heat_collector"].repository
    if backend.startswith("mongodb"):
        sessions = repo.db["sessions"]
        sessions.update_many({}, {"$unset": {"traffic": "", "trafficReason": ""}})
        sessions.update_one({"id": "crawler"}, {"$set": {"userAgent": GOOGLEBOT}})
        sessions.drop_index("ix_sessions_project_traffic")
    else:
        with repo.engine.begin() as conn:
            drop = "DROP INDEX ix_sessions_project_traffic"
            conn.exec_driver_sql(drop + (" ON sessions" if conn.dialect.name == "mysql" else ""))
            conn.exec_driver_sql("ALTER TABLE sessions DROP COLUMN traffic_reason")
            conn.exec_driver_sql("ALTER TABLE sessions DROP COLUMN traffic")
            conn.exec_driver_sql(f"UPDATE sessions SET user_agent = '{GOOGLEBOT}' WHERE id = 'crawler'")
    out = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert out.exit_code == 0, out.output
    assert get(client, project, "heatmap")["meta"]["total"] == 2  # both human, as before
    out = app.test_cli_runner().invoke(args=["heat", "reclassify"])
    assert out.exit_code == 0 and "1 became bot, 0 became human" in out.output, out.output
    fresh = post(client, crawler, key="k-fresh", agent=GOOGLEBOT)
    post(client, person, key="k-fresh")
    for endpoint, params in QUERIES:
        for traffic in ("human", "bot", "all"):
            got = get(client, project, endpoint, traffic=traffic, **params)
            want = get(client, fresh, endpoint, traffic=traffic, **params)
            assert without_ids(got, {}) == without_ids(want, {}), (endpoint, traffic)


def test_the_default_answer_reads_the_bots_rows_only(make_app: Callable[..., Flask]) -> None:
    """Whole days come from the human aggregates: the default answer (with its ``meta.excluded``) reads
    no stored row more than the bots' rows of the range (none without bots), whatever the humans'."""
    app = make_app(**OPTIONS)
    client = app.test_client()
    tally = app.extensions["heat_collector"].repository.tally
    humans = [ev("click", T + 1_000 * i + i * 37 % 200, x=i, y=i, selector="#h") for i in range(60)]  # a person
    project = post(client, batch(*humans[:30], session_id="h1"))
    post(client, batch(*humans[30:], session_id="h2"))
    whole = {"from": T - T % DAY, "to": T - T % DAY + DAY - 1}  # one whole UTC day
    for endpoint in ("heatmap", "elements", "paths", "scrollmap"):
        before = tally.events
        get(client, project, endpoint, **whole)
        assert tally.events == before, endpoint
    post(
        client,
        batch(*[ev("click", T + 500 + 700 * i, x=3, y=3, selector="#b") for i in range(5)], session_id="g"),
        agent=GOOGLEBOT,
    )
    for endpoint in ("heatmap", "elements", "paths", "scrollmap"):
        before = tally.events
        answer = get(client, project, endpoint, **whole)
        assert answer["meta"]["excluded"]["sessions"] == 1, endpoint
        assert tally.events - before <= 5, endpoint
