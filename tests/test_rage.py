"""Rage clicks decided once per session and corrected by later data (issue 21, item 2), on every
backend: bursts across batches, late and retried batches, erase and purge, a database of the
previous layout; every answer checked against the plain reference in tests/oracle.py."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, batch, event, ingest_all

T = 1_790_000_000_000
DESKTOP = {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}}


def click(ts: int, x: int = 100, y: int = 100, selector: str = "#dead", eid: str | None = None) -> dict[str, Any]:
    found = event("click", ts=T + ts, x=x, y=y, selector=selector, path="/", **DESKTOP)
    if eid is not None:
        found["eventId"] = eid
    return found


def rage(client: FlaskClient, project: str, **params: Any) -> tuple[dict[str, int], int]:
    """``(rageClicks per selector, rage heatmap total)`` of the project."""
    elements = client.get(f"/api/projects/{project}/elements", query_string=params, headers=API)
    assert elements.status_code == 200, elements.get_json()
    heat = client.get(
        f"/api/projects/{project}/heatmap",
        query_string={"type": "rageclick", **params},
        headers=API,
    )
    assert heat.status_code == 200, heat.get_json()
    per_selector = {e["selector"]: e["rageClicks"] for e in elements.get_json()["elements"] if e["rageClicks"]}
    return per_selector, heat.get_json()["meta"]["total"]


def check(client: FlaskClient, project: str, bodies: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """The rage answers, asserted equal to the oracle's over the bodies posted."""
    rows = oracle.stored_rows(bodies)
    want = {e["selector"]: e["rageClicks"] for e in oracle.elements(rows, limit=500) if e["rageClicks"]}
    got = rage(client, project)
    assert got == (want, len(oracle.rage_rows(rows)))
    return got


def test_a_burst_across_batches_is_rage_once_complete(client: FlaskClient) -> None:
    first = batch(click(0), click(200), session_id="a")
    project = ingest_all(client, [first])
    assert check(client, project, [first]) == ({}, 0)
    second = batch(click(400), session_id="a")
    ingest_all(client, [second])
    assert check(client, project, [first, second]) == ({"#dead": 3}, 3)
    # Retried batches store nothing twice and count no burst twice.
    ingest_all(client, [first, second])
    assert check(client, project, [first, second]) == ({"#dead": 3}, 3)


def test_a_late_batch_moves_a_burst(client: FlaskClient) -> None:
    # A(0) B(500) C(700) make a burst; D(1200) is alone. A late L(-600) takes A into a burst of two
    # and leaves B, C, D a burst of three: A stops being rage, D becomes rage.
    on_time = batch(click(0, eid="A"), click(500, eid="B"), click(700, eid="C"), click(1_200, eid="D"), session_id="s")
    project = ingest_all(client, [on_time])
    assert check(client, project, [on_time]) == ({"#dead": 3}, 3)
    late = batch(click(-600, eid="L"), session_id="s")
    ingest_all(client, [late])
    rows = oracle.stored_rows([on_time, late])
    assert sorted(r.event_id for r in oracle.rage_rows(rows)) == ["B", "C", "D"]
    assert check(client, project, [on_time, late]) == ({"#dead": 3}, 3)
    heat = client.get(
        f"/api/projects/{project}/heatmap",
        query_string={"type": "rageclick", "from": T + 1_000, "to": T + 2_000},
        headers=API,
    ).get_json()
    assert heat["meta"]["total"] == 1  # D alone is in this range, and it is rage now


def test_bursts_are_per_session_and_other_sessions_stay(client: FlaskClient) -> None:
    bodies = [
        batch(click(0), click(100), session_id="x"),
        batch(click(50), session_id="y"),  # same place and time, another session: no burst
        batch(click(0, 500, 500, "#ok"), click(100, 505, 500, "#ok"), click(150, 500, 505, "#ok"), session_id="z"),
    ]
    project = ingest_all(client, bodies)
    assert check(client, project, bodies) == ({"#ok": 3}, 3)


def _erase_before(app: Flask, project: str, cut: int) -> None:
    out = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--before", str(cut)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["verified"] is True


def test_erase_corrects_rage_clicks(app: Flask, client: FlaskClient) -> None:
    burst = batch(click(0), click(200), click(400), session_id="a")
    other = batch(click(0, 300, 300, "#b"), click(100, 300, 300, "#b"), click(900, 300, 300, "#b"), session_id="b")
    project = ingest_all(client, [burst, other])
    assert check(client, project, [burst, other]) == ({"#dead": 3, "#b": 3}, 6)
    _erase_before(app, project, T + 100)  # the first click of each burst: bursts of two are left
    kept = [dict(b, events=[e for e in b["events"] if e["ts"] >= T + 100]) for b in (burst, other)]
    assert check(client, project, kept) == ({}, 0)
    out = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--session-id", "a"])
    assert out.exit_code == 0 and json.loads(out.stdout)["verified"] is True


