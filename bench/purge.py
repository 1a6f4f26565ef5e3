"""Ingest latency while `flask heat purge` deletes N old events (SPEC 8, issue 12).

Fills N events dated weeks ago (bench/fill.py), starts the collector under gunicorn with the shipped
config, posts 20-event batches continuously from client threads over keep-alive connections, and
reports p50/p99 ingest latency without a purge (baseline) and while the purge runs, and the purge's
duration.

    python3 bench/purge.py --dialect sqlite|postgresql --events 1000000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as python3 bench/purge.py
    sys.path.insert(0, str(ROOT))

from bench.fill import PROJECT_KEY, fill_ours  # noqa: E402
from tests import processes  # noqa: E402

PG_ADMIN = os.environ.get("HEAT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
APP = "flask_heat_collector.wsgi:create_app()"


def _database(dialect: str, tmp: Path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp / 'purge.db'}"
    admin = sa.make_url(PG_ADMIN)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS heat_bench_purge")
        conn.exec_driver_sql("CREATE DATABASE heat_bench_purge")
    engine.dispose()
    return admin.set(database="heat_bench_purge").render_as_string(hide_password=False)


def _body(client: int, n: int) -> bytes:
    """One SDK-shaped batch of 20 events, dated now (inside the retention window)."""
    now = int(time.time() * 1000)
    session = f"live-{client}-{n // 10}"
    events: list[dict[str, Any]] = []
    base = {"sessionId": session, "path": "/live", "viewport": {"w": 1280, "h": 720, "dpr": 1}, "device": {}}
    for i in range(20):
        item: dict[str, Any] = {**base, "eventId": f"{client}-{n}-{i}-{uuid.uuid4().hex[:8]}", "ts": now + i}
        if i in (0, 19):
            item.update(type="pageview", to="/live")
        elif i <= 12:
            item.update(type="click", x=(n * 31 + i * 7) % 1280, y=(n * 17 + i) % 2400, selector="#b")
        elif i <= 16:
            item.update(type="move", points=[{"x": i * 10 + k, "y": k * 20, "tsOffset": k * 16} for k in range(5)])
        else:
            item.update(type="scroll", scrollY=i * 50, scrollDepthPct=i * 4)
        events.append(item)
    return json.dumps({"session": {"id": session, "startedAt": now}, "events": events}).encode()


class Load:
    """Client threads posting batches back to back; latencies (ms) kept by phase."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.phase = "warmup"
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def _run(self, client: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json", "X-Project-Key": PROJECT_KEY}
        n = 0
        while not self.stop.is_set():
            body, phase = _body(client, n), self.phase
            n += 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/ingest", body, headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                ok = False
            if ok:
                self.samples.setdefault(phase, []).append((time.perf_counter() - started) * 1000)
            else:
                self.errors[phase] = self.errors.get(phase, 0) + 1


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="heat-bench-purge-"))
    uri = _database(args.dialect, tmp)
    filled, rebuilt = fill_ours(uri, args.events)
    print(f"filled {args.events} old events in {filled:.1f} s, aggregates in {rebuilt:.1f} s", flush=True)
    env = {
        **os.environ,
        "HEAT_DATABASE_URI": uri,
        "HEAT_RATE_LIMIT": "1000000 per second",
        "HEAT_QUERY_API_KEYS": "bench-query-key",
        "HEAT_IP_HASH_SECRET": "bench",
        "HEAT_LOG_LEVEL": "error",
        "HEAT_RETENTION_DAYS": "30",
        "FLASK_APP": APP,
    }
    log_path = tmp / "gunicorn.log"
    options = ["-c", "python:flask_heat_collector.gunicorn_conf", "-b", "127.0.0.1:0"]
    server = processes.spawn_gunicorn(options, env, log_path, APP)
    try:
        port = int(processes.wait_listening(server, log_path).rsplit(":", 1)[1])
        time.sleep(2)  # every worker booted
        load = Load(port, args.clients)
        for thread in load.threads:
            thread.start()
        time.sleep(3)
        load.phase = "baseline"
        time.sleep(args.baseline_seconds)
        load.phase = "purge"
        started = time.perf_counter()
        purge = subprocess.run(
            [sys.executable, "-m", "flask", "heat", "purge"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        took = time.perf_counter() - started
        load.phase = "after"
        load.stop.set()
        for thread in load.threads:
            thread.join(60)
    finally:
        processes.stop(server, timeout=30)
    if purge.returncode != 0:
        raise SystemExit(f"purge failed:\n{purge.stdout}\n{purge.stderr[-3000:]}")
    answer = json.loads(purge.stdout.strip().splitlines()[-1])
    base, during = load.samples.get("baseline", []), load.samples.get("purge", [])
    result = {
        "dialect": args.dialect,
        "events": args.events,
        "purged": answer["purged"],
        "purgeSeconds": round(took, 1),
        "baseline": {"requests": len(base), "p50": round(_pct(base, 0.5), 1), "p99": round(_pct(base, 0.99), 1)},
        "duringPurge": {
            "requests": len(during),
            "p50": round(_pct(during, 0.5), 1),
            "p99": round(_pct(during, 0.99), 1),
            "max": round(max(during, default=float("nan")), 1),
        },
        "errors": load.errors,
    }
    result["p99Ratio"] = round(result["duringPurge"]["p99"] / result["baseline"]["p99"], 2)
    result["p50Ratio"] = round(result["duringPurge"]["p50"] / result["baseline"]["p50"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
