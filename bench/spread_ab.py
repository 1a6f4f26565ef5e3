"""The spread-moves heatmap right after a fill through ``POST /ingest``, ours vs the original (issue 21).

``python -m bench.spread_ab --dialects sqlite,postgresql --points 1000000``: both servers (ours under
gunicorn as bench/servers.py runs it, the original under node) get the same move points (1,000 per
event, 5 events per batch, spread over 1280 x 3000 on one path, bench/spread_ingest.py's batches)
through HTTP ``POST /ingest`` from ``--clients`` keep-alive connections: the original first, then
ours. The heatmap of that path, type move, is queried at once on ours (the first query right after
the fill), then on the original. Ours is then stopped, its database copied as it is (SQLite: the
backup API; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``; ours merges pieces only after an ingest
answer, so nothing changed since the fill), ``flask heat compact`` is run on ours with the same
settings, and three servers are timed in turns (median of ``--runs``): ours on the copy (right after
the fill), ours compacted, the original. Prints the times and the ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import log
from .servers import Config, Databases, Server, admin_uri, compact
from .spread_ingest import PATH, PER_BATCH, PER_EVENT, _batch
from .tools import install_original

KEY = "bench-spread-ab"
QUERY = "/api/projects/{project}/heatmap?path=" + PATH + "&type=move"
# The original inserts a batch's points in one INSERT of 11 parameters a point: SQLite's limit of
# 32,766 parameters (better-sqlite3) refuses 3,000 points (500, "too many SQL variables"), so on
# SQLite both get batches of two 1,000-point moves, the largest the original stores.
BATCH_EVENTS = {"sqlite": 2}


def post_all(server: Server, bodies: list[bytes], clients: int) -> tuple[float, int, str, str]:
    """POST every body to ``server`` over ``clients`` keep-alive connections: (seconds, non-2xx,
    a project id answered, the first refusal).

    The first batch of each session goes alone, before the others: the original creates a session
    (and the project) with a SELECT then an INSERT, so two first batches at once fail on PostgreSQL
    (500, duplicate key on sessions_pkey).
    """
    lock = threading.Lock()
    seen: set[str] = set()
    openers: list[int] = []
    for index, body in enumerate(bodies):
        session = json.loads(body)["session"]["id"]
        if session not in seen:
            seen.add(session)
            openers.append(index)
    first = set(openers)
    rest = [index for index in range(len(bodies)) if index not in first]
    todo = list(openers)
    found = {"bad": 0, "project": "", "refusal": ""}

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        headers = {"Content-Type": "application/json", "X-Project-Key": KEY}
        while True:
            with lock:
                if not todo:
                    break
                index = todo.pop(0)
            conn.request("POST", "/ingest", bodies[index], headers)
            response = conn.getresponse()
            raw = response.read()
            with lock:
                if response.status // 100 != 2:
                    found["bad"] += 1  # type: ignore[operator]
                    found["refusal"] = found["refusal"] or f"{response.status} {raw[:300]!r}"
                elif not found["project"]:
                    found["project"] = json.loads(raw)["projectId"]
        conn.close()

    started = time.perf_counter()
    work()  # the openers, one by one
    todo.extend(rest)
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, int(found["bad"]), str(found["project"]), str(found["refusal"])


def timed_get(url: str) -> tuple[float, dict[str, Any]]:
    """Milliseconds of one GET of ``url`` (a new connection, as a dashboard's fetch), and its body."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=900) as response:
        raw = response.read()
        status = response.status
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    return round(elapsed, 1), json.loads(raw)


def copy_database(dialect: str, uri: str, workdir: Path, dbs: Databases) -> str:
    """A copy of ours' database as it is (its server stopped), dropped with the others."""
    url = sa.make_url(uri)
    if dialect == "sqlite":
        source = str(url.database)
        target = str(Path(workdir) / (Path(source).stem + "_fresh.db"))
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        return f"sqlite:///{target}"
    name = f"{url.database}_fresh"
    engine = sa.create_engine(admin_uri(dialect), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {url.database}")
    engine.dispose()
    dbs.created.append((dialect, name))
    return url.set(database=name).render_as_string(hide_password=False)


def pieces(uri: str) -> int:
    """Rows of ours' heat_aggregates (pieces and merged ones)."""
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM heat_aggregates").scalar() or 0)
    finally:
        engine.dispose()


def total(body: dict[str, Any]) -> int:
    return int(body.get("meta", {}).get("total", -1))


def run_dialect(
    dialect: str, opts: argparse.Namespace, bodies: list[bytes], per_batch: int, workdir: Path
) -> dict[str, Any]:
    dbs = Databases(workdir)
    servers: dict[str, Server] = {}
    result: dict[str, Any] = {"dialect": dialect, "load average at start": os.getloadavg()}
    try:
        ours_uri, _ = dbs.create(dialect, "sab_ours")
        orig_uri, native = dbs.create(dialect, "sab_orig")
        servers["original"] = Server(Config("original", 0), dialect, orig_uri, native, workdir)
        servers["ours"] = Server(Config("ours", opts.workers, "sync"), dialect, ours_uri, "", workdir)
        projects = {}
        for name in ("original", "ours"):
            seconds, bad, project, refusal = post_all(servers[name], bodies, opts.clients)
            points = len(bodies) * per_batch * PER_EVENT
            log(f"{dialect} {name}: {points:,} points in {seconds:.1f} s ({points / seconds:,.0f}/s), {bad} non-2xx")
            if bad:
                raise RuntimeError(f"{name} refused {bad} batches, first: {refusal}")
            result[f"fill {name} s"] = round(seconds, 1)
            projects[name] = project
        # No pause: ours first (its first query after the fill), then the original's first.
        first_ours, body = timed_get(servers["ours"].base + QUERY.format(project=projects["ours"]))
        result["ours first query ms"] = first_ours
        result["ours total"] = total(body)
        first_orig, body = timed_get(servers["original"].base + QUERY.format(project=projects["original"]))
        result["original first query ms"] = first_orig
        result["original total"] = total(body)
        log(f"{dialect} first queries: ours {first_ours} ms, original {first_orig} ms")
        servers.pop("ours").stop()
        result["pieces after fill"] = pieces(ours_uri)
        fresh_uri = copy_database(dialect, ours_uri, workdir, dbs)
        result["compact"] = compact(ours_uri)
        result["pieces after compact"] = pieces(ours_uri)
        log(f"{dialect} {result['compact']} ({result['pieces after fill']} -> {result['pieces after compact']} rows)")
        servers["ours fresh"] = Server(Config("ours", opts.workers, "sync"), dialect, fresh_uri, "", workdir)
        servers["ours compacted"] = Server(Config("ours", opts.workers, "sync"), dialect, ours_uri, "", workdir)
        urls = {
            "ours fresh": QUERY.format(project=projects["ours"]),
            "ours compacted": QUERY.format(project=projects["ours"]),
            "original": QUERY.format(project=projects["original"]),
        }
        order = ["ours fresh", "ours compacted", "original"]
        for name in order[:2]:  # one warm-up each for the restarted ones (the original had its first)
            timed_get(servers[name].base + urls[name])
        samples: dict[str, list[float]] = {name: [] for name in order}
        answers: dict[str, dict[str, Any]] = {}
        for round_ in range(opts.runs):
            for name in order if round_ % 2 == 0 else order[::-1]:
                ms, answers[name] = timed_get(servers[name].base + urls[name])
                samples[name].append(ms)
            log(f"{dialect} round {round_ + 1}: " + ", ".join(f"{n} {samples[n][-1]} ms" for n in order))
        same = answers["ours fresh"]["points"] == answers["ours compacted"]["points"]
        result["ours fresh == compacted points"] = same
        result["totals"] = {name: total(answers[name]) for name in order}
        result["samples"] = samples
        result["medians"] = {name: statistics.median(samples[name]) for name in order}
        result["load average at end"] = os.getloadavg()
    finally:
        for server in servers.values():
            server.stop()
        dbs.drop_all()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spread_ab", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients of the fill")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers of ours")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batch-events", type=int, help="moves per batch (default: 2 on SQLite, else 5)")
    parser.add_argument("--out", type=Path, help="JSON of the results")
    opts = parser.parse_args(argv)
    install_original()
    workdir = Path(tempfile.mkdtemp(prefix="heat-bench-spread-ab-"))
    results = []
    for dialect in [d.strip() for d in opts.dialects.split(",") if d.strip()]:
        per_batch = opts.batch_events or BATCH_EVENTS.get(dialect, PER_BATCH)
        step = PER_EVENT * per_batch
        bodies = [
            json.dumps(_batch(first, per_batch), separators=(",", ":")).encode()
            for first in range(0, opts.points, step)
        ]
        log(f"{dialect}: {len(bodies)} batches of {per_batch} moves x {PER_EVENT} points, {len(bodies[0]):,} bytes")
        result = run_dialect(dialect, opts, bodies, per_batch, workdir)
        result["batch events"] = per_batch
        results.append(result)
    lines = [
        f"| {opts.points:,} move points via POST /ingest | moves per batch | ours right after the fill "
        "| ours after compact | original | original / ours (fill) | ours fill / compacted "
        "| ours first query | original first query |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["medians"]
        fresh, compacted, original = m["ours fresh"], m["ours compacted"], m["original"]
        lines.append(
            f"| {r['dialect']} | {r['batch events']} | {fresh:,.1f} ms | {compacted:,.1f} ms | {original:,.1f} ms "
            f"| {original / fresh:,.0f}x | {fresh / compacted:.2f} "
            f"| {r['ours first query ms']:,.1f} ms | {r['original first query ms']:,.1f} ms |"
        )
    text = "\n".join(lines)
    print(json.dumps(results, indent=1))
    print(text)
    if opts.out:
        opts.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