def test_purge_corrects_rage_clicks(make_app: Callable[..., Flask]) -> None:
    import time

    now = int(time.time() * 1000)
    day = 86_400_000
    cut = (now // day - 2) * day  # the purge's cut: UTC midnight two days ago
    start = cut - 300  # a burst of four across it: the two clicks after it are no burst
    app = make_app(retention_days=2, aggregate_retention_days=400)
    client = app.test_client()

    def at(ts: int, eid: str) -> dict[str, Any]:
        return dict(click(0, eid=eid), ts=ts)

    body = batch(at(start, "p1"), at(start + 200, "p2"), at(start + 400, "p3"), at(start + 600, "p4"))
    project = ingest_all(client, [body])
    assert check(client, project, [body]) == ({"#dead": 4}, 4)
    out = app.test_cli_runner().invoke(args=["heat", "purge"])
    assert out.exit_code == 0, out.output
    kept = [dict(body, events=[e for e in body["events"] if e["ts"] >= cut])]
    assert len(kept[0]["events"]) == 2
    assert check(client, project, kept) == ({}, 0)


def test_a_database_without_rage_tables_is_moved_forward(app: Flask, client: FlaskClient, backend: str) -> None:
    bodies = [batch(click(0), click(200), click(400), session_id="a"), batch(click(0), session_id="b")]
    project = ingest_all(client, bodies)
    repo: Any = app.extensions["heat_collector"].repository
    if backend.startswith("mongodb"):
        repo.db.drop_collection("heat_rage_clicks")
        repo.db.drop_collection("heat_rage_pending")
        repo.db.drop_collection("heat_migrations")
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE heat_rage_clicks")
            conn.exec_driver_sql("DROP TABLE heat_rage_pending")
    out = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert out.exit_code == 0, out.output
    assert check(client, project, bodies) == ({"#dead": 3}, 3)


def test_a_rage_report_reads_only_rage_clicks(make_app: Callable[..., Flask]) -> None:
    """The same answer over five times more stored clicks costs no more Python heap (±20 %)."""
    app = make_app()
    client = app.test_client()
    burst = batch(click(0), click(100), click(200), session_id="r")
    project = ingest_all(client, [burst])

    def heap() -> int:
        # Compacted (as the compactor does every few seconds) and settled (the first report) first.
        assert app.test_cli_runner().invoke(args=["heat", "compact"]).exit_code == 0
        rage(client, project)
        tracemalloc.start()
        try:
            rage(client, project)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def calm(n: int, start: int) -> list[dict[str, Any]]:  # clicks 2 s apart: never a burst
        return [
            batch(
                *[click(10_000 + 2_000 * (start + i * 500 + j), 700, 400, "#calm") for j in range(500)],
                session_id=f"c{start + i}",
            )
            for i in range(n)
        ]

    ingest_all(client, calm(4, 0))  # 2,000 calm clicks
    small = heap()
    ingest_all(client, calm(16, 4))  # 10,000 in all
    assert rage(client, project)[0] == {"#dead": 3}
    big = heap()
    assert big <= small * 1.2 + 16_384, (small, big)


def random_clicks(seed: int) -> list[dict[str, Any]]:
    """Batches of click bursts of several sessions: 2-6 clicks 50-700 ms apart, 0-40 px from the first."""
    rng = random.Random(seed)
    bodies = []
    for s in range(8):
        found = []
        ts = rng.randrange(0, 50_000)
        for _ in range(rng.randint(2, 5)):
            x, y = rng.randrange(0, 1200), rng.randrange(0, 2000)
            for _ in range(rng.randint(2, 6)):
                ts += rng.randrange(50, 700)
                found.append(
                    click(ts, x + rng.randrange(-40, 41), y + rng.randrange(-40, 41), rng.choice(["#a", "#b"]))
                )
            ts += rng.randrange(1_500, 9_000)
        half = len(found) // 2
        bodies += [batch(*found[:half], session_id=f"r{s}"), batch(*found[half:], session_id=f"r{s}")]
    return bodies


def rage_of(rows: list[oracle.Row], **rule: int) -> tuple[dict[str, int], int]:
    chosen = oracle.rage_rows(rows, **rule)
    per_selector: dict[str, int] = {}
    for row in chosen:
        assert row.selector is not None
        per_selector[row.selector] = per_selector.get(row.selector, 0) + 1
    return per_selector, len(chosen)


def test_the_rage_rule_is_config_and_recomputed_over_history(make_app: Callable[..., Flask]) -> None:
    """HEAT_RAGE_*: a new rule applies to what ingest settles from then on, and `flask heat
    recompute-signals` decides every stored session again, exactly as a fresh ingest would."""
    bodies = random_clicks(42)
    rows = oracle.stored_rows(bodies)
    strict = {"clicks_needed": 4, "window_ms": 600, "radius_px": 15}
    first = make_app(rate_limit="100000 per second")
    project = ingest_all(first.test_client(), bodies)
    assert rage(first.test_client(), project) == rage_of(rows)
    assert rage_of(rows) != rage_of(rows, **strict)  # the data tells the two rules apart

    second = make_app(rate_limit="100000 per second", rage_clicks=4, rage_window_ms=600, rage_radius_px=15)
    client = second.test_client()
    assert rage(client, project) == rage_of(rows)  # decided under the old rule until recomputed
    out = second.test_cli_runner().invoke(args=["heat", "recompute-signals"])
    assert out.exit_code == 0 and "4 clicks within 600 ms and 15 px" in out.output, out.output
    assert rage(client, project) == rage_of(rows, **strict)

    fresh = make_app(rate_limit="100000 per second", rage_clicks=4, rage_window_ms=600, rage_radius_px=15)
    more = random_clicks(43)
    ingest_all(fresh.test_client(), more)
    assert rage(client, project) == rage_of(oracle.stored_rows(bodies + more), **strict)

    out = first.test_cli_runner().invoke(args=["heat", "recompute-signals", "--project-id", project])
    assert out.exit_code == 0, out.output
    assert rage(first.test_client(), project) == rage_of(oracle.stored_rows(bodies + more))
